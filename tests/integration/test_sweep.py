"""The sweep on the real emulators and the Vertex stand-in."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from functions_framework import create_app
from google.cloud import firestore

from launchq import functions
from launchq.errors import NotFound
from launchq.model.states import ItemState
from launchq_local.standin import StandinServer
from tests.fixtures.dispatch import Harness, SimulatedCrash, item, message, queue_config

pytestmark = pytest.mark.integration
NO_BACKOFF = {"backoff_initial_seconds": 0, "backoff_max_seconds": 0}


def submit(harness: Harness, queue: str, item_id: str, **extra: Any) -> dict[str, Any]:
    harness.dispatcher().handle(message(item(queue, item_id, **extra)))
    return harness.item_data(queue, item_id)


def job_name(harness: Harness, queue: str, item_id: str) -> str:
    return str(harness.item_data(queue, item_id)["job"]["name"])


@pytest.mark.parametrize(
    ("vertex_state", "item_state", "frees_slot"),
    [
        ("JOB_STATE_PENDING", ItemState.PENDING, False),
        ("JOB_STATE_RUNNING", ItemState.RUNNING, False),
        ("JOB_STATE_UPDATING", ItemState.RUNNING, False),
        ("JOB_STATE_PAUSED", ItemState.PAUSED, False),
        ("JOB_STATE_CANCELLING", ItemState.CANCELLING, False),
        ("JOB_STATE_SUCCEEDED", ItemState.SUCCEEDED, True),
        ("JOB_STATE_FAILED", ItemState.FAILED, True),
        ("JOB_STATE_CANCELLED", ItemState.CANCELLED, True),
        ("JOB_STATE_EXPIRED", ItemState.EXPIRED, True),
        ("JOB_STATE_PARTIALLY_SUCCEEDED", ItemState.PARTIALLY_SUCCEEDED, True),
    ],
)
def test_every_job_state_is_recorded(
    harness: Harness,
    standin: StandinServer,
    vertex_state: str,
    item_state: ItemState,
    frees_slot: bool,
) -> None:
    harness.apply("q", queue_config(max_jobs=2, retry={"max_attempts": 1}))
    submit(harness, "q", "a")
    error = (3, "boom") if vertex_state == "JOB_STATE_FAILED" else None
    standin.admin.set_state(job_name(harness, "q", "a"), vertex_state, error=error)
    summary = harness.sweeper().run()
    assert summary.errors == []
    data = harness.item_data("q", "a")
    assert data["state"] == item_state.value
    assert data["job"]["vertex_state"] == vertex_state
    assert (data["slot"] is None) is frees_slot
    assert ("q~a" in harness.store.slot_holders("q").values()) is not frees_slot
    last = data["history"][-1]
    assert last["from"] == "SUBMITTED"
    assert last["to"] == item_state.value
    assert last["vertex_state"] == vertex_state
    assert last["cause"] == f"vertex: {vertex_state}"
    assert last["observed_at"] is not None
    if vertex_state == "JOB_STATE_FAILED":
        assert data["error"]["code"] == 3
        assert data["error"]["message"] == "boom"
        assert data["error"]["reason"] == "user_error"
    if vertex_state == "JOB_STATE_CANCELLED":
        assert data["error"]["code"] == 1  # Vertex's own error, as the stand-in sets it


def test_a_state_launchq_does_not_know_is_recorded_and_keeps_its_slot(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("q", queue_config(max_jobs=1))
    submit(harness, "q", "a")
    sweeper = harness.sweeper()
    record = harness.store.get_item("q", "a")
    assert record is not None
    summary = sweeper.run()  # warm-up: nothing changed
    sweeper._observe(record, {"name": job_name(harness, "q", "a"), "state": 42}, summary)
    data = harness.item_data("q", "a")
    assert data["state"] == ItemState.UNKNOWN.value
    assert data["job"]["vertex_state"] == "UNRECOGNIZED(42)"
    assert data["slot"] is not None


def test_times_and_history_come_from_vertex(harness: Harness, standin: StandinServer) -> None:
    harness.apply("q", queue_config())
    submit(harness, "q", "a")
    name = job_name(harness, "q", "a")
    standin.admin.set_state(name, "JOB_STATE_RUNNING")
    harness.sweeper().run()
    standin.admin.set_state(name, "JOB_STATE_SUCCEEDED")
    harness.sweeper().run()
    data = harness.item_data("q", "a")
    job = harness.vertex.get_custom_job(name)  # the v1 API's own view of the job
    assert [(h["from"], h["to"]) for h in data["history"]] == [
        (None, "QUEUED"),
        ("QUEUED", "SUBMITTING"),
        ("SUBMITTING", "SUBMITTED"),
        ("SUBMITTED", "RUNNING"),
        ("RUNNING", "SUCCEEDED"),
    ]
    assert data["history"][-1]["start_time"] == job["startTime"]
    assert data["history"][-1]["end_time"] == job["endTime"]
    assert data["attempts"][-1]["state"] == "SUCCEEDED"
    assert data["job"]["logs_url"].startswith("https://console.cloud.google.com/logs/query")


def test_a_second_sweep_records_nothing_new(harness: Harness, standin: StandinServer) -> None:
    harness.apply("q", queue_config())
    for n in range(3):
        submit(harness, "q", f"i{n}")
    standin.admin.set_state(job_name(harness, "q", "i0"), "JOB_STATE_RUNNING")
    first = harness.sweeper().run()
    assert first.transitions == 1
    before = {n: harness.item_data("q", f"i{n}")["updated_at"] for n in range(3)}
    second = harness.sweeper().run()
    assert second.transitions == 0
    assert second.admitted == 0
    assert {n: harness.item_data("q", f"i{n}")["updated_at"] for n in range(3)} == before


def test_an_overlapping_sweep_exits_cleanly(harness: Harness) -> None:
    assert harness.store.take_leadership("sweep", "someone-else", 60)
    summary = harness.sweeper().run()
    assert summary.skipped == "another sweep holds the lease"
    assert summary.transitions == 0
    # A dead sweep's lease runs out; the next one proceeds.
    harness.store.clock = lambda: Harness.now() + timedelta(minutes=10)
    assert harness.sweeper().run().skipped is None


def test_freed_slots_go_to_the_highest_priority_then_the_oldest(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("one", queue_config(max_jobs=1))
    submit(harness, "one", "running")
    for item_id, priority in [("low", "low"), ("high-1", "high"), ("high-2", "high")]:
        submit(harness, "one", item_id, priority=priority)
    order = []
    current = "running"
    for _ in range(3):
        standin.admin.set_state(job_name(harness, "one", current), "JOB_STATE_SUCCEEDED")
        summary = harness.sweeper().run()
        assert summary.admitted == 1
        current = next(
            i
            for i in ("low", "high-1", "high-2")
            if i not in order and harness.item_data("one", i)["state"] == "SUBMITTED"
        )
        order.append(current)
    assert order == ["high-1", "high-2", "low"]


def test_a_paused_queue_gets_no_refill(harness: Harness, standin: StandinServer) -> None:
    harness.apply("one", queue_config(max_jobs=1))
    submit(harness, "one", "a")
    submit(harness, "one", "b")
    harness.apply("one", queue_config(max_jobs=1, paused=True))
    standin.admin.set_state(job_name(harness, "one", "a"), "JOB_STATE_SUCCEEDED")
    assert harness.sweeper().run().admitted == 0
    assert harness.item_data("one", "b")["state"] == "QUEUED"


@pytest.mark.parametrize(
    ("code", "message_text", "retry", "retried", "reason"),
    [
        (8, "Resources are insufficient in region", {}, True, "no_capacity"),
        (8, "Quota exceeded for custom_model_training_nvidia_l4_gpus", {}, False, "quota"),
        (8, "Quota exceeded", {"reasons": ["quota"]}, True, "quota"),
        (13, "Internal error", {}, True, "infrastructure"),
        (14, "Service unavailable", {}, True, "infrastructure"),
        (
            3,
            "The replica workerpool0-0 exited with a non-zero status of 3.",
            {},
            False,
            "user_error",
        ),
        (3, "exited with a non-zero status of 3", {"user_errors": True}, True, "user_error"),
        (8, "stockout", {"max_attempts": 1}, False, "no_capacity"),
        (13, "Internal", {"reasons": []}, False, "infrastructure"),
    ],
)
def test_failures_are_retried_by_class_and_budget(
    harness: Harness,
    standin: StandinServer,
    code: int,
    message_text: str,
    retry: dict[str, Any],
    retried: bool,
    reason: str,
) -> None:
    harness.apply("q", queue_config(max_jobs=1, retry={**NO_BACKOFF, **retry}))
    submit(harness, "q", "a")
    first_job = job_name(harness, "q", "a")
    standin.admin.set_state(first_job, "JOB_STATE_FAILED", error=(code, message_text))
    summary = harness.sweeper().run()
    data = harness.item_data("q", "a")
    assert data["error"]["reason"] == reason
    assert data["error"]["message"] == message_text
    if not retried:
        assert summary.retried == 0
        assert data["state"] == "FAILED"
        assert len(standin.admin.jobs()) == 1
        return
    assert summary.retried == 1
    assert summary.admitted == 1  # zero backoff: the same sweep starts attempt 2
    assert data["state"] == "SUBMITTED"
    assert data["attempt"] == 2
    assert [a["n"] for a in data["attempts"]] == [1, 2]
    assert data["attempts"][0]["state"] == "FAILED"
    assert data["job"]["name"] != first_job
    labels = {j["name"]: j["labels"]["launchq-attempt"] for j in standin.admin.jobs()}
    assert sorted(labels.values()) == ["1", "2"]
    tos = [h["to"] for h in data["history"]]
    assert tos[-4:] == ["FAILED", "QUEUED", "SUBMITTING", "SUBMITTED"]


def test_backoff_doubles_from_the_initial_delay(harness: Harness, standin: StandinServer) -> None:
    harness.apply(
        "q",
        queue_config(
            retry={"max_attempts": 4, "backoff_initial_seconds": 60, "backoff_max_seconds": 100}
        ),
    )
    submit(harness, "q", "a")
    delays = []
    for attempt in (1, 2, 3):
        standin.admin.set_state(job_name(harness, "q", "a"), "JOB_STATE_FAILED", error=(8, "x"))
        harness.sweeper().run()
        data = harness.item_data("q", "a")
        assert data["state"] == "QUEUED"
        assert data["attempt"] == attempt
        delays.append(round((data["not_before"] - data["history"][-1]["at"]).total_seconds()))
        # Nothing is admitted before its time; then the sweep admits it.
        assert harness.sweeper().run().admitted == 0
        later = data["not_before"] + timedelta(seconds=1)
        harness.store.clock = lambda later=later: later
        assert harness.sweeper().run().admitted == 1
        harness.store.clock = Harness.now
    assert delays == [60, 100, 100]


def test_a_job_that_does_not_start_in_time_is_cancelled_and_retried(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply(
        "q",
        queue_config(
            start_timeout_seconds=1,
            retry={**NO_BACKOFF, "reasons": ["start_timeout"]},
        ),
    )
    submit(harness, "q", "a")
    first_job = job_name(harness, "q", "a")
    time.sleep(1.2)
    summary = harness.sweeper().run()
    assert summary.cancelled_start_timeout == 1
    assert standin.admin.job(first_job)["state"] in {"JOB_STATE_CANCELLING", "JOB_STATE_CANCELLED"}
    deadline = time.monotonic() + 5
    while harness.item_data("q", "a")["attempt"] < 2 and time.monotonic() < deadline:
        harness.sweeper().run()
        time.sleep(0.05)
    data = harness.item_data("q", "a")
    assert data["attempt"] == 2
    assert data["error"]["reason"] == "start_timeout"
    assert "CANCELLED" in [h["to"] for h in data["history"]]


def test_start_timeout_without_retry_ends_cancelled(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("q", queue_config(start_timeout_seconds=1))
    submit(harness, "q", "a")
    time.sleep(1.2)
    deadline = time.monotonic() + 5
    while harness.item_data("q", "a")["state"] != "CANCELLED" and time.monotonic() < deadline:
        harness.sweeper().run()
        time.sleep(0.05)
    data = harness.item_data("q", "a")
    assert data["state"] == "CANCELLED"
    assert data["error"]["reason"] == "start_timeout"
    assert len(standin.admin.jobs()) == 1


def test_cancel_a_waiting_item(harness: Harness, standin: StandinServer) -> None:
    harness.apply("one", queue_config(max_jobs=1))
    submit(harness, "one", "running")
    submit(harness, "one", "waiting")
    harness.dispatcher()
    assert harness.app().canceller.request("one", "waiting") == "CANCELLED"
    assert harness.item_data("one", "waiting")["state"] == "CANCELLED"
    assert len(standin.admin.jobs()) == 1


@pytest.mark.parametrize("vertex_state", ["JOB_STATE_QUEUED", "JOB_STATE_RUNNING"])
def test_cancel_a_submitted_item_goes_through_vertex_and_is_never_retried(
    harness: Harness, standin: StandinServer, vertex_state: str
) -> None:
    harness.apply("q", queue_config(retry={**NO_BACKOFF, "reasons": ["start_timeout"]}))
    submit(harness, "q", "a")
    name = job_name(harness, "q", "a")
    if vertex_state != "JOB_STATE_QUEUED":
        standin.admin.set_state(name, vertex_state)
        harness.sweeper().run()
    harness.app().canceller.request("q", "a")
    assert standin.admin.counters()["CancelCustomJob"] == 1
    deadline = time.monotonic() + 5
    while harness.item_data("q", "a")["state"] != "CANCELLED" and time.monotonic() < deadline:
        harness.sweeper().run()
        time.sleep(0.05)
    data = harness.item_data("q", "a")
    assert data["state"] == "CANCELLED"
    assert data["error"]["reason"] == "cancelled"
    assert len(standin.admin.jobs()) == 1
    assert standin.admin.counters()["CancelCustomJob"] == 1  # the sweep did not cancel again


def test_cancel_a_finished_item_changes_nothing(harness: Harness, standin: StandinServer) -> None:
    harness.apply("q", queue_config())
    submit(harness, "q", "a")
    standin.admin.set_state(job_name(harness, "q", "a"), "JOB_STATE_SUCCEEDED")
    harness.sweeper().run()
    assert harness.app().canceller.request("q", "a") == "SUCCEEDED"
    assert standin.admin.counters()["CancelCustomJob"] == 0
    with pytest.raises(NotFound):
        harness.app().canceller.request("q", "nope")


def test_cancel_while_submitting_is_sent_once_the_job_exists(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("q", queue_config())
    harness.lease_seconds = 0.0

    crash = "created"

    with pytest.raises(SimulatedCrash):
        harness.dispatcher(crash_at=crash).handle(message(item("q", "a")))
    assert harness.app().canceller.request("q", "a") == "SUBMITTING"
    first = harness.sweeper().run()  # repairs: finds the job by label and records it
    assert first.repaired == 1
    harness.sweeper().run()  # sends the cancel
    assert standin.admin.counters()["CancelCustomJob"] == 1
    assert len(standin.admin.jobs()) == 1


def test_a_dead_dispatchers_submission_is_repaired_exactly_once(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("q", queue_config())
    harness.lease_seconds = 0.0
    for point in ("claimed", "created"):
        with pytest.raises(SimulatedCrash):
            harness.dispatcher(crash_at=point).handle(message(item("q", point)))
        assert harness.item_data("q", point)["state"] == "SUBMITTING"
    summary = harness.sweeper().run()
    assert summary.repaired == 2
    for point in ("claimed", "created"):
        assert harness.item_data("q", point)["state"] == "SUBMITTED"
    assert len(standin.admin.jobs()) == 2


def test_five_hundred_active_items_cost_one_list_call(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("bulk", queue_config())
    dispatcher = harness.dispatcher()
    for n in range(500):
        dispatcher.handle(message(item("bulk", f"i-{n:03d}")))
    standin.admin.reset_counters()
    summary = harness.sweeper().run()
    assert summary.items_seen == 500
    counters = standin.admin.counters()
    assert counters["ListCustomJobs"] == 1
    assert counters["GetCustomJob"] == 0
    assert summary.vertex_calls == {"ListCustomJobs": 1}


def test_a_vertex_fault_is_reported_and_loses_nothing(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("q", queue_config())
    submit(harness, "q", "a")
    standin.admin.set_state(job_name(harness, "q", "a"), "JOB_STATE_RUNNING")
    standin.admin.add_fault(["ListCustomJobs"], http_status=503, count=None)
    summary = harness.sweeper().run()
    assert len(summary.errors) == 1
    assert "503" in summary.errors[0]
    assert harness.item_data("q", "a")["state"] == "SUBMITTED"
    standin.admin.clear_faults()
    assert harness.sweeper().run().errors == []
    assert harness.item_data("q", "a")["state"] == "RUNNING"


def test_the_sweep_function_answers_its_summary(
    firestore_db: firestore.Client,
    gcp_project: str,
    standin: StandinServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LAUNCHQ_PROJECT", gcp_project)
    monkeypatch.setenv("LAUNCHQ_VERTEX_ENDPOINT", standin.url)
    monkeypatch.setenv("LAUNCHQ_EVENTS_TOPIC", "")
    monkeypatch.setenv("LAUNCHQ_SWEEP_INTERVAL_SECONDS", "0")  # one pass (the loop: below)
    functions.reset()
    harness = Harness(firestore_db, gcp_project, standin.url)
    harness.apply("q", queue_config())
    submit(harness, "q", "a")
    standin.admin.set_state(job_name(harness, "q", "a"), "JOB_STATE_SUCCEEDED")
    client = create_app("sweep", "functions/sweep/main.py", "http").test_client()
    response = client.post("/")
    functions.reset()
    assert response.status_code == 200
    body = response.get_json()
    assert body["items_seen"] == 1
    assert body["transitions"] == 1
    assert body["vertex_calls_total"] == 1
    assert harness.item_data("q", "a")["state"] == "SUCCEEDED"


def test_a_cancel_that_races_the_jobs_end_is_not_an_error(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("q", queue_config())
    submit(harness, "q", "a")
    standin.admin.set_state(job_name(harness, "q", "a"), "JOB_STATE_SUCCEEDED")  # not swept yet
    assert harness.app().canceller.request("q", "a") == "SUBMITTED"
    harness.sweeper().run()
    data = harness.item_data("q", "a")
    assert data["state"] == "SUCCEEDED"  # how it really ended; a user cancel is not retried


def test_a_leaked_slot_is_given_back(harness: Harness, standin: StandinServer) -> None:
    harness.apply("one", queue_config(max_jobs=1))
    submit(harness, "one", "done")
    submit(harness, "one", "waiting")
    # Simulate a leak: the holder ends without releasing its slot (a bug or a manual edit).
    harness.store.item_ref("one", "done").update({"state": "SUCCEEDED"})
    assert harness.store.slot_holders("one") == {"00000": "one~done"}
    summary = harness.sweeper().run()
    assert summary.slots_freed == 1
    assert summary.admitted == 1
    assert harness.item_data("one", "waiting")["state"] == "SUBMITTED"
    assert harness.store.slot_holders("one") == {"00000": "one~waiting"}
    assert harness.sweeper().run().slots_freed == 0  # a live holder keeps its slot
