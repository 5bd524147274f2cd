"""Execute mode runs `python_package_spec` jobs: the package comes from the GCS emulator, is
installed offline into a per-job venv, and what the job writes "to GCS" is in the emulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.cloud.aiplatform_v1 import types
from google.cloud.aiplatform_v1.services.job_service import JobServiceClient

from launchq_client.source import SourceUploader, pack
from launchq_local.standin import AdminClient, StandinServer
from tests.fixtures.standin import wait_for_state

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "source-trainer"


@pytest.fixture
def execute_mode(standin_admin: AdminClient) -> AdminClient:
    standin_admin.set_mode("execute")
    standin_admin.set_delays(queued=0, pending=0)
    return standin_admin


def _package_job(name: str, bucket: str, uris: list[str], args: list[str]) -> types.CustomJob:
    spec = types.PythonPackageSpec(
        executor_image_uri="us-docker.pkg.dev/vertex-ai/training/sklearn-cpu.1-0:latest",
        package_uris=uris,
        python_module="trainer.task",
        args=args,
        env=[types.EnvVar(name="GREETING", value="hello")],
    )
    return types.CustomJob(
        display_name=name,
        job_spec=types.CustomJobSpec(
            worker_pool_specs=[
                types.WorkerPoolSpec(
                    machine_spec=types.MachineSpec(machine_type="n1-standard-4"),
                    replica_count=1,
                    python_package_spec=spec,
                )
            ],
            base_output_directory=types.GcsDestination(
                output_uri_prefix=f"gs://{bucket}/out/{name}"
            ),
        ),
    )


def _upload_example(tmp_path: Path, gcs_client: Any, bucket: str) -> str:
    packed = pack(EXAMPLE, tmp_path / "packed")
    return SourceUploader(gcs_client, bucket).upload(packed).uri


def test_package_runs_and_its_outputs_are_in_gcs(
    tmp_path: Path,
    gcs_client: Any,
    gcs_bucket: Any,
    job_client: JobServiceClient,
    standin: StandinServer,
    standin_parent: str,
    execute_mode: AdminClient,
) -> None:
    uri = _upload_example(tmp_path, gcs_client, gcs_bucket.name)
    metrics = f"/gcs/{gcs_bucket.name}/metrics/run.json"
    args = ["--epochs", "3", "--metrics", metrics]
    job = _package_job("from-source", gcs_bucket.name, [uri], args)
    created = job_client.create_custom_job(parent=standin_parent, custom_job=job)
    done = wait_for_state(
        job_client, created.name, "JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", timeout=60
    )
    logs = execute_mode.job_log(created.name)
    assert done.state.name == "JOB_STATE_SUCCEEDED", (done.error.message, logs)

    # What the job wrote to AIP_MODEL_DIR and to /gcs/... is readable with the storage client.
    model = json.loads(gcs_bucket.blob("out/from-source/model/model.json").download_as_bytes())
    assert model["epochs"] == 3
    assert model["greeting"] == "hello"
    assert 0 < model["w"] < 3.0  # three epochs from zero: on its way to 3, not there
    loss = json.loads(gcs_bucket.blob("metrics/run.json").download_as_bytes())["loss"]
    assert loss > 0
    assert logs["stdout"].startswith("epochs=3 ")

    # It ran from the installed package in the job's own venv, not from the source tree.
    job_id = created.name.rsplit("/", 1)[1]
    venv = standin.store.work_dir / "jobs" / job_id / "venv"
    installed = list(venv.glob("lib/python*/site-packages/trainer/task.py"))
    assert len(installed) == 1
    argv = execute_mode.job(created.name)["execution"]["argv"]
    assert argv[argv.index("--package") + 1] == uri


def test_job_failure_is_reported_with_stderr(
    tmp_path: Path,
    gcs_client: Any,
    gcs_bucket: Any,
    job_client: JobServiceClient,
    standin_parent: str,
    execute_mode: AdminClient,
) -> None:
    uri = _upload_example(tmp_path, gcs_client, gcs_bucket.name)
    job = _package_job("fails", gcs_bucket.name, [uri], ["--fail"])
    created = job_client.create_custom_job(parent=standin_parent, custom_job=job)
    done = wait_for_state(
        job_client, created.name, "JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", timeout=60
    )
    assert done.state.name == "JOB_STATE_FAILED"
    assert "non-zero status of 3" in done.error.message
    assert "asked to fail with --fail" in done.error.message


def test_missing_package_fails_the_job(
    gcs_bucket: Any,
    job_client: JobServiceClient,
    standin_parent: str,
    execute_mode: AdminClient,
) -> None:
    uri = f"gs://{gcs_bucket.name}/launchq/sources/{'0' * 64}.tar.gz"
    job = _package_job("no-package", gcs_bucket.name, [uri], [])
    created = job_client.create_custom_job(parent=standin_parent, custom_job=job)
    done = wait_for_state(
        job_client, created.name, "JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", timeout=60
    )
    assert done.state.name == "JOB_STATE_FAILED"
    assert "could not fetch" in done.error.message
    assert uri in done.error.message
