"""The orchestration units (Dispatcher, Admission, Submitter, Sweeper, Recorder, Canceller) on the
in-memory store, built through `launchq.wiring` with fakes for Vertex and the events topic.

The same stories as the emulator tests, in milliseconds, including a crash after every single
write of a dispatch: whatever write the process dies after, the redelivery yields exactly one
job and a recorded outcome.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest

from launchq.builds.builder import ImageBuilder
from launchq.builds.records import BuildState
from launchq.errors import Conflict, InfrastructureError
from launchq.gcp.vertex import VertexError
from launchq.model.records import NewItem
from launchq.model.states import ItemState
from launchq.spec.buildplan import plan_for
from launchq.spec.config import BuilderSettings
from launchq.spec.item import ItemSource
from launchq.store import Transition
from tests.unit.fakes import (
    PARENT,
    FakeCloudBuild,
    SimulatedCrash,
    World,
    item,
    queue_config,
)

DEST = "us-central1-docker.pkg.dev/launchq-test/launchq/trainer"

SUBMITTED = ItemState.SUBMITTED.value
QUEUED = ItemState.QUEUED.value


def _commits_of_a_clean_dispatch(max_jobs: int) -> int:
    world = World()
    world.apply("q1", queue_config(max_jobs=max_jobs))
    before = world.store.commits
    assert world.deliver(item("q1", "clean")).outcome == "recorded"
    assert world.data("q1", "clean")["state"] == SUBMITTED
    return world.store.commits - before


def test_an_item_is_recorded_submitted_and_a_redelivery_is_a_duplicate() -> None:
    world = World()
    world.apply("q1", queue_config())
    result = world.deliver(item("q1", "a"), message_id="m-1")
    assert result.outcome == "recorded"
    data = world.data("q1", "a")
    assert data["state"] == SUBMITTED
    [job] = world.vertex.job_of("a")
    assert data["job"]["name"] == job["name"]
    assert data["claim"] is None
    assert [h["to"] for h in data["history"]] == ["QUEUED", "SUBMITTING", "SUBMITTED"]
    assert world.deliver(item("q1", "a"), message_id="m-1").outcome == "duplicate"
    assert len(world.vertex.jobs) == 1
    # One event per state change, in order (the recorder's: history + log + event).
    changes = [(e["data"]["from"], e["data"]["to"]) for e in world.events.sent]
    assert changes == [(None, "QUEUED"), ("QUEUED", "SUBMITTING"), ("SUBMITTING", "SUBMITTED")]


@pytest.mark.parametrize("max_jobs", [-1, 2])
@pytest.mark.parametrize("death", ["crash", "outage"])
def test_a_crash_after_every_write_then_redelivery_makes_one_job(max_jobs: int, death: str) -> None:
    """`crash`: the process dies right after the write; `outage`: the store answers an
    infrastructure error right after the write went through (so the dispatcher asks Pub/Sub for
    a redelivery without knowing the write happened)."""
    writes = _commits_of_a_clean_dispatch(max_jobs)
    assert writes >= 2  # recorded-and-claimed, then submitted: at least two points to die at
    for crash_after in range(1, writes + 1):
        world = World(lease_seconds=0.0)  # the dead dispatcher's lease is over at once
        world.apply("q1", queue_config(max_jobs=max_jobs))
        error = ConnectionError("store unavailable") if death == "outage" else None
        world.store.crash_after(crash_after, error)
        with pytest.raises(SimulatedCrash if error is None else InfrastructureError):
            world.deliver(item("q1", "crashy"), message_id="m-1")
        # Pub/Sub redelivers the same message to a fresh process.
        result = world.deliver(item("q1", "crashy"), message_id="m-1")
        assert result.outcome in {"recorded", "repaired", "duplicate"}, crash_after
        jobs = world.vertex.job_of("crashy")
        data = world.data("q1", "crashy")
        assert len(jobs) == 1, f"crash after write {crash_after}: {len(jobs)} jobs"
        assert data["state"] == SUBMITTED, crash_after
        assert data["job"]["name"] == jobs[0]["name"]
        assert data["claim"] is None
        assert data["history"][-1]["to"] == SUBMITTED
        if max_jobs > 0:
            assert world.store.count_holding_slots("q1") == 1
            assert list(world.store.slot_holders("q1").values()).count(None) == max_jobs - 1
        # A third delivery changes nothing.
        assert world.deliver(item("q1", "crashy")).outcome == "duplicate"
        assert len(world.vertex.jobs) == 1


def test_a_crash_after_the_create_is_repaired_by_the_label_lookup() -> None:
    world = World(lease_seconds=0.0)
    world.apply("q1", queue_config(max_jobs=1))
    world.vertex.crash_after_create = True
    with pytest.raises(SimulatedCrash):
        world.deliver(item("q1", "x"), message_id="m-1")
    assert world.data("q1", "x")["state"] == ItemState.SUBMITTING.value
    result = world.deliver(item("q1", "x"), message_id="m-1")
    assert result.outcome == "repaired"
    [job] = world.vertex.job_of("x")
    assert world.data("q1", "x")["job"]["name"] == job["name"]
    assert world.vertex.calls["CreateCustomJob"] == 1  # found, not created again


def test_a_crash_inside_the_lease_leaves_the_item_visibly_submitting() -> None:
    world = World()  # a 600 s lease: the dead dispatcher may still be alive
    world.apply("q1", queue_config())
    world.store.crash_after(1)  # dies right after recording the item claimed
    with pytest.raises(SimulatedCrash):
        world.deliver(item("q1", "x"))
    assert world.deliver(item("q1", "x")).outcome == "duplicate"
    assert world.data("q1", "x")["state"] == ItemState.SUBMITTING.value
    assert world.vertex.jobs == {}
    # Once the lease is over, the sweep repairs it: one job, recorded.
    world.clock.advance(601)
    world.app().sweeper.run()
    assert world.data("q1", "x")["state"] == SUBMITTED
    assert len(world.vertex.job_of("x")) == 1


def test_a_create_whose_answer_is_lost_is_found_not_made_again() -> None:
    world = World()
    world.apply("q1", queue_config())
    world.vertex.lose_answers = 1  # Vertex made the job, the 503 says otherwise
    assert world.deliver(item("q1", "x")).outcome == "recorded"
    [job] = world.vertex.job_of("x")
    data = world.data("q1", "x")
    assert data["state"] == SUBMITTED
    assert data["job"]["name"] == job["name"]
    assert world.vertex.calls["CreateCustomJob"] == 1  # the retry looked first, and found it


def test_a_crash_after_every_write_of_a_refill_then_the_next_sweep_makes_one_job() -> None:
    """The sweep refills a freed slot (the submission path the dispatcher does not take): it
    dies after each of its writes in turn; the next sweep submits the waiting item once."""

    def busy_world() -> tuple[World, str]:
        world = World(lease_seconds=0.0)
        world.apply("q1", queue_config(max_jobs=1))
        world.deliver(item("q1", "first"))
        world.deliver(item("q1", "next"))
        [job] = world.vertex.job_of("first")
        world.vertex.set_state(job["name"], "JOB_STATE_SUCCEEDED")
        return world, job["name"]

    clean, _ = busy_world()
    before = clean.store.commits
    clean.app().sweeper.run()
    assert clean.data("q1", "next")["state"] == SUBMITTED
    writes = clean.store.commits - before
    assert writes >= 3  # the end recorded, the next claimed, its job recorded (and the lease)
    for crash_after in range(1, writes + 1):
        world, _ = busy_world()
        world.store.crash_after(crash_after)
        with pytest.raises(SimulatedCrash):
            world.app().sweeper.run()
        world.app().sweeper.run()
        world.app().sweeper.run()  # a claim the first repair left is repaired by now
        assert world.data("q1", "first")["state"] == ItemState.SUCCEEDED.value, crash_after
        data = world.data("q1", "next")
        jobs = world.vertex.job_of("next")
        assert len(jobs) == 1, f"crash after write {crash_after}: {len(jobs)} jobs"
        assert data["state"] == SUBMITTED, crash_after
        assert data["job"]["name"] == jobs[0]["name"]
        assert world.store.slot_holders("q1") == {"00000": "q1~next"}


def test_concurrent_redeliveries_make_one_job_each() -> None:
    world = World()
    world.apply("q1", queue_config(max_jobs=3))
    deliveries = [item("q1", f"i-{n}") for n in range(10) for _ in range(4)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(world.deliver, deliveries))
    assert world.store.count_holding_slots("q1") == 3
    assert len(world.vertex.jobs) == 3
    assert world.store.count_waiting("q1") == 7
    assert sorted(len(world.vertex.job_of(f"i-{n}")) for n in range(10)) == [0] * 7 + [1] * 3


def test_a_busy_queue_admits_by_priority_as_jobs_end() -> None:
    world = World()
    world.apply("q1", queue_config(max_jobs=1))
    world.deliver(item("q1", "first"))
    world.deliver(item("q1", "low", priority="low"))
    world.deliver(item("q1", "high", priority="high"))
    assert world.data("q1", "first")["state"] == SUBMITTED
    for waiting in ("low", "high"):
        data = world.data("q1", waiting)
        assert data["state"] == QUEUED
        assert data.get("reason"), "a waiting item says why it waits"
    [job] = world.vertex.job_of("first")
    world.vertex.set_state(job["name"], "JOB_STATE_RUNNING")
    world.app().sweeper.run()
    assert world.data("q1", "first")["state"] == ItemState.RUNNING.value
    assert world.data("q1", "high")["state"] == QUEUED  # still full
    world.vertex.set_state(job["name"], "JOB_STATE_SUCCEEDED")
    world.app().sweeper.run()
    assert world.data("q1", "first")["state"] == ItemState.SUCCEEDED.value
    assert world.data("q1", "high")["state"] == SUBMITTED  # high before low, though younger
    assert world.data("q1", "low")["state"] == QUEUED
    assert world.store.count_holding_slots("q1") == 1


def test_cancel_a_waiting_item_and_a_running_one() -> None:
    world = World()
    world.apply("q1", queue_config(max_jobs=1))
    world.deliver(item("q1", "running"))
    world.deliver(item("q1", "waiting"))
    canceller = world.app().canceller
    assert canceller.request("q1", "waiting") is ItemState.CANCELLED
    assert world.data("q1", "waiting")["state"] == ItemState.CANCELLED.value
    canceller.request("q1", "running")
    [job] = world.vertex.job_of("running")
    assert world.vertex.calls["CancelCustomJob"] == 1
    assert job["name"] in world.vertex.jobs
    world.app().sweeper.run()
    assert world.data("q1", "running")["state"] == ItemState.CANCELLED.value
    assert world.store.count_holding_slots("q1") == 0
    assert world.store.slot_holders("q1") == {"00000": None}


def test_a_quota_refusal_puts_the_item_back_and_backs_the_queue_off() -> None:
    world = World()
    world.apply("q1", queue_config())
    world.vertex.refuse.append(
        VertexError(
            429,
            "RESOURCE_EXHAUSTED",
            "The following quota metrics exceed quota limits: "
            "aiplatform.googleapis.com/custom_model_training_cpus",
            "CreateCustomJob",
        )
    )
    world.deliver(item("q1", "big"))
    data = world.data("q1", "big")
    assert data["state"] == QUEUED
    assert "custom_model_training_cpus" in str(data.get("reason"))
    backoff = (world.store.get_queue("q1") or {}).get("capacity_backoff")
    assert backoff is not None
    assert world.vertex.jobs == {}
    # Past the backoff, the sweep submits it.
    world.clock.advance(3600)
    world.app().sweeper.run()
    assert world.data("q1", "big")["state"] == SUBMITTED
    assert len(world.vertex.job_of("big")) == 1
    assert world.vertex.jobs[next(iter(world.vertex.jobs))]["name"].startswith(PARENT)


def test_image_builds_are_claimed_once_joined_and_rebuilt_after_a_failure() -> None:
    world = World()
    cloudbuild = FakeCloudBuild()
    builder = ImageBuilder(world.store, lambda: cast(Any, cloudbuild), world.clock)
    sha = "a" * 64
    uri = f"gs://launchq-test-staging/launchq/sources/{sha}.tar.gz"
    source = ItemSource(uri=uri, sha256=sha, module="train")
    plan = plan_for(source, BuilderSettings(destination=DEST))
    with ThreadPoolExecutor(8) as pool:
        records = list(pool.map(lambda n: builder.ensure(plan, f"q/item-{n}", "src"), range(8)))
    assert cloudbuild.created == 1
    assert {r.key for r in records} == {plan.key}
    assert sorted(builder.waiters(plan.key)) == sorted(f"q/item-{n}" for n in range(8))
    cloudbuild.finish("b-1", "FAILURE")
    [failed] = builder.follow([plan.key])
    assert failed.state == BuildState.FAILED
    # A redelivery of a waiter sees the failure; a new item builds again (attempt 2).
    assert builder.ensure(plan, "q/item-0", "src").state == BuildState.FAILED
    again = builder.ensure(plan, "q/new", "src")
    assert (again.state, again.attempt, cloudbuild.created) == (BuildState.BUILDING, 2, 2)
    cloudbuild.finish("b-2", "SUCCESS", plan.tag_uri)
    [built] = builder.follow([plan.key])
    assert (built.state, built.attempt) == (BuildState.SUCCESS, 2)
    assert built.pinned_uri is not None
    stored = world.store.get_build(plan.key)
    assert stored is not None
    assert [a["status"] for a in stored.data["failed_attempts"]] == ["FAILURE"]
    assert builder.ensure(plan, "q/later", "src").state == BuildState.SUCCESS
    assert cloudbuild.created == 2


def test_the_recorder_publishes_what_it_committed_and_nothing_it_lost() -> None:
    world = World()
    recorder = world.app().recorder
    created = recorder.create(NewItem("q1", "a", {"priority": 1}, "accepted"))
    assert created is not None
    claimed = recorder.transition(created, Transition(ItemState.SUBMITTING, "admitted"))
    sent = len(world.events.sent)
    with pytest.raises(Conflict):  # `created` is stale: nothing committed, nothing published
        recorder.transition(created, Transition(ItemState.CANCELLED, "late"))
    assert len(world.events.sent) == sent
    submitted = recorder.transition(claimed, Transition(ItemState.SUBMITTED, "created"))
    running = recorder.transition(submitted, Transition(ItemState.RUNNING, "started"))
    recorder.transition(
        running,
        Transition(ItemState.QUEUED, "retry", via=ItemState.FAILED, via_cause="preempted"),
    )
    history = world.data("q1", "a")["history"]
    published = [
        (e["data"]["from"], e["data"]["to"], e["data"]["cause"]) for e in world.events.sent
    ]
    assert published == [(h["from"], h["to"], h["cause"]) for h in history]
    assert published[-2:] == [("RUNNING", "FAILED", "preempted"), ("FAILED", "QUEUED", "retry")]


def test_a_crash_after_every_write_of_a_move_then_the_next_sweep_makes_one_job() -> None:
    """A stockout in the first placement: the sweep records the failure and the move to
    us-east4 in one write, then creates the next attempt there. It dies after each of its writes
    in turn; the next sweeps finish with exactly one job per attempt, the second in us-east4."""
    ladder = [{"name": "central"}, {"name": "east", "region": "us-east4"}]

    def stocked_out() -> World:
        world = World(lease_seconds=0.0)
        world.apply("q1", queue_config(max_jobs=2, placements=ladder))
        world.deliver(item("q1", "a"))
        [job] = world.vertex.job_of("a")
        stockout = {"code": 8, "message": "Resources are insufficient in region: us-central1."}
        world.vertex.set_state(job["name"], "JOB_STATE_FAILED", error=stockout)
        return world

    clean = stocked_out()
    before = clean.store.commits
    clean.app().sweeper.run()
    assert clean.data("q1", "a")["region"] == "us-east4"
    writes = clean.store.commits - before
    assert writes >= 3  # the failure and the move, the claim in us-east4, its job recorded
    for crash_after in range(1, writes + 1):
        world = stocked_out()
        world.store.crash_after(crash_after)
        with pytest.raises(SimulatedCrash):
            world.app().sweeper.run()
        world.app().sweeper.run()
        world.app().sweeper.run()
        data = world.data("q1", "a")
        jobs = world.vertex.job_of("a")
        attempts = sorted(j["labels"]["launchq-attempt"] for j in jobs)
        assert attempts == ["1", "2"], f"crash after write {crash_after}: {attempts}"
        assert (data["state"], data["placement"], data["attempt"]) == (SUBMITTED, 1, 2)
        second = next(j for j in jobs if j["labels"]["launchq-attempt"] == "2")
        assert "/locations/us-east4/" in second["name"]
        assert data["job"]["name"] == second["name"]
