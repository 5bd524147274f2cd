"""Persistence: the only place launchq talks to Firestore. The data model is in
docs/data-model.md.

- `protocols`: what is kept, one typed protocol per kind (items, queues and slots, the
  creation budget and quota backoff, builds, the sweep leader) and `Store`, all of them.
- `base`: names, `Transition`, and the one conversion between documents and records.
- `firestore` (`FirestoreStore`, `connect`): the implementation the functions run, one module
  per kind (`items`, `queues`, `capacity`, `builds`, `leader`) on a shared client (`client`).
- `memory` (`MemoryStore`): the same protocols in memory, for fast unit tests; the contract
  tests (tests/integration/test_store_contract.py) hold both to the same behaviour.

Importing this package does not import Firestore: the units and the memory store do not pay
for the client library; only `launchq.store.firestore` and its parts do.
"""

from launchq.errors import Conflict
from launchq.model.records import item_doc_id
from launchq.store.base import (
    BACKOFF_FIELD,
    BUDGETS,
    BUILDS,
    ITEMS,
    LEASES,
    MAX_SLOTS,
    QUEUES,
    SLOTS,
    Clock,
    StoredDocument,
    TokenTaken,
    Transition,
    backoff_from,
    utcnow,
)
from launchq.store.protocols import (
    BuildStore,
    CapacityStore,
    ItemStore,
    LeaderStore,
    QueueStore,
    Store,
)

__all__ = [
    "BACKOFF_FIELD",
    "BUDGETS",
    "BUILDS",
    "ITEMS",
    "LEASES",
    "MAX_SLOTS",
    "QUEUES",
    "SLOTS",
    "BuildStore",
    "CapacityStore",
    "Clock",
    "Conflict",
    "ItemStore",
    "LeaderStore",
    "QueueStore",
    "Store",
    "StoredDocument",
    "TokenTaken",
    "Transition",
    "backoff_from",
    "item_doc_id",
    "utcnow",
]
