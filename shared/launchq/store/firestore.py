"""The store on Firestore: every part (items, queues and slots, capacity, builds, the sweep
leader) on one client and clock, as the one object `launchq.wiring` builds. The data model is in
docs/data-model.md; the concurrency rules in `launchq.store.client`."""

from __future__ import annotations

from google.cloud import firestore

from launchq.store.base import Clock, utcnow
from launchq.store.builds import FirestoreBuilds
from launchq.store.capacity import FirestoreCapacity
from launchq.store.client import client
from launchq.store.cohorts import FirestoreCohorts
from launchq.store.items import FirestoreItems
from launchq.store.leader import FirestoreLeader
from launchq.store.notices import FirestoreNotices
from launchq.store.protocols import Store
from launchq.store.queues import FirestoreQueues
from launchq.store.spend import FirestoreSpend

__all__ = ["FirestoreStore", "client", "connect"]


class FirestoreStore(
    FirestoreItems,
    FirestoreQueues,
    FirestoreCapacity,
    FirestoreCohorts,
    FirestoreSpend,
    FirestoreBuilds,
    FirestoreNotices,
    FirestoreLeader,
):
    """All of `launchq.store.Store` on one Firestore client (`db`)."""


def connect(project: str, database: str = "(default)", clock: Clock = utcnow) -> FirestoreStore:
    """The store on a new client for `project`'s `database` (the emulator when
    FIRESTORE_EMULATOR_HOST is set)."""
    db: firestore.Client = client(project, database)
    return FirestoreStore(db, clock)


def _conforms(store: FirestoreStore) -> Store:
    return store  # mypy checks here that FirestoreStore is a whole Store
