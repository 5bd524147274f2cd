"""GPU scarcity in the stand-in, as the unmodified generated client sees it: stockouts per region
and accelerator, SPOT preemptions (counted, or a seeded fraction), FLEX_START expiry, and the
core's failure classifier reading exactly what the stand-in reports."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from google.cloud.aiplatform_v1 import types
from google.cloud.aiplatform_v1.services.job_service import JobServiceClient
from google.protobuf import duration_pb2

from launchq.model.failures import FailureClass, failure_class
from launchq.model.states import item_state_for_vertex
from launchq_cli import main
from launchq_local.standin import AdminClient, AdminError, StandinServer
from launchq_local.standin.scarcity import PREEMPTED_CODE, STOCKOUT_CODE, stockout_message
from tests.fixtures.standin import TEST_PROJECT, make_job, wait_for_state

pytestmark = pytest.mark.integration

A100 = types.AcceleratorType.NVIDIA_TESLA_A100
TERMINAL = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED")


def parent(location: str) -> str:
    return f"projects/{TEST_PROJECT}/locations/{location}"


def gpu_job(
    strategy: types.Scheduling.Strategy = types.Scheduling.Strategy.STRATEGY_UNSPECIFIED,
    accelerator: types.AcceleratorType = A100,
    max_wait: int | None = None,
    **extra: object,
) -> types.CustomJob:
    machine = types.MachineSpec(
        machine_type="a2-highgpu-1g", accelerator_type=accelerator, accelerator_count=1
    )
    job = make_job(machine_spec=machine, **extra)
    scheduling = types.Scheduling(strategy=strategy)
    if max_wait is not None:
        scheduling.max_wait_duration = duration_pb2.Duration(seconds=max_wait)
    job.job_spec.scheduling = scheduling
    return job


def spot_job(**extra: object) -> types.CustomJob:
    return gpu_job(types.Scheduling.Strategy.SPOT, **extra)


def classify(job: types.CustomJob) -> FailureClass:
    """What the queue's sweep would make of this job's end (the core's own classifier)."""
    error = {"code": job.error.code, "message": job.error.message} if job.error.code else None
    return failure_class(item_state_for_vertex(job.state.name), error, None)


# ---- stockout ----------------------------------------------------------------------------


def test_a100_stockout_in_us_central1_fails_there_while_us_east4_runs(
    job_client: JobServiceClient, standin_admin: AdminClient
) -> None:
    standin_admin.add_scarcity(
        "stockout", "us-central1", accelerator="NVIDIA_TESLA_A100", delay_seconds=0.2
    )
    central = job_client.create_custom_job(parent=parent("us-central1"), custom_job=gpu_job())
    east = job_client.create_custom_job(parent=parent("us-east4"), custom_job=gpu_job())
    # Creation succeeds in both regions: a stockout is not a 429, it happens to the job.
    assert central.state.name == "JOB_STATE_QUEUED"
    done = wait_for_state(job_client, central.name, *TERMINAL)
    assert done.state.name == "JOB_STATE_FAILED"
    assert done.error.code == STOCKOUT_CODE == 8
    assert done.error.message == stockout_message("us-central1")
    assert done.error.message.startswith("Resources are insufficient in region: us-central1.")
    assert not done.start_time  # it never ran
    history = [t["state"] for t in standin_admin.job(central.name)["history"]]
    assert history == ["JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_FAILED"]
    assert classify(done) is FailureClass.NO_CAPACITY

    assert wait_for_state(job_client, east.name, *TERMINAL).state.name == "JOB_STATE_SUCCEEDED"
    [rule] = standin_admin.scarcity()
    assert (rule["matched"], rule["fired"]) == (1, 1)
    assert standin_admin.job(central.name)["scarcityRule"] == rule["id"]
    assert standin_admin.job(east.name)["scarcityRule"] is None


def test_a_stockout_matches_the_accelerator_and_a_star_matches_cpu_jobs_too(
    job_client: JobServiceClient, standin_admin: AdminClient
) -> None:
    standin_admin.add_scarcity("stockout", "us-central1", accelerator="NVIDIA_L4", delay_seconds=0)
    a100 = job_client.create_custom_job(parent=parent("us-central1"), custom_job=gpu_job())
    assert wait_for_state(job_client, a100.name, *TERMINAL).state.name == "JOB_STATE_SUCCEEDED"
    standin_admin.clear_scarcity()
    standin_admin.add_scarcity("stockout", "europe-west4", count=1, delay_seconds=0)
    cpu = job_client.create_custom_job(parent=parent("europe-west4"), custom_job=make_job())
    failed = wait_for_state(job_client, cpu.name, *TERMINAL)
    assert failed.error.message == stockout_message("europe-west4")
    # count=1: the next job in the region gets its machine.
    again = job_client.create_custom_job(parent=parent("europe-west4"), custom_job=make_job())
    assert wait_for_state(job_client, again.name, *TERMINAL).state.name == "JOB_STATE_SUCCEEDED"


def test_a_stockout_in_execute_mode_never_starts_the_process(
    job_client: JobServiceClient, standin: StandinServer, standin_admin: AdminClient
) -> None:
    standin_admin.set_mode("execute")
    standin_admin.set_delays(queued=0, pending=0)
    standin_admin.add_scarcity("stockout", "us-central1", delay_seconds=0.1)
    marker = standin.store.work_dir / "stockout-ran"
    job = make_job(command=[sys.executable, "-c", f"open({str(marker)!r}, 'w')"])
    created = job_client.create_custom_job(parent=parent("us-central1"), custom_job=job)
    failed = wait_for_state(job_client, created.name, *TERMINAL)
    assert failed.error.message == stockout_message("us-central1")
    view = standin_admin.job(created.name)
    assert view["mode"] == "scripted"
    assert "execution" not in view
    assert not marker.exists()


# ---- SPOT preemption ---------------------------------------------------------------------


def test_preemption_fails_a_running_spot_job_but_not_a_standard_one(
    job_client: JobServiceClient, standin_admin: AdminClient
) -> None:
    standin_admin.set_delays(running=1.5)
    standin_admin.add_scarcity("preempt", "us-central1", delay_seconds=0.3)
    spot = job_client.create_custom_job(parent=parent("us-central1"), custom_job=spot_job())
    standard = job_client.create_custom_job(
        parent=parent("us-central1"), custom_job=gpu_job(types.Scheduling.Strategy.STANDARD)
    )
    assert wait_for_state(job_client, spot.name, "JOB_STATE_RUNNING").start_time
    failed = wait_for_state(job_client, spot.name, *TERMINAL)
    assert failed.state.name == "JOB_STATE_FAILED"
    assert failed.error.code == PREEMPTED_CODE
    assert "preempted" in failed.error.message
    ran = failed.end_time.timestamp() - failed.start_time.timestamp()
    assert 0.25 < ran < 1.0  # cut short by the rule, not the 1.5 s running delay
    assert classify(failed) is FailureClass.PREEMPTED

    assert wait_for_state(job_client, standard.name, *TERMINAL).state.name == "JOB_STATE_SUCCEEDED"
    [rule] = standin_admin.scarcity()
    assert rule["strategy"] == "SPOT"
    assert (rule["matched"], rule["fired"]) == (1, 1)


def _storm(job_client: JobServiceClient, admin: AdminClient, seed: int) -> list[bool]:
    """30% preemption with a fixed seed over 20 SPOT jobs: which ones were struck."""
    admin.reset(seed=seed, delays={"queued": 0, "pending": 0, "running": 0.05})
    admin.add_scarcity("preempt", "*", fraction=0.3, delay_seconds=0)
    names = [
        job_client.create_custom_job(parent=parent("us-central1"), custom_job=spot_job()).name
        for _ in range(20)
    ]
    ends = [wait_for_state(job_client, name, *TERMINAL) for name in names]
    struck = [admin.job(name)["scarcityRule"] is not None for name in names]
    assert struck == [end.state.name == "JOB_STATE_FAILED" for end in ends]
    [rule] = admin.scarcity()
    assert (rule["matched"], rule["fired"]) == (20, sum(struck))
    return struck


def test_a_seeded_preemption_storm_strikes_a_reproducible_subset(
    job_client: JobServiceClient, standin_admin: AdminClient
) -> None:
    first = _storm(job_client, standin_admin, seed=7)
    second = _storm(job_client, standin_admin, seed=7)
    assert first == second
    assert 0 < sum(first) < 20
    other = _storm(job_client, standin_admin, seed=8)
    assert other != first  # a different seed is a different storm


def test_count_preempts_the_next_n_spot_jobs(
    job_client: JobServiceClient, standin_admin: AdminClient
) -> None:
    standin_admin.set_delays(running=0.05)
    standin_admin.add_scarcity("preempt", "us-central1", count=2, delay_seconds=0)
    names = [
        job_client.create_custom_job(parent=parent("us-central1"), custom_job=spot_job()).name
        for _ in range(3)
    ]
    ends = [wait_for_state(job_client, name, *TERMINAL).state.name for name in names]
    assert ends == ["JOB_STATE_FAILED", "JOB_STATE_FAILED", "JOB_STATE_SUCCEEDED"]


def test_preemption_in_execute_mode_sigterms_the_process(
    job_client: JobServiceClient, standin_admin: AdminClient
) -> None:
    standin_admin.set_mode("execute")
    standin_admin.set_delays(queued=0, pending=0)
    standin_admin.add_scarcity("preempt", "us-central1", delay_seconds=0.5)
    script = (
        "import signal, sys, time\n"
        "def bye(signum, frame):\n"
        "    print('got SIGTERM', flush=True)\n"
        "    sys.exit(143)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('training', flush=True)\n"
        "time.sleep(30)\n"
    )
    job = spot_job(
        container_spec=types.ContainerSpec(
            image_uri="us-docker.pkg.dev/launchq-test/train/img:1",
            command=[sys.executable, "-c", script],
        )
    )
    created = job_client.create_custom_job(parent=parent("us-central1"), custom_job=job)
    wait_for_state(job_client, created.name, "JOB_STATE_RUNNING")
    started = time.monotonic()
    failed = wait_for_state(job_client, created.name, *TERMINAL, timeout=15)
    assert time.monotonic() - started < 10
    assert failed.state.name == "JOB_STATE_FAILED"
    assert (failed.error.code, "preempted" in failed.error.message) == (PREEMPTED_CODE, True)
    assert "got SIGTERM" in standin_admin.job_log(created.name)["stdout"]
    assert standin_admin.job(created.name)["execution"]["alive"] is False


# ---- FLEX_START expiry -------------------------------------------------------------------


def test_flex_start_waits_its_scaled_max_wait_then_expires(
    job_client: JobServiceClient, standin_admin: AdminClient
) -> None:
    standin_admin.add_scarcity(
        "flex_expire", "us-central1", wait_scale=0.001, max_wait_seconds=None
    )
    flex = types.Scheduling.Strategy.FLEX_START
    created = job_client.create_custom_job(
        parent=parent("us-central1"), custom_job=gpu_job(flex, max_wait=600)
    )
    assert wait_for_state(job_client, created.name, "JOB_STATE_PENDING")
    expired = wait_for_state(job_client, created.name, *TERMINAL)
    assert expired.state.name == "JOB_STATE_EXPIRED"
    assert expired.state == types.JobState.JOB_STATE_EXPIRED == 9
    assert not expired.start_time
    history = standin_admin.job(created.name)["history"]
    assert [t["state"] for t in history] == [
        "JOB_STATE_QUEUED",
        "JOB_STATE_PENDING",
        "JOB_STATE_EXPIRED",
    ]
    waited = history[2]["time"] - history[1]["time"]
    assert waited == pytest.approx(0.6, abs=0.05)  # 600 s x 0.001
    assert classify(expired) is FailureClass.NO_CAPACITY


def test_flex_start_without_a_rule_runs_as_before_and_the_cap_bounds_the_wait(
    job_client: JobServiceClient, standin_admin: AdminClient
) -> None:
    flex = types.Scheduling.Strategy.FLEX_START
    plain = job_client.create_custom_job(
        parent=parent("us-central1"), custom_job=gpu_job(flex, max_wait=600)
    )
    assert wait_for_state(job_client, plain.name, *TERMINAL).state.name == "JOB_STATE_SUCCEEDED"
    # The default cap (5 s) would do too; 0.2 s keeps the test quick. Unset max_wait = 24 h.
    standin_admin.add_scarcity("flex_expire", "us-central1", max_wait_seconds=0.2)
    capped = job_client.create_custom_job(parent=parent("us-central1"), custom_job=gpu_job(flex))
    assert wait_for_state(job_client, capped.name, *TERMINAL).state.name == "JOB_STATE_EXPIRED"
    # Other strategies are not FLEX_START: the rule leaves them alone.
    spot = job_client.create_custom_job(parent=parent("us-central1"), custom_job=spot_job())
    assert wait_for_state(job_client, spot.name, *TERMINAL).state.name == "JOB_STATE_SUCCEEDED"


# ---- admin surface -----------------------------------------------------------------------


def test_rules_are_listed_removed_shown_in_status_and_cleared_by_reset(
    standin_admin: AdminClient,
) -> None:
    first = standin_admin.add_scarcity("stockout", "us-central1", accelerator="TESLA_A100")
    second = standin_admin.add_scarcity("preempt", "*", fraction=0.3, seed=1)
    assert first["accelerator"] == "NVIDIA_TESLA_A100"
    assert (first["count"], first["fraction"], first["delaySeconds"]) == (None, None, 3.0)
    assert second["strategy"] == "SPOT"
    assert [r["id"] for r in standin_admin.status()["scarcity"]] == [first["id"], second["id"]]
    standin_admin.remove_scarcity(first["id"])
    assert [r["id"] for r in standin_admin.scarcity()] == [second["id"]]
    with pytest.raises(AdminError) as missing:
        standin_admin.remove_scarcity(first["id"])
    assert missing.value.status_code == 404
    standin_admin.reset()
    assert standin_admin.scarcity() == []
    assert standin_admin.config()["scarcity"] == []


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"kind": "drought", "region": "us-central1"}, "kind must be one of"),
        ({"kind": "stockout", "region": "us-central1", "accelerator": "A100"}, "accelerator"),
        ({"kind": "preempt", "region": "*", "strategy": "STANDARD"}, "SPOT jobs only"),
        ({"kind": "stockout", "region": "us-central1", "fraction": 1.5}, "between 0 and 1"),
        ({"kind": "stockout", "region": "us-central1", "count": 0}, "positive integer"),
        ({"kind": "stockout", "region": "projects/x"}, "region must be"),
    ],
)
def test_bad_rules_are_a_400(
    standin_admin: AdminClient, kwargs: dict[str, object], complaint: str
) -> None:
    with pytest.raises(AdminError) as bad:
        standin_admin.add_scarcity(**kwargs)  # type: ignore[arg-type]
    assert bad.value.status_code == 400
    assert complaint in str(bad.value)


# ---- command-line flags ------------------------------------------------------------------


def test_vertex_emulator_flags_start_with_the_rules_in_place(tmp_path: Path) -> None:
    entry = "from launchq_cli import main; main()"
    command = [sys.executable, "-c", entry, "vertex-emulator", "--port", "0"]
    command += ["--work-dir", str(tmp_path), "--stockout", "us-central1:NVIDIA_TESLA_A100"]
    command += ["--stockout", "*", "--preempt-spot", "0.3", "--scarcity-seed", "5"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        match = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline())
        assert match is not None
        proc.stdout.readline()  # api_endpoint=...
        assert proc.stdout.readline().strip() == (
            "scarcity: stockout us-central1:NVIDIA_TESLA_A100; stockout *:*; "
            "preempt 30% of SPOT jobs"
        )
        rules = AdminClient(match.group(0)).status()["scarcity"]
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    assert [(r["kind"], r["region"], r["accelerator"]) for r in rules] == [
        ("stockout", "us-central1", "NVIDIA_TESLA_A100"),
        ("stockout", "*", "*"),
        ("preempt", "*", "*"),
    ]
    assert (rules[2]["fraction"], rules[2]["seed"], rules[2]["strategy"]) == (0.3, 5, "SPOT")


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [
        (["--stockout", "us-central1:H100"], "unknown accelerator"),
        (["--flex-expire", ":NVIDIA_L4"], "region must be"),
        (["--preempt-spot", "1.5"], "1.5 is not in the range"),
    ],
)
def test_dev_refuses_a_bad_scarcity_flag_before_starting_anything(
    flags: list[str], complaint: str
) -> None:
    result = CliRunner().invoke(main, ["dev", *flags])
    assert result.exit_code == 2, result.output
    assert complaint in result.output
