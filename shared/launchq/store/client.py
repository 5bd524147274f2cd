"""The Firestore client and what every Firestore-backed part of the store shares: document
references, the update-time precondition, and commits that turn a lost race into `Conflict`.

Concurrency: every state change is a compare-and-swap, an atomic batch whose writes carry a
`last_update_time` precondition taken from the snapshot the decision was made on. That is an
optimistic transaction: it either commits whole or fails with FAILED_PRECONDITION, and a loser
simply re-reads. It is used instead of `@transactional` because Firestore's server SDK
transactions take pessimistic locks, and on the emulator concurrent transactions on one document
stall for ~30 s or fail with UNKNOWN (firebase-tools#2452) - exactly the 50-concurrent-deliveries
case launchq must handle. No side effect happens inside a compare-and-swap.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_document import DocumentSnapshot

from launchq.errors import Conflict
from launchq.model.records import Slot, item_doc_id
from launchq.store.base import ITEMS, POOLS, QUEUES, SLOTS, UNITS, Clock, utcnow

Snapshot = DocumentSnapshot[firestore.DocumentReference]
# Lost races and vanished documents: a compare-and-swap that did not apply.
CONFLICTS = (gexc.FailedPrecondition, gexc.NotFound, gexc.Aborted)
EXISTS = (gexc.AlreadyExists, gexc.Conflict)


def client(project: str, database: str = "(default)") -> firestore.Client:
    """A Firestore client for launchq's project and database (the emulator when
    FIRESTORE_EMULATOR_HOST is set)."""
    return firestore.Client(project=project, database=database)


class FirestoreBase:
    """The client and clock every part of the Firestore store is built on."""

    def __init__(self, db: firestore.Client, clock: Clock = utcnow) -> None:
        self.db = db
        self.clock = clock

    def queue_ref(self, queue: str) -> firestore.DocumentReference:
        return self.db.collection(QUEUES).document(queue)

    def item_ref(self, queue: str, item_id: str) -> firestore.DocumentReference:
        return self.db.collection(ITEMS).document(item_doc_id(queue, item_id))

    def _slot_ref(self, slot: Slot) -> firestore.DocumentReference:
        """A queue's slot, or with `pool` one unit of a cohort's quota."""
        parent = (
            self.db.collection(POOLS).document(slot.pool)
            if slot.pool is not None
            else self.queue_ref(slot.queue)
        )
        ref: firestore.DocumentReference = parent.collection(
            UNITS if slot.pool is not None else SLOTS
        ).document(slot.id)
        return ref

    def _unchanged(self, version: datetime | None) -> Any:
        return self.db.write_option(last_update_time=version)

    @staticmethod
    def _commit(batch: firestore.WriteBatch) -> list[Any]:
        try:
            return list(batch.commit())
        except CONFLICTS as exc:
            raise Conflict(str(exc)) from exc


def count(query: Any) -> int:
    # firestore's stubs declare count() as returning a class, not an instance.
    result: Any = cast(Any, query).count().get()
    return int(result[0][0].value)
