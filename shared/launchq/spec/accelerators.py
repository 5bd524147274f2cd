"""Which Vertex quota metric a job's accelerators count against, and how many it holds.

Vertex meters a CustomJob's accelerators per region against a metric named after the accelerator
(`custom_model_training_nvidia_l4_gpus`), or against its `preemptible` twin for a SPOT job. A job
holds `accelerator_count * replica_count` of each pool's accelerator while it is active, and
releases it when it ends. Admission keeps launchq's jobs within declared quotas with the same
arithmetic (`launchq.cohorts`); the local Vertex stand-in enforces its quotas with this table too,
so both sides agree on what a job needs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

SERVICE = "aiplatform.googleapis.com"

# AcceleratorType name → the metric a CustomJob's accelerators count against. "confirmed": the
# name appears in Google's own code or in a real error message (docs/vertex-standin.md lists the
# sources); "derived": follows the pattern of the confirmed ones, never seen. The metric is not a
# mechanical function of the enum name: NVIDIA_H100_80GB counts against `nvidia_h100_gpus`, and
# TPU_V5_LITEPOD against `tpu_v5e`.
ACCELERATOR_METRICS: dict[str, tuple[str, str]] = {
    "NVIDIA_TESLA_K80": ("custom_model_training_nvidia_k80_gpus", "confirmed"),
    "NVIDIA_TESLA_P100": ("custom_model_training_nvidia_p100_gpus", "derived"),
    "NVIDIA_TESLA_V100": ("custom_model_training_nvidia_v100_gpus", "confirmed"),
    "NVIDIA_TESLA_P4": ("custom_model_training_nvidia_p4_gpus", "confirmed"),
    "NVIDIA_TESLA_T4": ("custom_model_training_nvidia_t4_gpus", "confirmed"),
    "NVIDIA_TESLA_A100": ("custom_model_training_nvidia_a100_gpus", "confirmed"),
    "NVIDIA_A100_80GB": ("custom_model_training_nvidia_a100_80gb_gpus", "confirmed"),
    "NVIDIA_L4": ("custom_model_training_nvidia_l4_gpus", "confirmed"),
    "NVIDIA_H100_80GB": ("custom_model_training_nvidia_h100_gpus", "confirmed"),
    "NVIDIA_H100_MEGA_80GB": ("custom_model_training_nvidia_h100_mega_gpus", "derived"),
    "NVIDIA_H200_141GB": ("custom_model_training_nvidia_h200_gpus", "derived"),
    "NVIDIA_B200": ("custom_model_training_nvidia_b200_gpus", "derived"),
    "NVIDIA_GB200": ("custom_model_training_nvidia_gb200_gpus", "derived"),
    "NVIDIA_RTX_PRO_6000": ("custom_model_training_nvidia_rtx_pro_6000_gpus", "derived"),
    "TPU_V2": ("custom_model_training_tpu_v2", "confirmed"),
    "TPU_V3": ("custom_model_training_tpu_v3", "confirmed"),
    "TPU_V4_POD": ("custom_model_training_tpu_v4_pod", "derived"),
    "TPU_V5_LITEPOD": ("custom_model_training_tpu_v5e", "confirmed"),
}
PREFIX = "custom_model_training_"
PREEMPTIBLE_PREFIX = "custom_model_training_preemptible_"


def preemptible(metric: str) -> str:
    """SPOT jobs count against the `preemptible` twin of each accelerator metric."""
    return PREEMPTIBLE_PREFIX + metric.removeprefix(PREFIX)


ACCELERATOR_METRIC_NAMES: frozenset[str] = frozenset(
    {metric for metric, _ in ACCELERATOR_METRICS.values()}
    | {preemptible(metric) for metric, _ in ACCELERATOR_METRICS.values()}
)


def metric_for(accelerator_type: str, spot: bool) -> str | None:
    """The metric an accelerator (its AcceleratorType name) counts against; None if unknown."""
    entry = ACCELERATOR_METRICS.get(accelerator_type)
    if entry is None:
        return None
    return preemptible(entry[0]) if spot else entry[0]


def job_demand(body: Mapping[str, Any]) -> dict[str, int]:
    """Accelerators a CustomJob body (REST form, as stored on an item) holds while active, per
    quota metric. A pool without replicas or machine holds nothing (an empty placeholder pool)."""
    spec = body.get("jobSpec") or {}
    spot = (spec.get("scheduling") or {}).get("strategy") == "SPOT"
    need: dict[str, int] = defaultdict(int)
    for pool in spec.get("workerPoolSpecs") or []:
        machine = pool.get("machineSpec") or {}
        replicas = int(pool.get("replicaCount") or 0)
        count = int(machine.get("acceleratorCount") or 0)
        if replicas <= 0 or count <= 0 or not machine.get("machineType"):
            continue
        metric = metric_for(str(machine.get("acceleratorType", "")), spot)
        if metric is not None:
            need[metric] += count * replicas
    return dict(need)
