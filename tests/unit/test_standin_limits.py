"""The stand-in's limit rules without a server: metric names, demand, the rate window, masks."""

from __future__ import annotations

from typing import Any

import click
import pytest
from google.cloud.aiplatform_v1 import types

from launchq_cli.standin import vertex_limits
from launchq_local.standin.jobs import CustomJobPb
from launchq_local.standin.limits import (
    ACCELERATOR_METRICS,
    CPU_METRIC,
    Limits,
    RateWindow,
    demand,
    machine_vcpus,
    metric_name,
)
from launchq_local.standin.masks import parse_read_mask, trim
from launchq_local.standin.wire import ApiError

_ACCELERATOR_TYPE: Any = types.AcceleratorType


def test_every_accelerator_type_has_a_metric() -> None:
    """A new AcceleratorType in a client release must get a row in the table (and the docs)."""
    names = {a.name for a in _ACCELERATOR_TYPE} - {"ACCELERATOR_TYPE_UNSPECIFIED"}
    assert names == set(ACCELERATOR_METRICS)
    for metric, source in ACCELERATOR_METRICS.values():
        assert metric.startswith("custom_model_training_")
        assert source in ("confirmed", "derived")


def test_metric_names_are_not_a_function_of_the_enum_name() -> None:
    assert ACCELERATOR_METRICS["NVIDIA_TESLA_A100"][0] == "custom_model_training_nvidia_a100_gpus"
    assert ACCELERATOR_METRICS["NVIDIA_H100_80GB"][0] == "custom_model_training_nvidia_h100_gpus"
    assert ACCELERATOR_METRICS["TPU_V5_LITEPOD"][0] == "custom_model_training_tpu_v5e"


def test_metric_name_accepts_the_service_prefix_and_rejects_unknown() -> None:
    full = "aiplatform.googleapis.com/custom_model_training_nvidia_l4_gpus"
    assert metric_name(full) == "custom_model_training_nvidia_l4_gpus"
    assert metric_name("custom_model_training_preemptible_nvidia_l4_gpus").endswith("l4_gpus")
    with pytest.raises(ValueError, match="unknown quota metric"):
        metric_name("custom_model_training_nvidia_l5_gpus")


@pytest.mark.parametrize(
    ("machine", "vcpus"),
    [("n1-standard-4", 4), ("e2-highmem-16", 16), ("a2-highgpu-1g", None), ("cloud-tpu", None)],
)
def test_machine_vcpus(machine: str, vcpus: int | None) -> None:
    assert machine_vcpus(machine) == vcpus


def _job(*pools: dict[str, Any], spot: bool = False) -> Any:
    spec: dict[str, Any] = {"worker_pool_specs": list(pools)}
    if spot:
        spec["scheduling"] = {"strategy": types.Scheduling.Strategy.SPOT}
    return types.CustomJob.pb(types.CustomJob(display_name="j", job_spec=spec))


def _pool(machine: str, count: int = 0, replicas: int = 1, kind: str = "NVIDIA_L4") -> Any:
    machine_spec: dict[str, Any] = {"machine_type": machine}
    if count:
        machine_spec |= {"accelerator_type": _ACCELERATOR_TYPE[kind], "accelerator_count": count}
    return {"machine_spec": machine_spec, "replica_count": replicas}


def test_demand_sums_count_times_replicas_and_skips_empty_pools() -> None:
    job = _job(_pool("g2-standard-8", 1, replicas=3), {}, _pool("g2-standard-24", 2, replicas=2))
    assert demand(job) == {"custom_model_training_nvidia_l4_gpus": 7, CPU_METRIC: 72}


def test_spot_demand_uses_the_preemptible_metric() -> None:
    job = _job(_pool("a2-highgpu-8g", 8, kind="NVIDIA_TESLA_A100"), spot=True)
    assert demand(job) == {"custom_model_training_preemptible_nvidia_a100_gpus": 8}


def test_rate_window_slides() -> None:
    window = RateWindow()
    key = ("1", "us-central1")
    assert [window.admit(key, 2, now=t) for t in (0.0, 30.0, 59.0)] == [True, True, False]
    assert window.admit(key, 2, now=60.0)  # the call at 0 has left (now - 60, now]
    assert not window.admit(key, 2, now=89.9)  # 30 and 60 are still in
    assert window.admit(("1", "europe-west4"), 2, now=89.9)  # per region
    assert window.admit(key, None, now=89.9)  # no limit: always admitted
    assert window.in_window(now=89.9) == {
        "projects/1/locations/europe-west4": 1,
        "projects/1/locations/us-central1": 2,
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"quota": {}}, "unknown limits field"),
        ({"quotas": []}, "quotas must map"),
        ({"quotas": {CPU_METRIC: 1.5}}, "non-negative integer"),
        ({"quotas": {CPU_METRIC: True}}, "non-negative integer"),
        ({"createRequestsPerMinute": 0}, "positive integer"),
    ],
)
def test_limits_from_json_rejects(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Limits.from_json(body)


def test_limits_round_trip() -> None:
    body = {"quotas": {CPU_METRIC: 64}, "createRequestsPerMinute": 60}
    limits = Limits.from_json(body)
    assert limits.active
    assert limits.to_json() == body
    assert not Limits().active


def test_cli_quota_flags() -> None:
    limits = vertex_limits(("custom_model_training_nvidia_a100_gpus=16",), 60)
    assert limits.quotas == {"custom_model_training_nvidia_a100_gpus": 16}
    assert limits.create_requests_per_minute == 60
    for bad in ("custom_model_training_cpus", "custom_model_training_cpus=-1", "gpus=1"):
        with pytest.raises(click.BadParameter):
            vertex_limits((bad,), None)


def test_read_mask_parses_both_cases_and_trims() -> None:
    descriptor = CustomJobPb.DESCRIPTOR
    mask = parse_read_mask(["name,createTime", "create_time,jobSpec.serviceAccount"], descriptor)
    assert mask is not None
    assert list(mask.paths) == ["name", "create_time", "job_spec.service_account"]
    assert parse_read_mask(["", " , "], descriptor) is None
    job = types.CustomJob.pb(
        types.CustomJob(
            name="n",
            display_name="d",
            job_spec={"service_account": "sa", "network": "net"},
            labels={"a": "b"},
        )
    )
    trimmed = trim(job, mask)
    assert trimmed.name == "n"
    assert not trimmed.display_name
    assert trimmed.job_spec.service_account == "sa"
    assert not trimmed.job_spec.network
    assert not trimmed.labels
    with pytest.raises(ApiError, match=r'"jobSpec\.foo"'):
        parse_read_mask(["jobSpec.foo"], descriptor)
