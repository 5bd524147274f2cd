"""A sweep on the dashboard, over the in-memory world (tests/unit/fakes.py): the parent's row
and page show its children counted by state as a progress bar; the unfiltered list leaves the
children out (and skips them cheaply); the parent's page lists them a page at a time; a child's
page links to its parent."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient

from launchq.model.records import ItemRecord
from launchq.model.states import ItemState
from launchq.spec.family import child_id
from launchq.spec.labels import label_value
from launchq.spec.topics import ACTION_ATTRIBUTE, CANCEL_ACTION
from launchq.store import Store
from launchq_client.backends import Backends
from launchq_client.reads import PROGRESS_GROUPS
from launchq_ui import app as ui_app
from launchq_ui import views
from launchq_ui.app import create_app
from tests.unit.fakes import SHARED_TOPIC, World, item, message, queue_config

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # after anything a World records


def _job(world: World, item_id: str) -> str:
    [job] = world.vertex.job_of(label_value(item_id))
    return str(job["name"])


def _cancel(world: World, item_id: str) -> None:
    sent = message({"queue": "q1", "item_id": item_id})
    attributes = {ACTION_ATTRIBUTE: CANCEL_ACTION}
    sent = type(sent)(sent.data, attributes, sent.message_id, topic=SHARED_TOPIC)
    assert world.app().dispatcher.handle(sent).outcome == "controlled"


@pytest.fixture
def busy() -> World:
    """An array of 8 on a queue of 2 slots, at most 4 at once: child 1 succeeded, 2 failed,
    3 and 4 hold the slots, 5 and 6 wait for one, 7 is HELD, 8 was cancelled while HELD."""
    world = World()
    world.apply("q1", queue_config(max_jobs=2))
    world.deliver(item("q1", "before"))
    world.vertex.set_state(_job(world, "before"), "JOB_STATE_SUCCEEDED")
    world.app().sweeper.run()
    world.deliver(item("q1", "sw", array={"count": 8, "max_parallel": 4}))
    world.vertex.set_state(_job(world, child_id("sw", 1)), "JOB_STATE_SUCCEEDED")
    world.vertex.set_state(
        _job(world, child_id("sw", 2)), "JOB_STATE_FAILED", error={"code": 3, "message": "bad"}
    )
    _cancel(world, child_id("sw", 8))
    world.app().sweeper.run()  # 1 and 2 end, 5 and 6 are released, 3 and 4 take the slots
    world.deliver(item("q1", "after"))
    states = {n: world.data("q1", child_id("sw", n))["state"] for n in range(1, 9)}
    assert states == {
        1: "SUCCEEDED",
        2: "FAILED",
        3: "SUBMITTED",
        4: "SUBMITTED",
        5: "QUEUED",
        6: "QUEUED",
        7: "HELD",
        8: "CANCELLED",
    }
    return world


@pytest.fixture
def client(busy: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[FlaskClient]:
    # No Cloud Logging in a unit test: the log tail is someone else's test.
    monkeypatch.setattr(ui_app, "_log_tail", lambda _backends, _data: ([], "no log here"))
    app = create_app(Backends(project="launchq-test", store=busy.store), clock=busy.clock)
    with app.test_client() as test_client:
        yield test_client


def test_a_busy_sweeps_progress_counts_its_children_by_state(busy: World) -> None:
    found = views.progress(busy.store, busy.data("q1", "sw"))
    assert found is not None
    groups = ("waiting", "held", "running", "succeeded", "failed", "cancelled")
    counts = {g: found[g] for g in groups}
    # waiting: 2 QUEUED and the HELD one; running: the 2 holding slots.
    assert counts == {
        "waiting": 3,
        "held": 1,
        "running": 2,
        "succeeded": 1,
        "failed": 1,
        "cancelled": 1,
    }
    assert (found["done"], found["count"], found["unrecorded"]) == (3, 8, 0)
    assert found["done_text"] == "3 of 8 done"
    assert found["title"] == "array of 8, at most 4 at once"
    assert found["label"] == (
        "3 of 8 done: 1 succeeded, 1 failed, 1 cancelled, 2 running, 3 waiting (1 held)"
    )
    # The segments, left to right, tile the bar: each child is an eighth of it.
    assert [(s["group"], s["x"], s["width"]) for s in found["segments"]] == [
        ("succeeded", 0.0, 12.5),
        ("failed", 12.5, 12.5),
        ("cancelled", 25.0, 12.5),
        ("running", 37.5, 25.0),
        ("waiting", 62.5, 37.5),
    ]
    assert views.progress(busy.store, busy.data("q1", "before")) is None


def test_the_items_list_shows_the_parent_with_its_bar_and_not_its_children(
    client: FlaskClient,
) -> None:
    rows = client.get("/api/queues/q1/items").get_json()["items"]
    assert [r["item_id"] for r in rows] == ["after", "sw", "before"]
    parent = rows[1]
    assert parent["state"] == "SWEEP"
    assert parent["progress"]["done_text"] == "3 of 8 done"
    assert rows[0]["progress"] is None
    html = client.get("/queues/q1").get_data(as_text=True)
    row = html[html.index('<tr data-item="sw">') :]
    row = row[: row.index("</tr>")]
    assert 'data-label="progress"' in row
    assert 'role="img" aria-label="3 of 8 done: 1 succeeded, 1 failed' in row
    assert "array of 8, at most 4 at once" in row
    assert ">3 waiting (1 held)<" in row
    assert row.count("<rect ") == 5
    assert "sw~00001" not in html
    # A state filter lists children as items, each naming its sweep.
    held = client.get("/api/queues/q1/items?state=HELD").get_json()["items"]
    assert [(r["item_id"], r["sweep_of"], r["child_number"]) for r in held] == [
        (child_id("sw", 7), "sw", 7)
    ]
    page = client.get("/queues/q1?state=QUEUED").get_data(as_text=True)
    assert '#5 of <a href="/queues/q1/items/sw">sw</a>' in page


def test_the_parents_page_pages_through_its_children(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "PAGE_SIZE", 3)
    seen: list[list[str]] = []
    url: str | None = "/queues/q1/items/sw"
    while url:
        html = client.get(url).get_data(as_text=True)
        start = html.index('id="child-rows"')
        body = html[start : html.index("</tbody>", start)]
        seen.append(re.findall(r'<tr data-item="([^"]+)">', body))
        found = re.search(r'<a rel="next" id="children-next" href="([^"]*)"(?! hidden)>', html)
        url = found.group(1).replace("&amp;", "&") if found and found.group(1) else None
    assert seen == [
        [child_id("sw", n) for n in (1, 2, 3)],
        [child_id("sw", n) for n in (4, 5, 6)],
        [child_id("sw", n) for n in (7, 8)],
    ]
    second = client.get("/queues/q1/items/sw?children_after=sw~00004").get_data(as_text=True)
    assert "« First children" in second
    assert 'role="img" aria-label="3 of 8 done' in second  # the bar, on the page too
    assert 'id="log"' not in second  # a parent runs no job: its children have the logs
    assert '<a class="id" href="/queues/q1/items/sw~00007">sw~00007</a>' in second
    assert "max_parallel" in second  # why 7 waits
    # The JSON the page polls: the same page of children, the same progress.
    api = client.get("/api/queues/q1/items/sw?children_after=sw~00006").get_json()
    assert [(c["item_id"], c["state"]) for c in api["child_page"]["rows"]] == [
        (child_id("sw", 7), "HELD"),
        (child_id("sw", 8), "CANCELLED"),
    ]
    assert api["child_page"]["next"] is None
    assert api["progress"]["failed"] == 1
    # A position that is not one of this sweep's children: 400, before anything is read.
    for bad in ("sw~1", "other~00001", "sw", "x" * 5000):
        answer = client.get("/queues/q1/items/sw", query_string={"children_after": bad})
        assert answer.status_code == 400, bad
        assert "/queues/q1/items/sw" in answer.get_data(as_text=True)


def test_a_childs_page_links_to_its_parent(client: FlaskClient) -> None:
    html = client.get("/queues/q1/items/sw~00002").get_data(as_text=True)
    start = html.index('class="crumbs"')
    crumbs = html[start : html.index("</nav>", start)]
    assert '<a href="/queues/q1/items/sw">sw</a>' in crumbs
    assert 'id="sweep-of"><a href="/queues/q1/items/sw">sw</a> (child #2)' in html
    detail = client.get("/api/queues/q1/items/sw~00002").get_json()
    assert (detail["sweep_of"], detail["child_number"], detail["progress"]) == ("sw", 2, None)


def test_an_ended_sweep_is_counted_from_its_record_without_a_query(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = World()
    world.apply("q1", queue_config())
    world.deliver(item("q1", "done", array={"count": 3}))
    world.vertex.set_state(_job(world, child_id("done", 1)), "JOB_STATE_SUCCEEDED")
    world.vertex.set_state(
        _job(world, child_id("done", 2)), "JOB_STATE_FAILED", error={"code": 3, "message": "x"}
    )
    world.vertex.set_state(_job(world, child_id("done", 3)), "JOB_STATE_SUCCEEDED")
    world.app().sweeper.run()
    parent = world.data("q1", "done")
    assert parent["state"] == "FAILED"

    def no_count(*_args: Any) -> int:
        raise AssertionError("an ended sweep's counts are on its record")

    monkeypatch.setattr(world.store, "count_children", no_count)
    found = views.progress(world.store, parent)
    assert found is not None
    assert (found["succeeded"], found["failed"], found["done_text"]) == (2, 1, "3 of 3 done")


def test_every_state_a_child_can_be_in_counts_in_one_group() -> None:
    grouped = [state for states in PROGRESS_GROUPS.values() for state in states]
    assert sorted(grouped) == sorted(set(ItemState) - {ItemState.SWEEP})


def test_a_sweep_not_yet_expanded_is_an_empty_bar_that_says_so() -> None:
    world = World()
    world.apply("q1", queue_config())
    app = world.app()
    app.dispatcher.expand_seconds = -1.0  # the sweep function expands it, later
    app.dispatcher.handle(message(item("q1", "late", array={"count": 7})))
    found = views.progress(world.store, world.data("q1", "late"))
    assert found is not None
    assert (found["segments"], found["unrecorded"]) == ([], 7)
    assert found["label"] == "0 of 7 done: 7 not recorded yet"


class _Counting:
    """The world's store, counting `recent_items` reads (queries and documents)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.queries: list[int] = []

    def recent_items(
        self,
        queue: str | None,
        states: Sequence[ItemState],
        limit: int,
        after: tuple[datetime, str] | None = None,
    ) -> list[ItemRecord]:
        found = self.store.recent_items(queue, states, limit, after)
        self.queries.append(len(found))
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def _big_sweep() -> World:
    """`before`, an array of 250 (three batches of children, each with its own time), `after`."""
    world = World()
    world.apply("q1", queue_config())
    world.deliver(item("q1", "before"))
    world.deliver(item("q1", "big", array={"count": 250, "max_parallel": 1}))
    world.deliver(item("q1", "after"))
    assert world.data("q1", "big")["expanded"] == 250
    return world


def test_the_list_skips_a_big_sweeps_children_a_batch_at_a_time() -> None:
    counting = _Counting(_big_sweep().store)
    store: Any = counting
    page = views.page_of_items(store, "q1", (), "", None, NOW)
    assert [r["item_id"] for r in page.rows] == ["after", "big", "before"]
    assert page.next is None
    # 26 (after and 25 children of the newest batch), then a probe into each older batch and
    # one that finds the parent: 250 children cost 41 document reads, not 250.
    assert counting.queries == [26, views.SKIP_PROBE, views.SKIP_PROBE, 2]


def test_a_page_that_runs_out_of_queries_hands_on_to_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(views, "SKIP_QUERIES", 2)
    store: Any = _Counting(_big_sweep().store)
    seen: list[str] = []
    after: views.Cursor | None = None
    pages = 0
    while True:
        page = views.page_of_items(store, "q1", (), "", after, NOW)
        seen += [str(r["item_id"]) for r in page.rows]
        pages += 1
        if page.next is None:
            break
        after = views.Cursor.decode(page.next.encode(), "q1")  # as the Older link carries it
    assert seen == ["after", "big", "before"]
    assert pages == 2
