"""Cohorts at run time: which cohort a queue is in, each member's standing in each quota, the
usage the sweep accrues, and the picture a quota refusal corrects.

A cohort (`launchq.spec.cohorts`, docs/cohorts.md) declares a project's accelerator quotas in a
region; each declared accelerator is a unit document (`launchq.store.cohorts`) that an item of a
member queue takes in its claim's write and gives back when its attempt ends. So admission knows
the quota instead of probing it: it admits while free units fit the next item, and the policy
(`launchq.model.fairshare`) says which member's item takes them.

Why not learn the quota from Vertex's 429s, as a queue outside any cohort does: a refused queue
backs off (15 s doubling to 240 s), so capacity freed during a backoff sits idle, and which team
gets the quota depends on whose backoff ends first. The issue that asked for cohorts measured
45-68% of a 5-job quota busy while work waited and a 11%-77% split between two teams;
bench/fairshare.py, with time scaled 10x, measures 73-91% and a 58%-60% split that way, against
96.7-97.9% and 47.9%-51.5% with a cohort (docs/performance.md, "Cohorts").

A 429 still happens when someone outside launchq uses the quota; then the units launchq held at
that moment become the limit for the cohort's `quota_recheck_seconds` (a `refusal` on the cohort
document), and the queue does not back off: the next unit a job of launchq frees is used at once.

`CohortSource` caches the cohort documents for at most a second (a cohort changes when a platform
engineer applies it, or when the sweep accrues usage), so a burst of dispatches costs one query
per second per instance, not one per item.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from launchq.gcp.quotas import QuotaReader
from launchq.log import get_logger
from launchq.model.fairshare import Candidate, Standing, accrue, decide, nominal_share
from launchq.model.reasons import WaitReason
from launchq.model.records import ItemRecord
from launchq.spec.accelerators import job_demand
from launchq.spec.cohorts import CohortConfig, parse_cohort_config
from launchq.store import Store
from launchq.store.base import FieldKey

log = get_logger(__name__)

FRESH_SECONDS = 1.0
ACCRUE_EVERY_SECONDS = 1.0  # the sweep writes a cohort's usage at most this often


@dataclass(frozen=True)
class Refusal:
    """Vertex refused a create in a quota whose units had room: someone outside launchq uses it.
    Until `until`, the units launchq held then (`held`) are the quota's limit."""

    held: int
    until: datetime


@dataclass(frozen=True)
class ReadLimit:
    """A quota's limit as the Cloud Quotas API last gave it (`read_quotas`): `limit` None when
    it could not be read then (`why`), and the declared limit stands."""

    limit: int | None
    at: datetime
    why: str | None = None


@dataclass(frozen=True)
class Usage:
    """A member's decayed accelerator-seconds, as of `at`."""

    value: float
    at: datetime


@dataclass(frozen=True)
class CohortState:
    """A cohort as admission reads it: config, members' usage, and quota refusals."""

    config: CohortConfig
    usage: Mapping[str, Usage] = field(default_factory=dict)
    refusals: Mapping[str, Refusal] = field(default_factory=dict)
    read_limits: Mapping[str, ReadLimit] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name

    def limit(self, metric: str, now: datetime) -> int:
        """The quota's limit as admission uses it now: declared, lowered to what the Cloud Quotas
        API last read (with `read_quotas`), and lowered for a while by a refusal."""
        limit = self.config.quotas.get(metric, 0)
        read = self.read_limit(metric)
        if read is not None:
            limit = min(limit, read)
        refusal = self.refusals.get(self.config.pool_id(metric))
        if refusal is not None and refusal.until > now:
            return min(limit, refusal.held)
        return limit

    def read_limit(self, metric: str) -> int | None:
        """What the Cloud Quotas API last gave for the quota; None if not read (or unreadable)."""
        if not self.config.read_quotas:
            return None
        entry = self.read_limits.get(self.config.pool_id(metric))
        return entry.limit if entry is not None else None

    def usage_now(self, queue: str, now: datetime) -> float:
        """The member's usage decayed to `now` (what was accrued, nothing held since)."""
        entry = self.usage.get(queue)
        if entry is None:
            return 0.0
        seconds = max((now - entry.at).total_seconds(), 0.0)
        return accrue(entry.value, 0.0, seconds, self.config.half_life_seconds)

    def pooled_need(self, item_project: str | None, item_region: str | None,
                    body: Mapping[str, Any] | None) -> dict[str, int]:  # fmt: skip
        """The units of this cohort's quotas a job needs (none if it runs elsewhere)."""
        if (item_project, item_region) != (self.config.project, self.config.region):
            return {}
        need = job_demand(body or {})
        return {m: n for m, n in need.items() if m in self.config.quotas and n > 0}

    def standing(self, queue: str, metric: str, held: int, now: datetime) -> Standing:
        member = self.config.member(queue)
        assert member is not None
        total = sum(m.share for m in self.config.members)
        return Standing(
            queue=queue,
            weight=member.share,
            nominal=nominal_share(self.config.quotas.get(metric, 0), member.share, total),
            borrowing_limit=member.borrowing_limit,
            held=held,
            usage=self.usage_now(queue, now),
        )


def state_need(cohort: CohortState, item: ItemRecord) -> dict[str, int]:
    return cohort.pooled_need(item.project, item.region, item.job_body)


@dataclass(frozen=True)
class CohortDecision:
    """What may start now, best first, each with the units it needs; and why each other
    member's next item waits (by queue)."""

    order: list[tuple[ItemRecord, dict[str, int]]]
    waiting: dict[str, WaitReason]
    first: dict[str, str] = field(default_factory=dict)  # per quota: who goes first there


def decide_heads(
    cohort: CohortState,
    heads: Sequence[ItemRecord],
    held: Mapping[str, Mapping[str, int]],
    free: Mapping[str, int],
    now: datetime,
) -> CohortDecision:
    """The fair-share policy (`launchq.model.fairshare.decide`) per quota over each member's
    next item, given what each member holds of each quota (`held[metric][queue]`) and what is
    free. Pure: admission and `queue pending`'s cohort positions both call it."""
    needs = [(item, state_need(cohort, item)) for item in heads]
    # An item that needs none of the cohort's quotas (it runs elsewhere, or on CPUs) is not the
    # quota's to order: those start first, oldest first.
    far = now + timedelta(days=36500)
    unpooled = [(i, n) for i, n in needs if not n]
    unpooled.sort(key=lambda pair: (pair[0].priority, pair[0].enqueued_at or far))
    waiting: dict[str, WaitReason] = {}
    by_metric: dict[str, list[tuple[Candidate, ItemRecord, dict[str, int]]]] = {}
    for item, need in needs:
        if not need:
            continue
        # Ordered in the quota it needs most of (where the policy may keep free units for it);
        # it must also fit in every other quota it needs.
        metric = max(need, key=lambda m: need[m])
        if any(n > free[m] for m, n in need.items() if m != metric):
            waiting[item.queue] = WaitReason.QUOTA_FULL
            continue
        standing = cohort.standing(item.queue, metric, held[metric][item.queue], now)
        by_metric.setdefault(metric, []).append((Candidate(standing, need[metric]), item, need))
    order = list(unpooled)
    first: dict[str, str] = {}
    for metric in sorted(by_metric):
        group = by_metric[metric]
        decision = decide([c for c, _, _ in group], free[metric])
        if decision.first is not None:
            first[metric] = decision.first
        for queue, reason in decision.waiting.items():
            waiting.setdefault(queue, reason)
        for candidate, item, need in group:
            if candidate is decision.admit and item.queue not in waiting:
                order.append((item, need))
    return CohortDecision(order, waiting, first)


def state_from(document: Mapping[str, Any]) -> CohortState:
    config = parse_cohort_config(document["config"], name=document.get("name"))
    usage = {
        queue: Usage(float(entry.get("value") or 0.0), entry["at"])
        for queue, entry in (document.get("usage") or {}).items()
        if isinstance(entry, Mapping) and entry.get("at") is not None
    }
    refusals = {
        pool: Refusal(int(entry.get("held") or 0), entry["until"])
        for pool, entry in (document.get("refusals") or {}).items()
        if isinstance(entry, Mapping) and entry.get("until") is not None
    }
    read_limits = {
        pool: ReadLimit(
            None if entry.get("limit") is None else int(entry["limit"]),
            entry["at"],
            entry.get("why"),
        )
        for pool, entry in (document.get("read_limits") or {}).items()
        if isinstance(entry, Mapping) and entry.get("at") is not None
    }
    return CohortState(config, usage, refusals, read_limits)


class CohortSource:
    """Cohorts by name and by member queue, from one cached query of `cohorts/`."""

    def __init__(
        self, store: Store, ttl_seconds: float = FRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self._store = store
        self._ttl = min(ttl_seconds, FRESH_SECONDS)
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, CohortState]] | None = None

    def all(self) -> dict[str, CohortState]:
        now = self._clock()
        with self._lock:
            cached = self._cached
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        states: dict[str, CohortState] = {}
        for document in self._store.list_cohorts():
            try:
                state = state_from(document)
            except Exception:  # a hand-edited document must not stop every queue's admission
                log.exception("unreadable cohort document", cohort=document.get("name"))
                continue
            states[state.name] = state
        with self._lock:
            self._cached = (now, states)
        return states

    def of_queue(self, queue: str) -> CohortState | None:
        for state in self.all().values():
            if state.config.member(queue) is not None:
                return state
        return None

    def forget(self) -> None:
        with self._lock:
            self._cached = None

    def held(self, state: CohortState, metric: str) -> dict[str, int]:
        """Units of one quota each member holds now (one aggregation per member)."""
        pool = state.config.pool_id(metric)
        return {m.queue: self._store.count_held_units(pool, m.queue) for m in state.config.members}

    def decide(
        self, cohort: CohortState, heads: Sequence[ItemRecord], now: datetime
    ) -> CohortDecision:
        """Given each member's next item, which to admit (in order of preference, each with
        the units it needs) and why each other member's waits: `decide_heads` on the units
        each member holds now."""
        held = {m: self.held(cohort, m) for m in cohort.config.quotas}
        free = {
            m: max(cohort.limit(m, now) - sum(held[m].values()), 0) for m in cohort.config.quotas
        }
        return decide_heads(cohort, heads, held, free, now)

    def refused(self, queue: str, metric: str, region: str, project: str, own: int) -> bool:
        """Vertex refused a create of `queue`'s item for `metric`: if the quota is a cohort's,
        lower its limit to what launchq holds (without the refused item's own `own` units) for
        the cohort's `quota_recheck_seconds`, and return True (the queue does not back off)."""
        state = self.of_queue(queue)
        if state is None or metric not in state.config.quotas:
            return False
        if (project, region) != (state.config.project, state.config.region):
            return False
        held = max(sum(self.held(state, metric).values()) - own, 0)
        until = self._store.clock() + timedelta(seconds=state.config.quota_recheck_seconds)
        pool = state.config.pool_id(metric)
        self._store.update_cohort(state.name, {("refusals", pool): {"held": held, "until": until}})
        self.forget()
        log.warning(
            "quota refused below its declared limit; using launchq's own use as the limit",
            cohort=state.name, metric=metric, held=held, declared=state.config.quotas[metric],
        )  # fmt: skip
        return True

    def read_quotas(self, reader: QuotaReader, now: datetime, every_seconds: float) -> int:
        """Read the enforced limit of every quota of each cohort with `read_quotas` from the
        Cloud Quotas API, when its last read is `every_seconds` old, and keep it on the cohort
        (`read_limits`, one write per cohort read); a quota it could not read is kept with no
        limit and why (the declared one stands). Returns the cohorts read."""
        written = 0
        for state in self.all().values():
            config = state.config
            if not config.read_quotas:
                continue
            pools = [config.pool_id(metric) for metric in config.quotas]
            last = [state.read_limits[p].at for p in pools if p in state.read_limits]
            if len(last) == len(pools) and (now - min(last)).total_seconds() < every_seconds:
                continue
            reading = reader.read(config.project, config.region, config.quotas)
            changes: dict[FieldKey, Any] = {}
            for metric in config.quotas:
                unread = reading.unread.get(metric)
                why = (
                    None if unread is None else f"{unread.reason}: {unread.status or unread.detail}"
                )
                entry = {"limit": reading.limits.get(metric), "at": now, "why": why}
                changes[("read_limits", config.pool_id(metric))] = entry
            self._store.update_cohort(state.name, changes)
            written += 1
            lower = {m: n for m, n in reading.limits.items() if n < config.quotas.get(m, 0)}
            if lower:
                log.warning(
                    "a declared quota is above the limit Google enforces; using the lower",
                    cohort=state.name, declared=dict(config.quotas), enforced=lower,
                )  # fmt: skip
        if written:
            self.forget()
        return written

    def accrue_usage(self, now: datetime) -> int:
        """Add each member's accelerator-seconds since the last accrual to its decayed usage
        (the sweep leader, every pass; each cohort document at most once a second). Returns the
        cohorts written."""
        written = 0
        for state in self._fresh().values():
            last = min((u.at for u in state.usage.values()), default=None)
            if last is not None and (now - last).total_seconds() < ACCRUE_EVERY_SECONDS:
                continue
            held: dict[str, int] = {m.queue: 0 for m in state.config.members}
            for metric in state.config.quotas:
                for queue, count in self.held(state, metric).items():
                    held[queue] += count
            usage = {}
            for queue, units in held.items():
                entry = state.usage.get(queue)
                if entry is None:
                    usage[queue] = {"value": 0.0, "at": now, "held": units}
                    continue
                seconds = max((now - entry.at).total_seconds(), 0.0)
                # What is held now is taken as held since the last accrual: passes are seconds
                # apart, so a job's first and last pass are counted to within one pass.
                value = accrue(entry.value, units, seconds, state.config.half_life_seconds)
                usage[queue] = {"value": value, "at": now, "held": units}
            self._store.update_cohort(state.name, {"usage": usage})
            written += 1
        self.forget()
        return written

    def _fresh(self) -> dict[str, CohortState]:
        self.forget()
        return self.all()
