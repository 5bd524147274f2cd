"""Firestore persistence: queues, items, admission slots. The data model is in docs/data-model.md.

Collections (all in launchq's own project and database):

- `queues/{queue}`: the queue config as applied, plus `max_jobs` and `paused` lifted out.
- `queues/{queue}/slots/{n}`: one document per unit of `max_jobs` (none for unlimited queues).
  `holder` is the item doc id occupying it, or null. Holding a slot *is* admission: there are
  never more slot documents than `max_jobs`, so no number of concurrent dispatchers can exceed
  it. Each slot is written twice per job (take, release), far below Firestore's ~1 write/s per
  document, whereas a single per-queue counter would take every admission and completion.
- `items/{queue}~{item_id}`: one document per queue item (top level, so `ls` and the sweep query
  across queues without collection-group indexes).

Concurrency: every state change is a compare-and-swap, an atomic batch whose writes carry a
`last_update_time` precondition taken from the snapshot the decision was made on. That is an
optimistic transaction: it either commits whole or fails with FAILED_PRECONDITION, and a loser
simply re-reads. It is used instead of `@transactional` because Firestore's server SDK
transactions take pessimistic locks, and on the emulator concurrent transactions on one document
stall for ~30 s or fail with UNKNOWN (firebase-tools#2452) - exactly the 50-concurrent-deliveries
case launchq must handle. No side effect happens inside a compare-and-swap.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_document import DocumentSnapshot

from launchq.errors import Conflict
from launchq.records import (
    Changes,
    Claim,
    ItemRecord,
    JobRef,
    QueueBackoff,
    Slot,
    admission_order,
    item_doc_id,
)
from launchq.states import SLOT_STATES, ItemState, check_transition

__all__ = ["Conflict", "Store", "Transition", "item_doc_id", "utcnow"]

QUEUES = "queues"
LEASES = "leases"
BUDGETS = "budgets"
BACKOFF_FIELD = "capacity_backoff"
SLOTS = "slots"
ITEMS = "items"
MAX_SLOTS = 10_000  # max_jobs above this is treated as a configuration error, see put_queue
_DOCUMENT_ID = "__name__"  # a query's name for the document id (`FieldPath.document_id()`)

Clock = Callable[[], datetime]
Snapshot = DocumentSnapshot[firestore.DocumentReference]


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


class Store:
    def __init__(self, db: firestore.Client, clock: Clock = utcnow) -> None:
        self.db = db
        self.clock = clock

    # -- queues ---------------------------------------------------------------------------

    def queue_ref(self, queue: str) -> firestore.DocumentReference:
        return self.db.collection(QUEUES).document(queue)

    def get_queue(self, queue: str) -> dict[str, Any] | None:
        snap = self.queue_ref(queue).get()
        return snap.to_dict() if snap.exists else None

    def list_queues(self) -> list[dict[str, Any]]:
        return [s.to_dict() or {} for s in self.db.collection(QUEUES).stream()]

    def put_queue(self, name: str, document: dict[str, Any], max_jobs: int) -> None:
        """Write a queue and bring its slot documents to `max_jobs` (-1: unlimited, no slots).

        Growing adds free slots. Shrinking deletes free slots above the limit and marks held
        ones `retire`, so their holder's release deletes them: running jobs are never cut off.
        """
        if max_jobs > MAX_SLOTS:
            raise ValueError(f"max_jobs above {MAX_SLOTS} is not supported; use -1 (unlimited)")
        now = self.clock()
        self.queue_ref(name).set(
            {**document, "name": name, "max_jobs": max_jobs, "updated_at": now}
        )
        wanted = max(max_jobs, 0)
        slots = self.queue_ref(name).collection(SLOTS)
        existing = {snap.id: snap for snap in slots.stream()}
        writer = _BatchWriter(self.db)
        for index in range(wanted):
            ref = slots.document(_slot_id(index))
            if ref.id not in existing:
                writer.batch().create(ref, {"holder": None, "since": now})
            elif (existing[ref.id].to_dict() or {}).get("retire"):
                writer.batch().update(ref, {"retire": False})
        for slot_id, snap in existing.items():
            if int(slot_id) >= wanted:
                if (snap.to_dict() or {}).get("holder") is None:
                    writer.batch().delete(snap.reference)
                else:
                    writer.batch().update(snap.reference, {"retire": True})
        writer.flush()

    def free_slots(self, queue: str, limit: int) -> list[Slot]:
        query = (
            self.queue_ref(queue)
            .collection(SLOTS)
            .where(filter=firestore.FieldFilter("holder", "==", None))
            .limit(limit)
        )
        return [_slot(queue, snap) for snap in query.stream()]

    def held_slots(self, queue: str) -> list[Slot]:
        query = (
            self.queue_ref(queue)
            .collection(SLOTS)
            .where(filter=firestore.FieldFilter("holder", "!=", None))
        )
        return [_slot(queue, snap) for snap in query.stream()]

    def free_leaked_slot(self, slot: Slot) -> bool:
        """Free `slot` if its holder no longer holds a slot (or no longer exists).

        Holding a slot and being in a slot-holding state change together in one batch, so a
        mismatch is a leak (a bug, or a hand-edited document). The slot is freed only if it is
        unchanged since `slot` was read, so this can never race a claim.
        """
        if slot.holder is None:
            return False
        item = self.db.collection(ITEMS).document(slot.holder).get()
        if item.exists and ItemState((item.to_dict() or {})["state"]) in SLOT_STATES:
            return False
        ref = self._slot_ref(slot)
        batch = self.db.batch()
        option = self.db.write_option(last_update_time=slot.version)
        if slot.retire:
            batch.delete(ref, option=option)
        else:
            batch.update(ref, {"holder": None, "since": self.clock()}, option=option)
        try:
            self._commit(batch)
        except Conflict:
            return False
        return True

    def _slot_ref(self, slot: Slot) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = (
            self.queue_ref(slot.queue).collection(SLOTS).document(slot.id)
        )
        return ref

    def slot_holders(self, queue: str) -> dict[str, str | None]:
        return {
            s.id: (s.to_dict() or {}).get("holder")
            for s in self.queue_ref(queue).collection(SLOTS).stream()
        }

    # -- items ----------------------------------------------------------------------------

    def item_ref(self, queue: str, item_id: str) -> firestore.DocumentReference:
        return self.db.collection(ITEMS).document(item_doc_id(queue, item_id))

    def get_item(self, queue: str, item_id: str) -> ItemRecord | None:
        snap = self.item_ref(queue, item_id).get()
        return _record(snap) if snap.exists else None

    def item_document(self, queue: str, item_id: str) -> dict[str, Any] | None:
        """The stored document as it is, for display (`status --json`) and tests."""
        snap = self.item_ref(queue, item_id).get()
        return (snap.to_dict() or {}) if snap.exists else None

    def create_item(
        self,
        queue: str,
        item_id: str,
        state: ItemState,
        fields: Mapping[str, Any],
        cause: str,
        *,
        claim: Claim | None = None,
        take_slot: Slot | None = None,
        claim_cause: str = "",
        token: str | None = None,
        token_expire_at: datetime | None = None,
    ) -> ItemRecord | None:
        """Record a new item and return it; None if it already exists (a redelivery).

        `fields` are the new item's stored fields (the dispatcher's, already made storable).
        With `claim`, the item is recorded already admitted: QUEUED -> SUBMITTING in its first
        write, taking `take_slot` (if any) in the same atomic batch, conditioned on the slot
        being unchanged since it was read. Raises Conflict if the slot was taken meanwhile
        (nothing is written then). `token`: a creation-budget token document created in the
        same batch (no commit of its own); TokenTaken if another create has it.
        """
        now = self.clock()
        history = [_history(None, state, now, cause, None)]
        document: dict[str, Any] = {**fields}
        if claim is not None:
            check_transition(state, ItemState.SUBMITTING)
            history.append(_history(state, ItemState.SUBMITTING, now, claim_cause, None))
            document.update(_storage({"claim": claim}))
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
        ref = self.item_ref(queue, item_id)
        batch = self.db.batch()
        batch.create(ref, document)
        if take_slot is not None:
            holder = item_doc_id(queue, item_id)
            batch.update(
                self._slot_ref(take_slot),
                {"holder": holder, "since": now},
                option=self._unchanged(take_slot.version),
            )
        if token is not None:
            token_doc = {"taken_at": now, "expire_at": token_expire_at or now}
            batch.create(self.db.collection(BUDGETS).document(token), token_doc)
        try:
            results = list(batch.commit())
        except gexc.AlreadyExists as exc:
            # The item (a redelivery) or the token (another create's): only a read can tell,
            # and it is needed only on this rare path.
            if token is not None and not ref.get().exists:
                raise TokenTaken(token) from exc
            return None
        except (gexc.FailedPrecondition, gexc.NotFound, gexc.Aborted) as exc:
            raise Conflict(str(exc)) from exc
        return _from_document(document, results[0].update_time)

    def waiting_items(self, queue: str, limit: int) -> list[ItemRecord]:
        """QUEUED items of a queue in admission order (`launchq.records.admission_order`).

        Needs the composite index (queue ASC, state ASC, priority ASC, enqueued_at ASC), declared
        in firestore.indexes.json. Items backing off after a failure carry `not_before`; they are
        filtered here rather than in the query so the index stays one.
        """
        query = (
            self.db.collection(ITEMS)
            .where(filter=firestore.FieldFilter("queue", "==", queue))
            .where(filter=firestore.FieldFilter("state", "==", ItemState.QUEUED.value))
            .order_by("priority")
            .order_by("enqueued_at")
            .limit(limit)
        )
        return admission_order([_record(snap) for snap in query.stream()], self.clock())

    def items_in_states(
        self,
        states: Iterable[ItemState],
        queue: str | None = None,
        fields: Sequence[str] | None = None,
    ) -> Iterator[ItemRecord]:
        """Items in any of `states` (at most 30, Firestore's `in` limit).

        `fields` projects the read: the sweep reads 10,000 active items a minute and needs none
        of their job bodies or histories.
        """
        values = [s.value for s in states]
        query = self.db.collection(ITEMS).where(filter=firestore.FieldFilter("state", "in", values))
        if queue is not None:
            query = query.where(filter=firestore.FieldFilter("queue", "==", queue))
        if fields is not None:
            # A record is its identity plus what was asked for: a projection without these
            # would make `_from_document` fail (KeyError) instead of giving a partial record.
            identity = ["queue", "item_id", "state"]
            query = query.select([*identity, *(f for f in fields if f not in identity)])
        return (_record(snap) for snap in query.stream())

    def recent_items(
        self,
        queue: str | None,
        states: Sequence[ItemState],
        limit: int,
        after: tuple[datetime, str] | None = None,
    ) -> list[ItemRecord]:
        """Newest first, optionally of one queue and in some states (the CLI's `ls`, the
        dashboard's item pages).

        Ties on `enqueued_at` are ordered by document id, descending: the order every composite
        index on `enqueued_at desc` already keeps (an index ends with the document id in its
        last field's direction), so no index is added. `after` is the `(enqueued_at, doc_id)` of
        the last item of the previous page; the query starts right behind it, so a page reads
        `limit` documents at any depth and equal timestamps are neither repeated nor skipped.
        """
        query: Any = self.db.collection(ITEMS)
        if queue:
            query = query.where(filter=firestore.FieldFilter("queue", "==", queue))
        if states:
            values = [s.value for s in states]
            query = query.where(filter=firestore.FieldFilter("state", "in", values))
        query = query.order_by("enqueued_at", direction=firestore.Query.DESCENDING).order_by(
            _DOCUMENT_ID, direction=firestore.Query.DESCENDING
        )
        if after is not None:
            at, doc_id = after
            query = query.start_after({"enqueued_at": at, _DOCUMENT_ID: doc_id})
        return [_record(snap) for snap in query.limit(limit).stream()]

    def items_with_id(self, item_id: str, limit: int = 10) -> list[ItemRecord]:
        """Items called `item_id` in any queue (the CLI resolves an id without its queue)."""
        query = (
            self.db.collection(ITEMS)
            .where(filter=firestore.FieldFilter("item_id", "==", item_id))
            .limit(limit)
        )
        return [_record(snap) for snap in query.stream()]

    def count_waiting(self, queue: str) -> int:
        query = (
            self.db.collection(ITEMS)
            .where(filter=firestore.FieldFilter("queue", "==", queue))
            .where(filter=firestore.FieldFilter("state", "==", ItemState.QUEUED.value))
        )
        return _count(query)

    def count_holding_slots(self, queue: str) -> int:
        query = (
            self.db.collection(ITEMS)
            .where(filter=firestore.FieldFilter("queue", "==", queue))
            .where(filter=firestore.FieldFilter("state", "in", [s.value for s in SLOT_STATES]))
        )
        return _count(query)

    # -- capacity (launchq.capacity) -------------------------------------------------------

    def take_token(self, token_ids: Sequence[str], expire_at: datetime) -> bool:
        """Create the first of `token_ids` nobody has created yet; False if all exist.

        Each token document is written exactly once (its `create()`), and `expire_at` lets a
        Firestore TTL policy delete it later.
        """
        budgets = self.db.collection(BUDGETS)
        now = self.clock()
        for token_id in token_ids:
            try:
                budgets.document(token_id).create({"taken_at": now, "expire_at": expire_at})
            except (gexc.AlreadyExists, gexc.Conflict):
                continue
            return True
        return False

    def update_backoff(
        self, queue: str, change: Callable[[QueueBackoff | None], QueueBackoff]
    ) -> QueueBackoff | None:
        """Compare-and-swap the queue's quota backoff; None if the queue changed meanwhile (the
        other writer's backoff stands)."""
        ref = self.queue_ref(queue)
        snap = ref.get()
        if not snap.exists:
            return None
        current = backoff_from(snap.to_dict() or {})
        new = change(current)
        if new == current:
            return current
        batch = self.db.batch()
        batch.update(ref, {BACKOFF_FIELD: asdict(new)}, option=self._unchanged(snap.update_time))
        try:
            self._commit(batch)
        except Conflict:
            return None
        return new

    def clear_backoff(self, queue: str) -> None:
        with contextlib.suppress(gexc.NotFound):
            self.queue_ref(queue).update({BACKOFF_FIELD: firestore.DELETE_FIELD})

    def set_paused(self, queue: str, paused: bool) -> None:
        self.queue_ref(queue).update({"paused": paused, "updated_at": self.clock()})

    # -- leases -------------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take `leases/{name}` unless another holder's lease is still running.

        Compare-and-swap like everything else: two sweeps started together cannot both win.
        """
        ref = self.db.collection(LEASES).document(name)
        snap = ref.get()
        now = self.clock()
        data = snap.to_dict() or {}
        if data.get("holder") not in (None, holder) and data.get("until", now) > now:
            return False
        lease = {"holder": holder, "until": now + timedelta(seconds=seconds), "taken_at": now}
        batch = self.db.batch()
        if snap.exists:
            batch.update(ref, lease, option=self._unchanged(snap.update_time))
        else:
            batch.create(ref, lease)
        try:
            self._commit(batch)
        except (Conflict, gexc.AlreadyExists, gexc.Conflict):
            return False
        return True

    def release_lease(self, name: str, holder: str) -> None:
        ref = self.db.collection(LEASES).document(name)
        snap = ref.get()
        if snap.exists and (snap.to_dict() or {}).get("holder") == holder:
            batch = self.db.batch()
            # Clearing the holder frees it whatever the clocks say (not `until = now`, which a
            # sweeper with a skewed clock would turn into a lease that is still running).
            batch.update(
                ref,
                {"holder": None, "released_at": self.clock()},
                option=self._unchanged(snap.update_time),
            )
            with contextlib.suppress(Conflict):  # somebody took it over: theirs now
                self._commit(batch)

    # -- compare-and-swap -----------------------------------------------------------------

    def transition(
        self,
        item: ItemRecord,
        change: Transition,
        changes: Changes | None = None,
        *,
        take_slot: Slot | None = None,
        release_slot: bool = False,
    ) -> ItemRecord:
        """Move an item to `change.to` if nobody changed it since `item` was read.

        Taking or releasing a slot happens in the same atomic batch, so a slot is held exactly
        while the item is in a slot-holding state. Raises Conflict when a precondition fails.
        Returns the item as written, with the commit's update time: the next compare-and-swap
        can start from it without reading the document again.
        """
        now = self.clock()
        entries = []
        start = item.state
        if change.via is not None:
            check_transition(item.state, change.via)
            entries.append(_history(item.state, change.via, now, change.via_cause, change.details))
            start = change.via
        check_transition(start, change.to)
        entries.append(_history(start, change.to, now, change.cause, change.details))
        update: dict[str, Any] = {
            **_storage(changes or {}),
            "state": change.to.value,
            "updated_at": now,
            "history": firestore.ArrayUnion(entries),
        }
        if take_slot is not None:
            update["slot"] = take_slot.id
        elif release_slot:
            update["slot"] = None
        ref = self.item_ref(item.queue, item.item_id)
        batch = self.db.batch()
        batch.update(ref, update, option=self._unchanged(item.version))
        if take_slot is not None:
            batch.update(
                self._slot_ref(take_slot),
                {"holder": item.doc_id, "since": now},
                option=self._unchanged(take_slot.version),
            )
        if release_slot and item.slot is not None:
            self._release(batch, item, now)
        results = self._commit(batch)
        history = [*item.stored.get("history", []), *entries]
        written = {**item.stored, **update, "history": history}
        return _from_document(written, results[0].update_time)

    def touch(self, item: ItemRecord, changes: Changes) -> ItemRecord:
        """Update fields without a state change, under the same precondition."""
        update = {**_storage(changes), "updated_at": self.clock()}
        batch = self.db.batch()
        ref = self.item_ref(item.queue, item.item_id)
        batch.update(ref, update, option=self._unchanged(item.version))
        results = self._commit(batch)
        return _from_document({**item.stored, **update}, results[0].update_time)

    def _release(self, batch: firestore.WriteBatch, item: ItemRecord, now: datetime) -> None:
        assert item.slot is not None
        slot_ref = self.queue_ref(item.queue).collection(SLOTS).document(item.slot)
        slot = slot_ref.get()
        if not slot.exists or (slot.to_dict() or {}).get("holder") != item.doc_id:
            return  # already released (a repaired double release is harmless)
        if (slot.to_dict() or {}).get("retire"):
            batch.delete(slot_ref, option=self._unchanged(slot.update_time))
        else:
            update = {"holder": None, "since": now}
            batch.update(slot_ref, update, option=self._unchanged(slot.update_time))

    def _unchanged(self, version: datetime | None) -> Any:
        return self.db.write_option(last_update_time=version)

    @staticmethod
    def _commit(batch: firestore.WriteBatch) -> list[Any]:
        try:
            return list(batch.commit())
        except (gexc.FailedPrecondition, gexc.NotFound, gexc.Aborted) as exc:
            raise Conflict(str(exc)) from exc


# -- the one conversion between documents and records --------------------------------------


def _record(snap: Snapshot) -> ItemRecord:
    return _from_document(snap.to_dict() or {}, snap.update_time)


def _from_document(data: Mapping[str, Any], version: Any) -> ItemRecord:
    claim, job = data.get("claim"), data.get("job")
    return ItemRecord(
        queue=data["queue"],
        item_id=data["item_id"],
        state=ItemState(data["state"]),
        version=version,
        attempt=int(data.get("attempt") or 0),
        claim=Claim(claim["id"], claim["until"]) if claim else None,
        job=JobRef(**job) if job and job.get("name") else None,
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
        stored=data,
    )


def _storage(changes: Mapping[str, Any]) -> dict[str, Any]:
    """`Changes` as Firestore values: claims and job references become maps."""
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if isinstance(value, Claim | JobRef):
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


def _slot(queue: str, snap: Snapshot) -> Slot:
    data = snap.to_dict() or {}
    return Slot(queue, snap.id, data.get("holder"), bool(data.get("retire")), snap.update_time)


def _count(query: Any) -> int:
    # firestore's stubs declare count() as returning a class, not an instance.
    result: Any = cast(Any, query).count().get()
    return int(result[0][0].value)


def _slot_id(index: int) -> str:
    # Zero-padded so the ids sort numerically in the console.
    return f"{index:05d}"


def _history(
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


class _BatchWriter:
    """Plain (unconditional) writes in batches below Firestore's 500-writes-per-batch limit."""

    LIMIT = 450

    def __init__(self, db: firestore.Client) -> None:
        self._db = db
        self._batch = db.batch()
        self._count = 0

    def batch(self) -> firestore.WriteBatch:
        if self._count == self.LIMIT:
            self.flush()
        self._count += 1
        return self._batch

    def flush(self) -> None:
        if self._count:
            self._batch.commit()
        self._batch, self._count = self._db.batch(), 0
