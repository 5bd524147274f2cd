"""What every store implementation shares, without Firestore: names, the transition type, and
the one conversion between stored documents and typed records.

Both implementations (`launchq.store.firestore`, `launchq.store.memory`) build documents and
history entries here, so they cannot disagree on what an item looks like once written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from launchq.errors import Conflict
from launchq.model.budgets import Charge, Settlement, settlement
from launchq.model.records import AttemptJob, Claim, ItemRecord, QueueBackoff, Slot
from launchq.model.states import ItemState, check_transition

QUEUES = "queues"
LEASES = "leases"
BUDGETS = "budgets"
BUILDS = "builds"
BACKOFF_FIELD = "capacity_backoff"
SLOTS = "slots"
COHORTS = "cohorts"
POOLS = "pools"
UNITS = "units"
SETTINGS = "settings"  # deployment-wide documents: `prices` (launchq.spec.prices)
SPEND = "spend"  # budget ledgers, one per scope and month (launchq.model.budgets)
ITEMS = "items"
NOTICES = "notices"  # one per notification: item, rule, outcome (launchq.model.notices)
# `waiting_items` reads past a head of backing-off items for this many extra pages of at least
# MIN_PAGE items: admission's 8 per round (or 1, "does anything wait ahead?") then sees ready
# items behind up to 32 that back off.
SKIPPED_PAGES = 4
MIN_PAGE = 8
MAX_SLOTS = 10_000  # max_jobs above this is treated as a configuration error, see put_queue

Clock = Callable[[], datetime]
FieldKey = str | tuple[str, ...]  # a top-level field, or a path into map fields


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Transition:
    """One state change, as appended to the item's history.

    `via` records an intermediate state in the same write: a failed attempt that is retried goes
    RUNNING -> FAILED -> QUEUED atomically, so a crash can never leave it FAILED and forgotten.
    `via_cause` explains the first step.
    """

    to: ItemState
    cause: str
    details: dict[str, Any] | None = None
    via: ItemState | None = None
    via_cause: str = ""


class TokenTaken(Conflict):
    """The creation-budget token a new item was to be created with is another create's."""


@dataclass(frozen=True)
class StoredDocument:
    """A document as read, with the version (update time) a conditional write is checked
    against. Used where the store hands out a whole document (builds)."""

    data: dict[str, Any]
    version: datetime | None


# What every record is read with, whatever a projection asks for: without them `from_document`
# fails (KeyError) instead of giving a partial record. The dashboard's queues page asked for
# (enqueued_at, reason) and answered 500 whenever an item waited.
IDENTITY_FIELDS = ("queue", "item_id", "state")


def projection(fields: Sequence[str]) -> list[str]:
    """`fields` plus the identity every record needs, each once, in order."""
    return [*IDENTITY_FIELDS, *(f for f in dict.fromkeys(fields) if f not in IDENTITY_FIELDS)]


def from_document(data: Mapping[str, Any], version: Any) -> ItemRecord:
    claim, job = data.get("claim"), data.get("job")
    return ItemRecord(
        queue=data["queue"],
        item_id=data["item_id"],
        state=ItemState(data["state"]),
        version=version,
        attempt=int(data.get("attempt") or 0),
        claim=Claim(claim["id"], claim["until"]) if claim else None,
        job=AttemptJob(**job) if job and job.get("name") else None,
        error=data.get("error"),
        slot=data.get("slot"),
        priority=int(data.get("priority") or 0),
        payload_hash=data.get("payload_hash"),
        job_body=data.get("job_body"),
        parent=data.get("parent"),
        project=data.get("project"),
        region=data.get("region"),
        reason=data.get("reason"),
        not_before=data.get("not_before"),
        needs_lookup=bool(data.get("needs_lookup")),
        cancel_requested=bool(data.get("cancel_requested")),
        cancel_reason=data.get("cancel_reason"),
        cancel_sent_at=data.get("cancel_sent_at"),
        enqueued_at=data.get("enqueued_at"),
        attempts=tuple(data.get("attempts") or ()),
        placement=None if data.get("placement") is None else int(data["placement"]),
        placements=tuple(data.get("placements") or ()),
        failed_placements=tuple(int(i) for i in data.get("failed_placements") or ()),
        units=tuple(str(u) for u in data.get("units") or ()),
        submitter=data.get("submitter") or _submitter(data.get("submitted_by")),
        sweep_of=data.get("sweep_of"),
        family=data.get("sweep"),
        expanded=int(data.get("expanded") or 0),
        stored=data,
    )


def _submitter(claimed: object) -> str | None:
    if isinstance(claimed, Mapping) and isinstance(claimed.get("value"), str):
        return str(claimed["value"])
    return None


def storage(changes: Mapping[str, Any]) -> dict[str, Any]:
    """`Changes` as stored values: claims and job references become maps."""
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if isinstance(value, Claim | AttemptJob):
            out[key] = asdict(value)
        else:
            out[key] = value
    return out


def backoff_from(document: Mapping[str, Any]) -> QueueBackoff | None:
    """The queue document's quota backoff, if any."""
    data = document.get(BACKOFF_FIELD)
    if not data:
        return None
    return QueueBackoff(
        until=data["until"],
        refusals=int(data.get("refusals") or 1),
        metric=str(data.get("metric") or ""),
        region=str(data.get("region") or ""),
    )


def slot_from(queue: str, slot_id: str, data: Mapping[str, Any], version: Any) -> Slot:
    return Slot(queue, slot_id, data.get("holder"), bool(data.get("retire")), version)


def unit_from(pool: str, unit_id: str, data: Mapping[str, Any], version: Any) -> Slot:
    queue = str(data.get("queue") or "")
    return Slot(queue, unit_id, data.get("holder"), bool(data.get("retire")), version, pool)


def split_unit(ref: str) -> tuple[str, str]:
    """`{pool}/{unit}` (an item's `units` entry) -> (pool, unit id)."""
    pool, _, unit = ref.rpartition("/")
    return pool, unit


def slot_id(index: int) -> str:
    # Zero-padded so the ids sort numerically in the console.
    return f"{index:05d}"


def check_max_jobs(max_jobs: int) -> None:
    if max_jobs > MAX_SLOTS:
        raise ValueError(f"max_jobs above {MAX_SLOTS} is not supported; use -1 (unlimited)")


def history_entry(
    current: ItemState | None,
    new: ItemState,
    at: datetime,
    cause: str,
    details: dict[str, Any] | None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "from": current.value if current else None,
        "to": new.value,
        "at": at,
        "cause": cause,
    }
    if details:
        entry.update(details)
    # ArrayUnion de-duplicates equal elements; a unique tag keeps two identical transitions
    # (e.g. two retries in the same millisecond) both in the history.
    entry["id"] = hashlib.sha1(repr((entry, at.timestamp())).encode()).hexdigest()[:12]
    return entry


def new_item_document(
    queue: str,
    item_id: str,
    state: ItemState,
    fields: Mapping[str, Any],
    cause: str,
    now: datetime,
    claim: Claim | None,
    take_slot: Slot | None,
    claim_cause: str,
) -> dict[str, Any]:
    """A new item's document; with `claim`, already moved QUEUED -> SUBMITTING."""
    history = [history_entry(None, state, now, cause, None)]
    document: dict[str, Any] = {**fields}
    if claim is not None:
        check_transition(state, ItemState.SUBMITTING)
        history.append(history_entry(state, ItemState.SUBMITTING, now, claim_cause, None))
        document.update(storage({"claim": claim}))
        document.update({"attempt": 1, "reason": None, "slot": take_slot and take_slot.id})
        state = ItemState.SUBMITTING
    document.update(
        {
            "state": state.value,
            "queue": queue,
            "item_id": item_id,
            "enqueued_at": now,
            "updated_at": now,
            "history": history,
        }
    )
    return document


def transition_entries(item: ItemRecord, change: Transition, now: datetime) -> list[dict[str, Any]]:
    """The history entries of `change` (two with `via`), each edge checked against the table."""
    entries = []
    start = item.state
    if change.via is not None:
        check_transition(item.state, change.via)
        entries.append(history_entry(item.state, change.via, now, change.via_cause, change.details))
        start = change.via
    check_transition(start, change.to)
    entries.append(history_entry(start, change.to, now, change.cause, change.details))
    return entries


def waiting_only(item: ItemRecord) -> None:
    """`transition_many` is for items that hold nothing: a slot, units or a charge would have
    to be released in the same write, which only `transition` does."""
    if item.state not in (ItemState.QUEUED, ItemState.HELD) or item.slot or item.units:
        raise ValueError(f"{item.doc_id} is {item.state}: transition it on its own")


def held_fields(
    item: ItemRecord,
    changes: Mapping[str, Any] | None,
    take_slot: Slot | None,
    release_slot: bool,
    take_units: Sequence[Slot],
    charge: Charge | None,
) -> tuple[dict[str, Any], Settlement | None]:
    """The item fields a transition writes for what the attempt holds, and the settlement its
    budget ledgers get (`launchq.model.budgets`): the slot, the cohort's quota units and the
    attempt's charge, recorded as it is claimed; as the release ends the attempt, cleared, the
    charge settled from the attempt's record (the one `changes` writes, else the stored one).
    Both stores write exactly these."""
    fields: dict[str, Any] = {}
    if take_slot is not None:
        fields["slot"] = take_slot.id
    elif release_slot:
        fields["slot"] = None
    if take_units:
        fields["units"] = [unit.ref for unit in take_units]
    elif release_slot and item.units:
        fields["units"] = []
    settled = None
    if charge is not None:
        fields["charge"] = charge.document()
    elif release_slot and item.stored.get("charge"):
        attempts = (changes or {}).get("attempts", item.attempts)
        settled = settlement(item.stored["charge"], item.attempt, attempts)
        fields["charge"] = None
    return fields, settled
