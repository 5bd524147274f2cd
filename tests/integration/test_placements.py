"""The capacity ladder on the real emulators and the Vertex stand-in: failures that are the
placement's move an item to the next placement, in one write, and never yield two jobs."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from launchq.model.states import ItemState
from launchq.store.base import BACKOFF_FIELD
from launchq_cli.items import attempt_line
from launchq_client.backends import Backends
from launchq_client.reads import item_detail
from launchq_local.standin import StandinServer
from launchq_ui.app import create_app
from tests.fixtures.dispatch import Harness, SimulatedCrash, item, message, queue_config

pytestmark = pytest.mark.integration

STOCKOUT = (8, "Resources are insufficient in region: us-central1. Please try a different region.")
PREEMPTED = (14, "The job was preempted: its Spot VMs were reclaimed.")
LADDER = [
    {"name": "central"},
    {"name": "east", "region": "us-east4", "staging_bucket": "gs://launchq-test-staging-east"},
    {"name": "west", "region": "us-west1", "scheduling_strategy": "SPOT"},
]


def ladder(
    max_jobs: int = 4, placements: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    return queue_config(max_jobs=max_jobs, placements=placements or LADDER, **extra)


def a100_then_l4() -> dict[str, Any]:
    """A100s in us-central1 first, else L4s in us-east4 (a quota on one does not touch the
    other)."""
    east = {
        "machine_type": "g2-standard-8",
        "accelerator_type": "NVIDIA_L4",
        "accelerator_count": 1,
    }
    config = ladder(
        placements=[
            {"name": "central-a100"},
            {"name": "east-l4", "region": "us-east4", "machines": [east]},
        ]
    )
    config["spec"]["worker_pool_specs"][0]["machine_spec"] = {
        "machine_type": "a2-highgpu-1g",
        "accelerator_type": "NVIDIA_TESLA_A100",
        "accelerator_count": 1,
    }
    return config


def submit(harness: Harness, item_id: str, queue: str = "q") -> dict[str, Any]:
    harness.dispatcher().handle(message(item(queue, item_id)))
    return harness.item_data(queue, item_id)


def fail_current(
    harness: Harness, standin: StandinServer, item_id: str, error: tuple[int, str]
) -> str:
    name = str(harness.item_data("q", item_id)["job"]["name"])
    standin.admin.set_state(name, "JOB_STATE_FAILED", error=error)
    return name


def env_of(job: dict[str, Any]) -> dict[str, str]:
    container = job["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]
    return {e["name"]: e["value"] for e in container.get("env", [])}


def test_a_stockout_moves_the_next_attempt_to_the_next_placement_in_the_same_sweep(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("q", ladder())
    data = submit(harness, "a")
    assert data["placement"] == 0
    assert data["region"] == "us-central1"
    assert len(data["placements"]) == 3
    first = fail_current(harness, standin, "a", STOCKOUT)
    summary = harness.sweeper().run()
    assert summary.errors == []
    assert (summary.retried, summary.moved, summary.admitted) == (1, 1, 1)
    data = harness.item_data("q", "a")
    assert data["state"] == ItemState.SUBMITTED.value
    assert (data["placement"], data["region"]) == (1, "us-east4")
    assert data["parent"].endswith("/locations/us-east4")
    assert data["failed_placements"] == [0]
    assert data["job"]["name"].split("/")[3] == "us-east4"
    # The history says where each attempt ran and why it moved.
    one, two = data["attempts"]
    assert (one["placement_name"], one["region"], one["state"]) == (
        "central",
        "us-central1",
        "FAILED",
    )
    assert (one["failure_class"], one["moved_to"]) == ("no_capacity", "east")
    assert (two["placement_name"], two["region"], two["strategy"]) == (
        "east",
        "us-east4",
        "STANDARD",
    )
    assert "moved to east" in data["history"][-3]["cause"]
    # Two jobs in all, one per attempt, in the two regions; the second knows it is attempt 2
    # and checkpoints where the first did (the first placement's bucket).
    jobs = {job["name"]: job for job in standin.admin.jobs()}
    assert sorted(jobs) == sorted([first, data["job"]["name"]])
    old, new = (harness.vertex.get_custom_job(name) for name in (first, data["job"]["name"]))
    assert env_of(old)["LAUNCHQ_ATTEMPT"] == "1"
    assert env_of(new)["LAUNCHQ_ATTEMPT"] == "2"
    assert env_of(new)["LAUNCHQ_PLACEMENT"] == "east"
    checkpoint = "gs://launchq-test-staging/launchq/checkpoints/q/a/"
    assert (
        env_of(old)["LAUNCHQ_CHECKPOINT_DIR"] == env_of(new)["LAUNCHQ_CHECKPOINT_DIR"] == checkpoint
    )
    output = new["jobSpec"]["baseOutputDirectory"]["outputUriPrefix"]
    assert output.startswith("gs://launchq-test-staging-east/")  # Vertex wants it in-region
    assert new["labels"]["launchq-attempt"] == "2"


def test_eager_next_tries_the_failed_placement_last_and_backs_off_there_only(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("q", ladder(retry={"max_attempts": 6}))
    submit(harness, "a")
    regions = []
    for error in (STOCKOUT, PREEMPTED):
        fail_current(harness, standin, "a", error)
        harness.sweeper().run()
        data = harness.item_data("q", "a")
        regions.append(data["region"])
        assert data["state"] == "SUBMITTED"  # new placements start at once: no backoff
    assert regions == ["us-east4", "us-west1"]
    fail_current(harness, standin, "a", STOCKOUT)
    harness.sweeper().run()
    data = harness.item_data("q", "a")
    # Every placement has failed once: back to the least recently failed (the first), after
    # that placement's own backoff (60 s: one failure there).
    assert (data["state"], data["placement"]) == ("QUEUED", 0)
    assert data["failed_placements"] == [0, 1, 2]
    wait = (data["not_before"] - data["history"][-1]["at"]).total_seconds()
    assert round(wait) == 60
    assert data["error"]["reason"] == "no_capacity"
    # Why it waits, with each placement's reason (queue pending, status, the dashboard).
    why = (
        "retrying after every placement refused (central: no_capacity in us-central1; "
        "east: preempted in us-east4; west: no_capacity in us-west1)"
    )
    assert data["reason"] == why
    assert item_detail(data)["reason"] == why
    assert harness.sweeper().run().admitted == 0
    later = data["not_before"] + timedelta(seconds=1)
    harness.store.clock = lambda: later
    assert harness.sweeper().run().admitted == 1
    data = harness.item_data("q", "a")
    assert data["region"] == "us-central1"
    assert [r["placement"] for r in data["placement_refusals"]] == ["central", "east", "west"]
    assert len(standin.admin.jobs()) == 4


def test_same_first_retries_the_same_placement_before_moving(
    harness: Harness, standin: StandinServer
) -> None:
    config = ladder(
        failover={"policy": "same_first", "same_tries": 2},
        retry={"max_attempts": 5, "backoff_initial_seconds": 0, "backoff_max_seconds": 0},
    )
    harness.apply("q", config)
    submit(harness, "a")
    placements = []
    for _ in range(3):
        fail_current(harness, standin, "a", STOCKOUT)
        harness.sweeper().run()
        placements.append(harness.item_data("q", "a")["placement"])
    assert placements == [0, 1, 1]


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (
            (3, "The replica workerpool0-0 exited with a non-zero status of 3."),
            {"user_errors": True},
        ),
        ((13, "Internal error"), {}),
    ],
)
def test_failures_of_the_job_or_of_vertex_never_move_an_item(
    harness: Harness, standin: StandinServer, error: tuple[int, str], retry: dict[str, Any]
) -> None:
    harness.apply(
        "q", ladder(retry={"backoff_initial_seconds": 0, "backoff_max_seconds": 0, **retry})
    )
    submit(harness, "a")
    fail_current(harness, standin, "a", error)
    summary = harness.sweeper().run()
    data = harness.item_data("q", "a")
    assert (summary.retried, summary.moved) == (1, 0)
    assert (data["placement"], data["region"], data["attempt"]) == (0, "us-central1", 2)
    assert data.get("failed_placements", []) == []
    assert data.get("placement_refusals", []) == []  # no placement refused it


def test_a_user_failure_is_not_retried_by_default_even_with_placements(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("q", ladder())
    submit(harness, "a")
    fail_current(harness, standin, "a", (3, "exited with a non-zero status of 3"))
    harness.sweeper().run()
    data = harness.item_data("q", "a")
    assert data["state"] == "FAILED"
    assert len(standin.admin.jobs()) == 1


def test_moves_stop_at_max_attempts(harness: Harness, standin: StandinServer) -> None:
    harness.apply("q", ladder(retry={"max_attempts": 2}))
    submit(harness, "a")
    fail_current(harness, standin, "a", STOCKOUT)
    harness.sweeper().run()
    fail_current(harness, standin, "a", STOCKOUT)
    harness.sweeper().run()
    data = harness.item_data("q", "a")
    assert (data["state"], data["attempt"], data["placement"]) == ("FAILED", 2, 1)
    assert len(standin.admin.jobs()) == 2


def test_a_quota_refusal_at_create_moves_the_item_not_the_queue(
    harness: Harness, standin: StandinServer
) -> None:
    """us-central1's A100 quota is spent; the east placement runs L4s: the item moves there in
    the deferral's own write and the same delivery creates its job there (no sweep needed); the
    queue is not backed off (other placements are free)."""
    config = a100_then_l4()
    harness.apply("q", config)
    standin.admin.set_limits(quotas={"custom_model_training_nvidia_a100_gpus": 0})
    try:
        data = submit(harness, "a")
        assert (data["placement"], data["region"], data["state"]) == (1, "us-east4", "SUBMITTED")
        causes = [h["cause"] for h in data["history"]]
        assert any("moved to east-l4" in cause for cause in causes)
        queue = harness.store.get_queue("q")
        assert queue is not None
        assert not queue.get(BACKOFF_FIELD)
        assert data["job"]["name"].split("/")[3] == "us-east4"
        assert [job["name"].split("/")[3] for job in standin.admin.jobs()] == ["us-east4"]
        assert data["attempt"] == 1  # a refused create is no attempt
    finally:
        standin.admin.set_limits()


def test_every_placement_refusing_with_no_backoff_ends_the_round(
    harness: Harness, standin: StandinServer
) -> None:
    """Both regions' quotas spent and a zero backoff: the item moves back and forth a bounded
    number of times in one delivery, then waits, saying why."""
    config = a100_then_l4()
    config["retry"] = {"backoff_initial_seconds": 0, "backoff_max_seconds": 0}
    harness.apply("q", config)
    quotas = {
        "custom_model_training_nvidia_a100_gpus": 0,
        "custom_model_training_nvidia_l4_gpus": 0,
    }
    standin.admin.set_limits(quotas=quotas)
    try:
        data = submit(harness, "a")
        assert data["state"] == "QUEUED"
        assert standin.admin.jobs() == []
        assert data["reason"].startswith("retrying after every placement refused (")
        refused = standin.admin.counters().get("CreateCustomJob", 0)
        assert 2 <= refused <= 10  # bounded: MAX_MOVES moves and the first refusal
    finally:
        standin.admin.set_limits()


@pytest.mark.parametrize("point", ["moved", "created"])
def test_a_crash_during_a_move_never_yields_two_jobs(
    harness: Harness, standin: StandinServer, point: str
) -> None:
    """`moved`: the sweep dies right after writing the move; `created`: the next attempt's
    create succeeds in the new region and the process dies before recording it."""
    harness.apply("q", ladder())
    harness.lease_seconds = 0.0
    submit(harness, "a")
    fail_current(harness, standin, "a", STOCKOUT)
    with pytest.raises(SimulatedCrash):
        harness.app(crash_at=point).sweeper.run()
    for _ in range(3):  # whatever was left, the next sweeps finish (repair looks up by labels)
        harness.sweeper().run()
    data = harness.item_data("q", "a")
    assert (data["state"], data["placement"], data["attempt"]) == ("SUBMITTED", 1, 2)
    regions = sorted(job["name"].split("/")[3] for job in standin.admin.jobs())
    assert regions == ["us-central1", "us-east4"]


def test_a_queue_without_placements_is_unchanged(harness: Harness, standin: StandinServer) -> None:
    harness.apply("q", queue_config(max_jobs=2))
    data = submit(harness, "a")
    assert "placements" not in data
    assert "placement" not in data
    fail_current(harness, standin, "a", STOCKOUT)
    harness.sweeper().run()
    data = harness.item_data("q", "a")
    assert data["region"] == "us-central1"
    assert data["state"] == "QUEUED"  # retried in place after the queue's backoff (60 s)


def run_until(
    harness: Harness, item_id: str, states: set[str], seconds: float = 20.0
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        harness.sweeper().run()
        data = harness.item_data("q", item_id)
        if data["state"] in states:
            return data
        time.sleep(0.1)
    raise AssertionError(
        f"{item_id} is {harness.item_data('q', item_id)['state']}, not in {states}"
    )


@pytest.mark.parametrize(
    ("kind", "placements", "failure"),
    [
        ("stockout", LADDER, "no_capacity"),
        (
            "preempt",
            [{"name": "central-spot", "scheduling_strategy": "SPOT"}, LADDER[1]],
            "preempted",
        ),
        (
            "flex_expire",
            [
                {
                    "name": "central-flex",
                    "scheduling_strategy": "FLEX_START",
                    "max_wait_duration": "1h",
                },
                LADDER[1],
            ],
            "no_capacity",
        ),
    ],
)
def test_scarcity_in_the_first_region_ends_succeeded_in_the_next(
    harness: Harness,
    standin: StandinServer,
    kind: str,
    placements: list[dict[str, Any]],
    failure: str,
) -> None:
    """The stand-in's own scarcity (Vertex's capacity error, a preempted Spot VM, a FLEX_START
    wait that expires) in us-central1 only; the job lifecycle runs by itself."""
    config = ladder(placements=placements)
    config["spec"]["worker_pool_specs"][0]["machine_spec"] = {
        "machine_type": "g2-standard-8",
        "accelerator_type": "NVIDIA_L4",
        "accelerator_count": 1,
    }
    harness.apply("q", config)
    standin.admin.set_delays(queued=0.1, pending=0.1, running=0.5)
    standin.admin.add_scarcity(kind, region="us-central1", delay_seconds=0.2, max_wait_seconds=0.5)
    try:
        submit(harness, "a")
        data = run_until(harness, "a", {"SUCCEEDED", "FAILED"})
    finally:
        standin.admin.clear_scarcity()
    assert data["state"] == "SUCCEEDED"
    one, two = data["attempts"]
    assert (one["region"], one["failure_class"], one["moved_to"]) == (
        "us-central1",
        failure,
        "east",
    )
    assert (two["region"], two["state"]) == ("us-east4", "SUCCEEDED")
    assert len(standin.admin.jobs()) == 2


def test_status_and_the_dashboard_show_where_each_attempt_ran(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("q", ladder())
    submit(harness, "a")
    fail_current(harness, standin, "a", STOCKOUT)
    harness.sweeper().run()
    data = harness.item_data("q", "a")
    detail = item_detail(data)
    assert (detail["placement"], detail["region"]) == ("east", "us-east4")
    first, second = detail["attempt_list"]
    assert attempt_line(first).split("  ")[1:4] == [
        "central us-central1 STANDARD",
        "FAILED",
        "(no_capacity)",
    ]
    assert "→ east" in attempt_line(first)
    assert attempt_line(second).split("  ")[1] == "east us-east4 STANDARD"
    client = create_app(Backends(project="unused", store=harness.store)).test_client()
    page = client.get("/queues/q/items/a")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="placement">east (us-east4)' in html
    assert html.count('data-label="placement"') == 2  # one row per attempt
    assert "no_capacity" in html
    row = client.get("/api/queues/q/items").get_json()["items"][0]
    assert (row["placement"], row["region"]) == ("east", "us-east4")


def test_a_crash_right_after_a_quota_move_leaves_one_job(
    harness: Harness, standin: StandinServer
) -> None:
    """The dispatcher dies right after writing the deferral that moves the item to us-east4
    (its message is redelivered): the next delivery and the sweep create exactly one job, there."""
    config = a100_then_l4()
    harness.apply("q", config)
    standin.admin.set_limits(quotas={"custom_model_training_nvidia_a100_gpus": 0})
    try:
        delivery = message(item("q", "a"))
        with pytest.raises(SimulatedCrash):
            harness.dispatcher(crash_at="moved").handle(delivery)
        assert harness.item_data("q", "a")["placement"] == 1
        harness.dispatcher().handle(delivery)  # Pub/Sub redelivers the unacknowledged message
        harness.sweeper().run()
        data = harness.item_data("q", "a")
        assert (data["state"], data["region"]) == ("SUBMITTED", "us-east4")
        assert [job["name"].split("/")[3] for job in standin.admin.jobs()] == ["us-east4"]
    finally:
        standin.admin.set_limits()
