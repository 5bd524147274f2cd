"""The semantic checks Vertex makes on a CustomJob at create time (after JSON parsing).

Only checks that the real service is known (or documented) to make live here: a stand-in that is
stricter than Vertex makes people chase ghosts, one that is looser lets bugs reach production.
Labels use the 63-character limit of the general GCP label rules, which is stricter than the
64 that the CustomJob field docs mention (see docs/vertex-standin.md).

Output-only fields (`name`, `state`, the four times, `error`, `webAccessUris`, `satisfiesPz*`)
are cleared, not rejected: AIP-203 says a service must ignore output-only fields given as input,
and Vertex does.
"""

from __future__ import annotations

from typing import Any

from launchq_local.standin.wire import ApiError, invalid_argument

# Raw protobuf messages (`types.CustomJob.pb(...)`): proto-plus wrappers are bypassed for speed,
# and the generated pb2 classes carry no useful static types.
Pb = Any

MAX_DISPLAY_NAME = 128
MAX_LABELS = 64
MAX_LABEL_CHARS = 63
MAX_ENV = 100
MAX_PACKAGE_URIS = 100

_OUTPUT_ONLY = (
    "name",
    "state",
    "create_time",
    "start_time",
    "end_time",
    "update_time",
    "error",
    "web_access_uris",
    "satisfies_pzs",
    "satisfies_pzi",
)


def clear_output_only(job: Pb) -> None:
    for name in _OUTPUT_ONLY:
        job.ClearField(name)


def validate_custom_job(job: Pb) -> None:
    """Raise a 400 naming the first offending field (Google reports one violation at a time)."""
    _check_display_name(job.display_name)
    _check_labels(dict(job.labels))
    pools = list(job.job_spec.worker_pool_specs)
    if not pools:
        raise invalid_argument(
            "custom_job.job_spec.worker_pool_specs",
            "custom_job.job_spec.worker_pool_specs must contain at least one worker pool.",
        )
    for index, pool in enumerate(pools):
        path = f"custom_job.job_spec.worker_pool_specs[{index}]"
        if index > 0 and pool.ByteSize() == 0:
            continue  # later pools may be left empty as placeholders
        _check_pool(pool, path)


def _check_display_name(name: str) -> None:
    path = "custom_job.display_name"
    if not name:
        raise invalid_argument(path, "custom_job.display_name is required.")
    if len(name) > MAX_DISPLAY_NAME:
        raise invalid_argument(
            path, f"custom_job.display_name must be at most {MAX_DISPLAY_NAME} characters."
        )


def _label_chars_ok(text: str) -> bool:
    """Lowercase letters (international ones included), digits, `_` and `-`."""
    return all(c in "_-" or c.isdigit() or (c.isalpha() and not c.isupper()) for c in text)


def _check_labels(labels: dict[str, str]) -> None:
    path = "custom_job.labels"
    if len(labels) > MAX_LABELS:
        raise invalid_argument(path, f"custom_job.labels can have at most {MAX_LABELS} entries.")
    for key, value in labels.items():
        key_ok = (
            0 < len(key) <= MAX_LABEL_CHARS
            and key[0].isalpha()
            and not key[0].isupper()
            and _label_chars_ok(key)
        )
        where = f"{path}[{key}]"
        if not key_ok:
            raise invalid_argument(
                where,
                f"Invalid label key \"{key}\" at '{where}': keys must be 1-63 characters of "
                "lowercase letters, digits, underscores and dashes, starting with a letter.",
            )
        if len(value) > MAX_LABEL_CHARS or not _label_chars_ok(value):
            raise invalid_argument(
                where,
                f"Invalid label value \"{value}\" at '{where}': values must be 0-63 "
                "characters of lowercase letters, digits, underscores and dashes.",
            )


def _check_pool(pool: Pb, path: str) -> None:
    machine = pool.machine_spec
    if not machine.machine_type:
        raise invalid_argument(
            f"{path}.machine_spec.machine_type", f"{path}.machine_spec.machine_type is required."
        )
    _check_accelerator(machine, f"{path}.machine_spec")
    if pool.replica_count < 1:
        raise invalid_argument(f"{path}.replica_count", f"{path}.replica_count must be at least 1.")
    task = pool.WhichOneof("task")
    if task == "container_spec":
        _check_container(pool.container_spec, f"{path}.container_spec")
    elif task == "python_package_spec":
        _check_python_package(pool.python_package_spec, f"{path}.python_package_spec")
    else:
        raise invalid_argument(
            path, f"{path} must set either container_spec or python_package_spec."
        )


def _check_accelerator(machine: Pb, path: str) -> None:
    has_type = machine.accelerator_type != 0
    if has_type and machine.accelerator_count <= 0:
        raise invalid_argument(
            f"{path}.accelerator_count",
            f"{path}.accelerator_count must be positive when {path}.accelerator_type is set.",
        )
    if not has_type and machine.accelerator_count != 0:
        raise invalid_argument(
            f"{path}.accelerator_type",
            f"{path}.accelerator_type must be set when {path}.accelerator_count is "
            f"{machine.accelerator_count}.",
        )


def _check_env(env: list[Pb], path: str) -> None:
    if len(env) > MAX_ENV:
        raise invalid_argument(path, f"{path} can have at most {MAX_ENV} entries.")
    for index, var in enumerate(env):
        if not var.name:
            raise invalid_argument(f"{path}[{index}].name", f"{path}[{index}].name is required.")


def _check_container(spec: Pb, path: str) -> None:
    if not spec.image_uri:
        raise invalid_argument(f"{path}.image_uri", f"{path}.image_uri is required.")
    _check_env(list(spec.env), f"{path}.env")


def _check_python_package(spec: Pb, path: str) -> None:
    if not spec.executor_image_uri:
        raise invalid_argument(
            f"{path}.executor_image_uri", f"{path}.executor_image_uri is required."
        )
    if not spec.python_module:
        raise invalid_argument(f"{path}.python_module", f"{path}.python_module is required.")
    if len(spec.package_uris) > MAX_PACKAGE_URIS:
        raise invalid_argument(
            f"{path}.package_uris", f"{path}.package_uris can have at most 100 entries."
        )
    _check_env(list(spec.env), f"{path}.env")


__all__ = ["ApiError", "clear_output_only", "validate_custom_job"]
