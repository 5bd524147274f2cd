"""The enums and limits of `CustomJob` as launchq checks them: names as in `aiplatform_v1`
(`tests/unit/test_mapping.py` compares them with the installed descriptors).
"""

from __future__ import annotations

from typing import Literal

# ---------------------------------------------------------------------------------------------
# Enums (names as in aiplatform_v1; a test compares them with the installed descriptors)

ACCELERATOR_TYPES = (
    "ACCELERATOR_TYPE_UNSPECIFIED", "NVIDIA_TESLA_K80", "NVIDIA_TESLA_P100", "NVIDIA_TESLA_V100",
    "NVIDIA_TESLA_P4", "NVIDIA_TESLA_T4", "TPU_V2", "TPU_V3", "NVIDIA_TESLA_A100",
    "NVIDIA_A100_80GB", "TPU_V4_POD", "NVIDIA_L4", "TPU_V5_LITEPOD", "NVIDIA_H100_80GB",
    "NVIDIA_H100_MEGA_80GB", "NVIDIA_H200_141GB", "NVIDIA_B200", "NVIDIA_GB200",
    "NVIDIA_RTX_PRO_6000",
)  # fmt: skip
SCHEDULING_STRATEGIES = (
    "STRATEGY_UNSPECIFIED", "ON_DEMAND", "LOW_COST", "STANDARD", "SPOT", "FLEX_START",
)  # fmt: skip
RESERVATION_AFFINITY_TYPES = (
    "TYPE_UNSPECIFIED", "NO_RESERVATION", "ANY_RESERVATION", "SPECIFIC_RESERVATION",
)  # fmt: skip

AcceleratorType = Literal[
    "ACCELERATOR_TYPE_UNSPECIFIED", "NVIDIA_TESLA_K80", "NVIDIA_TESLA_P100", "NVIDIA_TESLA_V100",
    "NVIDIA_TESLA_P4", "NVIDIA_TESLA_T4", "TPU_V2", "TPU_V3", "NVIDIA_TESLA_A100",
    "NVIDIA_A100_80GB", "TPU_V4_POD", "NVIDIA_L4", "TPU_V5_LITEPOD", "NVIDIA_H100_80GB",
    "NVIDIA_H100_MEGA_80GB", "NVIDIA_H200_141GB", "NVIDIA_B200", "NVIDIA_GB200",
    "NVIDIA_RTX_PRO_6000",
]  # fmt: skip
SchedulingStrategy = Literal[
    "STRATEGY_UNSPECIFIED", "ON_DEMAND", "LOW_COST", "STANDARD", "SPOT", "FLEX_START"
]
ReservationAffinityType = Literal[
    "TYPE_UNSPECIFIED", "NO_RESERVATION", "ANY_RESERVATION", "SPECIFIC_RESERVATION"
]

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
MAX_ENV = 100
MAX_PACKAGE_URIS = 100
MAX_DISPLAY_NAME = 128
FLEX_START_MAX_TIMEOUT = 7 * 24 * 3600
# Dynamic Workload Scheduler (FLEX_START) takes L4, A100, H100, H200 or B200 GPUs, a timeout of
# at most 7 days and the same machine configuration in every worker pool
# (https://cloud.google.com/vertex-ai/docs/training/schedule-jobs-dws, "Requirements").
FLEX_START_ACCELERATORS = (
    "NVIDIA_L4", "NVIDIA_TESLA_A100", "NVIDIA_A100_80GB", "NVIDIA_H100_80GB",
    "NVIDIA_H100_MEGA_80GB", "NVIDIA_H200_141GB", "NVIDIA_B200",
)  # fmt: skip
# Scheduling.Strategy values the API marks "Deprecated." (aiplatform_v1 types/custom_job.py),
# with what replaces them. Refused at apply time: a queue outlives a release of the API.
DEPRECATED_STRATEGIES = {"ON_DEMAND": "STANDARD", "LOW_COST": "SPOT"}
