"""Sweeps and job arrays on the in-memory store (launchq.expansion): one item, many children,
each recorded once whatever crashes or is delivered twice; max_parallel; the group ended,
cancelled and counted as a unit."""

from __future__ import annotations

from typing import Any

import pytest

from launchq import expansion
from launchq.model.states import ItemState
from launchq.spec.family import child_id
from launchq.spec.labels import label_value
from launchq.spec.topics import ACTION_ATTRIBUTE, CANCEL_ACTION
from tests.unit.fakes import SHARED_TOPIC, SimulatedCrash, World, item, message, queue_config

GRID: dict[str, Any] = {
    "method": "grid",
    "parameters": {"lr": {"values": [0.1, 0.01, 0.001]}, "depth": {"values": [2, 4]}},
}
VARIABLES = {
    "lr": {"type": "number", "default": 0.1, "minimum": 0.0001, "maximum": 1.0},
    "depth": {"type": "integer", "default": 2, "minimum": 1, "maximum": 8},
}


def _children(world: World, queue: str, parent: str) -> list[dict[str, Any]]:
    docs = [world.store.item_document(queue, c.item_id) for c in _records(world, queue, parent)]
    return [d for d in docs if d is not None]


def _records(world: World, queue: str, parent: str) -> list[Any]:
    return world.store.children_of(queue, parent, limit=100_000)


def _jobs(world: World, item_id: str) -> list[dict[str, Any]]:
    """The fake Vertex's jobs of an item (a child id is not a label value as it is)."""
    return world.vertex.job_of(label_value(item_id))


def _env(document: dict[str, Any]) -> dict[str, str]:
    pool = document["job_body"]["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]
    return {e["name"]: e["value"] for e in pool.get("env", [])}


def test_a_grid_sweep_is_one_parent_and_a_child_per_run_each_with_its_parameters() -> None:
    world = World()
    world.apply("q1", queue_config())
    result = world.deliver(item("q1", "grid", sweep=GRID, args=["--epochs=3"]))
    assert result.outcome == "recorded"
    parent = world.data("q1", "grid")
    assert parent["state"] == ItemState.SWEEP.value
    assert parent["sweep"]["count"] == 6
    assert parent["expanded"] == 6
    children = _children(world, "q1", "grid")
    assert [c["item_id"] for c in children] == [child_id("grid", n) for n in range(1, 7)]
    # W&B's grid order: parameters by name (depth, lr), the last fastest; appended as args.
    assert [c["payload"]["args"] for c in children[:4]] == [
        ["--epochs=3", "--depth=2", "--lr=0.1"],
        ["--epochs=3", "--depth=2", "--lr=0.01"],
        ["--epochs=3", "--depth=2", "--lr=0.001"],
        ["--epochs=3", "--depth=4", "--lr=0.1"],
    ]
    assert all(c["state"] == ItemState.SUBMITTED.value for c in children)
    assert all(c["sweep_of"] == "grid" for c in children)
    assert [_env(c)["LAUNCHQ_ARRAY_INDEX"] for c in children] == [str(i) for i in range(6)]
    assert {_env(c)["LAUNCHQ_SWEEP"] for c in children} == {"grid"}
    assert len(world.vertex.jobs) == 6
    # Delivered again: nothing new.
    world.deliver(item("q1", "grid", sweep=GRID, args=["--epochs=3"]))
    assert len(_children(world, "q1", "grid")) == 6
    assert len(world.vertex.jobs) == 6


def test_parameters_reach_template_variables_and_a_bad_child_rejects_the_whole_sweep() -> None:
    world = World()
    world.apply("q1", queue_config(template_variables=VARIABLES))
    sweep = {**GRID, "parameters_to": "template_variables"}
    assert world.deliver(item("q1", "tv", sweep=sweep)).outcome == "recorded"
    first = _children(world, "q1", "tv")[0]
    assert first["payload"]["template_variables"] == {"depth": 2, "lr": 0.1}
    # depth 16 is over the variable's maximum: only children 7-9 are invalid, and so the
    # whole sweep is rejected, naming the first of them and the sweep parameter it came from.
    bad = {**sweep, "parameters": {**GRID["parameters"], "depth": {"values": [2, 4, 16]}}}
    result = world.deliver(item("q1", "tv-bad", sweep=bad))
    assert result.outcome == "rejected"
    error = world.data("q1", "tv-bad")["error"]
    assert error["path"] == "sweep.parameters.depth"
    assert error["message"] == (
        "sweep.parameters.depth: child 7 of 9: 16 is above the maximum 8 "
        "(3 of 9 children are invalid)"
    )
    assert world.store.children_of("q1", "tv-bad") == []


def test_a_refused_w_and_b_config_is_rejected_with_its_path() -> None:
    world = World()
    world.apply("q1", queue_config())
    bayes = {"method": "bayes", "parameters": {"lr": {"min": 0.0, "max": 1.0}}}
    assert world.deliver(item("q1", "b", sweep=bayes)).outcome == "rejected"
    error = world.data("q1", "b")["error"]
    assert error["path"] == "sweep.method"
    assert "bayes" in error["message"]
    both = item("q1", "ab", sweep=GRID, array={"count": 2})
    assert world.deliver(both).outcome == "rejected"
    assert world.data("q1", "ab")["error"]["path"] == "array"


def test_an_array_with_max_parallel_holds_the_rest_and_the_sweep_releases_them() -> None:
    world = World()
    world.apply("q1", queue_config(max_jobs=10))
    world.apply("q2", queue_config(max_jobs=10))
    world.deliver(item("q1", "arr", array={"count": 5, "max_parallel": 2}))
    states = [c["state"] for c in _children(world, "q1", "arr")]
    assert states == ["SUBMITTED", "SUBMITTED", "HELD", "HELD", "HELD"]
    assert _children(world, "q1", "arr")[2]["reason"] == "max_parallel"
    # The queue's other items are not stuck behind the held children.
    world.deliver(item("q1", "other"))
    assert world.data("q1", "other")["state"] == ItemState.SUBMITTED.value
    world.app().sweeper.run()  # nothing ended: nothing released
    assert [c["state"] for c in _children(world, "q1", "arr")].count("HELD") == 3
    [first] = _jobs(world, child_id("arr", 1))
    world.vertex.set_state(first["name"], "JOB_STATE_SUCCEEDED")
    summary = world.app().sweeper.run()
    assert summary.released == 1
    states = [c["state"] for c in _children(world, "q1", "arr")]
    assert states == ["SUCCEEDED", "SUBMITTED", "SUBMITTED", "HELD", "HELD"]
    assert world.store.count_children("q1", "arr", expansion.ACTIVE_STATES) == 2


def test_the_parent_ends_when_its_last_child_does_with_the_counts() -> None:
    world = World()
    world.apply("q1", queue_config())
    world.deliver(item("q1", "p", array={"count": 3}))
    jobs = [_jobs(world, child_id("p", n))[0]["name"] for n in (1, 2, 3)]
    world.vertex.set_state(jobs[0], "JOB_STATE_SUCCEEDED")
    world.vertex.set_state(jobs[1], "JOB_STATE_SUCCEEDED")
    world.app().sweeper.run()
    assert world.data("q1", "p")["state"] == ItemState.SWEEP.value  # one child still runs
    world.vertex.set_state(jobs[2], "JOB_STATE_FAILED", error={"code": 3, "message": "bad"})
    world.app().sweeper.run()
    parent = world.data("q1", "p")
    assert parent["state"] == ItemState.FAILED.value
    assert parent["children"] == {"FAILED": 1, "SUCCEEDED": 2}
    assert parent["history"][-1]["cause"] == "1 of 3 children did not succeed"

    world.deliver(item("q1", "ok", array={"count": 2}))
    for n in (1, 2):
        world.vertex.set_state(_jobs(world, child_id("ok", n))[0]["name"], "JOB_STATE_SUCCEEDED")
    world.app().sweeper.run()
    assert world.data("q1", "ok")["state"] == ItemState.SUCCEEDED.value


def test_a_random_sweep_draws_the_same_children_from_its_recorded_seed() -> None:
    sweep = {"method": "random", "run_cap": 4, "parameters": {"lr": {"min": 0.001, "max": 0.1}}}
    args = []
    for _ in range(2):
        world = World()
        world.apply("q1", queue_config())
        world.deliver(item("q1", "r", sweep=sweep))
        args.append([c["payload"]["args"] for c in _children(world, "q1", "r")])
        seed = world.data("q1", "r")["sweep"]["seed"]
    assert args[0] == args[1]
    assert len({tuple(a) for a in args[0]}) == 4
    with_seed = World()
    with_seed.apply("q1", queue_config())
    with_seed.deliver(item("q1", "r", sweep={**sweep, "seed": int(seed)}))
    assert [c["payload"]["args"] for c in _children(with_seed, "q1", "r")] == args[0]


def _commits_of_a_clean_expansion(count: int) -> int:
    world = World()
    world.apply("q1", queue_config(max_jobs=-1))
    before = world.store.commits
    world.deliver(item("q1", "s", array={"count": count}))
    return world.store.commits - before


@pytest.mark.parametrize("recovery", ["redelivery", "sweep"])
def test_a_crash_after_every_write_of_an_expansion_yields_each_child_once(
    monkeypatch: pytest.MonkeyPatch, recovery: str
) -> None:
    """Batches of 2: the parent, three batches of children, then the children's claims and
    submissions; the process dies after each write in turn, and a redelivery (or, without one,
    the sweep) finishes the job: 5 children, one job each."""
    monkeypatch.setattr(expansion, "BATCH", 2)
    writes = _commits_of_a_clean_expansion(5)
    assert writes >= 4
    for crash_after in range(1, writes + 1):
        world = World(lease_seconds=0.0)
        world.apply("q1", queue_config(max_jobs=-1))
        world.store.crash_after(crash_after)
        with pytest.raises(SimulatedCrash):
            world.deliver(item("q1", "s", array={"count": 5}), message_id="m-1")
        if recovery == "redelivery":
            world.deliver(item("q1", "s", array={"count": 5}), message_id="m-1")
            world.deliver(item("q1", "s", array={"count": 5}), message_id="m-1")
        world.app().sweeper.run()
        world.app().sweeper.run()
        children = _children(world, "q1", "s")
        assert [c["item_id"] for c in children] == [child_id("s", n) for n in range(1, 6)], (
            crash_after
        )
        assert world.data("q1", "s")["expanded"] == 5
        for n in range(1, 6):
            assert len(_jobs(world, child_id("s", n))) == 1, (crash_after, n)
        assert all(c["state"] == ItemState.SUBMITTED.value for c in children), crash_after


def test_an_expansion_past_its_deadline_is_finished_by_the_sweep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(expansion, "BATCH", 3)
    world = World()
    world.apply("q1", queue_config())
    app = world.app()
    app.dispatcher.expand_seconds = -1.0  # the deadline has passed before the first batch
    result = app.dispatcher.handle(message(item("q1", "late", array={"count": 7})))
    assert result.detail == "0 of 7 children recorded"
    assert world.data("q1", "late")["expanded"] == 0
    world.app().sweeper.run()
    assert world.data("q1", "late")["expanded"] == 7
    assert len(world.vertex.jobs) == 7


def _cancel(world: World, parent: str) -> str:
    msg = message({"queue": "q1", "item_id": parent})
    msg = type(msg)(msg.data, {ACTION_ATTRIBUTE: CANCEL_ACTION}, msg.message_id, topic=SHARED_TOPIC)
    return world.app().dispatcher.handle(msg).outcome


def test_cancelling_the_parent_cancels_every_open_child_and_stops_the_expansion() -> None:
    world = World()
    world.apply("q1", queue_config(max_jobs=2))
    world.deliver(item("q1", "c", array={"count": 6}))
    assert [c["state"] for c in _children(world, "q1", "c")].count("SUBMITTED") == 2
    assert _cancel(world, "c") == "controlled"
    states = {c["item_id"]: c["state"] for c in _children(world, "q1", "c")}
    # Waiting children are CANCELLED at once; running ones are sent a cancel.
    assert sorted(states.values()) == ["CANCELLED"] * 4 + ["SUBMITTED"] * 2
    assert world.vertex.calls["CancelCustomJob"] == 2
    assert world.data("q1", "c")["state"] == ItemState.SWEEP.value
    assert world.data("q1", "c")["cancel_requested"] is True
    for job in list(world.vertex.jobs):
        world.vertex.set_state(job, "JOB_STATE_CANCELLED")
    world.app().sweeper.run()
    parent = world.data("q1", "c")
    assert parent["state"] == ItemState.CANCELLED.value
    assert parent["children"] == {"CANCELLED": 6}
    assert world.vertex.calls["CancelCustomJob"] == 2  # the sweep sent none again


def test_a_child_can_be_cancelled_by_its_id() -> None:
    world = World()
    world.apply("q1", queue_config(max_jobs=1))
    world.deliver(item("q1", "k", array={"count": 3}))
    assert _cancel(world, child_id("k", 3)) == "controlled"
    assert world.data("q1", child_id("k", 3))["state"] == ItemState.CANCELLED.value
    assert world.data("q1", child_id("k", 2))["state"] == ItemState.QUEUED.value


def test_a_crash_after_every_write_of_a_bulk_cancel_leaves_no_child_waiting() -> None:
    clean = World()
    clean.apply("q1", queue_config(max_jobs=1))
    clean.deliver(item("q1", "c", array={"count": 4, "max_parallel": 2}))
    before = clean.store.commits
    _cancel(clean, "c")
    writes = clean.store.commits - before
    # The request on the parent, the three waiting children in one write, the running one's
    # cancel sent: a crash after each.
    assert writes == 3
    for crash_after in range(1, writes + 1):
        world = World()
        world.apply("q1", queue_config(max_jobs=1))
        world.deliver(item("q1", "c", array={"count": 4, "max_parallel": 2}))
        world.store.crash_after(crash_after)
        with pytest.raises(SimulatedCrash):
            _cancel(world, "c")
        world.store.crash_after(None)
        world.app().sweeper.run()  # the parent's cancel is recorded: the sweep goes on
        if not world.data("q1", "c").get("cancel_requested"):
            _cancel(world, "c")  # died before the request was recorded: the redelivery
        children = _children(world, "q1", "c")
        states = [c["state"] for c in children]
        assert not {"QUEUED", "HELD"} & set(states), (crash_after, states)
        # The one that runs is CANCELLED, or its cancel was sent and Vertex has it.
        running = [c for c in children if c["state"] != "CANCELLED"]
        assert all(c.get("cancel_requested") for c in running), crash_after
        assert world.vertex.calls.get("CancelCustomJob", 0) == 1, crash_after


def test_a_bulk_cancel_whose_batch_meets_a_changed_child_cancels_the_rest_one_by_one() -> None:
    world = World()
    world.apply("q1", queue_config(max_jobs=1))
    world.deliver(item("q1", "c", array={"count": 4}))
    app = world.app()
    waiting = world.store.children_of("q1", "c", (ItemState.QUEUED,))
    assert len(waiting) == 3
    # Another writer moves the second one on after the page was read.
    app.canceller.cancel_item(waiting[1])
    assert app.canceller.cancel_waiting(waiting) == 2  # the batch failed whole; one by one
    states = [c["state"] for c in _children(world, "q1", "c")]
    assert states == ["SUBMITTED", "CANCELLED", "CANCELLED", "CANCELLED"]
    cancels = [e for e in world.events.sent if e["data"].get("to") == "CANCELLED"]
    assert len(cancels) == 3  # each child's cancel published once: none for the failed batch
