"""Execute mode: the first pool's command runs as a real local process."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from google.cloud.aiplatform_v1 import types
from google.cloud.aiplatform_v1.services.job_service import JobServiceClient

from launchq_local.standin import AdminClient, StandinServer
from tests.fixtures.standin import TEST_PROJECT, make_job, wait_for_state

pytestmark = pytest.mark.integration


@pytest.fixture
def execute_mode(standin_admin: AdminClient) -> AdminClient:
    standin_admin.set_mode("execute")
    standin_admin.set_delays(queued=0, pending=0)
    return standin_admin


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        # The process can exit between open() and read(); the read then raises
        # ProcessLookupError rather than FileNotFoundError.
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


WRITE_MODEL = (
    "import os, pathlib, sys\n"
    "model = pathlib.Path(os.environ['AIP_MODEL_DIR'])\n"
    "(model / 'model.txt').write_text(os.environ['GREETING'] + ' ' + sys.argv[1])\n"
    "print('trained', os.environ['CLOUD_ML_JOB_ID'])\n"
)


def test_success_writes_into_aip_model_dir(
    job_client: JobServiceClient,
    standin: StandinServer,
    standin_parent: str,
    execute_mode: AdminClient,
) -> None:
    job = make_job(
        "writes-model",
        command=[sys.executable, "-c", WRITE_MODEL],
        args=["$(WHO)"],
        env={"GREETING": "hello", "WHO": "vertex"},
    )
    created = job_client.create_custom_job(parent=standin_parent, custom_job=job)
    done = wait_for_state(job_client, created.name, "JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED")
    assert done.state.name == "JOB_STATE_SUCCEEDED", done.error.message
    assert done.start_time
    assert done.end_time
    model_dir = standin.store.work_dir / "gcs" / TEST_PROJECT / "out" / "writes-model" / "model"
    assert (model_dir / "model.txt").read_text() == "hello vertex"
    env = execute_mode.job(created.name)["execution"]["env"]
    assert env["AIP_MODEL_DIR"] == f"{model_dir}/"
    assert env["AIP_CHECKPOINT_DIR"].endswith("/out/writes-model/checkpoints/")
    assert env["AIP_TENSORBOARD_LOG_DIR"].endswith("/out/writes-model/logs/")
    job_id = created.name.rsplit("/", 1)[1]
    assert execute_mode.job_log(created.name)["stdout"] == f"trained {job_id}\n"


def test_non_zero_exit_fails_with_status_and_stderr(
    job_client: JobServiceClient, standin_parent: str, execute_mode: AdminClient
) -> None:
    script = "import sys; print('loading data', file=sys.stderr); sys.exit('CUDA out of memory')"
    job = make_job(command=[sys.executable, "-c", script])
    created = job_client.create_custom_job(parent=standin_parent, custom_job=job)
    failed = wait_for_state(job_client, created.name, "JOB_STATE_FAILED")
    assert "non-zero status of 1" in failed.error.message
    assert failed.error.message.endswith("loading data\nCUDA out of memory")
    assert "CUDA out of memory" in execute_mode.job_log(created.name)["stderr"]


def test_exit_code_3_is_reported(
    job_client: JobServiceClient, standin_parent: str, execute_mode: AdminClient
) -> None:
    script = "import sys; sys.stderr.write('bad config\\n'); sys.exit(3)"
    created = job_client.create_custom_job(
        parent=standin_parent, custom_job=make_job(command=[sys.executable, "-c", script])
    )
    failed = wait_for_state(job_client, created.name, "JOB_STATE_FAILED")
    assert "non-zero status of 3" in failed.error.message
    assert "bad config" in failed.error.message
    assert execute_mode.job(created.name)["execution"]["exitCode"] == 3


def test_cancel_kills_the_whole_process_group(
    job_client: JobServiceClient, standin_parent: str, execute_mode: AdminClient
) -> None:
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen(['sleep', '60'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    created = job_client.create_custom_job(
        parent=standin_parent, custom_job=make_job(command=[sys.executable, "-c", script])
    )
    wait_for_state(job_client, created.name, "JOB_STATE_RUNNING")
    deadline = time.monotonic() + 10
    while not execute_mode.job_log(created.name)["stdout"] and time.monotonic() < deadline:
        time.sleep(0.05)
    child_pid = int(execute_mode.job_log(created.name)["stdout"])
    pid = execute_mode.job(created.name)["execution"]["pid"]
    assert _alive(pid)
    assert _alive(child_pid)

    job_client.cancel_custom_job(name=created.name)
    cancelled = wait_for_state(job_client, created.name, "JOB_STATE_CANCELLED")
    assert cancelled.error.code == 1
    assert _wait_gone(pid)
    assert _wait_gone(child_pid)


def test_python_package_spec_runs_the_module(
    job_client: JobServiceClient, standin_parent: str, execute_mode: AdminClient
) -> None:
    job = make_job(
        container_spec=None,
        python_package_spec=types.PythonPackageSpec(
            executor_image_uri="us-docker.pkg.dev/vertex-ai/training/pytorch:latest",
            # No package_uris: the module is already importable (the stdlib's). Jobs with
            # packages are fetched from the GCS emulator: test_standin_pypackage.py.
            python_module="platform",
            args=[],
        ),
    )
    created = job_client.create_custom_job(parent=standin_parent, custom_job=job)
    done = wait_for_state(job_client, created.name, "JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED")
    assert done.state.name == "JOB_STATE_SUCCEEDED", done.error.message
    assert execute_mode.job_log(created.name)["stdout"].strip()


def test_container_without_command_fails_clearly(
    job_client: JobServiceClient, standin_parent: str, execute_mode: AdminClient
) -> None:
    created = job_client.create_custom_job(parent=standin_parent, custom_job=make_job())
    failed = wait_for_state(job_client, created.name, "JOB_STATE_FAILED")
    assert "container_spec.command" in failed.error.message


def test_reset_kills_running_processes(
    job_client: JobServiceClient, standin_parent: str, execute_mode: AdminClient
) -> None:
    created = job_client.create_custom_job(
        parent=standin_parent,
        custom_job=make_job(command=[sys.executable, "-c", "import time; time.sleep(60)"]),
    )
    wait_for_state(job_client, created.name, "JOB_STATE_RUNNING")
    pid = execute_mode.job(created.name)["execution"]["pid"]
    execute_mode.reset()
    assert _wait_gone(pid)
