"""Cohorts as platform engineers and operators see them: apply a cohort file, and each cohort's
quotas with every member's share, holding, borrowing and usage (`launchq cohort ls`, `--json`,
the dashboard), and why a member's next item waits behind the others.

`apply_cohort` is the one way a cohort gets into Firestore: validated strictly, and refused when
a queue or a quota would belong to two cohorts (two policies for one quota cannot both hold).
The summaries are plain JSON-safe dicts: that dict *is* the documented `--json` shape
(docs/cli.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from launchq.cohorts import CohortSource, CohortState, decide_heads, state_from
from launchq.errors import NotFound
from launchq.model.reasons import WaitReason
from launchq.spec.cohorts import CohortConfig, CohortConfigError, parse_cohort_config
from launchq.spec.validation import Issue
from launchq.store import Store
from launchq_client.budgets import budget_summary
from launchq_client.errors import did_you_mean
from launchq_client.values import iso, plain


def apply_cohort(store: Store, raw: Mapping[str, Any], name: str | None = None) -> CohortConfig:
    """Validate a cohort config and write it, bringing each declared quota's units to its
    limit. Raises CohortConfigError (every problem, with its path)."""
    config = parse_cohort_config(raw, name=name)
    issues: list[Issue] = []
    for document in store.list_cohorts():
        other = str(document.get("name"))
        if other == config.name:
            continue
        try:
            state = state_from(document)
        except Exception:  # an unreadable cohort claims nothing
            continue
        for index, member in enumerate(config.members):
            if state.config.member(member.queue) is not None:
                issues.append(Issue(f"members[{index}].queue",
                                    f"queue {member.queue!r} is in cohort {other!r} already; "
                                    "a queue belongs to one cohort"))  # fmt: skip
        for metric in config.quotas:
            if state.config.pool_id(metric) == config.pool_id(metric):
                where = f"({config.project}, {config.region})"
                issues.append(Issue(f"quotas.{metric}",
                                    f"cohort {other!r} shares this quota already {where}; "
                                    "one cohort per quota"))  # fmt: skip
    if issues:
        raise CohortConfigError(issues)
    pools = {config.pool_id(metric): limit for metric, limit in config.quotas.items()}
    # A quota the cohort no longer declares goes to 0: its free units are deleted, its held
    # ones retire and are deleted as their jobs end.
    previous = store.get_cohort(config.name)
    if previous is not None:
        with contextlib.suppress(Exception):  # an unreadable previous config left nothing
            old = state_from(previous).config
            pools = {**{old.pool_id(m): 0 for m in old.quotas}, **pools}
    store.put_cohort(config.name, {"config": dict(raw) | {"name": config.name}}, pools)
    return config


def delete_cohort(store: Store, name: str) -> CohortConfig:
    """Remove a cohort: its queues are admitted on their own again, and its quotas' units go
    (free ones at once, held ones as their jobs end). Running jobs are not touched."""
    config = _state(store, name).config
    store.put_cohort(name, {}, {config.pool_id(metric): 0 for metric in config.quotas})
    store.delete_cohort(name)
    return config


def _state(store: Store, name: str) -> CohortState:
    document = store.get_cohort(name)
    if document is None:
        known = sorted(str(d.get("name")) for d in store.list_cohorts())
        message = f"no cohort named {name!r}"
        guess = did_you_mean(name, known)
        if guess:
            message += f"; did you mean {guess!r}?"
        listing = ", ".join(known) if known else "none: apply one with `launchq cohort apply FILE`"
        raise NotFound(f"{message} (cohorts: {listing})")
    return state_from(document)


def cohort_summary(store: Store, state: CohortState, now: datetime) -> dict[str, Any]:
    """One cohort: per quota, its declared and current limit and what is held; per member, its
    share, nominal share, holding, borrowing, waiting items and decayed usage."""
    source = CohortSource(store)
    config = state.config
    quotas = []
    for metric, declared in config.quotas.items():
        held = source.held(state, metric)
        members = []
        for member in config.members:
            standing = state.standing(member.queue, metric, held[member.queue], now)
            members.append(
                {
                    "queue": member.queue,
                    "share": member.share,
                    "nominal": round(standing.nominal, 3),
                    "held": standing.held,
                    "borrowed": round(max(standing.held - standing.nominal, 0.0), 3),
                    "borrowing_limit": member.borrowing_limit,
                }
            )
        refusal = state.refusals.get(config.pool_id(metric))
        read = state.read_limits.get(config.pool_id(metric)) if config.read_quotas else None
        quotas.append(
            {
                "metric": metric,
                "declared": declared,
                # What the Cloud Quotas API last gave (`read_quotas`): null when not read, with
                # why in `read_why` when it could not be.
                "read": read.limit if read is not None else None,
                "read_at": iso(read.at) if read is not None else None,
                "read_why": read.why if read is not None else None,
                "limit": state.limit(metric, now),
                "held": sum(held.values()),
                "lowered_until": iso(refusal.until)
                if refusal is not None and refusal.until > now
                else None,
                "members": members,
            }
        )
    usage = {
        m.queue: {
            "accelerator_hours": round(state.usage_now(m.queue, now) / 3600.0, 3),
            "waiting": store.count_waiting(m.queue),
        }
        for m in config.members
    }
    return {
        "name": config.name,
        "project": config.project,
        "region": config.region,
        "half_life_seconds": config.half_life_seconds,
        "quotas": quotas,
        "members": usage,
        "budget": budget_summary(
            store,
            "cohort",
            config.name,
            config.budget.model_dump() if config.budget is not None else None,
            now,
        ),
        "config": plain(dict(config.model_dump(mode="json"))),
    }


def list_cohort_summaries(store: Store, now: datetime | None = None) -> list[dict[str, Any]]:
    now = now or store.clock()
    states = []
    for document in sorted(store.list_cohorts(), key=lambda d: str(d.get("name"))):
        try:
            states.append(state_from(document))
        except Exception:  # `cohort get NAME` shows its error
            continue
    return [cohort_summary(store, state, now) for state in states]


def cohort_detail(store: Store, name: str, now: datetime | None = None) -> dict[str, Any]:
    return cohort_summary(store, _state(store, name), now or store.clock())


def member_waits(
    store: Store,
    queue: str,
    now: datetime | None = None,
    source: CohortSource | None = None,
) -> tuple[WaitReason, str] | None:
    """Why the queue's next item waits behind its cohort now (share, borrowing, a full quota),
    with a sentence naming what it waits for; None when the queue is in no cohort or its next
    item is the one admission would start. A listing passes one `source` for all its queues:
    the cohorts are read once."""
    source = source or CohortSource(store)
    state = source.of_queue(queue)
    if state is None:
        return None
    now = now or store.clock()
    heads = []
    for member in state.config.members:
        waiting = store.waiting_items(member.queue, limit=1)
        heads.extend(waiting)
    if not any(item.queue == queue for item in heads):
        return None
    decision = source.decide(state, heads, now)
    reason = decision.waiting.get(queue)
    if reason is None:
        return None
    ahead = next((q for q in decision.first.values() if q != queue), None)
    if reason is WaitReason.SHARE:
        who = ahead or "another member"
        message = f"cohort {state.name}: {who} goes first (below its share, or less recent use)"
    elif reason is WaitReason.BORROWING:
        message = f"cohort {state.name}: {queue} holds its share and its borrowing limit"
    else:
        message = f"cohort {state.name}: every accelerator of its quota is in use"
    return reason, message


def cohort_positions(
    store: Store, queue: str, depth: int = 100, source: CohortSource | None = None
) -> dict[str, int]:
    """Where each of the cohort's waiting items stands (doc id -> 1 starts next), if
    accelerators freed one at a time and no job ended: the cohort's policy applied over and
    over to the members' next items, each start adding its accelerators to its member's
    holding. Each member's items keep their queue's order (priority, then age). Items a
    borrowing limit holds back get no position. Empty when the queue is in no cohort."""
    source = source or CohortSource(store)
    state = source.of_queue(queue)
    if state is None:
        return {}
    now = store.clock()
    lists = {m.queue: store.waiting_items(m.queue, limit=depth) for m in state.config.members}
    held = {metric: dict(source.held(state, metric)) for metric in state.config.quotas}
    unlimited = dict.fromkeys(state.config.quotas, 1 << 30)
    positions: dict[str, int] = {}
    while True:
        heads = [items[0] for items in lists.values() if items]
        decision = decide_heads(state, heads, held, unlimited, now) if heads else None
        if decision is None or not decision.order:
            return positions
        item, need = decision.order[0]
        positions[item.doc_id] = len(positions) + 1
        lists[item.queue].pop(0)
        for metric, count in need.items():
            held[metric][item.queue] += count
