"""The dashboard's pure parts: chart series from item histories, the SVG, the cancel gate's
refusals (cross-origin, bad token) and the refusal of damaged page cursors, both before any
backend is touched, and the item pages' cursor logic over an in-memory list of items."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from click.testing import CliRunner
from google.api_core.datetime_helpers import DatetimeWithNanoseconds

from launchq.model.records import ItemRecord
from launchq.model.states import ItemState
from launchq.store import Store
from launchq_cli import main
from launchq_client.backends import Backends
from launchq_ui import charts, views
from launchq_ui.app import create_app

NOW = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)


def _item(enqueued: datetime, *steps: tuple[str, float]) -> dict[str, Any]:
    """An item whose history moves through `steps` (state, seconds after enqueue)."""
    history = [{"from": None, "to": "QUEUED", "at": enqueued, "cause": "accepted"}]
    attempts = []
    previous = "QUEUED"
    for state, after in steps:
        at = enqueued + timedelta(seconds=after)
        history.append({"from": previous, "to": state, "at": at, "cause": "x"})
        if state == "SUBMITTING":
            attempts.append({"n": 1, "created_at": at})
        previous = state
    return {
        "item_id": f"i{enqueued:%H%M%S}",
        "state": previous,
        "enqueued_at": enqueued,
        "history": list(reversed(history)),  # order must not matter
        "attempts": attempts,
    }


def test_running_series_counts_slot_holders_over_time() -> None:
    a = _item(NOW - timedelta(hours=2), ("SUBMITTING", 10), ("RUNNING", 20), ("SUCCEEDED", 100))
    b = _item(NOW - timedelta(hours=2), ("SUBMITTING", 50), ("RUNNING", 60))  # still running
    c = _item(NOW - timedelta(hours=1), ("CANCELLED", 5))  # never held a slot
    series = views.running_series([a, b, c], NOW)
    values = [value for _, value in series.points]
    assert values == [0.0, 1.0, 2.0, 1.0, 1.0]
    assert series.points[0][0] == NOW - views.WINDOW
    assert series.points[-1][0] == NOW


def test_running_series_starts_with_jobs_running_before_the_window() -> None:
    old = _item(NOW - timedelta(hours=30), ("SUBMITTING", 1), ("RUNNING", 2))
    series = views.running_series([old], NOW)
    assert [v for _, v in series.points] == [1.0, 1.0]


def test_wait_series_is_enqueue_to_first_submission() -> None:
    waited = _item(NOW - timedelta(hours=3), ("SUBMITTING", 42.5), ("SUCCEEDED", 60))
    never = _item(NOW - timedelta(hours=3), ("REJECTED", 0.1))
    series = views.wait_series([waited, never])
    assert series.points == [(NOW - timedelta(hours=3) + timedelta(seconds=42.5), 42.5)]


def test_svg_scales_to_the_data_and_escapes_titles() -> None:
    series = views.Series("w", "s", [(NOW - timedelta(hours=12), 30.0), (NOW, 70.0)], step=False)
    out = charts.svg(series, NOW, "<q> wait")
    assert out.startswith("<svg")
    assert out.endswith("</svg>")
    assert "&lt;q&gt; wait" in out
    assert "<q>" not in out
    assert ">100s<" in out  # 70 rounds up to the axis' 100
    assert out.count("<circle") == 2
    empty = charts.svg(views.Series("w", "s", [], step=False), NOW, "t")
    assert "no data in the last 24 h" in empty


def test_nice_max_rounds_up_to_1_2_5() -> None:
    assert [charts._nice_max(v) for v in (0, 0.07, 3, 7, 12, 450)] == [1, 0.1, 5, 10, 20, 500]


def test_cancel_refuses_other_origins_and_bad_tokens_before_any_backend() -> None:
    app = create_app(Backends(project="nowhere"))
    client = app.test_client()
    url = "/queues/q/items/i/cancel"
    foreign = client.post(url, data={"token": "x"}, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    forged = client.post(url, data={"token": "0" * 64}, headers={"Origin": "http://localhost"})
    assert forged.status_code == 403
    assert "stale" in forged.get_data(as_text=True)
    assert "script-src 'self'" in forged.headers["Content-Security-Policy"]


def test_ui_without_a_project_fails_in_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LAUNCHQ_PROJECT", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(main, ["ui", "--port", "0"])
    assert result.exit_code == 2
    assert "--project" in result.stderr


# -- item pages: cursors ---------------------------------------------------------------------


def _raw_cursor(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def test_cursor_round_trips_to_the_microsecond() -> None:
    stored: Any = DatetimeWithNanoseconds  # what the client reads back; api_core's is untyped
    read_back: datetime = stored(2026, 1, 2, 12, 0, 0, 654_321, tzinfo=UTC)
    for at in (NOW, NOW + timedelta(microseconds=7), read_back):
        cursor = views.Cursor(at, "q~it%2Fone")
        text = cursor.encode()
        assert set(text) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        back = views.Cursor.decode(text, "q")
        assert back.doc_id == "q~it%2Fone"
        assert back.enqueued_at == at
        assert back.encode() == text


@pytest.mark.parametrize(
    "after",
    [
        "!!!",
        "a",
        _raw_cursor({"at": 1}),
        _raw_cursor([1.5, "q~x"]),
        _raw_cursor(["1", "q~x"]),
        _raw_cursor([True, "q~x"]),
        _raw_cursor([1, "q~x", 3]),
        _raw_cursor([1, "other~x"]),  # another queue's item
        _raw_cursor([1, "q~a/b"]),  # a path, not a document id
        _raw_cursor([10**30, "q~x"]),  # out of any timestamp's range
        _raw_cursor([-(10**30), "q~x"]),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),  # not UTF-8
        "A" * 5000,
    ],
)
def test_a_damaged_cursor_is_a_400_before_any_backend(after: str) -> None:
    client = create_app(Backends(project="nowhere")).test_client()
    for path in ("/queues/q", "/api/queues/q/items"):
        answer = client.get(path, query_string={"after": after, "page": "3"})
        assert answer.status_code == 400, (path, after)
    assert "first page" in answer.get_data(as_text=True)


class _Items:
    """`Store.recent_items` and `items_with_id` over a list, ordered as Firestore orders them."""

    def __init__(self, records: Sequence[ItemRecord]) -> None:
        self.records = sorted(records, key=lambda r: (r.enqueued_at, r.doc_id), reverse=True)
        self.reads: list[int] = []
        self.queue_reads = 0

    def recent_items(
        self,
        queue: str | None,
        states: Sequence[ItemState],
        limit: int,
        after: tuple[datetime, str] | None = None,
    ) -> list[ItemRecord]:
        rows = [r for r in self.records if r.queue == queue and (not states or r.state in states)]
        if after is not None:
            rows = [r for r in rows if (r.enqueued_at, r.doc_id) < after]
        self.reads.append(len(rows[:limit]))
        return rows[:limit]

    def items_with_id(self, item_id: str, limit: int = 10) -> list[ItemRecord]:
        return [r for r in self.records if r.item_id == item_id][:limit]

    # A waiting item's reason is derived from its queue's state: one queue read per page.
    def get_queue(self, queue: str) -> dict[str, Any] | None:
        self.queue_reads += 1
        return {"name": queue, "max_jobs": 4, "paused": True}

    def count_holding_slots(self, queue: str) -> int:
        return 0

    def list_cohorts(self) -> list[dict[str, Any]]:  # why a waiting item waits: no cohorts
        return []


def _record(n: int, at: datetime, state: ItemState = ItemState.QUEUED) -> ItemRecord:
    stored = {"queue": "q", "item_id": f"it-{n:03d}", "state": state.value, "enqueued_at": at}
    return ItemRecord("q", f"it-{n:03d}", state, enqueued_at=at, stored=stored)


def _walk(store: _Items, search: str = "", states: Sequence[ItemState] = ()) -> list[str]:
    seen: list[str] = []
    after: views.Cursor | None = None
    while True:
        page = views.page_of_items(cast(Store, store), "q", states, search, after, NOW)
        seen += [str(r["item_id"]) for r in page.rows]
        if page.next is None:
            return seen
        after = views.Cursor.decode(page.next.encode(), "q")  # as a link carries it


def test_pages_follow_each_other_through_equal_timestamps() -> None:
    # 130 items, 9 to a timestamp: ties straddle every page boundary.
    records = [_record(n, NOW - timedelta(seconds=n // 9)) for n in range(130)]
    store = _Items(records)
    assert _walk(store) == [str(r.item_id) for r in store.records]
    assert store.reads == [views.PAGE_SIZE + 1] * 5 + [130 - 5 * views.PAGE_SIZE]
    assert store.queue_reads == 6  # once per page, not per waiting row


def test_a_waiting_row_reads_its_queue_now_and_a_finished_one_reads_none() -> None:
    waiting = _Items([_record(0, NOW)])
    [row] = views.page_of_items(cast(Store, waiting), "q", (), "", None, NOW).rows
    assert row["reason"] == "queue paused"  # the fake queue is paused; nothing was stored
    finished = _Items([_record(n, NOW, ItemState.SUCCEEDED) for n in range(30)])
    views.page_of_items(cast(Store, finished), "q", (), "", None, NOW)
    assert finished.queue_reads == 0


def test_a_prefix_search_goes_on_behind_a_used_up_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(views, "SEARCH_SCAN", 40)
    records = [_record(n, NOW - timedelta(seconds=n)) for n in range(300)]
    store = _Items(records)
    wanted = [f"it-{n:03d}" for n in range(300) if f"it-{n:03d}".startswith("it-1")]
    assert _walk(store, "it-1") == wanted
    assert max(store.reads) <= 40
    exact = views.page_of_items(cast(Store, store), "q", (), "it-007", None, NOW)
    assert [r["item_id"] for r in exact.rows] == ["it-007"]
    assert exact.next is None
    filtered = views.page_of_items(cast(Store, store), "q", [ItemState.FAILED], "it-007", None, NOW)
    assert filtered.rows == []
