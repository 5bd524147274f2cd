"""ListCustomJobs through the generated client: filters, paging, page tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.api_core import exceptions
from google.cloud.aiplatform_v1 import types
from google.cloud.aiplatform_v1.services.job_service import JobServiceClient

from launchq_local.standin import AdminClient
from tests.fixtures.standin import make_job

pytestmark = pytest.mark.integration


def _names(client: JobServiceClient, parent: str, filter_text: str) -> set[str]:
    request = types.ListCustomJobsRequest(parent=parent, filter=filter_text)
    return {job.display_name for job in client.list_custom_jobs(request=request)}


@pytest.fixture
def jobs(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> dict[str, types.CustomJob]:
    """Four jobs with known labels and states: a RUNNING, b FAILED, c SUCCEEDED, d QUEUED."""
    standin_admin.set_delays(queued=None)
    specs = {
        "train-a": {"team": "vision", "run": "r1"},
        "train-b": {"team": "vision", "run": "r2"},
        "eval-c": {"team": "nlp", "run": "r3"},
        "eval-d": {"team": "nlp"},
    }
    created = {
        name: job_client.create_custom_job(
            parent=standin_parent, custom_job=make_job(name, labels=labels)
        )
        for name, labels in specs.items()
    }
    standin_admin.set_state(created["train-a"].name, "RUNNING")
    standin_admin.set_state(created["train-b"].name, "FAILED", (8, "resource exhausted"))
    standin_admin.set_state(created["eval-c"].name, "SUCCEEDED")
    return created


@pytest.mark.parametrize(
    ("filter_text", "expected"),
    [
        ("", {"train-a", "train-b", "eval-c", "eval-d"}),
        ("labels.team=vision", {"train-a", "train-b"}),
        ('labels.team="nlp"', {"eval-c", "eval-d"}),
        ("labels.run:*", {"train-a", "train-b", "eval-c"}),
        ("NOT labels.run:*", {"eval-d"}),
        ("labels.run!=r1", {"train-b", "eval-c", "eval-d"}),
        ("state=JOB_STATE_RUNNING", {"train-a"}),
        ('state="JOB_STATE_FAILED"', {"train-b"}),
        ("state!=JOB_STATE_QUEUED", {"train-a", "train-b", "eval-c"}),
        ('display_name="eval-c"', {"eval-c"}),
        ("displayName=eval-c", {"eval-c"}),
        ('display_name!="eval-c"', {"train-a", "train-b", "eval-d"}),
        ('display_name:"train-*"', {"train-a", "train-b"}),
        ("display_name:*-d", {"eval-d"}),
        ("labels.team=vision AND state=JOB_STATE_FAILED", {"train-b"}),
        ("state=JOB_STATE_RUNNING OR state=JOB_STATE_SUCCEEDED", {"train-a", "eval-c"}),
        # AIP-160: OR binds tighter than AND → team=nlp AND (SUCCEEDED OR RUNNING)
        ("labels.team=nlp AND state=JOB_STATE_SUCCEEDED OR state=JOB_STATE_RUNNING", {"eval-c"}),
        (
            "(labels.team=nlp AND state=JOB_STATE_SUCCEEDED) OR state=JOB_STATE_RUNNING",
            {"eval-c", "train-a"},
        ),
        ("NOT (labels.team=vision OR labels.run=r3)", {"eval-d"}),
        ("-labels.team=vision", {"eval-c", "eval-d"}),
        ("labels.team=vision labels.run=r2", {"train-b"}),  # juxtaposition is AND
    ],
)
def test_filters(
    job_client: JobServiceClient,
    standin_parent: str,
    jobs: dict[str, types.CustomJob],
    filter_text: str,
    expected: set[str],
) -> None:
    assert _names(job_client, standin_parent, filter_text) == expected


def test_create_time_comparisons(
    job_client: JobServiceClient, standin_parent: str, jobs: dict[str, types.CustomJob]
) -> None:
    first = jobs["train-a"].create_time
    stamp = first.isoformat().replace("+00:00", "Z")
    everything = {"train-a", "train-b", "eval-c", "eval-d"}
    later = everything - {"train-a"}
    assert _names(job_client, standin_parent, f'create_time="{stamp}"') == {"train-a"}
    assert _names(job_client, standin_parent, f'create_time!="{stamp}"') == later
    assert _names(job_client, standin_parent, f'create_time>"{stamp}"') == later
    assert _names(job_client, standin_parent, f"create_time>={stamp}") == everything
    assert _names(job_client, standin_parent, f'create_time<"{stamp}"') == set()
    assert _names(job_client, standin_parent, f'create_time<="{stamp}"') == {"train-a"}
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert _names(job_client, standin_parent, f'createTime>"{past}"') == everything


@pytest.mark.parametrize(
    "filter_text",
    [
        "labels.team=",
        "state=RUNNING",
        "state>JOB_STATE_RUNNING",
        "color=red",
        "(labels.a=b",
        "labels.a=b)",
        'display_name="unterminated',
        "create_time>yesterday",
        "create_time>2024-01-01T00:00:00",
        "labels.a=b and labels.c=d",
        "AND labels.a=b",
        "display_name<x",
    ],
)
def test_invalid_filter_is_bad_request(
    job_client: JobServiceClient, standin_parent: str, filter_text: str
) -> None:
    request = types.ListCustomJobsRequest(parent=standin_parent, filter=filter_text)
    with pytest.raises(exceptions.BadRequest, match="Invalid filter"):
        list(job_client.list_custom_jobs(request=request))


def test_pager_walks_250_jobs_in_pages_of_100(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> None:
    created = [
        job_client.create_custom_job(
            parent=standin_parent, custom_job=make_job(f"job-{i}", labels={"bulk": "yes"})
        ).name
        for i in range(250)
    ]
    job_client.create_custom_job(parent=standin_parent, custom_job=make_job("outsider"))
    standin_admin.reset_counters()
    request = types.ListCustomJobsRequest(
        parent=standin_parent, filter="labels.bulk=yes", page_size=100
    )
    pager = job_client.list_custom_jobs(request=request)
    pages = list(pager.pages)
    assert [len(p.custom_jobs) for p in pages] == [100, 100, 50]
    assert not pages[-1].next_page_token
    listed = [job.name for page in pages for job in page.custom_jobs]
    assert listed == created[::-1]  # newest first, each exactly once
    assert standin_admin.counters()["ListCustomJobs"] == 3


def test_paging_is_stable_while_jobs_are_created(
    job_client: JobServiceClient, standin_parent: str
) -> None:
    for i in range(5):
        job_client.create_custom_job(parent=standin_parent, custom_job=make_job(f"old-{i}"))
    first = job_client.list_custom_jobs(
        request=types.ListCustomJobsRequest(parent=standin_parent, page_size=3)
    )
    first_page = next(iter(first.pages))
    job_client.create_custom_job(parent=standin_parent, custom_job=make_job("new"))
    rest = job_client.list_custom_jobs(
        request=types.ListCustomJobsRequest(
            parent=standin_parent, page_size=3, page_token=first_page.next_page_token
        )
    )
    names = [j.display_name for j in first_page.custom_jobs] + [j.display_name for j in rest]
    assert names == ["old-4", "old-3", "old-2", "old-1", "old-0"]


def test_default_page_size_is_100_and_maximum_is_1000(
    job_client: JobServiceClient, standin_parent: str
) -> None:
    for i in range(101):
        job_client.create_custom_job(parent=standin_parent, custom_job=make_job(f"j{i}"))
    default = job_client.list_custom_jobs(parent=standin_parent)
    assert len(next(iter(default.pages)).custom_jobs) == 100
    huge = job_client.list_custom_jobs(
        request=types.ListCustomJobsRequest(parent=standin_parent, page_size=5000)
    )
    assert len(next(iter(huge.pages)).custom_jobs) == 101


@pytest.mark.parametrize("token", ["garbage", "MTIzLjQ1Ng"])
def test_invalid_page_token_is_bad_request(
    job_client: JobServiceClient, standin_parent: str, token: str
) -> None:
    request = types.ListCustomJobsRequest(parent=standin_parent, page_token=token)
    with pytest.raises(exceptions.BadRequest, match="page token"):
        list(job_client.list_custom_jobs(request=request))


def test_page_token_of_another_filter_is_rejected(
    job_client: JobServiceClient, standin_parent: str
) -> None:
    for i in range(3):
        job_client.create_custom_job(parent=standin_parent, custom_job=make_job(f"j{i}"))
    pages = job_client.list_custom_jobs(
        request=types.ListCustomJobsRequest(parent=standin_parent, page_size=1)
    ).pages
    token = next(iter(pages)).next_page_token
    request = types.ListCustomJobsRequest(
        parent=standin_parent, page_size=1, page_token=token, filter="labels.a:*"
    )
    with pytest.raises(exceptions.BadRequest, match="page token"):
        list(job_client.list_custom_jobs(request=request))


def test_read_mask_given_as_a_string_trims(
    job_client: JobServiceClient, standin_parent: str
) -> None:
    """proto-plus takes the FieldMask's JSON form; more in test_standin_limits.py."""
    created = job_client.create_custom_job(parent=standin_parent, custom_job=make_job("masked"))
    request = types.ListCustomJobsRequest(parent=standin_parent, read_mask="name,state")
    (job,) = job_client.list_custom_jobs(request=request)
    assert job.name == created.name
    assert job.state != types.JobState.JOB_STATE_UNSPECIFIED  # asked for, so present
    assert job.display_name == ""  # not asked for


def test_list_is_scoped_to_parent(job_client: JobServiceClient, standin_parent: str) -> None:
    job_client.create_custom_job(parent=standin_parent, custom_job=make_job("here"))
    job_client.create_custom_job(
        parent="projects/other-project/locations/us-central1", custom_job=make_job("there")
    )
    assert _names(job_client, standin_parent, "") == {"here"}
