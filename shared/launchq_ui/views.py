"""What the dashboard's pages show, as plain dicts: queue rows, item pages, chart series.

The item rows and details are `launchq_client.reads`' (the `--json` shapes of `ls` and
`status`), so the page and the CLI never disagree. What only the dashboard needs is here: the
oldest waiting age and the waiting reasons of a queue, its outcomes over the last 24 hours, and
the two chart series, all computed from the items' own documents (`history`), no extra
bookkeeping.

The 24-hour window is one query per queue on `(queue, enqueued_at)`, the composite index `ls`
already needs (docs/data-model.md), read with a field projection: a chart needs states and
history, not job bodies. Measured on the project machine (2 cores, Firestore emulator, 500
finished items in the window, each with its rendered trainer job; `python -m
bench.dashboard_window --items 500`, medians of 5 interleaved runs in one process): the projected
window query takes 0.69x the time of reading whole documents, and the whole queues page costs
3.5x `launchq queue ls` (0.35 s vs 0.10 s).

Item pages are keyset pages, not offsets: a page link carries an opaque cursor, the
`(enqueued_at, document id)` of the last row shown, and the next page is the query started right
behind it (`Store.recent_items(after=...)`). A page costs `PAGE_SIZE + 1` document reads at any
depth (an offset is billed as reads of every skipped document, so page N used to cost N pages),
and there is no depth limit. The cursor is only a position in a list the reader may see anyway,
so it is not signed; it is checked (shape, range, that it names an item of the page's queue) and
a damaged one is refused with `BadCursor` (answered 400) before anything is read.

Sweeps and arrays (launchq.spec.family) show as a unit: the parent's row carries its progress
(`progress`: its children counted by state group, one count query per group), and the
unfiltered list leaves the children out, since a sweep of 1,000 would otherwise fill 40 pages
ahead of its own parent (children are recorded after it, so they are newer). The parent's item
page lists its children (`children_page`), a page at a time in child order; a state filter or a
search lists children as any other item.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from launchq.cohorts import CohortSource
from launchq.model.records import ItemRecord, item_doc_id
from launchq.model.states import SLOT_STATES, TERMINAL_STATES, ItemState
from launchq.spec.family import child_id, parent_of
from launchq.store import Store
from launchq_client.budgets import budget_text
from launchq_client.cohorts import list_cohort_summaries
from launchq_client.queues import QueueStates, queue_state, queue_summary
from launchq_client.reads import current_reason, history, item_summary, sweep_progress

WINDOW = timedelta(hours=24)
PAGE_SIZE = 25
# A prefix search reads this many items at most per page, from the page's position back; an
# exact id is one lookup. Firestore has no "starts with" on a field the query is not ordered by.
SEARCH_SCAN = 1_000
# A document id is at most 1,500 bytes, so no cursor this dashboard makes is longer than
# about 2,100 characters (item ids of at most 128 characters make about 200).
_MAX_CURSOR = 2_200
_MAX_DOC_ID = 1_500
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Enough of an item for the queue page and the charts; `job.name` for nothing heavier.
_CHART_FIELDS = ["item_id", "queue", "state", "enqueued_at", "history", "reason", "attempts"]
# What a waiting item's current reason is derived from (and what a record needs to be read).
_WAITING_FIELDS = ["queue", "item_id", "state", "enqueued_at", "reason", "not_before"]
_TERMINAL = {s.value for s in TERMINAL_STATES}
_RUNNING = ItemState.RUNNING.value
# Skipping a sweep's children in the unfiltered list (`_unfiltered_page`). Children are recorded a
# batch at a time (launchq.expansion.BATCH, 100), each batch with one `enqueued_at`, so a child
# met in the list is skipped with the rest of its batch in one jump; the read after a jump is a
# probe of SKIP_PROBE documents, since it most often lands in the same sweep's next batch. A page
# makes at most SKIP_QUERIES queries (a sweep of 2,000 children behind the page's first rows),
# then ends where it got to and *Older* goes on from there.
SKIP_PROBE = 5
SKIP_QUERIES = 20
# What a parent's page shows of each child: no job body, no payload.
_CHILD_FIELDS = [
    "enqueued_at",
    "updated_at",
    "reason",
    "not_before",
    "error",
    "job",
    "attempts",
    "history",
    "sweep_of",
    "display_name",
]
# The bar's groups, left to right: what is over, then what is under way (a HELD child is
# shown among the waiting: it waits, only for its own sweep).
_SEGMENTS = ("succeeded", "failed", "cancelled", "running", "waiting")
_WORDS = {group: group for group in _SEGMENTS} | {"unrecorded": "not recorded yet"}


def _aware(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None


def window_items(store: Store, queue: str, now: datetime) -> list[dict[str, Any]]:
    """The queue's items enqueued in the last 24 h (projected: no job bodies)."""
    return store.items_enqueued_since(queue, now - WINDOW, _CHART_FIELDS)


def _ended_at(data: Mapping[str, Any]) -> datetime | None:
    state = data.get("state")
    for entry in reversed(history(data)):
        if entry.get("to") == state and state in _TERMINAL:
            return _aware(entry.get("at"))
    return None


def queue_row(
    store: Store,
    document: Mapping[str, Any],
    items: Sequence[Mapping[str, Any]],
    now: datetime,
    cohorts: CohortSource | None = None,
) -> dict[str, Any]:
    """`launchq queue ls`'s row plus the oldest waiting age, waiting reasons and 24 h outcomes."""
    row = queue_summary(store, document)
    waiting = store.items_in_states([ItemState.QUEUED], queue=row["name"], fields=_WAITING_FIELDS)
    # Why they wait now (launchq.model.waiting), not the reason stored when each was recorded.
    state = queue_state(document, row["running"], store, cohorts)
    oldest: datetime | None = None
    reasons: Counter[str] = Counter()
    for record in waiting:
        enqueued = _aware(record.stored.get("enqueued_at"))
        if enqueued is not None and (oldest is None or enqueued < oldest):
            oldest = enqueued
        reasons[current_reason(record.stored, now, state) or "no reason recorded"] += 1
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
        "budget_text": budget_text(row["budget"]),
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
                    for e in history(data)
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
    return _holding_series(items, now, lambda _entry: 1, "jobs running", "jobs")


def accelerators_series(items: Iterable[Mapping[str, Any]], now: datetime) -> Series:
    """A cohort member's accelerators held over time: the quota units each claim took (the
    `accelerators` of its history entry), from when it took them until it left the slot."""
    return _holding_series(
        items, now, lambda entry: int(entry.get("accelerators") or 0), "accelerators held", ""
    )


def _holding_series(
    items: Iterable[Mapping[str, Any]],
    now: datetime,
    weight: Callable[[Mapping[str, Any]], int],
    name: str,
    unit: str,
) -> Series:
    holding = {s.value for s in SLOT_STATES}
    changes: list[tuple[datetime, int]] = []
    for data in items:
        held = 0
        for entry in history(data):
            at = _aware(entry.get("at"))
            if at is None:
                continue
            inside = entry.get("to") in holding
            if inside and not held:
                held = weight(entry)
                if held:
                    changes.append((at, held))
            elif not inside and held:
                changes.append((at, -held))
                held = 0
    changes.sort(key=lambda change: change[0])
    start = now - WINDOW
    count = 0
    points: list[tuple[datetime, float]] = []
    for at, delta in changes:
        count += delta
        if at >= start:
            points.append((at, float(count)))
    first = sum(delta for at, delta in changes if at < start)
    return Series(name, unit, [(start, float(first)), *points, (now, float(count))], True)


def cohort_panels(store: Store, now: datetime) -> list[dict[str, Any]]:
    """Each cohort as the dashboard shows it: `launchq cohort ls`'s summary, and per member the
    accelerators it held over the last 24 h against its share (drawn by the app)."""
    panels = []
    for summary in list_cohort_summaries(store, now):
        members = []
        for quota in summary["quotas"]:
            for member in quota["members"]:
                items = window_items(store, member["queue"], now)
                members.append(
                    {
                        **member,
                        "metric": quota["metric"],
                        "usage_hours": summary["members"][member["queue"]]["accelerator_hours"],
                        "waiting": summary["members"][member["queue"]]["waiting"],
                        "series": accelerators_series(items, now),
                        "since": data_since(items),
                    }
                )
        panels.append({**summary, "panel_members": members})
    return panels


class BadCursor(ValueError):
    """A page link's cursor that is not one this dashboard made (damaged or edited)."""


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: right behind the item `(enqueued_at, doc_id)`, newest first."""

    enqueued_at: datetime
    doc_id: str

    def encode(self) -> str:
        """URL-safe base64 of `[microseconds since the epoch, document id]`, unpadded.

        Microseconds are exact: Firestore keeps timestamps to the microsecond.
        """
        micros = (self.enqueued_at - _EPOCH) // timedelta(microseconds=1)
        raw = json.dumps([micros, self.doc_id], separators=(",", ":"), ensure_ascii=False).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    @classmethod
    def decode(cls, text: str, queue: str) -> Cursor:
        """The cursor `encode` made for one of `queue`'s pages; BadCursor for anything else."""
        if len(text) > _MAX_CURSOR:
            raise BadCursor("the page cursor is too long")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            value = json.loads(raw.decode("utf-8"))
        except (binascii.Error, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            raise BadCursor("the page cursor is not one of this dashboard's") from exc
        if (
            not isinstance(value, list)
            or len(value) != 2
            or type(value[0]) is not int
            or not isinstance(value[1], str)
        ):
            raise BadCursor("the page cursor is not one of this dashboard's")
        micros, doc_id = value
        # A document id of this queue's items (`item_doc_id`): never a path, never another queue.
        if (
            not doc_id.startswith(f"{queue}~")
            or "/" in doc_id
            or len(doc_id.encode()) > _MAX_DOC_ID
        ):
            raise BadCursor("the page cursor is not one of this queue's items")
        try:
            at = _EPOCH + timedelta(microseconds=micros)
        except OverflowError as exc:
            raise BadCursor("the page cursor's time is out of range") from exc
        return cls(at, doc_id)


def _key(cursor: Cursor | None) -> tuple[datetime, str] | None:
    return (cursor.enqueued_at, cursor.doc_id) if cursor is not None else None


def _cursor_of(record: ItemRecord) -> Cursor | None:
    at = _aware(record.enqueued_at)
    return Cursor(at, record.doc_id) if at is not None else None


@dataclass(frozen=True)
class ItemsPage:
    """One page of a queue's items (`launchq ls --json` rows) and the cursor of the next page
    (None when this is the last)."""

    rows: list[dict[str, Any]]
    next: Cursor | None


def item_row(summary: dict[str, Any]) -> dict[str, Any]:
    """`launchq ls --json`'s row (or `status --json`'s detail) as a page shows it: the submitter's
    claimed name as text, and no display name when it is the default `<queue>-<item id>`
    (`launchq.spec.render`), which says nothing the item id beside it does not."""
    claim = summary.get("submitted_by")
    name = summary.get("display_name")
    default = f"{summary.get('queue')}-{summary.get('item_id')}"
    child = parent_of(str(summary.get("item_id"))) if summary.get("sweep_of") else None
    return {
        **summary,
        "submitted_by": claim.get("value") if isinstance(claim, Mapping) else claim,
        "display_name": None if not name or name == default else name,
        "priority_name": summary.get("priority_name") or "-",
        # A sweep's child: its number in the sweep (its id is `<parent>~00007`).
        "child_number": child[1] if child else None,
    }


def data_since(items: Iterable[Mapping[str, Any]]) -> datetime | None:
    """When a queue's data in the window starts: its first item's enqueue time (None: no item).
    Both of its charts start there when that is less than the window ago, so a new stack's
    points spread over the plot instead of piling up at its right edge."""
    times = [at for at in (_aware(data.get("enqueued_at")) for data in items) if at is not None]
    return min(times, default=None)


def page_of_items(
    store: Store,
    queue: str,
    states: Sequence[ItemState],
    search: str,
    after: Cursor | None,
    now: datetime,
) -> ItemsPage:
    """The page of a queue's items, newest first, that starts behind `after` (None: the first).

    Reads `PAGE_SIZE + 1` documents (the one extra tells whether another page follows), plus
    what skipping sweeps' children costs in the unfiltered list (`_unfiltered_page`). A
    search is an item id (or its prefix): ids are what people paste from the CLI. An exact id is
    one lookup and one page; a prefix is matched in the next `SEARCH_SCAN` items, and when those
    are used up before the page is full, the next page goes on searching behind them.
    """
    wanted = {s.value for s in states}
    queues = QueueStates(store)  # a waiting item's reason is its queue's current one
    if search:
        exact = [r.stored for r in store.items_with_id(search, limit=10)]
        found = [d for d in exact if d.get("queue") == queue]
        if found:
            rows = [_row(store, d, now, queues) for d in found]
            return ItemsPage([r for r in rows if not wanted or r["state"] in wanted], None)
        scanned = store.recent_items(queue, states, SEARCH_SCAN, _key(after))
        matches = [r for r in scanned if r.item_id.startswith(search)]
        if len(matches) > PAGE_SIZE:
            following = _cursor_of(matches[PAGE_SIZE - 1])
        elif len(scanned) == SEARCH_SCAN:
            following = _cursor_of(scanned[-1])
        else:
            following = None
        rows = [_row(store, r.stored, now, queues) for r in matches[:PAGE_SIZE]]
        return ItemsPage(rows, following)
    if states:  # a state filter lists children too: "what runs" means their jobs
        records = store.recent_items(queue, states, PAGE_SIZE + 1, _key(after))
        stopped = None
    else:
        records, stopped = _unfiltered_page(store, queue, _key(after))
    if len(records) > PAGE_SIZE:
        following = _cursor_of(records[PAGE_SIZE - 1])
    else:
        following = Cursor(*stopped) if stopped is not None else None
    rows = [_row(store, r.stored, now, queues) for r in records[:PAGE_SIZE]]
    return ItemsPage(rows, following)


def _row(
    store: Store, data: Mapping[str, Any], now: datetime, queues: QueueStates
) -> dict[str, Any]:
    """A list's row; a sweep's parent with its progress (a few count queries while it runs)."""
    row = item_row(item_summary(data, now, queues))
    row["progress"] = progress(store, data)
    return row


def _unfiltered_page(
    store: Store, queue: str, after: tuple[datetime, str] | None
) -> tuple[list[ItemRecord], tuple[datetime, str] | None]:
    """Up to `PAGE_SIZE + 1` of the queue's items behind `after`, newest first, without sweeps'
    children; and, when it used up its `SKIP_QUERIES` first, the position it got to (the next
    page starts there). Without children in the way, this is the one read it always was.

    Firestore cannot select documents *without* a field, so children are skipped as they are
    met: a child's batch shares one `enqueued_at` and its ids sort together, so the next read
    starts behind the position of its sweep's child 0 at that time, past the whole batch."""
    kept: list[ItemRecord] = []
    position = after
    size = PAGE_SIZE + 1
    for _ in range(SKIP_QUERIES):
        limit = min(PAGE_SIZE + 1 - len(kept), size)
        chunk = store.recent_items(queue, (), limit, position)
        kept += [record for record in chunk if record.sweep_of is None]
        if len(chunk) < limit or len(kept) > PAGE_SIZE:
            return kept, None
        last = chunk[-1]
        if last.enqueued_at is None:  # not in this query's order at all: nothing to go on from
            return kept, None
        if last.sweep_of is not None:
            position = (last.enqueued_at, item_doc_id(queue, child_id(last.sweep_of, 0)))
            size = SKIP_PROBE
        else:
            position = (last.enqueued_at, last.doc_id)
            size = PAGE_SIZE + 1
    return kept, position


# -- sweeps and arrays -----------------------------------------------------------------------


def progress(store: Store, data: Mapping[str, Any]) -> dict[str, Any] | None:
    """A sweep's or array's progress as its bar shows it, None for any other item.

    Its children counted as `launchq status` counts them (`launchq_client.reads.sweep_progress`:
    a count query per group while the parent runs, none once it ended, so a page of finished
    sweeps polled every 2 s reads nothing more than a page of single items), `waiting` shown
    with the `held` in it.

    Plus what the page draws: `segments` (each group's share of `count`, left to right, with
    its offset; children not recorded yet are the bar's empty rest), `legend` (the groups with
    children, in words), `title` (what it is) and `label` (the whole bar in words, for screen
    readers)."""
    found = sweep_progress(store, data)
    if found is None:
        return None
    counts = dict(found)
    counts["waiting"] += counts["held"]
    count = int(found["count"])
    recorded = sum(counts[group] for group in _SEGMENTS)
    total = max(count, recorded, 1)  # a bar of nothing is still a bar; never over 100 %
    segments, offset = [], 0.0
    for group in _SEGMENTS:
        width = 100.0 * counts[group] / total
        if width:
            segments.append({"group": group, "x": round(offset, 3), "width": round(width, 3)})
        offset += width
    unrecorded = max(count - recorded, 0)
    legend = [
        {"group": group, "n": n, "text": _words(group, n, counts["held"])}
        for group, n in [*((g, counts[g]) for g in _SEGMENTS), ("unrecorded", unrecorded)]
        if n
    ]
    done_text = f"{found['done']} of {count} done"
    words = ", ".join(str(entry["text"]) for entry in legend)
    found = {**found, "waiting": counts["waiting"], "unrecorded": unrecorded}
    return {
        **found,
        "segments": segments,
        "legend": legend,
        "title": _family_title(found),
        "done_text": done_text,
        "label": f"{done_text}: {words}" if words else done_text,
    }


def _words(group: str, n: int, held: int) -> str:
    if group == "waiting" and held:
        return f"{n} waiting ({held} held)"
    return f"{n} {_WORDS[group]}"


def _family_title(found: Mapping[str, Any]) -> str:
    """`random sweep of 40, at most 4 at once`, `array of 10`."""
    kind = str(found.get("kind") or "sweep")
    method = found.get("method") if kind == "sweep" else None
    title = f"{method} {kind}" if method else kind
    title += f" of {found.get('count')}"
    limit = found.get("max_parallel")
    return f"{title}, at most {limit} at once" if isinstance(limit, int) else title


def child_cursor(text: str, parent: str) -> str:
    """The `children_after` of a parent's page: the id of one of its children (the last one
    the previous page showed); BadCursor for anything else, before anything is read."""
    if len(text) > _MAX_CURSOR or (parent_of(text) or ("", 0))[0] != parent:
        raise BadCursor("the children page's position is not one of this sweep's children")
    return text


@dataclass(frozen=True)
class ChildrenPage:
    """A page of a parent's children, in child order (`<parent>~00001` first), as rows; `next`
    is the id of its last child when another page follows."""

    rows: list[dict[str, Any]]
    next: str | None


def children_page(
    store: Store, queue: str, parent: str, after: str | None, now: datetime
) -> ChildrenPage:
    """The `PAGE_SIZE` children behind `after` (a child id; None: from the first), projected:
    `PAGE_SIZE + 1` document reads on the (queue, sweep_of) index at any depth."""
    records = store.children_of(queue, parent, (), PAGE_SIZE + 1, after, _CHILD_FIELDS)
    queues = QueueStates(store)
    rows = [item_row(item_summary(r.stored, now, queues)) for r in records[:PAGE_SIZE]]
    following = records[PAGE_SIZE - 1].item_id if len(records) > PAGE_SIZE else None
    return ChildrenPage(rows, following)
