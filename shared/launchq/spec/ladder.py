"""A queue config on each rung of its capacity ladder, and the checks every rung gets.

`placed_config(config, i)` is the queue config as it runs in placement `i`; the renderer and the
write-time checks take it like any config, so a placement is held to every rule a queue is
(`placement_issues` reports each problem under `placements[i]`). The placement models live in
`launchq.spec.placements`, which the config imports; this module sits above the config.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from launchq.spec.config import QueueConfig
from launchq.spec.placements import Placement
from launchq.spec.validation import Issue, LaunchqValidationError, join_path


def placed_config(config: QueueConfig, index: int) -> QueueConfig:
    """`config` (a QueueConfig) as it runs in placement `index`: region, run strategy, pool
    machines and staging bucket replaced. Index 0 of a queue without placements is the config."""
    placements: list[Placement] = list(config.placements)
    if not placements:
        if index != 0:
            raise IndexError(f"the queue has no placement {index}")
        return config
    placement = placements[index]
    spec = copy.deepcopy(dict(config.spec))
    run = copy.deepcopy(dict(config.run))
    if placement.scheduling_strategy is not None:
        run["scheduling_strategy"] = placement.scheduling_strategy
        if placement.scheduling_strategy != "FLEX_START":
            run.pop("max_wait_duration", None)
    if placement.max_wait_duration is not None:
        run["max_wait_duration"] = placement.max_wait_duration
    pools = spec.get("worker_pool_specs")
    for machine in placement.machines:
        if (
            isinstance(pools, list)
            and machine.pool < len(pools)
            and isinstance(pools[machine.pool], dict)
        ):
            spec_ = pools[machine.pool].setdefault("machine_spec", {})
            if isinstance(spec_, dict):
                for key in ("machine_type", "accelerator_type", "accelerator_count"):
                    value = getattr(machine, key)
                    if value is not None:
                        spec_[key] = value
    if placement.staging_bucket is not None:
        _move_bucket(spec, placement.staging_bucket.removesuffix("/"))
    update: dict[str, Any] = {"spec": spec, "run": run, "placements": []}
    if placement.region is not None:
        update["region"] = placement.region
    return config.model_copy(update=update)


def _move_bucket(spec: dict[str, Any], bucket_uri: str) -> None:
    """Point the job's output at `bucket_uri`, keeping the path under the bucket."""
    moved = False
    for key in ("base_output_dir", "staging_bucket"):
        value = spec.get(key)
        if isinstance(value, str) and value.startswith("gs://"):
            rest = value.removeprefix("gs://").partition("/")[2]
            spec[key] = f"{bucket_uri}/{rest}" if rest else bucket_uri
            moved = True
    if not moved:
        spec["staging_bucket"] = bucket_uri


def placement_issues(
    config: QueueConfig, problems: Callable[[QueueConfig], list[Issue]]
) -> list[Issue]:
    """Every placement's problems, each path under `placements[N]`.

    `problems(placed)` checks one placed config (the write-time render checks); placement 0's
    errors that the queue as written also has are reported once, at their own path.
    """
    issues: list[Issue] = []
    placements: list[Placement] = list(config.placements)
    own = {str(issue) for issue in problems(config)} if placements else set()
    for index, placement in enumerate(placements):
        for machine in placement.machines:
            pools = config.spec.get("worker_pool_specs")
            if not isinstance(pools, list) or machine.pool >= len(pools):
                issues.append(
                    Issue(
                        join_path("placements", index, "machines"),
                        f"pool {machine.pool} is not one of the queue's worker pools",
                    )
                )
        try:
            placed = placed_config(config, index)
        except LaunchqValidationError as exc:
            issues += [_under(index, issue) for issue in exc.issues]
            continue
        issues += [_under(index, issue) for issue in problems(placed) if str(issue) not in own]
    if config.failover is not None and not placements:
        issues.append(Issue("failover", "a failover policy needs placements to move between"))
    return issues


def _under(index: int, issue: Issue) -> Issue:
    return Issue(
        join_path("placements", index, issue.path) if issue.path else f"placements[{index}]",
        issue.message,
        issue.suggestion,
        issue.code,
    )
