"""THE table from W&B-style queue-config keys (`spec.*`, `run.*`) to `CustomJob` REST fields.

A W&B queue config holds the keyword arguments of the high-level SDK: `spec` for
`aiplatform.CustomJob(...)`, `run` for `CustomJob.submit(...)`. W&B reads 13 of those keys and
drops the rest without a word. launchq reads every one, and reaches every field of `CustomJob`
(`tests/unit/test_mapping*.py` checks the table against the installed proto descriptors, so a
field added by a newer library shows up as a failing test, not as a silently missing feature).

The typed models below describe `spec`/`run` *after* template substitution (so
`accelerator_count: "{{gpus}}"` is an integer by the time they see it). `to_body` then walks the
validated values and writes each one to its `ROWS` target in proto3 JSON exactly as the REST
client sends it: lowerCamelCase names (map keys untouched), int64 as strings, Durations as "Ns",
enums by name, default values omitted. Nothing here imports `google.cloud.aiplatform`: it is on
the dispatch function's cold-start path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema

from launchq.labels import validate_labels
from launchq.validation import (
    CONFLICT,
    Hints,
    Issue,
    annotation_at,
    is_text,
    issues_from_pydantic,
    join_path,
)

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


# ---------------------------------------------------------------------------------------------
# The table


class Kind(Enum):
    """How a value is written on the wire (proto3 JSON)."""

    STRING = "string"
    BOOL = "bool"
    INT32 = "int32"  # a JSON number
    INT64 = "int64"  # a JSON string
    ENUM = "enum"  # the enum value's name
    DURATION = "duration"  # "3600s"; kept even when 0 (max_wait_duration 0 = wait forever)
    STRING_LIST = "string list"
    MESSAGE = "message"  # nested object: its fields have their own rows
    MESSAGE_LIST = "message list"  # list of nested objects
    LABELS = "labels"  # map: keys are not camelCased; merged with item and launchq labels
    OUTPUT_DIR = "staging bucket"  # {bucket}/aiplatform-custom-job-{timestamp}, as the SDK does
    EXPERIMENT = "experiment"  # short names become metadataStore context resource names
    EXPERIMENT_RUN = "experiment run"
    CLIENT = "client"  # not part of the job: a setting for the dispatcher's Create call
    NOOP = "no-op"  # accepted for W&B compatibility; has no effect


@dataclass(frozen=True)
class Row:
    """`source` (queue config key, `[]` for list items) -> `target` (CustomJob JSON path)."""

    source: str
    target: str | None
    kind: Kind
    note: str = ""


_POOL = "spec.worker_pool_specs[]"
_JPOOL = "jobSpec.workerPoolSpecs[]"


def _pool_rows() -> list[Row]:
    rows = [
        Row(
            "spec.worker_pool_specs",
            "jobSpec.workerPoolSpecs",
            Kind.MESSAGE_LIST,
            "pool 0 is the chief; `{}` leaves a pool position unused",
        ),
        Row(f"{_POOL}.replica_count", f"{_JPOOL}.replicaCount", Kind.INT64),
        Row(f"{_POOL}.machine_spec", f"{_JPOOL}.machineSpec", Kind.MESSAGE),
        Row(f"{_POOL}.container_spec", f"{_JPOOL}.containerSpec", Kind.MESSAGE),
        Row(f"{_POOL}.python_package_spec", f"{_JPOOL}.pythonPackageSpec", Kind.MESSAGE),
        Row(f"{_POOL}.disk_spec", f"{_JPOOL}.diskSpec", Kind.MESSAGE),
        Row(f"{_POOL}.nfs_mounts", f"{_JPOOL}.nfsMounts", Kind.MESSAGE_LIST),
        Row(f"{_POOL}.lustre_mounts", f"{_JPOOL}.lustreMounts", Kind.MESSAGE_LIST),
    ]
    machine = [
        ("machine_type", Kind.STRING), ("accelerator_type", Kind.ENUM),
        ("accelerator_count", Kind.INT32), ("gpu_partition_size", Kind.STRING),
        ("tpu_topology", Kind.STRING), ("reservation_affinity", Kind.MESSAGE),
        ("reservation_affinity.reservation_affinity_type", Kind.ENUM),
        ("reservation_affinity.key", Kind.STRING),
        ("reservation_affinity.values", Kind.STRING_LIST),
    ]  # fmt: skip
    rows += [_sub(f"{_POOL}.machine_spec", f"{_JPOOL}.machineSpec", k, kind) for k, kind in machine]
    container = [
        ("image_uri", Kind.STRING), ("command", Kind.STRING_LIST), ("args", Kind.STRING_LIST),
        ("env", Kind.MESSAGE_LIST), ("env[].name", Kind.STRING), ("env[].value", Kind.STRING),
    ]  # fmt: skip
    rows += [
        _sub(f"{_POOL}.container_spec", f"{_JPOOL}.containerSpec", k, kind) for k, kind in container
    ]
    package = [
        ("executor_image_uri", Kind.STRING), ("package_uris", Kind.STRING_LIST),
        ("python_module", Kind.STRING), ("args", Kind.STRING_LIST), ("env", Kind.MESSAGE_LIST),
        ("env[].name", Kind.STRING), ("env[].value", Kind.STRING),
    ]  # fmt: skip
    rows += [
        _sub(f"{_POOL}.python_package_spec", f"{_JPOOL}.pythonPackageSpec", k, kind)
        for k, kind in package
    ]
    disk = [("boot_disk_type", Kind.STRING), ("boot_disk_size_gb", Kind.INT32)]
    rows += [_sub(f"{_POOL}.disk_spec", f"{_JPOOL}.diskSpec", k, kind) for k, kind in disk]
    nfs = ["server", "path", "mount_point"]
    rows += [_sub(f"{_POOL}.nfs_mounts[]", f"{_JPOOL}.nfsMounts[]", k, Kind.STRING) for k in nfs]
    lustre = ["instance_ip", "volume_handle", "filesystem", "mount_point"]
    rows += [
        _sub(f"{_POOL}.lustre_mounts[]", f"{_JPOOL}.lustreMounts[]", k, Kind.STRING) for k in lustre
    ]
    return rows


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(word.capitalize() for word in rest)


def _sub(source: str, target: str, key: str, kind: Kind) -> Row:
    camel = ".".join(_camel(part) for part in key.split("."))
    return Row(f"{source}.{key}", f"{target}.{camel}", kind)


def _psc_rows(section: str) -> list[Row]:
    base, jbase = f"{section}.psc_interface_config", "jobSpec.pscInterfaceConfig"
    return [
        Row(base, jbase, Kind.MESSAGE),
        Row(f"{base}.network_attachment", f"{jbase}.networkAttachment", Kind.STRING),
        Row(f"{base}.dns_peering_configs", f"{jbase}.dnsPeeringConfigs", Kind.MESSAGE_LIST),
        *(
            _sub(f"{base}.dns_peering_configs[]", f"{jbase}.dnsPeeringConfigs[]", key, Kind.STRING)
            for key in ("domain", "target_project", "target_network")
        ),
    ]


ROWS: tuple[Row, ...] = (
    *_pool_rows(),
    Row("spec.staging_bucket", "jobSpec.baseOutputDirectory.outputUriPrefix", Kind.OUTPUT_DIR,
        "used only when base_output_dir is absent, as the SDK does"),
    Row("spec.base_output_dir", "jobSpec.baseOutputDirectory.outputUriPrefix", Kind.STRING),
    Row("spec.display_name", "displayName", Kind.STRING,
        "default: the item's display_name, else '{queue}-{item_id}'"),
    Row("spec.labels", "labels", Kind.LABELS, "plus the item's labels and launchq's"),
    Row("spec.encryption_spec_key_name", "encryptionSpec.kmsKeyName", Kind.STRING),
    Row("spec.persistent_resource_id", "jobSpec.persistentResourceId", Kind.STRING),
    Row("spec.service_account", "jobSpec.serviceAccount", Kind.STRING,
        "the W&B docs' spelling; also accepted as run.service_account"),
    Row("spec.reserved_ip_ranges", "jobSpec.reservedIpRanges", Kind.STRING_LIST),
    Row("spec.protected_artifact_location_id", "jobSpec.protectedArtifactLocationId", Kind.STRING),
    Row("spec.enable_dashboard_access", "jobSpec.enableDashboardAccess", Kind.BOOL),
    Row("spec.models", "jobSpec.models", Kind.STRING_LIST),
    Row("run.service_account", "jobSpec.serviceAccount", Kind.STRING,
        "what W&B's code reads; conflicts with a different spec.service_account"),
    Row("run.network", "jobSpec.network", Kind.STRING),
    Row("run.timeout", "jobSpec.scheduling.timeout", Kind.DURATION),
    Row("run.restart_job_on_worker_restart", "jobSpec.scheduling.restartJobOnWorkerRestart",
        Kind.BOOL),
    Row("run.enable_web_access", "jobSpec.enableWebAccess", Kind.BOOL),
    Row("run.experiment", "jobSpec.experiment", Kind.EXPERIMENT),
    Row("run.experiment_run", "jobSpec.experimentRun", Kind.EXPERIMENT_RUN),
    Row("run.tensorboard", "jobSpec.tensorboard", Kind.STRING),
    Row("run.create_request_timeout", None, Kind.CLIENT, "timeout of the Create call, seconds"),
    Row("run.disable_retries", "jobSpec.scheduling.disableRetries", Kind.BOOL),
    Row("run.persistent_resource_id", "jobSpec.persistentResourceId", Kind.STRING),
    Row("run.scheduling_strategy", "jobSpec.scheduling.strategy", Kind.ENUM),
    Row("run.max_wait_duration", "jobSpec.scheduling.maxWaitDuration", Kind.DURATION),
    *_psc_rows("run"),
    Row("run.sync", None, Kind.NOOP, "W&B always submits asynchronously; so does launchq"),
)  # fmt: skip

ROW_BY_SOURCE: Mapping[str, Row] = {row.source: row for row in ROWS}

# CustomJob fields that are filled from outside `spec`/`run` (or are output-only).
OUTPUT_ONLY = frozenset({
    "name", "state", "createTime", "startTime", "endTime", "updateTime", "error",
    "webAccessUris", "satisfiesPzs", "satisfiesPzi",
})  # fmt: skip

# Keys that are valid in both sections (the SDK takes them in the constructor *and* in submit(),
# or W&B's docs and code disagree). Different values in the two places are rejected.
SHARED_KEYS = ("service_account", "persistent_resource_id")

# Hints for keys that are valid elsewhere, or that W&B users commonly write.
SPEC_HINTS: Mapping[str, str] = {
    **{key: f"'{key}' goes under 'run' (it is a CustomJob.submit() argument)"
       for key in RunInput.model_fields if key not in SpecInput.model_fields},
    "project": "set 'project' at the top level of the queue config, beside 'spec'",
    "location": "set 'region' at the top level of the queue config, beside 'spec'",
    "region": "set 'region' at the top level of the queue config, beside 'spec'",
    "base_output_directory": "use 'base_output_dir' (a gs:// path)",
    "encryption_spec": "use 'encryption_spec_key_name'",
    "job_spec": "put the job fields directly under 'spec' (snake_case SDK arguments)",
    "scheduling": "scheduling fields go under 'run': timeout, restart_job_on_worker_restart, "
                  "disable_retries, scheduling_strategy, max_wait_duration",
}  # fmt: skip
RUN_HINTS: Mapping[str, str] = {
    **{key: f"'{key}' goes under 'spec' (it is a CustomJob constructor argument)"
       for key in SpecInput.model_fields if key not in RunInput.model_fields},
    "strategy": "use 'scheduling_strategy'",
    "scheduling": "put scheduling fields directly under 'run': timeout, "
                  "restart_job_on_worker_restart, disable_retries, scheduling_strategy, "
                  "max_wait_duration",
    "project": "set 'project' at the top level of the queue config, beside 'run'",
    "region": "set 'region' at the top level of the queue config, beside 'run'",
}  # fmt: skip
NESTED_HINTS: Mapping[str, str] = {
    "image": "did you mean 'image_uri'?",
    "image_url": "did you mean 'image_uri'?",
}


def wants_text(section: str) -> Callable[[tuple[str | int, ...]], bool]:
    """For template substitution: is the field at a location in `spec`/`run` a string?"""
    model = SpecInput if section == "spec" else RunInput
    return lambda loc: is_text(annotation_at(model, loc))


# ---------------------------------------------------------------------------------------------
# Checking substituted spec/run


@dataclass(frozen=True)
class JobInputs:
    spec: SpecInput
    run: RunInput


def check_inputs(spec: Any, run: Any) -> tuple[JobInputs | None, list[Issue]]:
    """Typed validation of substituted `spec`/`run`, then the cross-field rules."""
    issues: list[Issue] = []
    spec_hints = {"*": NESTED_HINTS, "": SPEC_HINTS}
    run_hints = {"*": NESTED_HINTS, "": RUN_HINTS}
    spec_model = _validate(SpecInput, spec, "spec", spec_hints, issues)
    run_model = _validate(RunInput, run, "run", run_hints, issues)
    if spec_model is None or run_model is None:
        return None, issues
    issues += semantic_issues(spec_model, run_model)
    return (JobInputs(spec_model, run_model) if not issues else None), issues


_M = TypeVar("_M", bound=BaseModel)


def _validate(
    model: type[_M], data: Any, base: str, hints: Hints, issues: list[Issue]
) -> _M | None:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        issues += issues_from_pydantic(exc, model, base, hints)
        return None


def semantic_issues(spec: SpecInput, run: RunInput) -> list[Issue]:
    issues = _pool_issues(spec)
    issues += _output_issues(spec)
    for key in SHARED_KEYS:
        left, right = getattr(spec, key), getattr(run, key)
        if left is not None and right is not None and left != right:
            issues.append(Issue(
                f"run.{key}", f"conflicts with spec.{key} ({left!r} vs {right!r})",
                "set it in one place", CONFLICT,
            ))  # fmt: skip
    if run.experiment and run.tensorboard:
        issues.append(
            Issue(
                "run.tensorboard",
                "cannot be set together with run.experiment "
                "(the experiment's backing TensorBoard is used)",
                code=CONFLICT,
            )
        )
    if run.experiment_run and not run.experiment:
        issues.append(Issue("run.experiment_run", "requires run.experiment"))
    if run.timeout == 0:
        issues.append(Issue("run.timeout", "must be at least 1 second"))
    issues += _strategy_issues(spec, run)
    if spec.display_name is not None and not 0 < len(spec.display_name) <= MAX_DISPLAY_NAME:
        issues.append(Issue("spec.display_name", f"must be 1-{MAX_DISPLAY_NAME} characters"))
    issues += validate_labels(spec.labels, "spec.labels")
    return issues


def _strategy_issues(spec: SpecInput, run: RunInput) -> list[Issue]:
    """FLEX_START's requirements and deprecated strategy names."""
    strategy = run.scheduling_strategy
    issues: list[Issue] = []
    if strategy in DEPRECATED_STRATEGIES:
        replacement = DEPRECATED_STRATEGIES[strategy]
        issues.append(Issue(
            "run.scheduling_strategy",
            f"{strategy} is deprecated in the Vertex AI API",
            f"use {replacement}",
        ))  # fmt: skip
    # max_wait_duration without FLEX_START is accepted: Vertex ignores it ("applies only to
    # FLEX_START"), and the SDK sends it whenever it is given.
    if strategy != "FLEX_START":
        return issues
    if (run.timeout or 0) > FLEX_START_MAX_TIMEOUT:
        issues.append(Issue("run.timeout", "FLEX_START jobs may run at most 7 days (604800s)"))
    machines = []
    for index, pool in enumerate(spec.worker_pool_specs or []):
        if pool.is_empty() or pool.machine_spec is None:
            continue
        machine = pool.machine_spec
        path = join_path("spec.worker_pool_specs", index, "machine_spec")
        if machine.accelerator_type not in FLEX_START_ACCELERATORS:
            issues.append(Issue(
                join_path(path, "accelerator_type"),
                f"FLEX_START needs one of {', '.join(FLEX_START_ACCELERATORS)}; "
                f"got {machine.accelerator_type}",
            ))  # fmt: skip
        machines.append(
            (index, (machine.machine_type, machine.accelerator_type, machine.accelerator_count))
        )
    for index, config in machines[1:]:
        if config != machines[0][1]:
            issues.append(Issue(
                join_path("spec.worker_pool_specs", index, "machine_spec"),
                "FLEX_START needs the same machine configuration in every worker pool "
                f"(pool {machines[0][0]} has {machines[0][1]}, this one {config})",
            ))  # fmt: skip
    return issues


def _pool_issues(spec: SpecInput) -> list[Issue]:
    if not spec.worker_pool_specs:
        return [
            Issue("spec.worker_pool_specs", "a non-empty list of worker pool specs is required")
        ]
    issues: list[Issue] = []
    for index, pool in enumerate(spec.worker_pool_specs):
        path = join_path("spec.worker_pool_specs", index)
        if pool.is_empty():
            if index == 0:
                issues.append(Issue(path, "the first pool (the chief) cannot be empty"))
            continue
        if pool.container_spec is None and pool.python_package_spec is None:
            issues.append(Issue(path, "every worker pool needs a container_spec or a "
                                "python_package_spec"))  # fmt: skip
        if pool.container_spec is not None and pool.python_package_spec is not None:
            issues.append(Issue(path, "set container_spec or python_package_spec, not both"))
        if pool.machine_spec is None or not pool.machine_spec.machine_type:
            issues.append(Issue(join_path(path, "machine_spec", "machine_type"),
                                "required (e.g. n1-standard-4)"))  # fmt: skip
        if not pool.replica_count:
            issues.append(Issue(join_path(path, "replica_count"), "required: at least 1"))
        for name, task in (("container_spec", pool.container_spec),
                           ("python_package_spec", pool.python_package_spec)):  # fmt: skip
            if task is not None and len(task.env) > MAX_ENV:
                issues.append(
                    Issue(
                        join_path(path, name, "env"),
                        f"{len(task.env)} entries; Vertex allows at most {MAX_ENV}",
                    )
                )
        package = pool.python_package_spec
        if package is not None and len(package.package_uris) > MAX_PACKAGE_URIS:
            issues.append(Issue(join_path(path, "python_package_spec", "package_uris"),
                                f"at most {MAX_PACKAGE_URIS} packages"))  # fmt: skip
    return issues


_BUCKET = re.compile(r"^(gs://)?[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$")


def _output_issues(spec: SpecInput) -> list[Issue]:
    issues: list[Issue] = []
    if spec.base_output_dir is not None and not spec.base_output_dir.startswith("gs://"):
        issues.append(Issue("spec.base_output_dir", "must be a gs:// path"))
    if spec.staging_bucket is not None and not _BUCKET.match(spec.staging_bucket):
        issues.append(
            Issue(
                "spec.staging_bucket",
                f"not a GCS bucket: {spec.staging_bucket!r}; expected gs://BUCKET",
            )
        )
    if spec.staging_bucket is None and spec.base_output_dir is None:
        issues.append(
            Issue(
                "spec.staging_bucket",
                "required unless spec.base_output_dir is set "
                "(Vertex writes the job's outputs there)",
                code="missing_value",
            )
        )
    return issues


# ---------------------------------------------------------------------------------------------
# Building the body


@dataclass(frozen=True)
class BodyContext:
    """What the body needs besides `spec`/`run`: the clock and where the job runs."""

    now: datetime
    project: str
    region: str


def output_dir(staging_bucket: str, now: datetime) -> str:
    """`{bucket}/aiplatform-custom-job-{timestamp}`, byte for byte as the SDK builds it
    (`utils._timestamped_gcs_dir`), except that launchq's clock is UTC, not local time."""
    naive = now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo else now
    stamp = naive.isoformat(sep="-", timespec="milliseconds")
    root = staging_bucket.removesuffix("/")
    path = f"{root}/aiplatform-custom-job-{stamp}"
    return path if path.startswith("gs://") else f"gs://{path}"


def experiment_name(value: str, ctx: BodyContext) -> str:
    if value.startswith("projects/"):
        return value
    return f"projects/{ctx.project}/locations/{ctx.region}/metadataStores/default/contexts/{value}"


def experiment_run_name(value: str, experiment: str, ctx: BodyContext) -> str:
    """The SDK names an ExperimentRun's context `{experiment}-{run}`."""
    if value.startswith("projects/"):
        return value
    experiment_id = experiment.rpartition("/")[2]
    return experiment_name(f"{experiment_id}-{value}", ctx)


def to_body(inputs: JobInputs, ctx: BodyContext) -> dict[str, Any]:
    """Write every set value of `inputs` to its `ROWS` target (labels and display name are
    added by the caller, who merges in the item's and launchq's)."""
    body: dict[str, Any] = {}
    spec = inputs.spec.model_dump(exclude_defaults=True)
    run = inputs.run.model_dump(exclude_defaults=True)
    if "base_output_dir" in spec:
        spec.pop("staging_bucket", None)
    spec.pop("labels", None)
    spec.pop("display_name", None)
    for section, values in (("spec", spec), ("run", run)):
        _walk(body, values, section, (), inputs, ctx)
    return body


def _walk(
    body: dict[str, Any], values: Mapping[str, Any], source: str, index: tuple[int, ...],
    inputs: JobInputs, ctx: BodyContext,
) -> None:  # fmt: skip
    for key, value in values.items():
        path = f"{source}.{key}"
        row = ROW_BY_SOURCE[path]
        if row.kind is Kind.MESSAGE:
            _walk(body, value, path, index, inputs, ctx)
        elif row.kind is Kind.MESSAGE_LIST:
            for position, element in enumerate(value):
                if row.target is not None:
                    _ensure_element(body, f"{row.target}[]", (*index, position))
                _walk(body, element, f"{path}[]", (*index, position), inputs, ctx)
        else:
            _write(body, row, value, index, inputs, ctx)


def _write(
    body: dict[str, Any], row: Row, value: Any, index: tuple[int, ...], inputs: JobInputs,
    ctx: BodyContext,
) -> None:  # fmt: skip
    if row.target is None:
        return
    wire = _wire_value(row, value, inputs, ctx)
    if wire is not None:
        _set(body, row.target, index, wire)


def _wire_value(row: Row, value: Any, inputs: JobInputs, ctx: BodyContext) -> Any:
    kind = row.kind
    if kind is Kind.DURATION:
        return f"{value}s"
    if value in ("", 0, False, []) and not isinstance(value, float):
        return None  # proto3 JSON omits default values
    if kind is Kind.ENUM:
        return None if value.endswith("_UNSPECIFIED") else value
    if kind is Kind.INT64:
        return str(value)
    if kind is Kind.OUTPUT_DIR:
        return output_dir(value, ctx.now)
    if kind is Kind.EXPERIMENT:
        return experiment_name(value, ctx)
    if kind is Kind.EXPERIMENT_RUN:
        return experiment_run_name(value, experiment_name(inputs.run.experiment or "", ctx), ctx)
    if kind is Kind.STRING_LIST:
        return list(value)
    return value


def _segments(target: str) -> list[tuple[str, bool]]:
    return [(part.removesuffix("[]"), part.endswith("[]")) for part in target.split(".")]


def _set(body: dict[str, Any], target: str, index: tuple[int, ...], value: Any) -> None:
    *path, (name, is_list) = _segments(target)
    indices = iter(index)
    node = _descend(body, path, indices)
    if is_list:  # a list target only gets its element created
        _descend(node, [(name, True)], indices)
    else:
        node[name] = value


def _ensure_element(body: dict[str, Any], target: str, index: tuple[int, ...]) -> None:
    """Create the list element at `index` even if it stays `{}` (an unused pool position)."""
    _descend(body, _segments(target), iter(index))


def _descend(node: Any, segments: list[tuple[str, bool]], indices: Iterator[int]) -> Any:
    """Descend along `segments`, creating missing maps and list elements; the last node."""
    for name, is_list in segments:
        if is_list:
            items = node.setdefault(name, [])
            at = next(indices)
            while len(items) <= at:
                items.append({})
            node = items[at]
        else:
            node = node.setdefault(name, {})
    return node
