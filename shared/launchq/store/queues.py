"""Queues and their admission slots on Firestore.

- `queues/{queue}`: the queue config as applied, plus `max_jobs` and `paused` lifted out.
- `queues/{queue}/slots/{n}`: one document per unit of `max_jobs` (none for unlimited queues).
  `holder` is the item doc id occupying it, or null. Holding a slot *is* admission: there are
  never more slot documents than `max_jobs`, so no number of concurrent dispatchers can exceed
  it. Each slot is written twice per job (take, release), far below Firestore's ~1 write/s per
  document, whereas a single per-queue counter would take every admission and completion.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from launchq.errors import Conflict
from launchq.model.records import Slot
from launchq.model.states import SLOT_STATES, ItemState
from launchq.store.base import ITEMS, QUEUES, SLOTS, check_max_jobs, slot_from, slot_id
from launchq.store.client import FirestoreBase, Snapshot


def _slot(queue: str, snap: Snapshot) -> Slot:
    return slot_from(queue, snap.id, snap.to_dict() or {}, snap.update_time)


class FirestoreQueues(FirestoreBase):
    """`launchq.store.protocols.QueueStore`: queue documents and their slot documents
    (`queues/{name}/slots/{n}`, one per `max_jobs`)."""

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
        check_max_jobs(max_jobs)
        now = self.clock()
        self.queue_ref(name).set(
            {**document, "name": name, "max_jobs": max_jobs, "updated_at": now}
        )
        writer = BatchWriter(self.db)
        resize(writer, self.queue_ref(name).collection(SLOTS), max(max_jobs, 0), {"since": now})
        writer.flush()

    def set_paused(self, queue: str, paused: bool) -> None:
        self.queue_ref(queue).update({"paused": paused, "updated_at": self.clock()})

    def set_submitter_usage(self, queue: str, usage: Mapping[str, Any]) -> None:
        """The queue's `submitter_usage` map, whole (the sweep leader, at most once a second)."""
        with contextlib.suppress(gexc.NotFound):  # deleted meanwhile: nothing to keep
            self.queue_ref(queue).update({"submitter_usage": dict(usage)})

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
        option = self._unchanged(slot.version)
        free: dict[str, Any] = {"holder": None, "since": self.clock()}
        if slot.pool is not None:
            free["queue"] = None  # a cohort's quota unit (launchq.store.cohorts)
        if slot.retire:
            batch.delete(ref, option=option)
        else:
            batch.update(ref, free, option=option)
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


def resize(writer: BatchWriter, collection: Any, wanted: int, free: dict[str, Any]) -> None:
    """Bring a collection of slot-like documents (`00000`, `00001`, ...: a queue's slots, a
    quota's units) to `wanted`. Growing creates free ones (`holder` null, plus `free`);
    shrinking deletes free ones above the limit and marks held ones `retire`, so their holder's
    release deletes them: a running job is never cut off."""
    existing = {snap.id: snap for snap in collection.stream()}
    for index in range(wanted):
        ref = collection.document(slot_id(index))
        if ref.id not in existing:
            writer.batch().create(ref, {"holder": None, **free})
        elif (existing[ref.id].to_dict() or {}).get("retire"):
            writer.batch().update(ref, {"retire": False})
    for existing_id, snap in existing.items():
        if int(existing_id) >= wanted:
            if (snap.to_dict() or {}).get("holder") is None:
                writer.batch().delete(snap.reference)
            else:
                writer.batch().update(snap.reference, {"retire": True})


class BatchWriter:
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
