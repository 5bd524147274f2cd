"""The dashboard's pages on the Firestore emulator while items wait: a paused queue, a queue
backing off on a Vertex quota, items waiting for a slot. Every page and JSON endpoint answers,
and each waiting item's reason is on the queues page and on the items page.

(The queues page used to answer 500 as soon as one item was QUEUED: its projected read of the
waiting items dropped the fields every record needs.)
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from google.cloud import firestore

from launchq.records import quota_reason
from launchq.states import ItemState
from launchq.store import BACKOFF_FIELD, Store
from launchq_cli.common import Backends
from launchq_ui.app import create_app

pytestmark = pytest.mark.integration


class _StoreBackends(Backends):
    """The CLI's backends with the test's Store."""

    def __init__(self, store: Store) -> None:
        super().__init__(project="unused")
        self._store = store

    @property
    def store(self) -> Store:
        return self._store


def _waiting(store: Store, queue: str, item_id: str, reason: str, **fields: object) -> None:
    store.create_item(
        queue, item_id, ItemState.QUEUED, {"priority": 2, "reason": reason, **fields}, "accepted"
    )


def test_a_projected_read_gives_whole_records(firestore_db: firestore.Client) -> None:
    store = Store(firestore_db)
    _waiting(store, "q", "one", "waiting for a free slot")
    records = list(store.items_in_states([ItemState.QUEUED], queue="q", fields=["enqueued_at"]))
    assert [(r.queue, r.item_id, r.state) for r in records] == [("q", "one", ItemState.QUEUED)]
    assert records[0].stored.get("enqueued_at") is not None
    assert "priority" not in records[0].stored  # still a projection


def test_pages_answer_and_show_why_items_wait(firestore_db: firestore.Client) -> None:
    store = Store(firestore_db)
    store.put_queue("paused", {"config": {}, "paused": True}, 1)
    store.put_queue("quota", {"config": {}}, 2)
    store.put_queue("busy", {"config": {}}, 1)
    _waiting(store, "paused", "p1", "queue paused", display_name="first try")
    _waiting(store, "paused", "p2", "waiting for a free slot")  # paused after it arrived
    _waiting(store, "quota", "q1", "waiting for a free slot")
    until = store.clock() + timedelta(minutes=5)
    backoff = {"until": until, "refusals": 1, "metric": "custom_model_training_cpus"}
    store.queue_ref("quota").update({BACKOFF_FIELD: {**backoff, "region": "us-central1"}})
    _waiting(store, "busy", "b1", "waiting for a free slot")
    client = create_app(_StoreBackends(store)).test_client()

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
