"""The stand-in through the unmodified generated `JobServiceClient` over REST (and raw HTTP)."""

from __future__ import annotations

import re

import pytest
import requests
from google.api_core import exceptions
from google.cloud.aiplatform_v1 import types
from google.cloud.aiplatform_v1.services.job_service import JobServiceClient

from launchq_local.standin import AdminClient, StandinServer
from launchq_local.standin.names import project_number
from tests.fixtures.standin import TEST_PROJECT, make_job, wait_for_state

pytestmark = pytest.mark.integration

NAME_RE = re.compile(r"projects/(\d{12})/locations/us-central1/customJobs/(\d{19})")


def test_create_assigns_name_with_project_number_and_19_digit_id(
    job_client: JobServiceClient, standin_parent: str
) -> None:
    job = job_client.create_custom_job(parent=standin_parent, custom_job=make_job("a"))
    match = NAME_RE.fullmatch(job.name)
    assert match is not None, job.name
    assert match.group(1) == project_number(TEST_PROJECT)
    assert job.state == types.JobState.JOB_STATE_QUEUED
    assert job.create_time == job.update_time
    assert job.display_name == "a"
    assert job.job_spec.worker_pool_specs[0].machine_spec.machine_type == "n1-standard-4"


def test_get_accepts_project_id_or_number(
    job_client: JobServiceClient, standin_parent: str
) -> None:
    created = job_client.create_custom_job(parent=standin_parent, custom_job=make_job())
    by_number = job_client.get_custom_job(name=created.name)
    job_id = created.name.rsplit("/", 1)[1]
    by_id = job_client.get_custom_job(name=f"{standin_parent}/customJobs/{job_id}")
    assert by_number.name == by_id.name == created.name


def test_a_numeric_project_stays_as_given(job_client: JobServiceClient) -> None:
    parent = "projects/123456789012/locations/europe-west4"
    job = job_client.create_custom_job(parent=parent, custom_job=make_job())
    assert job.name.startswith(f"{parent}/customJobs/")


def test_lifecycle_times_and_success(job_client: JobServiceClient, standin_parent: str) -> None:
    created = job_client.create_custom_job(parent=standin_parent, custom_job=make_job())
    done = wait_for_state(job_client, created.name, "JOB_STATE_SUCCEEDED")
    assert done.create_time < done.start_time < done.end_time
    assert done.update_time == done.end_time
    assert not done.error.message


def test_get_in_another_location_or_unknown_id_is_not_found(
    job_client: JobServiceClient, standin_parent: str
) -> None:
    created = job_client.create_custom_job(parent=standin_parent, custom_job=make_job())
    with pytest.raises(exceptions.NotFound):
        job_client.get_custom_job(name=created.name.replace("us-central1", "europe-west4"))
    with pytest.raises(exceptions.NotFound):
        job_client.get_custom_job(name=f"{standin_parent}/customJobs/1234567890123456789")


def test_cancel_running_job_then_cancelled_with_code_1(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> None:
    standin_admin.set_delays(running=None)
    created = job_client.create_custom_job(parent=standin_parent, custom_job=make_job())
    wait_for_state(job_client, created.name, "JOB_STATE_RUNNING")
    job_client.cancel_custom_job(name=created.name)
    assert job_client.get_custom_job(name=created.name).state.name in (
        "JOB_STATE_CANCELLING",
        "JOB_STATE_CANCELLED",
    )
    job_client.cancel_custom_job(name=created.name)  # idempotent while cancelling
    cancelled = wait_for_state(job_client, created.name, "JOB_STATE_CANCELLED")
    assert cancelled.error.code == 1
    assert cancelled.end_time


def test_cancel_of_finished_job_is_failed_precondition(
    job_client: JobServiceClient, standin_parent: str
) -> None:
    created = job_client.create_custom_job(parent=standin_parent, custom_job=make_job())
    wait_for_state(job_client, created.name, "JOB_STATE_SUCCEEDED")
    with pytest.raises(exceptions.BadRequest) as caught:
        job_client.cancel_custom_job(name=created.name)
    assert "JOB_STATE_SUCCEEDED" in caught.value.message


def test_delete_answers_done_operation_and_job_is_gone(
    job_client: JobServiceClient, standin: StandinServer, standin_parent: str
) -> None:
    created = job_client.create_custom_job(parent=standin_parent, custom_job=make_job())
    with pytest.raises(exceptions.BadRequest, match="cannot be deleted"):
        job_client.delete_custom_job(name=created.name)
    wait_for_state(job_client, created.name, "JOB_STATE_SUCCEEDED")
    operation = job_client.delete_custom_job(name=created.name)
    assert operation.done()
    operation.result(timeout=5)
    assert operation.operation.name.startswith(f"{created.name}/operations/")
    polled = requests.get(f"{standin.url}/v1/{operation.operation.name}", timeout=5).json()
    assert polled["done"] is True
    assert polled["metadata"]["@type"].endswith("DeleteOperationMetadata")
    with pytest.raises(exceptions.NotFound):
        job_client.get_custom_job(name=created.name)
    # The client's operations mixin (it calls /ui/{name} first) reaches the same operation.
    mixin = job_client.get_operation(request={"name": operation.operation.name})
    assert mixin.done
    waited = job_client.wait_operation(request={"name": operation.operation.name})
    assert waited.name == operation.operation.name


@pytest.mark.parametrize(
    ("job", "field"),
    [
        (types.CustomJob(job_spec=make_job().job_spec), "custom_job.display_name"),
        (make_job(display_name="x" * 129), "custom_job.display_name"),
        (make_job(labels={"Upper": "v"}), "custom_job.labels[Upper]"),
        (make_job(labels={"k": "Value"}), "custom_job.labels[k]"),
        (make_job(labels={"1k": "v"}), "custom_job.labels[1k]"),
        (make_job(labels={"k": "v" * 64}), "custom_job.labels[k]"),
        (
            make_job(labels={f"k{i}": "v" for i in range(65)}),
            "custom_job.labels",
        ),
        (
            types.CustomJob(display_name="x", job_spec=types.CustomJobSpec()),
            "custom_job.job_spec.worker_pool_specs",
        ),
        (
            make_job(machine_spec=types.MachineSpec()),
            "custom_job.job_spec.worker_pool_specs[0].machine_spec.machine_type",
        ),
        (
            make_job(replica_count=0),
            "custom_job.job_spec.worker_pool_specs[0].replica_count",
        ),
        (
            make_job(
                machine_spec=types.MachineSpec(
                    machine_type="n1-standard-4",
                    accelerator_type=types.AcceleratorType.NVIDIA_TESLA_T4,
                )
            ),
            "custom_job.job_spec.worker_pool_specs[0].machine_spec.accelerator_count",
        ),
        (
            make_job(
                machine_spec=types.MachineSpec(machine_type="n1-standard-4", accelerator_count=2)
            ),
            "custom_job.job_spec.worker_pool_specs[0].machine_spec.accelerator_type",
        ),
        (
            make_job(env={f"V{i}": "x" for i in range(101)}),
            "custom_job.job_spec.worker_pool_specs[0].container_spec.env",
        ),
    ],
)
def test_semantic_checks_are_bad_request_naming_the_field(
    job_client: JobServiceClient, standin_parent: str, job: types.CustomJob, field: str
) -> None:
    with pytest.raises(exceptions.BadRequest) as caught:
        job_client.create_custom_job(parent=standin_parent, custom_job=job)
    assert field in caught.value.message
    # Over REST, api_core leaves `details` as the decoded JSON dicts (gRPC would parse them).
    violations = caught.value.details[0]["fieldViolations"]
    assert violations[0]["field"] == field


def test_international_lowercase_labels_are_accepted(
    job_client: JobServiceClient, standin_parent: str
) -> None:
    job = job_client.create_custom_job(
        parent=standin_parent, custom_job=make_job(labels={"équipe": "données", "k": ""})
    )
    assert job.labels["équipe"] == "données"


def _raw_create(url: str, body: object, alt: bool = True) -> requests.Response:
    query = "?%24alt=json%3Benum-encoding%3Dint" if alt else ""
    return requests.post(
        f"{url}/v1/projects/{TEST_PROJECT}/locations/us-central1/customJobs{query}",
        json=body,
        timeout=5,
    )


VALID_BODY = {
    "displayName": "raw",
    "jobSpec": {
        "workerPoolSpecs": [
            {
                "machineSpec": {
                    "machineType": "n1-standard-4",
                    "acceleratorType": 5,
                    "acceleratorCount": 1,
                },
                "replicaCount": "1",
                "containerSpec": {"imageUri": "gcr.io/p/i:1"},
            }
        ]
    },
}


def test_unknown_field_is_google_error_envelope(standin: StandinServer) -> None:
    body = {**VALID_BODY, "jobSpec": {**VALID_BODY["jobSpec"], "foo": 1}}  # type: ignore[dict-item]
    response = _raw_create(standin.url, body)
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("application/json")
    message = (
        "Invalid JSON payload received. Unknown name \"foo\" at 'custom_job.job_spec': "
        "Cannot find field."
    )
    assert response.json() == {
        "error": {
            "code": 400,
            "message": message,
            "status": "INVALID_ARGUMENT",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": "custom_job.job_spec", "description": message}],
                }
            ],
        }
    }


@pytest.mark.parametrize(
    ("patch", "path"),
    [
        ({"displayName": 5}, "custom_job.display_name"),
        ({"labels": {"a": 1}}, "custom_job.labels[a]"),
        ({"labels": ["a"]}, "custom_job.labels"),
        (
            {"jobSpec": {"workerPoolSpecs": [{"replicaCount": "one"}]}},
            "custom_job.job_spec.worker_pool_specs[0].replica_count",
        ),
        (
            {"jobSpec": {"workerPoolSpecs": [{"machineSpec": {"acceleratorType": "GPU9000"}}]}},
            "custom_job.job_spec.worker_pool_specs[0].machine_spec.accelerator_type",
        ),
        ({"jobSpec": {"workerPoolSpecs": {"a": 1}}}, "custom_job.job_spec.worker_pool_specs"),
        (
            {"jobSpec": {"workerPoolSpecs": [{"containerSpec": {"envv": []}}]}},
            "custom_job.job_spec.worker_pool_specs[0].container_spec",
        ),
        (
            {"jobSpec": {"scheduling": {"timeout": "ten minutes"}}},
            "custom_job.job_spec.scheduling.timeout",
        ),
    ],
)
def test_wrong_types_and_misspelt_fields_name_the_field(
    standin: StandinServer, patch: dict[str, object], path: str
) -> None:
    response = _raw_create(standin.url, {**VALID_BODY, **patch})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert f"'{path}'" in error["message"]
    assert error["details"][0]["fieldViolations"][0]["field"] == path


def test_unknown_field_through_the_client_is_bad_request(
    standin: StandinServer, job_client: JobServiceClient
) -> None:
    # The generated client cannot send unknown fields, so use a raw body and the client's
    # own exception mapping on the response.
    from google.api_core.exceptions import from_http_response

    response = _raw_create(standin.url, {**VALID_BODY, "displayNmae": "typo"})
    error = from_http_response(response)
    assert isinstance(error, exceptions.BadRequest)
    assert 'Unknown name "displayNmae"' in error.message


def test_output_only_fields_in_the_request_are_ignored(standin: StandinServer) -> None:
    body = {
        **VALID_BODY,
        "name": "projects/x/locations/y/customJobs/1",
        "state": "JOB_STATE_SUCCEEDED",
        "createTime": "2001-01-01T00:00:00Z",
        "error": {"code": 5},
    }
    created = _raw_create(standin.url, body).json()
    assert created["state"] == 1
    assert NAME_RE.fullmatch(created["name"])
    assert not created["createTime"].startswith("2001")
    assert "error" not in created


def test_enum_encoding_follows_alt_parameter(standin: StandinServer) -> None:
    as_ints = _raw_create(standin.url, VALID_BODY, alt=True).json()
    as_names = _raw_create(standin.url, VALID_BODY, alt=False).json()
    assert as_ints["state"] == 1
    assert as_ints["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]["acceleratorType"] == 5
    assert as_names["state"] == "JOB_STATE_QUEUED"
    pool = as_names["jobSpec"]["workerPoolSpecs"][0]
    assert pool["machineSpec"]["acceleratorType"] == "NVIDIA_TESLA_T4"
    assert pool["replicaCount"] == "1"  # int64 as a string


def test_unknown_query_parameter_is_bad_request(standin: StandinServer) -> None:
    url = f"{standin.url}/v1/projects/p/locations/us-central1/customJobs?page_size=5"
    response = requests.get(url, timeout=5)
    assert response.status_code == 400
    assert 'Unknown name "page_size"' in response.json()["error"]["message"]


def test_unknown_route_is_not_found_envelope(standin: StandinServer) -> None:
    response = requests.get(f"{standin.url}/v1/projects/p/locations/l/trainingPipelines", timeout=5)
    assert response.status_code == 404
    assert response.json()["error"]["status"] == "NOT_FOUND"
