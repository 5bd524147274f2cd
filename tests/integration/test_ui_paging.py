"""The dashboard's item pages against the Firestore emulator, deep: 2,600 items of one queue,
seven to a timestamp (or, for some, seven microseconds apart), walked page by page through the
cursor each page hands out.

Every item appears exactly once, in the query's order (newest first, ties by document id),
well past the 1,000 items offset paging used to stop at, and every page's query streams at most
`PAGE_SIZE + 1` documents: counted on the Firestore client's `Query.stream`, the one way a
query's documents reach launchq.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import pytest
from flask.testing import FlaskClient
from google.cloud import firestore
from google.cloud.firestore_v1.query import Query

from launchq.model.records import item_doc_id
from launchq.store import ITEMS, Store
from launchq.store.firestore import FirestoreStore
from launchq_client.backends import Backends
from launchq_ui import views
from launchq_ui.app import create_app

pytestmark = pytest.mark.integration
QUEUE = "deep"
ITEMS_IN_QUEUE = 2_600
TIE = 7  # items to a timestamp: ties straddle page boundaries (25 and 7 share no factor)
STATES = ("QUEUED", "SUCCEEDED", "FAILED")
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _enqueued_at(n: int) -> datetime:
    group = n // TIE
    at = T0 + timedelta(seconds=group)
    if group % 5 == 0:  # these seven differ only in microseconds, what Firestore keeps
        return at + timedelta(microseconds=n % TIE)
    return at


def _item_id(n: int) -> str:
    # Ids whose order is not the order of writing: the tie-break has work to do.
    return f"it-{n * 7919 % 10007:05d}"


@pytest.fixture
def stored(firestore_db: firestore.Client) -> tuple[Store, list[dict[str, Any]]]:
    """2,600 items of QUEUE and 60 of another queue at the same times, written in batches."""
    store = FirestoreStore(firestore_db)
    store.put_queue(QUEUE, {"config": {}}, -1)
    documents = []
    for n in range(ITEMS_IN_QUEUE):
        at = _enqueued_at(n)
        documents.append(
            {
                "queue": QUEUE,
                "item_id": _item_id(n),
                "state": STATES[n % 3],
                "priority": 0,
                "enqueued_at": at,
                "updated_at": at,
                "history": [],
            }
        )
    others = [{**d, "queue": "other"} for d in documents[::43]]
    for start in range(0, len(documents) + len(others), 450):
        batch = firestore_db.batch()
        for document in (documents + others)[start : start + 450]:
            ref = firestore_db.collection(ITEMS).document(
                item_doc_id(document["queue"], document["item_id"])
            )
            batch.set(ref, document)
        batch.commit()
    return store, documents


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many documents each query streamed, in order."""
    counts: list[int] = []
    original: Callable[..., Iterator[Any]] = Query.stream

    def counting(self: Query, *args: Any, **kwargs: Any) -> Iterator[Any]:
        counts.append(0)
        index = len(counts) - 1
        for snapshot in original(self, *args, **kwargs):
            counts[index] += 1
            yield snapshot

    monkeypatch.setattr(Query, "stream", counting)
    return counts


def _newest_first(documents: list[dict[str, Any]]) -> list[str]:
    def key(d: dict[str, Any]) -> tuple[datetime, str]:
        return (d["enqueued_at"], item_doc_id(QUEUE, d["item_id"]))

    return [d["item_id"] for d in sorted(documents, key=key, reverse=True)]


def _walk(
    client: FlaskClient, reads: list[int], query: dict[str, str], queries: int = 1
) -> tuple[list[str], int]:
    """Every page through the API, following `next`; the most documents one query read."""
    seen: list[str] = []
    most = 0
    after = ""
    page = 1
    while True:
        before = len(reads)
        answer = client.get(
            f"/api/queues/{QUEUE}/items", query_string={**query, "after": after, "page": page}
        )
        assert answer.status_code == 200, answer.get_data(as_text=True)
        data = answer.get_json()
        assert data["page"] == page
        # Queries a page, and one more for the cohorts when the page shows a waiting item (why
        # it waits may be its cohort's: launchq_client.cohorts.member_waits).
        waiting = any(row["state"] in ("QUEUED", "BUILDING") for row in data["items"])
        assert len(reads) - before == queries + waiting
        most = max(most, *reads[before:])
        seen += [row["item_id"] for row in data["items"]]
        if data["next"] is None:
            assert data["older_url"] is None
            return seen, most
        assert f"after={data['next']}" in data["older_url"]
        after, page = data["next"], page + 1


def test_every_item_once_in_order_past_a_thousand(
    stored: tuple[Store, list[dict[str, Any]]], reads: list[int]
) -> None:
    store, documents = stored
    client = create_app(Backends(project="unused", store=store)).test_client()
    expected = _newest_first(documents)

    seen, most = _walk(client, reads, {})
    assert len(seen) == ITEMS_IN_QUEUE > 1_000
    assert len(set(seen)) == len(seen)
    assert seen == expected
    assert most <= views.PAGE_SIZE + 1

    # The state filter pages the same way (one state: the (queue, state, enqueued_at) index).
    failed, most = _walk(client, reads, {"state": "failed"})
    assert failed == [i for i in expected if i in {d["item_id"] for d in documents[2::3]}]
    assert most <= views.PAGE_SIZE + 1


def test_html_pages_carry_the_cursor_to_the_next_page_and_the_live_poll(
    stored: tuple[Store, list[dict[str, Any]]], reads: list[int]
) -> None:
    store, documents = stored
    client = create_app(Backends(project="unused", store=store)).test_client()
    expected = _newest_first(documents)

    first = client.get(f"/queues/{QUEUE}?page=7").get_data(as_text=True)  # an old link
    assert "page 1" in first
    assert "Newest" not in first
    url = unescape(re.search(r'id="older" href="([^"]+)"', first)[1])  # type: ignore[index]
    second = client.get(url).get_data(as_text=True)
    rows = re.findall(r'<tr data-item="([^"]+)">', second)
    assert rows == expected[views.PAGE_SIZE : 2 * views.PAGE_SIZE]
    assert "page 2" in second
    assert "« Newest" in second
    # The live poll re-reads this page's window: its URL carries the same cursor.
    poll = unescape(re.search(r'data-api="([^"]+)"', second)[1])  # type: ignore[index]
    cursor = re.search(r"after=([^&]+)", url)[1]  # type: ignore[index]
    assert f"after={cursor}" in poll
    polled = client.get(poll).get_json()
    assert [r["item_id"] for r in polled["items"]] == rows
    assert "page=3" in polled["older_url"]

    # A cursor of another queue, or an edited one, is refused before anything is read.
    before = len(reads)
    other = views.Cursor(T0, item_doc_id("other", "x")).encode()
    assert client.get(f"/queues/{QUEUE}?after={other}").status_code == 400
    # An edited cursor that still decodes is only another position in the same list.
    edited = views.Cursor(T0 + timedelta(seconds=99), item_doc_id(QUEUE, "zz")).encode()
    assert client.get(f"/api/queues/{QUEUE}/items?after={edited}").status_code == 200
    assert client.get(f"/api/queues/{QUEUE}/items?after=%25%25").status_code == 400
    assert len(reads) - before == 2  # the edited cursor's page only (and the cohorts)


def test_a_prefix_search_walks_the_whole_queue_in_bounded_scans(
    stored: tuple[Store, list[dict[str, Any]]], reads: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, documents = stored
    client = create_app(Backends(project="unused", store=store)).test_client()
    monkeypatch.setattr(views, "SEARCH_SCAN", 300)
    wanted = [i for i in _newest_first(documents) if i.startswith("it-00")]
    # Two queries a page: the exact id first (nothing found), then the scan.
    seen, most = _walk(client, reads, {"q": "it-00"}, queries=2)
    assert seen == wanted
    assert len(wanted) > views.PAGE_SIZE
    assert most <= 300
    exact = client.get(f"/api/queues/{QUEUE}/items", query_string={"q": wanted[-1]}).get_json()
    assert [r["item_id"] for r in exact["items"]] == [wanted[-1]]
    assert exact["next"] is None
