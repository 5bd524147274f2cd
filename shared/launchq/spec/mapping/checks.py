"""Substituted `spec`/`run` checked: typed validation, then the rules between fields
(scheduling strategy, worker pools, output location).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from launchq.spec.labels import validate_labels
from launchq.spec.mapping.models import RunInput, SpecInput
from launchq.spec.mapping.table import NESTED_HINTS, RUN_HINTS, SHARED_KEYS, SPEC_HINTS
from launchq.spec.mapping.vocabulary import (
    DEPRECATED_STRATEGIES,
    FLEX_START_ACCELERATORS,
    FLEX_START_MAX_TIMEOUT,
    MAX_DISPLAY_NAME,
    MAX_ENV,
    MAX_PACKAGE_URIS,
)
from launchq.spec.validation import (
    CONFLICT,
    Hints,
    Issue,
    issues_from_pydantic,
    join_path,
)

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
