"""Vertex's limits in the stand-in, as the generated client sees them: compute quotas over active
jobs, the job-creation rate limit, and `readMask` on ListCustomJobs."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import pytest
import requests
from click.testing import CliRunner
from google.api_core import exceptions
from google.cloud.aiplatform_v1 import types
from google.cloud.aiplatform_v1.services.job_service import JobServiceClient
from google.protobuf import duration_pb2, field_mask_pb2

from launchq.gcp.vertex import CallRetry, VertexClient, VertexError
from launchq_cli import main
from launchq_local.standin import AdminClient, AdminError, StandinServer
from launchq_local.standin.names import project_number
from tests.fixtures.standin import TEST_PROJECT, make_job, wait_for_state

pytestmark = pytest.mark.integration

A100 = "custom_model_training_nvidia_a100_gpus"
L4 = "custom_model_training_nvidia_l4_gpus"
QUOTA_MESSAGE = "The following quota metrics exceed quota limits: aiplatform.googleapis.com/"


def gpu_job(
    count: int,
    accelerator: types.AcceleratorType = types.AcceleratorType.NVIDIA_TESLA_A100,
    replicas: int = 1,
    **extra: object,
) -> types.CustomJob:
    machine = types.MachineSpec(
        machine_type="a2-highgpu-8g", accelerator_type=accelerator, accelerator_count=count
    )
    return make_job(machine_spec=machine, replica_count=replicas, **extra)


def server_message(error: exceptions.GoogleAPICallError) -> str:
    """The REST client prefixes the server's message with `METHOD URL: `."""
    _, sep, message = error.message.partition("enum-encoding%3Dint: ")
    assert sep, error.message
    return message


def create(client: JobServiceClient, parent: str, job: types.CustomJob) -> types.CustomJob:
    return client.create_custom_job(parent=parent, custom_job=job)


# ---- compute quotas ----------------------------------------------------------------------


def test_quota_over_active_jobs_answers_429_with_the_metric(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> None:
    standin_admin.set_delays(running=None)
    standin_admin.set_limits(quotas={A100: 16})
    create(job_client, standin_parent, gpu_job(8))
    create(job_client, standin_parent, gpu_job(8))
    with pytest.raises(exceptions.TooManyRequests) as caught:
        create(job_client, standin_parent, gpu_job(1))
    error = caught.value
    assert error.code == 429
    assert server_message(error) == QUOTA_MESSAGE + A100
    # Vertex's own answer carries no details for a compute quota (docs/vertex-standin.md).
    assert error.details == []
    # Over REST the client maps on the HTTP status alone: TooManyRequests, which is the base
    # class of the gRPC transport's ResourceExhausted, not a ResourceExhausted itself.
    assert not isinstance(error, exceptions.ResourceExhausted)
    assert len(standin_admin.jobs()) == 2
    region = f"projects/{project_number(TEST_PROJECT)}/locations/us-central1"
    # a2-highgpu-8g has no vCPU count in its name, so it holds no CPU quota (see the docs).
    assert standin_admin.limits()["usage"] == {region: {A100: 16}}


def test_the_exact_error_body_on_the_wire(standin: StandinServer, standin_parent: str) -> None:
    standin.admin.set_limits(quotas={L4: 0})
    body = types.CustomJob.to_json(
        gpu_job(1, types.AcceleratorType.NVIDIA_L4), use_integers_for_enums=False
    )
    response = requests.post(f"{standin.url}/v1/{standin_parent}/customJobs", data=body)
    assert response.status_code == 429
    assert response.json() == {
        "error": {"code": 429, "message": QUOTA_MESSAGE + L4, "status": "RESOURCE_EXHAUSTED"}
    }


def test_usage_is_released_when_a_job_ends(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> None:
    standin_admin.set_delays(running=None, cancelling=1.0)
    standin_admin.set_limits(quotas={A100: 8})
    first = create(job_client, standin_parent, gpu_job(8))
    with pytest.raises(exceptions.TooManyRequests, match=A100):
        create(job_client, standin_parent, gpu_job(8))
    # CANCELLING still holds the GPUs; CANCELLED releases them.
    job_client.cancel_custom_job(name=first.name)
    assert job_client.get_custom_job(name=first.name).state.name == "JOB_STATE_CANCELLING"
    with pytest.raises(exceptions.TooManyRequests):
        create(job_client, standin_parent, gpu_job(8))
    wait_for_state(job_client, first.name, "JOB_STATE_CANCELLED")
    second = create(job_client, standin_parent, gpu_job(8))
    standin_admin.set_state(second.name, "FAILED", (8, "Resources are insufficient in region"))
    third = create(job_client, standin_parent, gpu_job(8))
    assert standin_admin.limits()["usage"][third.name.split("/customJobs")[0]][A100] == 8


def test_a_scripted_success_releases_usage_on_its_own(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> None:
    standin_admin.set_delays(running=1.0)
    standin_admin.set_limits(quotas={A100: 8})
    first = create(job_client, standin_parent, gpu_job(8))  # SUCCEEDED after ~1.1 s
    with pytest.raises(exceptions.TooManyRequests):
        create(job_client, standin_parent, gpu_job(8))
    wait_for_state(job_client, first.name, "JOB_STATE_SUCCEEDED")
    create(job_client, standin_parent, gpu_job(8))


def test_usage_sums_count_times_replicas_over_pools(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> None:
    standin_admin.set_delays(running=None)
    standin_admin.set_limits(quotas={A100: 16})
    job = gpu_job(4, replicas=2)  # 8
    machine = types.MachineSpec(
        machine_type="a2-highgpu-4g",
        accelerator_type=types.AcceleratorType.NVIDIA_TESLA_A100,
        accelerator_count=4,
    )
    container = types.ContainerSpec(image_uri="us-docker.pkg.dev/p/r/img:1")
    job.job_spec.worker_pool_specs.append(
        types.WorkerPoolSpec(machine_spec=machine, replica_count=2, container_spec=container)
    )  # + 8
    job.job_spec.worker_pool_specs.append(types.WorkerPoolSpec())  # an empty placeholder
    create(job_client, standin_parent, job)
    with pytest.raises(exceptions.TooManyRequests):
        create(job_client, standin_parent, gpu_job(1))
    # Other accelerators and other regions have their own quota.
    create(job_client, standin_parent, gpu_job(4, types.AcceleratorType.NVIDIA_L4))
    create(job_client, "projects/launchq-test/locations/europe-west4", gpu_job(16))


def test_every_exceeded_metric_is_named(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> None:
    standin_admin.set_limits(quotas={A100: 4, "custom_model_training_cpus": 8})
    job = gpu_job(2, replicas=3)  # 6 GPUs
    job.job_spec.worker_pool_specs[0].machine_spec.machine_type = "n1-standard-4"  # 12 vCPUs
    with pytest.raises(exceptions.TooManyRequests) as caught:
        create(job_client, standin_parent, job)
    assert server_message(caught.value) == (
        QUOTA_MESSAGE + "custom_model_training_cpus, aiplatform.googleapis.com/" + A100
    )


def test_cpu_quota_counts_vcpus_of_the_machine_type(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> None:
    standin_admin.set_delays(running=None)
    standin_admin.set_limits(quotas={"aiplatform.googleapis.com/custom_model_training_cpus": 12})
    create(job_client, standin_parent, make_job(replica_count=2))  # 2 x n1-standard-4
    with pytest.raises(exceptions.TooManyRequests, match=r"custom_model_training_cpus$"):
        create(job_client, standin_parent, make_job(machine_spec={"machine_type": "n1-highmem-8"}))
    create(job_client, standin_parent, make_job())  # 4 more fit exactly


def test_spot_jobs_count_against_the_preemptible_metric(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> None:
    standin_admin.set_delays(running=None)
    spot_metric = "custom_model_training_preemptible_nvidia_a100_gpus"
    standin_admin.set_limits(quotas={spot_metric: 8, A100: 0})
    spot = gpu_job(8)
    spot.job_spec.scheduling = types.Scheduling(
        strategy=types.Scheduling.Strategy.SPOT, timeout=duration_pb2.Duration(seconds=60)
    )
    create(job_client, standin_parent, spot)
    with pytest.raises(exceptions.TooManyRequests, match=f"/{spot_metric}$"):
        create(job_client, standin_parent, spot)
    with pytest.raises(exceptions.TooManyRequests, match=f"/{A100}$"):
        create(job_client, standin_parent, gpu_job(1))


def test_limits_are_off_by_default_and_reset_restores_the_startup_ones(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> None:
    assert standin_admin.limits()["quotas"] == {}
    assert standin_admin.limits()["createRequestsPerMinute"] is None
    standin_admin.set_limits(quotas={A100: 0}, create_requests_per_minute=5)
    assert standin_admin.config()["limits"] == {"quotas": {A100: 0}, "createRequestsPerMinute": 5}
    standin_admin.reset()
    assert standin_admin.limits()["quotas"] == {}
    create(job_client, standin_parent, gpu_job(8))
    standin_admin.reset(quotas={A100: 1})
    with pytest.raises(exceptions.TooManyRequests):
        create(job_client, standin_parent, gpu_job(8))


def test_bad_limits_are_a_400(standin_admin: AdminClient) -> None:
    with pytest.raises(AdminError, match="unknown quota metric 'nvidia_a100_gpus'"):
        standin_admin.set_limits(quotas={"nvidia_a100_gpus": 1})
    with pytest.raises(AdminError, match="non-negative"):
        standin_admin.set_limits(quotas={A100: -1})
    with pytest.raises(AdminError, match="createRequestsPerMinute"):
        standin_admin.set_limits(create_requests_per_minute=0)
    assert standin_admin.limits()["quotas"] == {}


def test_a_stockout_stays_a_scripted_outcome(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> None:
    standin_admin.set_limits(quotas={A100: 8})
    standin_admin.add_outcome_rule(
        "FAILED", (8, "Resources are insufficient in region"), after="PENDING"
    )
    job = create(job_client, standin_parent, gpu_job(8))  # admitted: within quota
    failed = wait_for_state(job_client, job.name, "JOB_STATE_FAILED")
    assert failed.error.message == "Resources are insufficient in region"
    create(job_client, standin_parent, gpu_job(8))  # the failed job released its GPUs


def test_concurrent_creates_never_overshoot_a_quota(
    standin: StandinServer, standin_parent: str
) -> None:
    standin.admin.set_delays(running=None)
    standin.admin.set_limits(quotas={A100: 8})
    client = VertexClient(standin.url, requests.Session())
    body = json.loads(types.CustomJob.to_json(gpu_job(1)))

    def attempt(_: int) -> int:
        """200, or the error's HTTP status."""
        try:
            client.create_custom_job(standin_parent, body)
        except VertexError as exc:
            return exc.http_status
        return 200

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(attempt, range(24)))
    assert sorted(statuses) == [200] * 8 + [429] * 16
    assert len(standin.admin.jobs()) == 8


def test_the_high_level_sdk_submit_raises_on_quota(
    vertex_sdk: ModuleType, standin_admin: AdminClient
) -> None:
    standin_admin.set_limits(quotas={L4: 2})
    pools = [
        {
            "machine_spec": {
                "machine_type": "g2-standard-12",
                "accelerator_type": "NVIDIA_L4",
                "accelerator_count": 1,
            },
            "replica_count": 3,
            "container_spec": {"image_uri": "gcr.io/launchq-test/img:1"},
        }
    ]
    job = vertex_sdk.CustomJob(display_name="sdk-l4", worker_pool_specs=pools)
    with pytest.raises(exceptions.TooManyRequests, match=f"aiplatform.googleapis.com/{L4}$"):
        job.submit()
    assert standin_admin.jobs() == []


# ---- the creation rate limit -------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(standin: StandinServer, monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(standin.store.rate, "clock", fake)
    return fake


def test_rate_limit_is_a_sliding_60s_window(
    job_client: JobServiceClient,
    standin_parent: str,
    standin_admin: AdminClient,
    clock: FakeClock,
) -> None:
    standin_admin.set_limits(create_requests_per_minute=3)
    for offset in (0, 20, 40):
        clock.now = 1000.0 + offset
        create(job_client, standin_parent, make_job())
    with pytest.raises(exceptions.TooManyRequests) as caught:
        create(job_client, standin_parent, make_job())
    error = caught.value
    number = project_number(TEST_PROJECT)
    assert server_message(error) == (
        "Quota exceeded for quota metric 'Job or LRO submission requests' and limit "
        "'Job or LRO submission requests per minute per region' of service "
        f"'aiplatform.googleapis.com' for consumer 'project_number:{number}'."
    )
    # The REST client lifts google.rpc.ErrorInfo into reason/domain/metadata.
    assert error.reason == "RATE_LIMIT_EXCEEDED"
    assert error.domain == "googleapis.com"
    assert error.metadata is not None
    assert (
        error.metadata["quota_metric"] == "aiplatform.googleapis.com/job_or_lro_submission_requests"
    )
    assert error.metadata["quota_location"] == "us-central1"
    assert error.metadata["quota_limit_value"] == "3"
    assert [detail["@type"] for detail in error.details] == [
        "type.googleapis.com/google.rpc.ErrorInfo",
        "type.googleapis.com/google.rpc.Help",
    ]
    assert len(standin_admin.jobs()) == 3
    clock.now = 1059.9  # the create at 1000 is still inside the window
    with pytest.raises(exceptions.TooManyRequests):
        create(job_client, standin_parent, make_job())
    clock.now = 1060.0  # ...and now it has left it: one slot
    create(job_client, standin_parent, make_job())
    with pytest.raises(exceptions.TooManyRequests):
        create(job_client, standin_parent, make_job())
    region = f"projects/{number}/locations/us-central1"
    assert standin_admin.limits()["createsInWindow"] == {region: 3}
    # Another region has its own window.
    create(job_client, "projects/launchq-test/locations/europe-west4", make_job())


def test_rate_limit_charges_requests_not_successes(
    job_client: JobServiceClient,
    standin_parent: str,
    standin_admin: AdminClient,
    clock: FakeClock,
) -> None:
    standin_admin.set_limits(create_requests_per_minute=2, quotas={A100: 0})
    with pytest.raises(exceptions.TooManyRequests, match="quota metrics"):
        create(job_client, standin_parent, gpu_job(1))  # charged, then refused by quota
    with pytest.raises(exceptions.BadRequest):
        create(job_client, standin_parent, make_job(display_name=""))  # charged, invalid
    with pytest.raises(exceptions.TooManyRequests, match="Quota exceeded for quota metric"):
        create(job_client, standin_parent, make_job())
    assert standin_admin.jobs() == []
    assert standin_admin.counters()["CreateCustomJob"] == 3
    # Other methods are not rate limited.
    list(job_client.list_custom_jobs(parent=standin_parent))


def test_rate_limited_create_reaches_the_core_client_as_transient(
    standin: StandinServer, standin_parent: str, clock: FakeClock
) -> None:
    standin.admin.set_limits(create_requests_per_minute=1)
    client = VertexClient(standin.url, requests.Session(), retry=CallRetry(attempts=1))
    body = json.loads(types.CustomJob.to_json(make_job()))
    client.create_custom_job(standin_parent, body)
    with pytest.raises(VertexError) as caught:
        client.create_custom_job(standin_parent, body)
    assert caught.value.http_status == 429
    assert caught.value.status == "RESOURCE_EXHAUSTED"
    assert caught.value.transient


# ---- readMask --------------------------------------------------------------------------


def _fields(job: types.CustomJob) -> set[str]:
    return {fd.name for fd, _ in types.CustomJob.pb(job).ListFields()}


SWEEP_MASK = [
    "name",
    "state",
    "labels",
    "create_time",
    "start_time",
    "end_time",
    "update_time",
    "error",
]


def test_generated_client_sends_read_mask_and_gets_trimmed_jobs(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> None:
    standin_admin.set_delays(queued=None)  # never RUNNING, so never a start_time
    created = create(job_client, standin_parent, make_job("a", labels={"team": "x"}))
    standin_admin.set_state(created.name, "FAILED", (8, "Resources are insufficient in region"))
    request = types.ListCustomJobsRequest(
        parent=standin_parent, read_mask=field_mask_pb2.FieldMask(paths=SWEEP_MASK)
    )
    (job,) = job_client.list_custom_jobs(request=request)
    assert _fields(job) == {
        "name",
        "state",
        "labels",
        "create_time",
        "end_time",
        "update_time",
        "error",
    }  # no start_time: the job never ran
    assert job.name == created.name
    assert job.labels == {"team": "x"}
    assert job.error.code == 8
    (full,) = job_client.list_custom_jobs(parent=standin_parent)
    assert {"display_name", "job_spec"} <= _fields(full)


def test_read_mask_paths_in_camel_or_snake_case_and_nested(
    standin: StandinServer, standin_parent: str, job_client: JobServiceClient
) -> None:
    create(job_client, standin_parent, make_job("a"))
    url = f"{standin.url}/v1/{standin_parent}/customJobs"

    def listed(mask: str) -> list[dict[str, object]]:
        response = requests.get(url, params={"readMask": mask})
        assert response.status_code == 200, response.text
        return list(response.json()["customJobs"])

    camel = listed("displayName,createTime,jobSpec.baseOutputDirectory")
    snake = listed("display_name,create_time,job_spec.base_output_directory")
    assert camel == snake
    (job,) = camel
    assert set(job) == {"displayName", "createTime", "jobSpec"}
    assert job["jobSpec"] == {
        "baseOutputDirectory": {"outputUriPrefix": f"gs://{TEST_PROJECT}/out/a"}
    }
    assert set(listed("name,,state")[0]) == {"name", "state"}  # empty paths are skipped
    assert set(listed("")[0]) >= {"name", "displayName", "jobSpec", "state"}  # no mask: all


@pytest.mark.parametrize(
    "mask",
    ["nope", "job_spec.nope", "job_spec.worker_pool_specs.machine_spec", "labels.team", "name.x"],
)
def test_unknown_read_mask_paths_are_rejected(
    job_client: JobServiceClient, standin_parent: str, mask: str
) -> None:
    request = types.ListCustomJobsRequest(
        parent=standin_parent, read_mask=field_mask_pb2.FieldMask(paths=[mask])
    )
    with pytest.raises(exceptions.BadRequest) as caught:
        list(job_client.list_custom_jobs(request=request))
    assert caught.value.details[0]["fieldViolations"][0]["field"] == "read_mask"


def test_get_has_no_read_mask(
    standin: StandinServer, standin_parent: str, job_client: JobServiceClient
) -> None:
    job = create(job_client, standin_parent, make_job())
    response = requests.get(f"{standin.url}/v1/{job.name}", params={"readMask": "name"})
    assert response.status_code == 400
    assert "Cannot bind query parameter" in response.json()["error"]["message"]


def test_core_client_list_sends_read_mask(
    standin: StandinServer, standin_parent: str, job_client: JobServiceClient
) -> None:
    for name in ("a", "b", "c"):
        create(job_client, standin_parent, make_job(name, labels={"run": name}))
    client = VertexClient(standin.url, requests.Session())
    trimmed = list(
        client.list_custom_jobs(
            standin_parent, page_size=2, read_mask=["name", "state", "labels", "createTime"]
        )
    )
    assert [job["labels"]["run"] for job in trimmed] == ["c", "b", "a"]
    assert all(set(job) == {"name", "state", "labels", "createTime"} for job in trimmed)
    full = list(client.list_custom_jobs(standin_parent))
    assert all("jobSpec" in job for job in full)


# ---- the CLI -----------------------------------------------------------------------------


def test_vertex_emulator_flags_set_the_limits(tmp_path: Path) -> None:
    entry = "from launchq_cli import main; main()"
    command = [sys.executable, "-c", entry, "vertex-emulator", "--port", "0"]
    command += ["--quota", f"aiplatform.googleapis.com/{A100}=0", "--quota", f"{L4}=4"]
    command += ["--create-requests-per-minute", "30", "--work-dir", str(tmp_path)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        match = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline())
        assert match is not None
        admin = AdminClient(match.group(0))
        limits = admin.limits()
        assert limits["quotas"] == {A100: 0, L4: 4}
        assert limits["createRequestsPerMinute"] == 30
        admin.reset()  # the flags are the startup limits, so reset keeps them
        assert admin.limits()["quotas"] == {A100: 0, L4: 4}
        admin.close()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["vertex-emulator", "--quota", "custom_model_training_nvidia_a100=1"], "unknown quota"),
        (["vertex-emulator", "--quota", f"{A100}"], "is not METRIC=N"),
        (["vertex-emulator", "--create-requests-per-minute", "0"], "x>=1"),
        (["dev", "--vertex-quota", f"{A100}=-2"], "is not METRIC=N"),
    ],
)
def test_bad_limit_flags_are_usage_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert message in result.output
