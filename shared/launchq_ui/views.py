"""What the dashboard's pages show, as plain dicts: queue rows, item pages, chart series.

The item rows and details are `launchq_cli.ops`'s (the `--json` shapes of `ls` and `status`), so
the page and the CLI never disagree. What only the dashboard needs is here: the oldest waiting
age and the waiting reasons of a queue, its outcomes over the last 24 hours, and the two chart
series, all computed from the items' own documents (`history`), no extra bookkeeping.

The 24-hour window is one query per queue on `(queue, enqueued_at)`, the composite index `ls`
already needs (docs/data-model.md), read with a field projection: a chart needs states and
history, not job bodies. Measured on the project machine (2 cores, Firestore emulator, 500
finished items in the window, each with its rendered trainer job; `python -m
bench.dashboard_window --items 500`, medians of 5 interleaved runs in one process): the projected
window query takes 0.69x the time of reading whole documents, and the whole queues page costs
3.5x `launchq queue ls` (0.35 s vs 0.10 s).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from google.cloud import firestore

from launchq.states import SLOT_STATES, TERMINAL_STATES, ItemState
from launchq.store import ITEMS, Store
from launchq_cli import ops

WINDOW = timedelta(hours=24)
PAGE_SIZE = 25
MAX_PAGE = 40  # paging re-reads the pages before it (no cursors): 1,000 items deep at most
# Enough of an item for the queue page and the charts; `job.name` for nothing heavier.
_CHART_FIELDS = ["item_id", "queue", "state", "enqueued_at", "history", "reason", "attempts"]
_TERMINAL = {s.value for s in TERMINAL_STATES}
_RUNNING = ItemState.RUNNING.value


def _aware(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None


def window_items(store: Store, queue: str, now: datetime) -> list[dict[str, Any]]:
    """The queue's items enqueued in the last 24 h (projected: no job bodies)."""
    query = (
        store.db.collection(ITEMS)
        .where(filter=firestore.FieldFilter("queue", "==", queue))
        .where(filter=firestore.FieldFilter("enqueued_at", ">=", now - WINDOW))
        .select(_CHART_FIELDS)
    )
    return [snap.to_dict() or {} for snap in query.stream()]


def _ended_at(data: Mapping[str, Any]) -> datetime | None:
    state = data.get("state")
    for entry in reversed(ops.history(data)):
        if entry.get("to") == state and state in _TERMINAL:
            return _aware(entry.get("at"))
    return None


def queue_row(
    store: Store, document: Mapping[str, Any], items: Sequence[Mapping[str, Any]], now: datetime
) -> dict[str, Any]:
    """`launchq queue ls`'s row plus the oldest waiting age, waiting reasons and 24 h outcomes."""
    row = ops.queue_summary(store, document)
    waiting = store.items_in_states(
        [ItemState.QUEUED], queue=row["name"], fields=["enqueued_at", "reason"]
    )
    oldest: datetime | None = None
    reasons: Counter[str] = Counter()
    for record in waiting:
        enqueued = _aware(record.stored.get("enqueued_at"))
        if enqueued is not None and (oldest is None or enqueued < oldest):
            oldest = enqueued
        reasons[str(record.stored.get("reason") or "no reason recorded")] += 1
    outcomes: Counter[str] = Counter()
    since = now - WINDOW
    for data in items:
        ended = _ended_at(data)
        if ended is not None and ended >= since:
            outcomes[str(data.get("state"))] += 1
    return {
        **row,
        "oldest_waiting_s": (now - oldest).total_seconds() if oldest else None,
        "reasons": sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])),
        "succeeded_24h": outcomes[ItemState.SUCCEEDED.value],
        "failed_24h": outcomes[ItemState.FAILED.value]
        + outcomes[ItemState.REJECTED.value]
        + outcomes[ItemState.EXPIRED.value],
        "cancelled_24h": outcomes[ItemState.CANCELLED.value],
    }


@dataclass(frozen=True)
class Series:
    """One chart: points `(time, value)` in time order, and how to draw them."""

    name: str
    unit: str
    points: list[tuple[datetime, float]]
    step: bool  # a count that holds until the next change (jobs running) vs. samples (waits)


def wait_series(items: Iterable[Mapping[str, Any]]) -> Series:
    """Each item's wait: from enqueue to its first submission, plotted at the submission."""
    points: list[tuple[datetime, float]] = []
    for data in items:
        enqueued = _aware(data.get("enqueued_at"))
        attempts = [a for a in data.get("attempts") or [] if isinstance(a, Mapping)]
        submitted = _aware(attempts[0].get("created_at")) if attempts else None
        if submitted is None:  # read from history when attempts were projected away
            submitted = next(
                (
                    _aware(e.get("at"))
                    for e in ops.history(data)
                    if e.get("to") == ItemState.SUBMITTING.value
                ),
                None,
            )
        if enqueued is not None and submitted is not None:
            points.append((submitted, max((submitted - enqueued).total_seconds(), 0.0)))
    return Series("wait time", "s", sorted(points), step=False)


def running_series(items: Iterable[Mapping[str, Any]], now: datetime) -> Series:
    """Jobs holding a slot over time: +1 when an item enters a slot-holding state, -1 when it
    leaves them, from every item's history; starts and ends at the window's edges."""
    holding = {s.value for s in SLOT_STATES}
    changes: list[tuple[datetime, int]] = []
    for data in items:
        inside = False
        for entry in ops.history(data):
            at = _aware(entry.get("at"))
            if at is None:
                continue
            now_inside = entry.get("to") in holding
            if now_inside != inside:
                changes.append((at, 1 if now_inside else -1))
                inside = now_inside
    changes.sort(key=lambda change: change[0])
    start = now - WINDOW
    count = 0
    points: list[tuple[datetime, float]] = []
    for at, delta in changes:
        count += delta
        if at >= start:
            points.append((at, float(count)))
    first = sum(delta for at, delta in changes if at < start)
    return Series(
        "jobs running", "jobs", [(start, float(first)), *points, (now, float(count))], True
    )


def page_of_items(
    store: Store, queue: str, states: Sequence[ItemState], search: str, page: int, now: datetime
) -> tuple[list[dict[str, Any]], bool]:
    """One page of a queue's items, newest first, and whether another page follows.

    A search is an item id (or its prefix): ids are what people paste from the CLI.
    """
    page = min(max(page, 1), MAX_PAGE)
    if search:
        exact = [r.stored for r in store.items_with_id(search, limit=10)]
        rows = [ops.item_summary(d, now) for d in exact if d.get("queue") == queue]
        if not rows:
            rows = [
                r
                for r in ops.list_items(store, queue, states, PAGE_SIZE * MAX_PAGE, now)
                if str(r["item_id"]).startswith(search)
            ]
        wanted = {s.value for s in states}
        rows = [r for r in rows if not wanted or r["state"] in wanted]
        begin = (page - 1) * PAGE_SIZE
        return rows[begin : begin + PAGE_SIZE], len(rows) > begin + PAGE_SIZE
    rows = ops.list_items(store, queue, states, page * PAGE_SIZE + 1, now)
    begin = (page - 1) * PAGE_SIZE
    return rows[begin : begin + PAGE_SIZE], len(rows) > page * PAGE_SIZE
