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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import quote

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_document import DocumentSnapshot

from launchq.states import SLOT_STATES, ItemState, check_transition

QUEUES = "queues"
LEASES = "leases"
SLOTS = "slots"
ITEMS = "items"
MAX_SLOTS = 10_000  # max_jobs above this is treated as a configuration error, see put_queue

Clock = Callable[[], datetime]
Snapshot = DocumentSnapshot[firestore.DocumentReference]


def utcnow() -> datetime:
    return datetime.now(UTC)


def item_doc_id(queue: str, item_id: str) -> str:
    """Doc ids cannot contain '/', so the item id is percent-encoded; `~` separates the queue."""
    return f"{queue}~{quote(item_id, safe='')}"


class Conflict(Exception):
    """A compare-and-swap lost against a concurrent writer: re-read and decide again."""


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

    def free_slots(self, queue: str, limit: int) -> list[Snapshot]:
        query = (
            self.queue_ref(queue)
            .collection(SLOTS)
            .where(filter=firestore.FieldFilter("holder", "==", None))
            .limit(limit)
        )
        return list(query.stream())

    def held_slots(self, queue: str) -> list[Snapshot]:
        query = (
            self.queue_ref(queue)
            .collection(SLOTS)
            .where(filter=firestore.FieldFilter("holder", "!=", None))
        )
        return list(query.stream())

    def free_leaked_slot(self, slot: Snapshot) -> bool:
        """Free `slot` if its holder no longer holds a slot (or no longer exists).

        Holding a slot and being in a slot-holding state change together in one batch, so a
        mismatch is a leak (a bug, or a hand-edited document). The slot is freed only if it is
        unchanged since `slot` was read, so this can never race a claim.
        """
        data = slot.to_dict() or {}
        holder = data.get("holder")
        if holder is None:
            return False
        item = self.db.collection(ITEMS).document(holder).get()
        if item.exists and ItemState((item.to_dict() or {})["state"]) in SLOT_STATES:
            return False
        batch = self.db.batch()
        if data.get("retire"):
            batch.delete(slot.reference, option=self._unchanged(slot))
        else:
            update = {"holder": None, "since": self.clock()}
            batch.update(slot.reference, update, option=self._unchanged(slot))
        try:
            self._commit(batch)
        except Conflict:
            return False
        return True

    def slot_holders(self, queue: str) -> dict[str, str | None]:
        return {
            s.id: (s.to_dict() or {}).get("holder")
            for s in self.queue_ref(queue).collection(SLOTS).stream()
        }

    # -- items ----------------------------------------------------------------------------

    def item_ref(self, queue: str, item_id: str) -> firestore.DocumentReference:
        return self.db.collection(ITEMS).document(item_doc_id(queue, item_id))

    def get_item(self, queue: str, item_id: str) -> Snapshot:
        return self.item_ref(queue, item_id).get()

    def create_item(
        self, queue: str, item_id: str, fields: dict[str, Any], cause: str
    ) -> Snapshot | None:
        """Record a new item and return it; None if it already exists (a redelivery)."""
        now = self.clock()
        state = ItemState(fields["state"])
        document = {
            **fields,
            "queue": queue,
            "item_id": item_id,
            "enqueued_at": now,
            "updated_at": now,
            "history": [_history(None, state, now, cause, None)],
        }
        ref = self.item_ref(queue, item_id)
        try:
            result = ref.create(document)
        except gexc.AlreadyExists:
            return None
        return _written(ref, document, result.update_time)

    def waiting_items(self, queue: str, limit: int) -> list[Snapshot]:
        """QUEUED items of a queue in admission order: priority rank, then enqueue time.

        Needs the composite index (queue ASC, state ASC, priority ASC, enqueued_at ASC), declared
        in firestore.indexes.json. Items backing off after a failure carry `not_before`; they are
        filtered here rather than in the query so the index stays one.
        """
        now = self.clock()
        query = (
            self.db.collection(ITEMS)
            .where(filter=firestore.FieldFilter("queue", "==", queue))
            .where(filter=firestore.FieldFilter("state", "==", ItemState.QUEUED.value))
            .order_by("priority")
            .order_by("enqueued_at")
            .limit(limit)
        )
        ready = []
        for snap in query.stream():
            not_before = (snap.to_dict() or {}).get("not_before")
            if not_before is None or not_before <= now:
                ready.append(snap)
        return ready

    def items_in_states(
        self,
        states: Iterable[ItemState],
        queue: str | None = None,
        fields: Sequence[str] | None = None,
    ) -> Iterator[Snapshot]:
        """Items in any of `states` (at most 30, Firestore's `in` limit).

        `fields` projects the read: the sweep reads 10,000 active items a minute and needs none
        of their job bodies or histories.
        """
        values = [s.value for s in states]
        query = self.db.collection(ITEMS).where(filter=firestore.FieldFilter("state", "in", values))
        if queue is not None:
            query = query.where(filter=firestore.FieldFilter("queue", "==", queue))
        if fields is not None:
            query = query.select(list(fields))
        return iter(query.stream())

    def count_holding_slots(self, queue: str) -> int:
        query = (
            self.db.collection(ITEMS)
            .where(filter=firestore.FieldFilter("queue", "==", queue))
            .where(filter=firestore.FieldFilter("state", "in", [s.value for s in SLOT_STATES]))
        )
        # firestore's stubs declare count() as returning a class, not an instance.
        result: Any = cast(Any, query).count().get()
        return int(result[0][0].value)

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
            batch.update(ref, lease, option=self._unchanged(snap))
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
                ref, {"holder": None, "released_at": self.clock()}, option=self._unchanged(snap)
            )
            with contextlib.suppress(Conflict):  # somebody took it over: theirs now
                self._commit(batch)

    # -- compare-and-swap -----------------------------------------------------------------

    def transition(
        self,
        item: Snapshot,
        change: Transition,
        fields: dict[str, Any] | None = None,
        *,
        take_slot: Snapshot | None = None,
        release_slot: bool = False,
    ) -> Snapshot:
        """Move an item to `change.to` if nobody changed it since `item` was read.

        Taking or releasing a slot happens in the same atomic batch, so a slot is held exactly
        while the item is in a slot-holding state. Raises Conflict when a precondition fails.
        Returns the item as written, with the commit's update time: the next compare-and-swap
        can start from it without reading the document again.
        """
        data = item.to_dict() or {}
        current = ItemState(data["state"])
        now = self.clock()
        entries = []
        start = current
        if change.via is not None:
            check_transition(current, change.via)
            entries.append(_history(current, change.via, now, change.via_cause, change.details))
            start = change.via
        check_transition(start, change.to)
        entries.append(_history(start, change.to, now, change.cause, change.details))
        update: dict[str, Any] = {
            **(fields or {}),
            "state": change.to.value,
            "updated_at": now,
            "history": firestore.ArrayUnion(entries),
        }
        if take_slot is not None:
            update["slot"] = take_slot.id
        elif release_slot:
            update["slot"] = None
        batch = self.db.batch()
        batch.update(item.reference, update, option=self._unchanged(item))
        if take_slot is not None:
            batch.update(
                take_slot.reference,
                {"holder": item.id, "since": now},
                option=self._unchanged(take_slot),
            )
        if release_slot and data.get("slot") is not None:
            self._release(batch, data, item.id, now)
        results = self._commit(batch)
        written = {**data, **update, "history": [*data.get("history", []), *entries]}
        return _written(item.reference, written, results[0].update_time)

    def touch(self, item: Snapshot, fields: dict[str, Any]) -> Snapshot:
        """Update fields without a state change, under the same precondition."""
        update = {**fields, "updated_at": self.clock()}
        batch = self.db.batch()
        batch.update(item.reference, update, option=self._unchanged(item))
        results = self._commit(batch)
        return _written(
            item.reference, {**(item.to_dict() or {}), **update}, results[0].update_time
        )

    def _release(
        self, batch: firestore.WriteBatch, data: dict[str, Any], holder: str, now: datetime
    ) -> None:
        slot_ref = self.queue_ref(data["queue"]).collection(SLOTS).document(data["slot"])
        slot = slot_ref.get()
        if not slot.exists or (slot.to_dict() or {}).get("holder") != holder:
            return  # already released (a repaired double release is harmless)
        if (slot.to_dict() or {}).get("retire"):
            batch.delete(slot_ref, option=self._unchanged(slot))
        else:
            batch.update(slot_ref, {"holder": None, "since": now}, option=self._unchanged(slot))

    def _unchanged(self, snap: Snapshot) -> Any:
        return self.db.write_option(last_update_time=snap.update_time)

    @staticmethod
    def _commit(batch: firestore.WriteBatch) -> list[Any]:
        try:
            return list(batch.commit())
        except (gexc.FailedPrecondition, gexc.NotFound, gexc.Aborted) as exc:
            raise Conflict(str(exc)) from exc


def _written(ref: firestore.DocumentReference, data: dict[str, Any], update_time: Any) -> Snapshot:
    """A snapshot of what was just written, as a read would return it (same update time)."""
    return DocumentSnapshot(
        ref, data, exists=True, read_time=update_time, create_time=None, update_time=update_time
    )


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
