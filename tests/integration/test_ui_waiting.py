"""The dashboard's pages on the Firestore emulator while items wait: a paused queue, a queue
backing off on a Vertex quota, items waiting for a slot. Every page and JSON endpoint answers,
and each waiting item's reason is on the queues page and on the items page.

(The queues page used to answer 500 as soon as one item was QUEUED: its projected read of the
waiting items dropped the fields every record needs.)
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from google.cloud import firestore

from launchq.model.reasons import quota_reason
from launchq.model.records import QueueBackoff
from launchq.model.states import ItemState
from launchq.store import Store
from launchq.store.firestore import FirestoreStore
from launchq.store.memory import MemoryStore
from launchq_client.backends import Backends
from launchq_ui.app import create_app

pytestmark = pytest.mark.integration


@pytest.fixture(params=["memory", "firestore"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """The pages on the in-memory store and on the emulator: the projection that failed was a
    Firestore one."""
    if request.param == "memory":
        yield MemoryStore()
        return
    db: firestore.Client = request.getfixturevalue("firestore_db")
    yield FirestoreStore(db)


def _waiting(store: Store, queue: str, item_id: str, reason: str, **fields: object) -> None:
    created = store.create_item(
        queue, item_id, ItemState.QUEUED, {"priority": 2, "reason": reason, **fields}, "accepted"
    )
    assert created is not None


def test_pages_answer_and_show_why_items_wait(store: Store) -> None:
    store.put_queue("paused", {"config": {}, "paused": True}, 1)
    store.put_queue("quota", {"config": {}}, 2)
    store.put_queue("busy", {"config": {}}, 1)
    _waiting(store, "paused", "p1", "queue paused", display_name="first try")
    _waiting(store, "paused", "p2", "waiting for a free slot")  # paused after it arrived
    _waiting(store, "quota", "q1", "waiting for a free slot")
    until = store.clock() + timedelta(minutes=5)
    metric = "custom_model_training_cpus"
    assert store.update_backoff("quota", lambda _: QueueBackoff(until, 1, metric, "us-central1"))
    # `busy`'s one slot is held by a running job: its waiting item waits for a free slot.
    [slot] = store.free_slots("busy", 1)
    holder = store.create_item(
        "busy", "running", ItemState.SUBMITTING, {"priority": 2}, "accepted", take_slot=slot
    )
    assert holder is not None
    _waiting(store, "busy", "b1", "waiting for a free slot")
    client = create_app(Backends(project="unused", store=store)).test_client()

    page = client.get("/")
    assert page.status_code == 200, page.get_data(as_text=True)[-2000:]
    api = client.get("/api/queues")
    assert api.status_code == 200
    reasons = {row["name"]: row["reasons"] for row in api.get_json()}
    quota = quota_reason("custom_model_training_cpus", "us-central1")
    assert reasons == {
        "busy": [["waiting for a free slot", 1]],
        "paused": [["queue paused", 2]],
        "quota": [[quota, 1]],
    }
    html = page.get_data(as_text=True)
    for reason in ("queue paused (2)", f"{quota} (1)", "waiting for a free slot (1)"):
        assert reason in html

    for queue, reason in (("paused", "queue paused"), ("quota", quota)):
        items = client.get(f"/queues/{queue}")
        assert items.status_code == 200
        assert reason in items.get_data(as_text=True)
        rows = client.get(f"/api/queues/{queue}/items").get_json()["items"]
        assert {r["reason"] for r in rows} == {reason}
        assert {r["priority_name"] for r in rows} == {"medium"}
    one = client.get("/api/queues/paused/items/p1").get_json()
    assert (one["reason"], one["display_name"], one["links"]) == ("queue paused", "first try", [])
