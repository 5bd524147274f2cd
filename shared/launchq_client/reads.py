"""Items as people and scripts read them: listings, details, why one waits, its position.

The dispatcher and the sweep own every state change (`launchq.store`); this module reads what they
wrote and shapes it for the CLI (`launchq ls/status/watch`, `launchq queue pending`), the
dashboard and the demo. Every function returns plain JSON-safe dicts (times as RFC 3339 strings,
durations as seconds), because those dicts *are* the documented `--json` shapes (docs/cli.md):
one place builds them, so the table, the page and the JSON never disagree.

Queries and indexes: listing items of one queue (or state) newest first needs composite indexes
`(queue, enqueued_at DESC)`, `(state, enqueued_at DESC)` and `(queue, state, enqueued_at DESC)` in
production; the emulator does not enforce them (see docs/data-model.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from launchq.cohorts import CohortSource
from launchq.errors import NotFound
from launchq.model.budgets import parse_time
from launchq.model.records import ItemRecord
from launchq.model.states import SLOT_STATES, STATES, TERMINAL_STATES, ItemState
from launchq.model.submitters import submitter_order, usage_now
from launchq.model.waiting import WAITING_STATES, QueueState, current_wait
from launchq.spec.fields import PRIORITY_NAMES
from launchq.store import Store
from launchq_client.cohorts import cohort_positions
from launchq_client.errors import Ambiguous, did_you_mean
from launchq_client.queues import QueueStates, queue_document, queue_state
from launchq_client.values import iso, plain, seconds_between

DEFAULT_LIMIT = 50
_MAX_IN_VALUES = 30  # Firestore's limit for an `in` filter
_RANK_NAMES = {rank: name for name, rank in PRIORITY_NAMES.items()}


# -- items ---------------------------------------------------------------------------------


def history(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Transitions oldest first (ArrayUnion keeps insertion order, sorting makes it certain)."""
    entries = [dict(e) for e in data.get("history") or [] if isinstance(e, Mapping)]
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(entries, key=lambda e: e["at"] if isinstance(e.get("at"), datetime) else epoch)


def timings(data: Mapping[str, Any], now: datetime) -> dict[str, float | None]:
    """How long the item waited for its (first) submission, and how long its last job ran.

    Run time starts when the job was seen RUNNING (Vertex's `start_time` when the sweep recorded
    it), else at the submission of the last attempt, since a short job can finish between two
    sweeps; it ends at the terminal transition, or now for a job still running.
    """
    enqueued = data.get("enqueued_at")
    attempts = [a for a in data.get("attempts") or [] if isinstance(a, Mapping)]
    submitted = attempts[0].get("created_at") if attempts else None
    to_submit = seconds_between(enqueued, submitted)
    if not attempts:
        return {"time_to_submit_s": None, "run_time_s": None}
    last = attempts[-1]
    last_submit = last.get("created_at")
    entries = history(data)
    job = data.get("job") or {}
    start = parse_time(last.get("start_time")) or parse_time(job.get("start_time"))
    if start is None:
        running = [
            e["at"]
            for e in entries
            if e.get("to") == ItemState.RUNNING.value
            and isinstance(e.get("at"), datetime)
            and (not isinstance(last_submit, datetime) or e["at"] >= last_submit)
        ]
        start = running[0] if running else parse_time(last_submit)
    state = data.get("state")
    end: datetime | None = now
    if state in {s.value for s in TERMINAL_STATES}:
        ends = [e.get("at") for e in entries if e.get("to") == state]
        ends = [at for at in ends if isinstance(at, datetime)]
        end = (
            parse_time(last.get("end_time"))
            or parse_time(job.get("end_time"))
            or (ends[-1] if ends else None)
        )
    elif state == ItemState.QUEUED.value:
        end = None  # waiting for a retry: no job runs
    return {"time_to_submit_s": to_submit, "run_time_s": seconds_between(start, end)}


def _error_summary(data: Mapping[str, Any]) -> str | None:
    error = data.get("error")
    if not isinstance(error, Mapping):
        return None
    message = str(error.get("message") or error.get("reason") or "")
    path = error.get("path")
    return f"{path}: {message}" if path and not message.startswith(str(path)) else message


def priority_name(data: Mapping[str, Any]) -> str | None:
    """The priority as people typed it (`high`), else the stored rank's name (0-3 are W&B's
    names), else the integer: tables show this, the rank stays in `priority` for scripts."""
    payload = data.get("payload")
    typed = payload.get("priority") if isinstance(payload, Mapping) else None
    if isinstance(typed, str) and typed.strip().lower() in PRIORITY_NAMES:
        return typed.strip().lower()
    rank = data.get("priority")
    if isinstance(typed, int) and not isinstance(typed, bool):
        return str(typed)
    if isinstance(rank, int):
        return _RANK_NAMES.get(rank, str(rank))
    return None


def submitted_by(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """The publisher's claim the record keeps: `{"value", "verified": false}` (Pub/Sub carries no
    identity; docs/message-format.md), or None when the publisher sent none."""
    claim = data.get("submitted_by")
    return plain(claim) if isinstance(claim, Mapping) else None


def what_ran(data: Mapping[str, Any]) -> str | None:
    """What the item runs, as its submitter knows it: the image, or `source MODULE` (with its
    repository and commit when it came from git, and the built image's tag once a builder queue
    built it)."""
    payload = data.get("payload")
    payload = payload if isinstance(payload, Mapping) else {}
    source = payload.get("source")
    if isinstance(source, Mapping):
        build = data.get("build")
        tag = build.get("tag_uri") if isinstance(build, Mapping) else None
        ran = f"source {source.get('module') or source.get('uri') or ''}".strip()
        git = source.get("git")
        if isinstance(git, Mapping):  # `enqueue --git`: the repository at the commit it named
            where = str(git.get("subdir") or "")
            ran += f" from {git.get('url')}@{str(git.get('commit'))[:12]}"
            ran += f" ({where})" if where else ""
        return f"{ran} -> {tag}" if tag else ran
    image = payload.get("image_uri")
    if isinstance(image, str) and image:
        return image
    body = data.get("job_body")
    pools = body.get("jobSpec", {}).get("workerPoolSpecs") if isinstance(body, Mapping) else None
    if isinstance(pools, list) and pools and isinstance(pools[0], Mapping):
        container = pools[0].get("containerSpec")
        if isinstance(container, Mapping) and container.get("imageUri"):
            return str(container["imageUri"])
    return None


def who_and_what(data: Mapping[str, Any]) -> dict[str, Any]:
    """The fields people find their run by, shared by every item row (ls, watch, pending)."""
    return {
        "display_name": data.get("display_name"),
        "submitted_by": submitted_by(data),
        "priority_name": priority_name(data),
        "ran": what_ran(data),
    }


def item_summary(
    data: Mapping[str, Any], now: datetime | None = None, queues: QueueStates | None = None
) -> dict[str, Any]:
    """One row of `launchq ls` (the `--json` shape of each element).

    `reason`: for a waiting item, why it waits now, from its queue's current state in `queues`
    (`current_reason`); else the stored one.
    """
    now = now or datetime.now(UTC)
    job = data.get("job") or {}
    job_name = job.get("name")
    attempts = data.get("attempts") or []
    return {
        "item_id": data.get("item_id"),
        "queue": data.get("queue"),
        "state": data.get("state"),
        "priority": data.get("priority"),
        **who_and_what(data),
        "enqueued_at": iso(data.get("enqueued_at")),
        "updated_at": iso(data.get("updated_at")),
        "age_s": seconds_between(data.get("enqueued_at"), now),
        **timings(data, now),
        "attempts": len(attempts),
        # Where it runs: the region always, the placement's name on a queue with placements.
        "region": data.get("region"),
        "placement": data.get("placement_name"),
        "job_name": job_name,
        "job_id": str(job_name).rsplit("/", 1)[-1] if job_name else None,
        "vertex_state": job.get("vertex_state"),
        "reason": current_reason(data, now, _queue_of(data, queues)),
        "error": _error_summary(data),
        **spend_of(attempts),
        # The W&B run of an item of a queue with a wandb block (docs/wandb.md), where it is seen.
        "wandb_url": _wandb(data).get("url"),
        # A sweep's child names its parent; a parent says how many children it has.
        "sweep_of": data.get("sweep_of"),
        "children": (data.get("sweep") or {}).get("count")
        if isinstance(data.get("sweep"), Mapping)
        else None,
    }


def _wandb(data: Mapping[str, Any]) -> Mapping[str, Any]:
    run = data.get("wandb_run")
    return run if isinstance(run, Mapping) else {}


def spend_of(attempts: Iterable[Any]) -> dict[str, float | None]:
    """What an item's ended attempts cost, estimated (launchq.model.budgets): accelerator-hours,
    dollars (None while no attempt has a price) and what SPOT saved against on-demand."""
    ended = [a for a in attempts if isinstance(a, Mapping) and "gpu_hours" in a]
    priced = [a for a in ended if a.get("usd") is not None]
    return {
        "gpu_hours": round(sum(float(a["gpu_hours"]) for a in ended), 4) if ended else None,
        "cost_usd": round(sum(float(a["usd"]) for a in priced), 4) if priced else None,
        "spot_saved_usd": round(sum(float(a.get("usd_saved") or 0) for a in priced), 4)
        if any("usd_saved" in a for a in priced)
        else None,
    }


def item_detail(
    data: Mapping[str, Any], now: datetime | None = None, queues: QueueStates | None = None
) -> dict[str, Any]:
    """Everything about one item (`launchq status --json`)."""
    now = now or datetime.now(UTC)
    job = data.get("job") or {}
    state = str(data.get("state") or "")
    info = STATES.get(ItemState(state)) if state in ItemState.__members__ else None
    error = data.get("error")
    description = info.description if info else None
    if info is not None and info.terminal and isinstance(data.get("sweep"), Mapping):
        # A parent ran no job: how it ended is what its children did.
        description = str((history(data) or [{}])[-1].get("cause") or description)
    return {
        **item_summary(data, now, queues),
        "description": description,
        "terminal": bool(info and info.terminal),
        "message_id": data.get("message_id"),
        "job": {
            "name": job.get("name"),
            "vertex_state": job.get("vertex_state"),
            "create_time": job.get("create_time"),
            "console_url": job.get("console_url"),
            "logs_url": job.get("logs_url"),
        }
        if job
        else None,
        "attempt_list": [
            {
                "n": a.get("n"),
                "job_name": a.get("job_name"),
                "created_at": iso(a.get("created_at")),
                "state": a.get("state"),
                "region": a.get("region"),
                "placement": a.get("placement_name"),
                "strategy": a.get("strategy"),
                "failure_class": a.get("failure_class"),
                "moved_to": a.get("moved_to"),
                "run_seconds": a.get("run_seconds"),
                "gpu_hours": a.get("gpu_hours"),
                "usd": a.get("usd"),
                "usd_saved": a.get("usd_saved"),
            }
            for a in data.get("attempts") or []
            if isinstance(a, Mapping)
        ],
        "not_before": iso(data.get("not_before")),
        "wandb_run": plain(dict(_wandb(data))) or None,
        # Notifications that could not be delivered, per rule (docs/notifications.md).
        "notify": plain(data.get("notify")) if isinstance(data.get("notify"), Mapping) else None,
        # A source item's image build (launchq.builds): build id, log URL, digest, timing.
        "build": plain(data.get("build")) if isinstance(data.get("build"), Mapping) else None,
        "error_detail": plain(error) if isinstance(error, Mapping) else None,
        "history": [
            {
                **{k: plain(v) for k, v in entry.items() if k not in ("at", "id")},
                "at": iso(entry.get("at")),
            }
            for entry in history(data)
        ],
        "payload": plain(data.get("payload")),
    }


_TERMINAL_VALUES = frozenset(state.value for state in TERMINAL_STATES)
# How a sweep's children are counted for its progress (`launchq status PARENT`, the dashboard).
PROGRESS_GROUPS: dict[str, tuple[ItemState, ...]] = {
    "held": (ItemState.HELD,),
    "waiting": (ItemState.QUEUED, ItemState.BUILDING),
    "running": tuple(sorted(SLOT_STATES)),
    "succeeded": (ItemState.SUCCEEDED,),
    "failed": (
        ItemState.FAILED,
        ItemState.EXPIRED,
        ItemState.PARTIALLY_SUCCEEDED,
        ItemState.REJECTED,
    ),
    "cancelled": (ItemState.CANCELLED,),
}


def sweep_progress(store: Store, data: Mapping[str, Any]) -> dict[str, Any] | None:
    """A sweep's or array's progress (None for a single item): what it expands into, how many
    children are recorded, and how many are held, waiting, running, succeeded, failed and
    cancelled now: one count query per group, on the (queue, sweep_of, state) index, while the
    parent runs; none once it ended (it keeps how many children ended how, `children`)."""
    family = data.get("sweep")
    if not isinstance(family, Mapping):
        return None
    queue, parent = str(data.get("queue")), str(data.get("item_id"))
    ended = data.get("children")
    if data.get("state") in _TERMINAL_VALUES and isinstance(ended, Mapping):
        counts = {
            group: sum(int(ended.get(state.value) or 0) for state in states)
            for group, states in PROGRESS_GROUPS.items()
        }
    else:
        counts = {
            group: store.count_children(queue, parent, states)
            for group, states in PROGRESS_GROUPS.items()
        }
    count = int(family.get("count") or 0)
    done = counts["succeeded"] + counts["failed"] + counts["cancelled"]
    return {
        "kind": family.get("kind"),
        "method": family.get("method"),
        "count": count,
        "max_parallel": family.get("max_parallel"),
        "expanded": int(data.get("expanded") or 0),
        **counts,
        "done": done,
        "cancel_requested": bool(data.get("cancel_requested")),
    }


def list_children(
    store: Store,
    queue: str,
    parent: str,
    states: Sequence[ItemState] = (),
    limit: int = DEFAULT_LIMIT,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """A sweep's children in child order (`launchq ls --sweep PARENT`)."""
    records = store.children_of(queue, parent, list(states)[:_MAX_IN_VALUES], limit)
    now = now or store.clock()
    queues = QueueStates(store)
    return [item_summary(record.stored, now, queues) for record in records]


def parse_states(names: Iterable[str]) -> list[ItemState]:
    """`--state running --state QUEUED` to states; ValueError naming the valid ones."""
    states: list[ItemState] = []
    for name in names:
        try:
            states.append(ItemState(name.strip().upper()))
        except ValueError:
            valid = ", ".join(s.value for s in ItemState)
            guess = did_you_mean(name.strip(), (s.value for s in ItemState))
            hint = f"; did you mean {guess.lower()!r}?" if guess else ""
            raise ValueError(f"unknown state {name!r}{hint} (states: {valid})") from None
    return states


def list_items(
    store: Store,
    queue: str | None = None,
    states: Sequence[ItemState] = (),
    limit: int = DEFAULT_LIMIT,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Items newest first, optionally of one queue and/or some states."""
    records = store.recent_items(queue, list(states)[:_MAX_IN_VALUES], limit)
    now = now or store.clock()
    queues = QueueStates(store)
    return [item_summary(record.stored, now, queues) for record in records]


def find_item_data(store: Store, item_id: str, queue: str | None = None) -> dict[str, Any]:
    """The stored document of an item, looked up by id across queues unless `queue` is given."""
    if queue is not None:
        document = store.item_document(queue, item_id)
        if document is None:
            raise NotFound(f"no item {item_id!r} in queue {queue!r}")
        return document
    found = [dict(record.stored) for record in store.items_with_id(item_id, limit=5)]
    if not found:
        raise NotFound(f"no item {item_id!r} in any queue")
    if len(found) > 1:
        queues = ", ".join(sorted(str(d.get("queue")) for d in found))
        raise Ambiguous(f"item id {item_id!r} exists in several queues ({queues}): pass --queue")
    return found[0]


def pending_items(
    store: Store, queue: str, limit: int = 100, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Waiting items with their position, in the order admission will take them.

    Positions come from `Store.waiting_items` (priority rank, then enqueue time), the very query
    admission runs, so position 1 is the next item to start. Items backing off after a failure
    (`not_before` in the future) are not admissible yet: they follow with position null.
    Each row's `reason` is why the item waits now, from the queue's current state
    (`launchq.model.waiting.current_wait`): `queue paused` while paused, `waiting: Vertex quota …
    exhausted in …` while the queue backs off after a quota refusal, `waiting for a free slot`
    while every slot is taken, whatever reason was stored when the item was recorded.
    """
    document = queue_document(store, queue)
    now = now or store.clock()
    cohorts = CohortSource(store)  # the cohorts read once, for the reasons and the positions
    state = queue_state(document, store.count_holding_slots(queue), store, cohorts)
    ready = store.waiting_items(queue, limit=limit)
    ordered = ready
    if state.submitter_limit is not None:
        # As admission takes them (launchq.model.submitters): submitters at their limit are
        # passed over, the others go by priority, then their recent use, then age.
        config = document.get("config") or {}
        half_life = float(config.get("submitter_half_life_seconds") or 3600)
        usage = usage_now(document.get("submitter_usage") or {}, now, half_life)
        ordered = submitter_order(ready, state.submitter_limit, state.held_by_submitter, usage)
    seen = {record.doc_id for record in ordered}
    passed_over = [r for r in ready if r.doc_id not in seen]  # submitters at their limit
    seen |= {record.doc_id for record in passed_over}
    backing_off = store.items_in_states([ItemState.QUEUED], queue=queue)
    later = [r for r in backing_off if r.doc_id not in seen]
    listed = [
        *((record, position) for position, record in enumerate(ordered, start=1)),
        *((record, None) for record in passed_over),
        *((record, None) for record in later[: max(limit - len(ordered) - len(passed_over), 0)]),
    ]
    # Where each stands among all its cohort's waiting items (None outside a cohort).
    in_cohort = cohort_positions(store, queue, limit, cohorts)
    rows = []
    for record, position in listed:
        row = _pending_row(record, position, now, state)
        row["cohort_position"] = in_cohort.get(record.doc_id)
        rows.append(row)
    return rows


def _pending_row(
    record: ItemRecord, position: int | None, now: datetime, queue: QueueState
) -> dict[str, Any]:
    data = record.stored
    waiting = current_wait(record, queue, now)
    return {
        "position": position,
        "item_id": data.get("item_id"),
        "priority": data.get("priority"),
        **who_and_what(data),
        "enqueued_at": iso(data.get("enqueued_at")),
        "waiting_s": seconds_between(data.get("enqueued_at"), now),
        "attempts": len(data.get("attempts") or []),
        "reason": waiting.message if waiting is not None else record.reason,
        # When that wait ends, if known: the queue's quota backoff, the item's retry backoff.
        "waiting_until": iso(waiting.until) if waiting is not None else None,
        "not_before": iso(data.get("not_before")),
    }


# -- why a waiting item waits ----------------------------------------------------------------

_WAITING = {s.value for s in WAITING_STATES}


def _queue_of(data: Mapping[str, Any], queues: QueueStates | None) -> QueueState | None:
    """The state of a waiting item's queue; read only for waiting items (a listing of finished
    ones costs no queue read)."""
    if queues is None or data.get("state") not in _WAITING:
        return None
    return queues.get(str(data.get("queue")))


def current_reason(data: Mapping[str, Any], now: datetime, queue: QueueState | None) -> str | None:
    """The `reason` a display shows: for a waiting item, why it waits now
    (`launchq.model.waiting.current_wait`, from its queue's current state; without it, only what the
    item says); for any other item, the stored one (null once admitted)."""
    state = data.get("state")
    if state not in _WAITING:
        return data.get("reason")
    record = ItemRecord(
        queue=str(data.get("queue")),
        item_id=str(data.get("item_id")),
        state=ItemState(state),
        reason=data.get("reason"),
        not_before=data.get("not_before"),
    )
    waiting = current_wait(record, queue, now)
    return waiting.message if waiting is not None else record.reason
