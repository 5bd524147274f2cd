"""THE table: every W&B-style queue-config key (`spec.*`, `run.*`) and the `CustomJob` REST
field it is written to, with the hints a misspelled key gets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

from launchq.spec.mapping.models import RunInput, SpecInput
from launchq.spec.validation import (
    annotation_at,
    is_text,
)

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
