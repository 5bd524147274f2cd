"""Vertex's limits on the emulators and the stand-in: quota refusals, the creation budget, the
sweep loop and its read mask."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent
from functions_framework import create_app
from google.cloud import firestore

from launchq import functions
from launchq.capacity import quota_reason
from launchq.gcp.vertex import CallRetry, VertexClient
from launchq.model.reasons import WaitReason
from launchq.model.states import ItemState
from launchq.store import utcnow
from launchq_client.queues import QueueStates, set_paused
from launchq_client.reads import item_detail, pending_items
from launchq_client.values import iso
from launchq_local.standin import StandinServer
from launchq_ui import views
from tests.fixtures.dispatch import (
    Harness,
    RecordingPublisher,
    item,
    message,
    queue_config,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
A100 = "custom_model_training_nvidia_a100_gpus"
QUOTA_429 = f"The following quota metrics exceed quota limits: aiplatform.googleapis.com/{A100}"
RATE_429 = (
    "Quota exceeded for quota metric 'Job or LRO submission requests' and limit 'Job or LRO "
    "submission requests per minute per region' of service 'aiplatform.googleapis.com'."
)
WAITING = quota_reason(A100, "us-central1")


class Clock:
    """The store's clock, movable forward (backoffs end without the test waiting for them);
    `frozen` stops it (one creation-budget window for a whole test)."""

    def __init__(self, frozen: bool = False) -> None:
        self.offset = timedelta()
        self.frozen = utcnow() if frozen else None

    def __call__(self) -> datetime:
        return (self.frozen or utcnow()) + self.offset


def quota_fault(standin: StandinServer, count: int | None = None) -> None:
    standin.admin.add_fault(
        methods=["CreateCustomJob"], http_status=429, message=QUOTA_429, count=count
    )


def creates(standin: StandinServer) -> int:
    return standin.admin.counters().get("CreateCustomJob", 0)


# -- quota is capacity ---------------------------------------------------------------------


def test_a_quota_refusal_requeues_with_the_reason_and_backs_the_queue_off(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("q", queue_config(max_jobs=2))
    quota_fault(standin)
    events = RecordingPublisher()
    result = harness.app(events=events).dispatcher.handle(message(item("q", "a")))
    assert result.submitted == []  # no exception: the message is acknowledged
    data = harness.item_data("q", "a")
    assert data["state"] == "QUEUED"
    assert data["reason"] == WAITING
    assert data["attempt"] == 0
    assert data["claim"] is None
    assert data["slot"] is None
    assert set(harness.store.slot_holders("q").values()) == {None}  # its slot was released
    assert [h["to"] for h in data["history"]] == ["QUEUED", "SUBMITTING", "QUEUED"]
    backoff = harness.store.get_queue("q")["capacity_backoff"]  # type: ignore[index]
    assert backoff["metric"] == A100
    assert backoff["refusals"] == 1
    last = events.sent[-1]["data"]
    assert (last["to"], last["reason"], last["quota_metric"]) == ("QUEUED", WAITING, A100)
    pending = pending_items(harness.store, "q")
    assert [(row["item_id"], row["reason"]) for row in pending] == [("a", WAITING)]


def test_the_function_answers_2xx_to_a_quota_refusal(
    firestore_db: firestore.Client,
    gcp_project: str,
    standin: StandinServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in {
        "LAUNCHQ_PROJECT": gcp_project,
        "LAUNCHQ_VERTEX_ENDPOINT": standin.url,
        "LAUNCHQ_EVENTS_TOPIC": "",
        "LAUNCHQ_QUEUE_CACHE_SECONDS": "0",
    }.items():
        monkeypatch.setenv(key, value)
    functions.reset()
    harness = Harness(firestore_db, gcp_project, standin.url)
    harness.apply("q", queue_config(max_jobs=1))
    quota_fault(standin)
    client = create_app("dispatch", str(ROOT / "functions/dispatch/main.py"), "cloudevent")
    data = base64.b64encode(json.dumps(item("q", "a")).encode()).decode()
    event = CloudEvent(
        {
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": "//pubsub.googleapis.com/projects/p/topics/launchq-q-q",
        },
        {"message": {"data": data, "messageId": "1"}},
    )
    headers, body = to_structured(event)
    try:
        response = client.test_client().post("/", headers=headers, data=body)
    finally:
        functions.reset()
    assert response.status_code == 200  # acknowledged: no redelivery, never a dead letter
    assert creates(standin) == 1  # one refused create, no in-process retries
    assert harness.item_data("q", "a")["reason"] == WAITING


def test_no_create_is_tried_while_backed_off_and_success_resets_it(
    harness: Harness, standin: StandinServer
) -> None:
    clock = Clock()
    harness.store.clock = clock
    harness.apply("q", queue_config(max_jobs=4))
    quota_fault(standin, count=1)
    dispatcher = harness.dispatcher()
    dispatcher.handle(message(item("q", "a")))
    for name in ("b", "c"):
        dispatcher.handle(message(item("q", name)))
    assert creates(standin) == 1  # b and c were not tried: the queue is backing off
    reasons = {row["item_id"]: row["reason"] for row in pending_items(harness.store, "q")}
    assert reasons == {"a": WAITING, "b": WAITING, "c": WAITING}
    assert harness.sweeper().run().admitted == 0
    assert creates(standin) == 1
    clock.offset = timedelta(seconds=16)  # the first backoff is 15 s
    assert harness.sweeper().run().admitted == 3
    assert "capacity_backoff" not in (harness.store.get_queue("q") or {})  # reset by success
    assert {harness.item_data("q", n)["state"] for n in "abc"} == {"SUBMITTED"}
    assert harness.item_data("q", "a")["attempt"] == 1


def test_repeated_refusals_double_the_backoff(harness: Harness, standin: StandinServer) -> None:
    clock = Clock()
    harness.store.clock = clock
    harness.apply("q", queue_config(max_jobs=1))
    quota_fault(standin)
    harness.dispatcher().handle(message(item("q", "a")))
    first = (harness.store.get_queue("q") or {})["capacity_backoff"]
    clock.offset = timedelta(seconds=16)
    harness.sweeper().run()  # tries again after the backoff: refused again
    second = (harness.store.get_queue("q") or {})["capacity_backoff"]
    assert (first["refusals"], second["refusals"]) == (1, 2)
    assert second["until"] - (utcnow() + clock.offset) > timedelta(seconds=25)  # 30 s now
    assert creates(standin) == 2
    assert harness.item_data("q", "a")["state"] == "QUEUED"


# -- the request rate ----------------------------------------------------------------------


def test_a_rate_429_is_retried_then_deferred_as_rate_limited(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("q", queue_config(max_jobs=2))
    standin.admin.add_fault(
        methods=["CreateCustomJob"], http_status=429, message=RATE_429, count=None
    )
    result = harness.dispatcher().handle(message(item("q", "a")))
    assert result.submitted == []
    assert creates(standin) == 4  # the create and its three jittered retries
    data = harness.item_data("q", "a")
    assert (data["state"], data["reason"]) == ("QUEUED", WaitReason.RATE_LIMITED)
    assert "capacity_backoff" not in (harness.store.get_queue("q") or {})  # not a quota
    standin.admin.clear_faults()
    assert harness.sweeper().run().admitted == 1


def test_a_passing_rate_429_is_retried_in_place(harness: Harness, standin: StandinServer) -> None:
    harness.apply("q", queue_config(max_jobs=2))
    standin.admin.add_fault(methods=["CreateCustomJob"], http_status=429, message=RATE_429, count=1)
    assert harness.dispatcher().handle(message(item("q", "a"))).submitted == ["a"]
    assert creates(standin) == 2


def test_eight_dispatchers_keep_to_the_creation_budget(
    firestore_db: firestore.Client, gcp_project: str, standin: StandinServer
) -> None:
    rate = 300  # per minute: 5 creates per one-second window (scaled down from 60/min x 5)
    standin.admin.set_delays(queued=None)
    harness = Harness(firestore_db, gcp_project, standin.url, create_rate_per_minute=rate)
    harness.apply("q", queue_config())
    apps = [harness.app() for _ in range(8)]
    names = [f"i{n:02d}" for n in range(40)]
    start = threading.Barrier(8)

    def deliver(index: int) -> None:
        start.wait()
        for name in names[index::8]:
            apps[index].dispatcher.handle(message(item("q", name)))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(deliver, range(8)))
    states = Counter(harness.item_data("q", n)["state"] for n in names)
    assert states["QUEUED"] > 0  # over budget: they wait, with the reason
    assert {harness.item_data("q", n)["reason"] for n in names if n not in _submitted(harness)}
    deadline = time.monotonic() + 30
    while len(_submitted(harness, names)) < len(names):
        assert time.monotonic() < deadline, "the sweep did not admit the rate-limited items"
        harness.sweeper().run()
        time.sleep(0.2)
    jobs = harness.vertex.list_custom_jobs("projects/launchq-test/locations/us-central1")
    per_second = Counter(int(_parse(job["createTime"]).timestamp()) for job in jobs)
    assert sum(per_second.values()) == len(names)  # every item exactly once
    # A create holds a token of its one-second window; it reaches Vertex a few ms later, so a
    # one-second window of Vertex's clock can see the tail of the previous budget window.
    assert max(per_second.values()) <= 2 * rate // 60
    span = max(per_second) - min(per_second) + 1
    assert span >= len(names) // (rate // 60) - 1  # 40 creates took at least 7 windows


def _submitted(harness: Harness, names: list[str] | None = None) -> set[str]:
    query = harness.db.collection("items").where(
        filter=firestore.FieldFilter("state", "==", "SUBMITTED")
    )
    docs = query.stream()
    got = {str((d.to_dict() or {})["item_id"]) for d in docs}
    return got if names is None else got & set(names)


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# -- the sweep loop ------------------------------------------------------------------------


class RecordingSession(requests.Session):
    """A plain requests session that keeps every URL it sent (the wire, not a mock)."""

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False
        self.sent: list[str] = []

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        response = super().request(method, url, *args, **kwargs)
        self.sent.append(response.url)
        return response


@pytest.fixture
def recorded(harness: Harness) -> Iterator[RecordingSession]:
    session = RecordingSession()
    harness._vertex = VertexClient(
        harness.vertex_url, session, 10.0, CallRetry(sleep=lambda _s: None)
    )
    yield session
    session.close()


def test_the_sweep_lists_with_a_read_mask(
    harness: Harness, standin: StandinServer, recorded: RecordingSession
) -> None:
    harness.apply("q", queue_config())
    harness.dispatcher().handle(message(item("q", "a")))
    standin.admin.set_state(str(harness.item_data("q", "a")["job"]["name"]), "RUNNING")
    assert harness.sweeper().run().transitions == 1
    lists = [url for url in recorded.sent if "customJobs?" in url and "readMask" in url]
    assert len(lists) == 1
    mask = requests.utils.unquote(lists[0].split("readMask=")[1].split("&")[0])
    assert mask.split(",") == [
        "name",
        "state",
        "labels",
        "createTime",
        "startTime",
        "endTime",
        "updateTime",
        "error",
    ]
    assert harness.item_data("q", "a")["state"] == "RUNNING"


def test_one_invocation_refills_a_freed_slot_within_the_interval(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("one", queue_config(max_jobs=1))
    dispatcher = harness.dispatcher()
    dispatcher.handle(message(item("one", "first")))
    dispatcher.handle(message(item("one", "second")))
    assert harness.item_data("one", "second")["state"] == "QUEUED"
    first_job = str(harness.item_data("one", "first")["job"]["name"])
    interval, period = 0.5, 4.0
    freed_at: list[float] = []

    def finish_first() -> None:
        time.sleep(1.2)  # after the loop's first pass or two
        standin.admin.set_state(first_job, "SUCCEEDED")
        freed_at.append(time.monotonic())

    finisher = threading.Thread(target=finish_first)
    finisher.start()
    started = time.monotonic()
    summary = harness.sweeper().loop(interval, period)
    finisher.join()
    took = time.monotonic() - started
    assert summary.skipped is None
    assert summary.admitted == 1
    assert harness.item_data("one", "second")["state"] == "SUBMITTED"
    second = harness.item_data("one", "second")["history"][-1]["at"]
    refill = second.timestamp() - (time.time() - (time.monotonic() - freed_at[0]))
    assert refill <= interval + 0.5  # bounded by the loop interval, not the 60 s schedule
    assert summary.passes >= 4  # it kept going after the refill
    assert period - 2 * interval - 0.5 <= took < period  # stops before the next schedule
    assert harness.sweeper().run().skipped is None  # the lease was let go


def test_a_new_item_over_budget_is_recorded_rate_limited_in_one_write(
    firestore_db: firestore.Client, gcp_project: str, standin: StandinServer
) -> None:
    standin.admin.set_delays(queued=None)
    harness = Harness(firestore_db, gcp_project, standin.url, create_rate_per_minute=60)
    clock = Clock(frozen=True)
    harness.store.clock = clock  # one budget window for the whole test: 1 token at 60/min
    harness.apply("q", queue_config(max_jobs=2))
    dispatcher = harness.dispatcher()
    assert dispatcher.handle(message(item("q", "a"))).submitted == ["a"]
    first = harness.item_data("q", "a")
    # Admitted at once: created already claimed, the token in the same write.
    assert [h["to"] for h in first["history"]] == ["QUEUED", "SUBMITTING", "SUBMITTED"]
    assert dispatcher.handle(message(item("q", "b"))).submitted == []
    second = harness.item_data("q", "b")
    assert (second["state"], second["reason"]) == ("QUEUED", WaitReason.RATE_LIMITED)
    assert [h["to"] for h in second["history"]] == ["QUEUED"]  # never claimed and put back
    assert second.get("slot") is None
    assert creates(standin) == 1
    tokens = list(harness.db.collection("budgets").stream())
    assert len(tokens) == 1
    assert tokens[0].update_time == tokens[0].create_time  # written once
    clock.offset = timedelta(seconds=1)  # the next window
    assert harness.sweeper().run().admitted == 1
    assert harness.item_data("q", "b")["state"] == "SUBMITTED"
    assert len(list(harness.db.collection("budgets").stream())) == 2


# -- why a waiting item waits: derived from the queue now, not stored once ------------------

SLOT, PAUSED = WaitReason.FREE_SLOT.value, WaitReason.PAUSED.value
ADMITTING = WaitReason.ADMITTING.text


def test_waiting_reasons_follow_the_queue_through_pause_resume_and_backoff(
    harness: Harness, standin: StandinServer
) -> None:
    """Issue 20, defect 7: the reason was written once, when the item was recorded. Every
    display (`queue pending`, `status`, the dashboard's queue row and item page) now derives it
    from the queue as it is: pause -> paused, resume -> a slot or the quota backoff, the
    backoff's end -> admitted next, a full queue -> a free slot."""
    clock = Clock()
    harness.store.clock = clock
    harness.apply("q", queue_config(max_jobs=1))
    dispatcher = harness.dispatcher()
    dispatcher.handle(message(item("q", "a")))  # takes the only slot
    dispatcher.handle(message(item("q", "b")))

    def pending() -> dict[str, str]:
        return {row["item_id"]: row["reason"] for row in pending_items(harness.store, "q")}

    def status(name: str) -> str:
        data = harness.item_data("q", name)
        return str(item_detail(data, clock(), QueueStates(harness.store))["reason"])

    def dashboard() -> tuple[list[tuple[str, int]], dict[str, str]]:
        row = views.queue_row(harness.store, harness.store.get_queue("q") or {}, [], clock())
        page = views.page_of_items(harness.store, "q", [ItemState.QUEUED], "", None, clock())
        return row["reasons"], {r["item_id"]: r["reason"] for r in page.rows}

    assert pending() == {"b": SLOT}
    set_paused(harness.store, "q", True)
    dispatcher.handle(message(item("q", "c")))  # recorded during the pause
    assert harness.item_data("q", "b")["reason"] == SLOT  # what was stored stays as it was
    assert harness.item_data("q", "c")["reason"] == PAUSED
    assert pending() == {"b": PAUSED, "c": PAUSED}
    assert status("b") == PAUSED
    assert dashboard() == ([(PAUSED, 2)], {"b": PAUSED, "c": PAUSED})

    set_paused(harness.store, "q", False)
    assert pending() == {"b": SLOT, "c": SLOT}  # a still holds the only slot
    assert status("c") == SLOT
    assert dashboard() == ([(SLOT, 2)], {"b": SLOT, "c": SLOT})

    # a ends; the sweep gives its slot to b, and Vertex refuses b's create for a quota.
    standin.admin.set_state(harness.item_data("q", "a")["job"]["name"], "JOB_STATE_SUCCEEDED")
    quota_fault(standin, count=1)
    harness.sweeper().run()
    assert pending() == {"b": WAITING, "c": WAITING}
    backoff_until = harness.store.get_queue("q")["capacity_backoff"]["until"]  # type: ignore[index]
    rows = pending_items(harness.store, "q")
    assert {row["waiting_until"] for row in rows} == {iso(backoff_until)}
    assert status("c") == WAITING  # recorded as `queue paused`: it waits for the quota now
    assert dashboard() == ([(WAITING, 2)], {"b": WAITING, "c": WAITING})

    clock.offset = timedelta(seconds=16)  # the backoff (15 s) is over, the slot is free
    assert pending() == {"b": ADMITTING, "c": ADMITTING}
    assert {row["waiting_until"] for row in pending_items(harness.store, "q")} == {None}
    assert status("b") == ADMITTING
    assert harness.sweeper().run().admitted == 1
    assert harness.item_data("q", "b")["state"] == "SUBMITTED"
    assert pending() == {"c": SLOT}
    assert dashboard() == ([(SLOT, 1)], {"c": SLOT})


def test_a_single_pass_loop_waits_for_budget_windows_instead_of_admitting_one_item(
    firestore_db: firestore.Client, gcp_project: str, standin: StandinServer
) -> None:
    """The local stack runs the sweep function with `LAUNCHQ_SWEEP_INTERVAL_SECONDS=0` (one pass
    per scheduler call). At 60 creates/min a window holds one token, so a pass that did not wait
    for the next window admitted one item per call: 30 items on max_jobs 10 took 83 s."""
    standin.admin.set_delays(queued=None)
    harness = Harness(firestore_db, gcp_project, standin.url, create_rate_per_minute=60)
    harness.apply("q", queue_config(max_jobs=4))
    harness.store.set_paused("q", True)  # the items wait for the sweep, as 30 at once do
    for name in "abcd":
        harness.dispatcher().handle(message(item("q", name)))
    harness.store.set_paused("q", False)
    assert all(harness.item_data("q", n)["state"] == "QUEUED" for n in "abcd")
    started = time.monotonic()
    summary = harness.sweeper().loop(0.0, 60.0)
    took = time.monotonic() - started
    assert summary.passes == 1
    assert summary.admitted == 4  # one per one-second window, all in this one pass
    assert all(harness.item_data("q", n)["state"] == "SUBMITTED" for n in "abcd")
    assert took < 6.0
