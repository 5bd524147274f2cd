"""`spec`/`run` as typed models, after template substitution (so `accelerator_count:
"{{gpus}}"` is an integer by the time they see it), and the duration type they share.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from launchq.spec.mapping.vocabulary import (
    INT32_MAX,
    INT64_MAX,
    AcceleratorType,
    ReservationAffinityType,
    SchedulingStrategy,
)

# ---------------------------------------------------------------------------------------------
# Durations: seconds, or "3600s" / "90m" / "1h30m" / "2d"

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: object) -> object:
    """Accept integer seconds (as the SDK does) or a duration string; anything else is left for
    the int validator to reject with its usual message."""
    if isinstance(value, str):
        match = _DURATION.match(value.strip())
        if not value.strip() or not match:
            raise ValueError(
                f"invalid duration {value!r}; use seconds (3600) or a string like "
                "'3600s', '90m', '1h30m', '2d'"
            )
        days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
        return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    return value


Seconds = Annotated[
    int,
    BeforeValidator(parse_duration),
    Field(ge=0, le=315_576_000_000),
    WithJsonSchema({
        "anyOf": [
            {"type": "integer", "minimum": 0},
            {"type": "string", "pattern": r"^(\d+d)?(\d+h)?(\d+m)?(\d+s)?$"},
            {"type": "string", "pattern": r"^\{\{\s*\w+\s*\}\}$"},
        ],
        "description": "Seconds, or a duration such as '3600s', '90m', '1h30m', '2d'.",
    }),
]  # fmt: skip
Int32 = Annotated[int, Field(ge=0, le=INT32_MAX)]
Int64 = Annotated[int, Field(ge=0, le=INT64_MAX)]
NonEmpty = Annotated[str, Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class EnvVar(_Model):
    name: NonEmpty
    value: str = ""


class ContainerSpec(_Model):
    image_uri: NonEmpty
    command: list[str] = []
    args: list[str] = []
    env: list[EnvVar] = []


class PythonPackageSpec(_Model):
    executor_image_uri: NonEmpty
    package_uris: list[NonEmpty] = Field(min_length=1)
    python_module: NonEmpty
    args: list[str] = []
    env: list[EnvVar] = []


class ReservationAffinity(_Model):
    reservation_affinity_type: ReservationAffinityType
    key: str | None = None
    values: list[str] = []


class MachineSpec(_Model):
    machine_type: str | None = None
    accelerator_type: AcceleratorType = "ACCELERATOR_TYPE_UNSPECIFIED"
    accelerator_count: Int32 = 0
    gpu_partition_size: str | None = None
    tpu_topology: str | None = None
    reservation_affinity: ReservationAffinity | None = None


class DiskSpec(_Model):
    boot_disk_type: str | None = None
    boot_disk_size_gb: Int32 | None = None


class NfsMount(_Model):
    server: NonEmpty
    path: NonEmpty
    mount_point: NonEmpty


class LustreMount(_Model):
    instance_ip: NonEmpty
    volume_handle: NonEmpty
    filesystem: NonEmpty
    mount_point: NonEmpty


class WorkerPoolSpec(_Model):
    container_spec: ContainerSpec | None = None
    python_package_spec: PythonPackageSpec | None = None
    machine_spec: MachineSpec | None = None
    replica_count: Int64 | None = None
    nfs_mounts: list[NfsMount] = []
    lustre_mounts: list[LustreMount] = []
    disk_spec: DiskSpec | None = None

    def is_empty(self) -> bool:
        """`{}` keeps a pool position unused (e.g. no parameter servers before the evaluators)."""
        return not self.model_dump(exclude_defaults=True)


class DnsPeeringConfig(_Model):
    domain: NonEmpty
    target_project: NonEmpty
    target_network: str | None = None


class PscInterfaceConfig(_Model):
    network_attachment: str | None = None
    dns_peering_configs: list[DnsPeeringConfig] = []


class SpecInput(_Model):
    """`spec`: the `aiplatform.CustomJob(...)` arguments, plus `CustomJobSpec` fields the SDK
    cannot set (they are still Vertex features an admin may want)."""

    worker_pool_specs: list[WorkerPoolSpec] = []
    staging_bucket: str | None = None
    base_output_dir: str | None = None
    display_name: str | None = None
    labels: dict[str, str] = {}
    encryption_spec_key_name: str | None = None
    persistent_resource_id: str | None = None
    service_account: str | None = None
    reserved_ip_ranges: list[NonEmpty] = []
    protected_artifact_location_id: str | None = None
    enable_dashboard_access: bool = False
    models: list[NonEmpty] = []


class RunInput(_Model):
    """`run`: the `CustomJob.submit(...)` / `run(...)` keyword arguments."""

    service_account: str | None = None
    network: str | None = None
    timeout: Seconds | None = None
    restart_job_on_worker_restart: bool = False
    enable_web_access: bool = False
    experiment: str | None = None
    experiment_run: str | None = None
    tensorboard: str | None = None
    create_request_timeout: float | None = Field(default=None, gt=0)
    disable_retries: bool = False
    persistent_resource_id: str | None = None
    scheduling_strategy: SchedulingStrategy | None = None
    max_wait_duration: Seconds | None = None
    psc_interface_config: PscInterfaceConfig | None = None
    sync: bool | None = None
