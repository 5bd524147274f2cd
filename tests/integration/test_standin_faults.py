"""Fault injection and call counters, as the generated client sees them."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1 import types
from google.cloud.aiplatform_v1.services.job_service import JobServiceClient

from launchq_local.standin import AdminClient, StandinServer
from tests.fixtures.standin import make_job

pytestmark = pytest.mark.integration


def test_503_on_list_once_then_success(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> None:
    standin_admin.add_fault(methods=["ListCustomJobs"], http_status=503, count=1)
    with pytest.raises(exceptions.ServiceUnavailable):
        list(job_client.list_custom_jobs(parent=standin_parent))
    assert list(job_client.list_custom_jobs(parent=standin_parent)) == []
    assert standin_admin.faults()[0]["fired"] == 1
    assert standin_admin.counters()["ListCustomJobs"] == 2


def test_429_on_create_creates_nothing(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> None:
    standin_admin.add_fault(
        methods=["CreateCustomJob"],
        http_status=429,
        message="The following quota metrics exceed quota limits: "
        "aiplatform.googleapis.com/custom_model_training_nvidia_l4_gpus",
    )
    with pytest.raises(exceptions.TooManyRequests, match="quota metrics"):
        job_client.create_custom_job(parent=standin_parent, custom_job=make_job())
    assert standin_admin.jobs() == []
    job_client.create_custom_job(parent=standin_parent, custom_job=make_job())
    assert len(standin_admin.jobs()) == 1


def test_lost_response_after_create_leaves_a_job_behind(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> None:
    standin_admin.add_fault(methods=["CreateCustomJob"], http_status=503, phase="after")
    with pytest.raises(exceptions.ServiceUnavailable):
        job_client.create_custom_job(
            parent=standin_parent, custom_job=make_job(labels={"request_id": "abc"})
        )
    request = types.ListCustomJobsRequest(parent=standin_parent, filter='labels.request_id="abc"')
    assert len(list(job_client.list_custom_jobs(request=request))) == 1


@pytest.mark.parametrize(
    ("http_status", "status", "exception"),
    [
        (404, None, exceptions.NotFound),
        (403, None, exceptions.Forbidden),
        (500, None, exceptions.InternalServerError),
        (None, "DEADLINE_EXCEEDED", exceptions.GatewayTimeout),
        (400, "FAILED_PRECONDITION", exceptions.BadRequest),
    ],
)
def test_status_maps_to_client_exception(
    job_client: JobServiceClient,
    standin_parent: str,
    standin_admin: AdminClient,
    http_status: int | None,
    status: str | None,
    exception: type[Exception],
) -> None:
    standin_admin.add_fault(methods=["GetCustomJob"], http_status=http_status, status=status)
    with pytest.raises(exception):
        job_client.get_custom_job(name=f"{standin_parent}/customJobs/1")


def test_probability_and_unlimited_count(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> None:
    standin_admin.reset(seed=7)
    standin_admin.add_fault(methods=["ListCustomJobs"], http_status=503, probability=0.5)
    failures = 0
    for _ in range(40):
        try:
            list(job_client.list_custom_jobs(parent=standin_parent))
        except exceptions.ServiceUnavailable:
            failures += 1
    assert 5 < failures < 35
    assert standin_admin.faults()[0]["fired"] == failures


def test_added_latency(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> None:
    standin_admin.add_fault(methods=["ListCustomJobs"], latency_ms=300, count=None)
    start = time.perf_counter()
    list(job_client.list_custom_jobs(parent=standin_parent))
    assert time.perf_counter() - start >= 0.3
    start = time.perf_counter()
    job_client.create_custom_job(parent=standin_parent, custom_job=make_job())
    assert time.perf_counter() - start < 0.3


def test_removed_fault_stops_firing(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> None:
    fault = standin_admin.add_fault(http_status=503, count=None)
    with pytest.raises(exceptions.ServiceUnavailable):
        list(job_client.list_custom_jobs(parent=standin_parent))
    standin_admin.remove_fault(fault["id"])
    list(job_client.list_custom_jobs(parent=standin_parent))


def test_counters_count_every_method(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> None:
    job = job_client.create_custom_job(parent=standin_parent, custom_job=make_job())
    job_client.get_custom_job(name=job.name)
    job_client.get_custom_job(name=job.name)
    list(job_client.list_custom_jobs(parent=standin_parent))
    job_client.cancel_custom_job(name=job.name)
    with pytest.raises(exceptions.NotFound):
        job_client.get_custom_job(name=f"{standin_parent}/customJobs/1")
    assert standin_admin.counters() == {
        "CreateCustomJob": 1,
        "GetCustomJob": 3,
        "ListCustomJobs": 1,
        "CancelCustomJob": 1,
        "DeleteCustomJob": 0,
        "GetOperation": 0,
        "WaitOperation": 0,
    }
    standin_admin.reset_counters()
    assert set(standin_admin.counters().values()) == {0}


def test_concurrent_clients_get_unique_jobs_and_consistent_lists(
    standin: StandinServer, standin_parent: str, standin_admin: AdminClient
) -> None:
    def worker(index: int) -> list[str]:
        client = JobServiceClient(
            transport="rest",
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=standin.url),
        )
        names = []
        for i in range(25):
            job = make_job(f"w{index}-{i}", labels={"worker": f"w{index}"})
            names.append(client.create_custom_job(parent=standin_parent, custom_job=job).name)
            request = types.ListCustomJobsRequest(
                parent=standin_parent, filter=f"labels.worker=w{index}"
            )
            assert len(list(client.list_custom_jobs(request=request))) == i + 1
        return names

    with ThreadPoolExecutor(8) as pool:
        names = [name for batch in pool.map(worker, range(8)) for name in batch]
    assert len(set(names)) == 200
    assert len(standin_admin.jobs()) == 200
    assert standin_admin.counters()["CreateCustomJob"] == 200
