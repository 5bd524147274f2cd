"""The dispatcher on the real emulators and the Vertex stand-in: exactly once, admission, errors."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from launchq.dispatch import DispatchOutcome
from launchq.errors import InfrastructureError
from launchq.gcp.events import CONFLICT_EVENT_TYPE
from launchq.model.states import SLOT_STATES, ItemState
from launchq.spec.item import canonical_hash
from launchq_local.standin import StandinServer
from tests.fixtures.dispatch import (
    CRASH_POINTS,
    Harness,
    RecordingPublisher,
    SimulatedCrash,
    item,
    message,
    queue_config,
)

pytestmark = pytest.mark.integration


def all_jobs(standin: StandinServer) -> list[dict[str, Any]]:
    return standin.admin.jobs()


def test_an_item_becomes_one_job_with_its_labels(harness: Harness, standin: StandinServer) -> None:
    harness.apply("q1", queue_config())
    result = harness.dispatcher().handle(message(item("q1", "run-1")))
    assert result.outcome == "recorded"
    assert result.submitted == ["run-1"]
    data = harness.item_data("q1", "run-1")
    assert data["state"] == ItemState.SUBMITTED.value
    assert data["attempt"] == 1
    name = data["job"]["name"]
    assert name.startswith("projects/")
    assert "/locations/us-central1/customJobs/" in name
    assert data["job"]["console_url"].endswith(f"?project={data['project']}")
    created = all_jobs(standin)
    assert [j["name"] for j in created] == [name]
    labels = created[0]["labels"]
    assert labels["launchq-attempt"] == "1"
    assert labels["launchq-queue"] == "q1"
    assert [h["to"] for h in data["history"]] == ["QUEUED", "SUBMITTING", "SUBMITTED"]


def test_redelivery_of_a_submitted_item_changes_nothing(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("q1", queue_config())
    dispatcher = harness.dispatcher()
    dispatcher.handle(message(item("q1", "run-1")))
    before = harness.item_data("q1", "run-1")
    result = dispatcher.handle(message(item("q1", "run-1")))
    assert result.outcome == "duplicate"
    assert harness.item_data("q1", "run-1")["updated_at"] == before["updated_at"]
    assert len(all_jobs(standin)) == 1


def test_fifty_concurrent_deliveries_of_one_item_make_one_job(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("q1", queue_config())
    dispatcher = harness.dispatcher()
    msg = message(item("q1", "hot-item"), message_id="m-1")
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _i: dispatcher.handle(msg), range(50)))
    assert len(all_jobs(standin)) == 1
    assert sum(len(r.submitted) for r in results) == 1
    data = harness.item_data("q1", "hot-item")
    assert data["state"] == ItemState.SUBMITTED.value
    assert data["attempt"] == 1


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_crash_at_every_step_then_redelivery_makes_one_job(
    harness: Harness, standin: StandinServer, point: str
) -> None:
    harness.apply("q1", queue_config())
    harness.lease_seconds = 0.0  # the dead dispatcher's lease is over at once

    crash = point

    with pytest.raises(SimulatedCrash):
        harness.dispatcher(crash_at=crash).handle(message(item("q1", "crashy"), message_id="m-1"))
    # Pub/Sub redelivers (same message id), to a fresh process.
    result = harness.dispatcher().handle(message(item("q1", "crashy"), message_id="m-1"))
    assert result.outcome in {"recorded", "repaired"}
    created = all_jobs(standin)
    assert len(created) == 1, f"crash after {point!r} produced {len(created)} jobs"
    data = harness.item_data("q1", "crashy")
    assert data["state"] == ItemState.SUBMITTED.value
    assert data["job"]["name"] == created[0]["name"]
    assert data["claim"] is None
    # A third delivery is a no-op.
    assert harness.dispatcher().handle(message(item("q1", "crashy"))).outcome == "duplicate"
    assert len(all_jobs(standin)) == 1


def test_the_repair_takeover_publishes_its_transition(
    harness: Harness, standin: StandinServer
) -> None:
    """A repair is a state change like any other: its takeover (SUBMITTING -> SUBMITTING, a
    new claim) is in the history and is published, then the job it records."""
    harness.apply("q1", queue_config())
    harness.lease_seconds = 0.0
    with pytest.raises(SimulatedCrash):
        harness.dispatcher(crash_at="claimed").handle(message(item("q1", "stuck")))
    events = RecordingPublisher()
    result = harness.app(events=events).dispatcher.handle(message(item("q1", "stuck")))
    assert result.outcome == DispatchOutcome.REPAIRED
    changes = [
        (e["data"]["from"], e["data"]["to"], e["data"]["cause"])
        for e in events.sent
        if e["subject"] == "stuck"
    ]
    assert changes == [
        ("SUBMITTING", "SUBMITTING", "repair: submit lease expired"),
        ("SUBMITTING", "SUBMITTED", "submitted"),
    ]
    causes = [h["cause"] for h in harness.item_data("q1", "stuck")["history"]]
    assert "repair: submit lease expired" in causes
    assert len(all_jobs(standin)) == 1


def test_a_crash_inside_the_lease_leaves_the_item_visibly_submitting(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("q1", queue_config())

    crash = "claimed"

    with pytest.raises(SimulatedCrash):
        harness.dispatcher(crash_at=crash).handle(message(item("q1", "x")))
    result = harness.dispatcher().handle(message(item("q1", "x")))
    assert result.outcome == "duplicate"
    assert harness.item_data("q1", "x")["state"] == ItemState.SUBMITTING.value
    assert all_jobs(standin) == []


def test_thousand_items_each_delivered_three_times_make_thousand_jobs(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("bulk", queue_config())
    dispatcher = harness.dispatcher()
    messages = [message(item("bulk", f"i-{n:04d}"), message_id=f"m-{n}") for n in range(1000)]
    deliveries = [m for m in messages for _ in range(3)]
    with ThreadPoolExecutor(24) as pool:
        list(pool.map(dispatcher.handle, deliveries))
    created = all_jobs(standin)
    assert len(created) == 1000
    assert len({j["labels"]["launchq-item"] for j in created}) == 1000


def test_max_jobs_is_never_exceeded_by_concurrent_dispatchers(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("small", queue_config(max_jobs=3))
    dispatchers = [harness.dispatcher() for _ in range(8)]
    msgs = [message(item("small", f"i-{n}")) for n in range(50)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda p: dispatchers[p[0] % 8].handle(p[1]), enumerate(msgs)))
    assert len(all_jobs(standin)) == 3
    states = [
        record.state.value for record in harness.store.items_in_states(ItemState, queue="small")
    ]
    assert sum(ItemState(s) in SLOT_STATES for s in states) == 3
    assert states.count(ItemState.QUEUED.value) == 47
    waiting = harness.item_data(
        "small",
        next(
            f"i-{n}" for n in range(50) if harness.item_data("small", f"i-{n}")["state"] == "QUEUED"
        ),
    )
    assert waiting["reason"] == "waiting for a free slot"


def test_freed_slot_goes_to_highest_priority_then_oldest(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("one", queue_config(max_jobs=1))
    dispatcher = harness.dispatcher()
    dispatcher.handle(message(item("one", "first")))
    dispatcher.handle(message(item("one", "low-old", priority="low")))
    dispatcher.handle(message(item("one", "medium-old", priority="medium")))
    dispatcher.handle(message(item("one", "high-new", priority="high")))
    dispatcher.handle(message(item("one", "medium-new", priority="medium")))
    assert len(all_jobs(standin)) == 1
    order = []
    for _ in range(4):
        _finish(harness, "one", order[-1] if order else "first")
        order.extend(harness.app().admission.admit("one"))
    assert order == ["high-new", "medium-old", "medium-new", "low-old"]


def _finish(harness: Harness, queue: str, item_id: str) -> None:
    from launchq.store import Transition

    record = harness.store.get_item(queue, item_id)
    assert record is not None
    harness.store.transition(
        record, Transition(ItemState.SUCCEEDED, "test: job ended"), release_slot=True
    )


def test_a_paused_queue_admits_nothing(harness: Harness, standin: StandinServer) -> None:
    harness.apply("p", queue_config(paused=True))
    harness.dispatcher().handle(message(item("p", "a")))
    data = harness.item_data("p", "a")
    assert data["state"] == ItemState.QUEUED.value
    assert data["reason"] == "queue paused"
    assert all_jobs(standin) == []


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"\x00not json", "not JSON"),
        (b"[1, 2]", "must be a JSON object, got list"),
        (b'{"image_uri": "x"}', "no queue"),
        (b'{"queue": "a/b", "item_id": "x"}', "invalid queue name 'a/b'"),
        (b'{"queue": "q1", "item_id": "../etc"}', "invalid item_id '../etc'"),
        (b'{"queue": "q1", "item_id": "' + b"x" * 2000 + b'"}', "invalid item_id"),
        (b'{"queue": "q1", "pad": "' + b"x" * 300_000 + b'"}', "the limit is 262144"),
    ],
)
def test_undecodable_messages_are_recorded_and_acknowledged(
    harness: Harness, payload: bytes, problem: str
) -> None:
    result = harness.dispatcher().handle(message(payload, message_id="bad-1"))
    assert result.outcome == "rejected"
    data = harness.item_data("_unroutable", "_message-bad-1")
    assert data["state"] == ItemState.REJECTED.value
    assert problem in data["error"]["message"]


def test_unknown_queue_is_rejected(harness: Harness) -> None:
    result = harness.dispatcher().handle(message(item("nope", "a")))
    assert result.outcome == "rejected"
    data = harness.item_data("nope", "a")
    assert data["error"]["reason"] == "unknown_queue"


def test_an_item_rejected_for_its_queue_and_sent_again_once_it_exists_is_a_duplicate(
    harness: Harness, standin: StandinServer
) -> None:
    """One hash whatever became of the item: a rejected item stores the hash an accepted one
    would, so sending it again (on its queue's topic, priority by name) is a redelivery of the
    rejection, not a conflict; another payload under the id still is one."""
    dispatcher = harness.dispatcher()
    sent = item("later", "a", priority="high", metadata={"run": 1})
    assert dispatcher.handle(message(sent)).outcome == DispatchOutcome.REJECTED
    rejected = harness.item_data("later", "a")
    harness.apply("later", queue_config())
    again = {**sent, "priority": 1}  # the same item: `high` is rank 1
    del again["queue"]
    result = dispatcher.handle(message(again, topic="launchq-q-later"))
    assert (result.outcome, result.detail) == (DispatchOutcome.DUPLICATE, "already REJECTED")
    assert harness.item_data("later", "a") == rejected
    other = dispatcher.handle(message(item("later", "a", image_uri="gcr.io/p/other:2")))
    assert other.outcome == DispatchOutcome.CONFLICT
    assert all_jobs(standin) == []


def test_a_rejection_recorded_with_the_raw_payload_hash_still_reads_as_a_redelivery(
    harness: Harness,
) -> None:
    """Records written before the one hash kept the raw payload's: they stay valid."""
    dispatcher = harness.dispatcher()
    sent = item("gone", "old")
    dispatcher.handle(message(sent))
    harness.store.item_ref("gone", "old").update({"payload_hash": canonical_hash(sent)})
    harness.apply("gone", queue_config())
    assert dispatcher.handle(message(sent)).outcome == DispatchOutcome.DUPLICATE


def test_invalid_item_is_rejected_with_its_path(harness: Harness, standin: StandinServer) -> None:
    harness.apply("q1", queue_config())
    bad = item("q1", "bad", env={"AIP_MODEL_DIR": "/tmp/x"})
    assert harness.dispatcher().handle(message(bad)).outcome == "rejected"
    data = harness.item_data("q1", "bad")
    assert data["state"] == ItemState.REJECTED.value
    assert "AIP_MODEL_DIR" in data["error"]["message"]
    assert data["error"]["path"]
    assert all_jobs(standin) == []


def test_queue_and_item_id_may_come_as_attributes(harness: Harness) -> None:
    harness.apply("q1", queue_config())
    msg = message({"image_uri": "gcr.io/p/t:1"}, queue="q1", item_id="from-attrs")
    assert harness.dispatcher().handle(msg).item_id == "from-attrs"
    assert harness.item_data("q1", "from-attrs")["state"] == ItemState.SUBMITTED.value


def test_message_id_is_the_fallback_item_id(harness: Harness) -> None:
    harness.apply("q1", queue_config())
    msg = message({"queue": "q1", "image_uri": "gcr.io/p/t:1"}, message_id="1234")
    assert harness.dispatcher().handle(msg).item_id == "1234"


def test_vertex_400_at_submit_fails_the_item_and_frees_its_slot(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("one", queue_config(max_jobs=1))
    standin.admin.add_fault(["CreateCustomJob"], http_status=400, count=1)
    result = harness.dispatcher().handle(message(item("one", "a")))
    assert result.outcome == "recorded"
    data = harness.item_data("one", "a")
    assert data["state"] == ItemState.FAILED.value
    assert data["error"]["http_status"] == 400
    assert data["slot"] is None
    assert harness.store.slot_holders("one") == {"00000": None}


def test_transient_vertex_errors_are_retried_in_process(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("q1", queue_config())
    standin.admin.add_fault(["CreateCustomJob"], http_status=503, count=2)
    harness.dispatcher().handle(message(item("q1", "a")))
    assert harness.item_data("q1", "a")["state"] == ItemState.SUBMITTED.value
    assert len(all_jobs(standin)) == 1


def test_a_persistent_429_is_capacity_not_a_redelivery(
    harness: Harness, standin: StandinServer
) -> None:
    """A request-rate 429 that outlasts the retries waits QUEUED (rate_limited), acknowledged."""
    harness.apply("q1", queue_config())
    standin.admin.add_fault(["CreateCustomJob"], http_status=429, count=4)
    assert harness.dispatcher().handle(message(item("q1", "a"))).submitted == []
    data = harness.item_data("q1", "a")
    assert (data["state"], data["reason"]) == (ItemState.QUEUED.value, "rate_limited")
    harness.dispatcher().handle(message(item("q1", "a")))
    assert harness.item_data("q1", "a")["state"] == ItemState.SUBMITTED.value
    assert len(all_jobs(standin)) == 1


def test_persistent_transient_errors_raise_for_redelivery_then_one_job(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("q1", queue_config())
    standin.admin.add_fault(["CreateCustomJob"], http_status=503, count=4)
    with pytest.raises(InfrastructureError):
        harness.dispatcher().handle(message(item("q1", "a")))
    data = harness.item_data("q1", "a")
    assert data["state"] == ItemState.SUBMITTING.value
    assert data["needs_lookup"] is True
    harness.dispatcher().handle(message(item("q1", "a")))
    assert harness.item_data("q1", "a")["state"] == ItemState.SUBMITTED.value
    assert len(all_jobs(standin)) == 1


def test_an_ambiguous_create_is_looked_up_not_repeated(
    harness: Harness, standin: StandinServer
) -> None:
    """Vertex created the job but the answer was lost (503 after the fact): still one job."""
    harness.apply("q1", queue_config())
    standin.admin.add_fault(["CreateCustomJob"], http_status=503, count=1, phase="after")
    harness.dispatcher().handle(message(item("q1", "a")))
    assert len(all_jobs(standin)) == 1
    data = harness.item_data("q1", "a")
    assert data["state"] == ItemState.SUBMITTED.value
    assert data["job"]["name"] == all_jobs(standin)[0]["name"]
    assert standin.admin.counters()["ListCustomJobs"] >= 1


def test_a_repair_that_finds_a_finished_job_frees_its_slot(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("one", queue_config(max_jobs=1))
    harness.lease_seconds = 0.0

    crash = "created"

    with pytest.raises(SimulatedCrash):
        harness.dispatcher(crash_at=crash).handle(message(item("one", "a")))
    [job] = all_jobs(standin)
    standin.admin.set_state(job["name"], "JOB_STATE_FAILED", error=(3, "exit 3"))
    harness.dispatcher().handle(message(item("one", "a")))  # redelivery repairs it
    data = harness.item_data("one", "a")
    assert data["state"] == ItemState.FAILED.value
    assert data["error"]["message"] == "exit 3"
    assert data["slot"] is None
    assert harness.store.slot_holders("one") == {"00000": None}
    harness.dispatcher().handle(message(item("one", "b")))
    assert harness.item_data("one", "b")["state"] == ItemState.SUBMITTED.value


def test_a_reused_item_id_with_another_payload_is_a_visible_conflict(
    harness: Harness, standin: StandinServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Same id, same payload: a redelivery (no-op). Same id, other payload: the first item
    stands, nothing changes, and the conflict is logged with both hashes and published."""
    harness.apply("q1", queue_config())
    events = RecordingPublisher()
    dispatcher = harness.app(events=events).dispatcher
    assert dispatcher.handle(message(item("q1", "a"))).outcome == DispatchOutcome.RECORDED
    first = harness.item_data("q1", "a")
    # A redelivery, even with other key order and whitespace, is not a conflict.
    reordered = json.dumps(dict(reversed(list(item("q1", "a").items()))), indent=2).encode()
    assert dispatcher.handle(message(reordered)).outcome == DispatchOutcome.DUPLICATE
    other = dispatcher.handle(message(item("q1", "a", image_uri="gcr.io/p/other:2")))
    assert other.outcome == DispatchOutcome.CONFLICT
    after = harness.item_data("q1", "a")
    assert after == first  # not one field written
    assert after["payload"]["image_uri"] == "gcr.io/p/trainer:1"
    assert after["payload_hash"] == first["payload_hash"]
    assert len(all_jobs(standin)) == 1
    [conflict] = [e for e in events.sent if e["type"] == CONFLICT_EVENT_TYPE]
    assert conflict["subject"] == "a"
    assert conflict["data"]["stored_hash"] == first["payload_hash"]
    assert conflict["data"]["received_hash"] != first["payload_hash"]
    # A rejected item's id is taken too: another payload under it is a conflict, not a retry.
    assert dispatcher.handle(message(item("q1", "bad", env={"AIP_X": "1"}))).outcome == "rejected"
    assert dispatcher.handle(message(item("q1", "bad"))).outcome == DispatchOutcome.CONFLICT
    assert harness.item_data("q1", "bad")["state"] == ItemState.REJECTED.value


# -- control messages: cancel through the queue's topic -------------------------------------


def _cancel(queue: str, item_id: str) -> Any:
    return message({"item_id": item_id}, topic=f"launchq-q-{queue}", **{"launchq-action": "cancel"})


def test_a_control_message_cancels_a_queued_and_a_running_item_and_frees_the_slot(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("one", queue_config(max_jobs=1))
    dispatcher = harness.dispatcher()
    dispatcher.handle(message(item("one", "running")))
    dispatcher.handle(message(item("one", "waiting")))
    assert harness.item_data("one", "waiting")["state"] == ItemState.QUEUED.value
    result = dispatcher.handle(_cancel("one", "waiting"))
    assert result.outcome == DispatchOutcome.CONTROLLED
    assert harness.item_data("one", "waiting")["state"] == ItemState.CANCELLED.value
    [job] = all_jobs(standin)
    standin.admin.set_state(job["name"], "JOB_STATE_RUNNING")
    harness.sweeper().run()
    assert dispatcher.handle(_cancel("one", "running")).outcome == DispatchOutcome.CONTROLLED
    assert standin.admin.counters()["CancelCustomJob"] == 1
    deadline = time.monotonic() + 10
    while harness.item_data("one", "running")["state"] != "CANCELLED":
        assert time.monotonic() < deadline, harness.item_data("one", "running")["state"]
        harness.sweeper().run()
        time.sleep(0.05)
    assert harness.item_data("one", "running")["slot"] is None
    assert harness.store.slot_holders("one") == {"00000": None}  # the slot is free again
    # A second delivery of the same control message changes nothing.
    assert dispatcher.handle(_cancel("one", "running")).outcome == DispatchOutcome.CONTROLLED
    assert standin.admin.counters()["CancelCustomJob"] == 1


def test_a_control_message_cannot_reach_another_queues_item(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("team-a", queue_config())
    harness.apply("team-b", queue_config())
    harness.dispatcher().handle(message(item("team-b", "theirs")))
    before = harness.item_data("team-b", "theirs")
    control = _cancel("team-a", "theirs")  # published to team-a's topic
    result = harness.dispatcher().handle(control)
    assert result.outcome == DispatchOutcome.REJECTED
    refused = harness.item_data("_unroutable", f"_message-{control.message_id}")
    assert refused["error"]["reason"] == "control_refused"
    assert "no item 'theirs' in queue 'team-a'" in refused["error"]["message"]
    assert harness.item_data("team-b", "theirs") == before
    assert standin.admin.counters().get("CancelCustomJob", 0) == 0


def test_a_cross_queue_cancel_naming_the_other_queue_leaves_the_item_id_free(
    harness: Harness, standin: StandinServer
) -> None:
    """A refused control message is recorded under `_unroutable` (by message id), never as an
    item of the topic's queue: the id it names stays free there."""
    harness.apply("team-a", queue_config())
    harness.apply("team-b", queue_config())
    dispatcher = harness.dispatcher()
    dispatcher.handle(message(item("team-b", "theirs")))
    before = harness.item_data("team-b", "theirs")
    for body in ({"item_id": "theirs", "queue": "team-b"}, {"item_id": "theirs", "queue": 7}):
        control = message(body, topic="launchq-q-team-a", **{"launchq-action": "cancel"})
        assert dispatcher.handle(control).outcome == DispatchOutcome.REJECTED
        refused = harness.item_data("_unroutable", f"_message-{control.message_id}")
        assert refused["error"]["reason"] == "control_refused"
        assert refused["error"]["message"].startswith("cancel refused: ")
        assert refused["attributes"] == {"launchq-action": "cancel"}
    assert harness.store.get_item("team-a", "theirs") is None
    assert harness.item_data("team-b", "theirs") == before
    # The id is still usable on team-a.
    fresh = message(item("team-a", "theirs"), topic="launchq-q-team-a")
    assert dispatcher.handle(fresh).outcome == DispatchOutcome.RECORDED
    assert harness.item_data("team-a", "theirs")["state"] == ItemState.SUBMITTED.value
    assert standin.admin.counters().get("CancelCustomJob", 0) == 0


def test_a_control_message_that_fails_inside_is_not_recorded_under_its_item_id(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even the catch-all keys a failed control message by its message id."""
    harness.apply("one", queue_config())
    dispatcher = harness.dispatcher()
    dispatcher.handle(message(item("one", "mine"), topic="launchq-q-one"))

    def broken(queue: str, item_id: str) -> Any:
        raise ValueError("a bug")

    monkeypatch.setattr(dispatcher.canceller, "request", broken)
    control = _cancel("one", "never-used")
    assert dispatcher.handle(control).outcome == DispatchOutcome.REJECTED
    recorded = harness.item_data("_unroutable", f"_message-{control.message_id}")
    assert recorded["error"]["reason"] == "internal_error"
    assert harness.store.get_item("one", "never-used") is None


@pytest.mark.parametrize(
    ("body", "attributes", "reason", "path"),
    [
        ({"queue": ""}, {}, "invalid_queue", "queue"),
        ({"queue": 42}, {}, "invalid_queue", "queue"),
        ({"queue": ["team-a"]}, {}, "invalid_queue", "queue"),
        ({}, {"queue": ""}, "invalid_queue", "attributes.queue"),
        ({"queue": "team-b"}, {}, "queue_mismatch", "queue"),
        ({}, {"queue": "team-b"}, "queue_mismatch", "attributes.queue"),
    ],
)
def test_a_bad_queue_field_on_a_queue_topic_is_recorded_with_its_reason_and_path(
    harness: Harness,
    body: dict[str, Any],
    attributes: dict[str, str],
    reason: str,
    path: str,
) -> None:
    """docs/message-format.md: a `queue` that is no non-empty string is `invalid_queue` on a
    queue's topic too; only a string naming another queue is `queue_mismatch`."""
    harness.apply("team-a", queue_config())
    payload = {"item_id": "x1", "image_uri": "gcr.io/p/trainer:1", **body}
    result = harness.dispatcher().handle(message(payload, topic="launchq-q-team-a", **attributes))
    assert result.outcome == DispatchOutcome.REJECTED
    error = harness.item_data("team-a", "x1")["error"]
    assert (error["reason"], error["path"]) == (reason, path)


def test_a_null_queue_on_a_queue_topic_is_no_queue_named(harness: Harness) -> None:
    harness.apply("team-a", queue_config())
    payload = {"item_id": "x2", "image_uri": "gcr.io/p/trainer:1", "queue": None}
    result = harness.dispatcher().handle(message(payload, topic="launchq-q-team-a"))
    assert result.outcome == DispatchOutcome.RECORDED, result.detail
