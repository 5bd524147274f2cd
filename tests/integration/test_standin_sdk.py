"""The stand-in through the high-level SDK (`google.cloud.aiplatform`) with api_transport="rest"."""

from __future__ import annotations

from types import ModuleType

import pytest

from launchq_local.standin import AdminClient
from launchq_local.standin.names import project_number
from tests.fixtures.standin import TEST_PROJECT

pytestmark = pytest.mark.integration

POOLS = [
    {
        "machine_spec": {"machine_type": "n1-standard-4"},
        "replica_count": 1,
        "container_spec": {"image_uri": "gcr.io/launchq-test/img:1", "args": ["--epochs", "1"]},
    }
]


def test_submit_state_get_and_list(vertex_sdk: ModuleType, standin_admin: AdminClient) -> None:
    standin_admin.set_delays(running=None)
    job = vertex_sdk.CustomJob(
        display_name="sdk-demo", labels={"app": "launchq", "run": "r1"}, worker_pool_specs=POOLS
    )
    job.submit(
        timeout=600,
        scheduling_strategy=vertex_sdk.gapic.Scheduling.Strategy.FLEX_START,
        max_wait_duration=0,
    )
    assert job.resource_name.startswith(f"projects/{project_number(TEST_PROJECT)}/")
    assert job.state.name in ("JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING")

    fetched = vertex_sdk.CustomJob.get(job.resource_name)
    assert fetched.display_name == "sdk-demo"
    spec = fetched.gca_resource.job_spec
    assert spec.scheduling.strategy.name == "FLEX_START"
    assert spec.base_output_directory.output_uri_prefix.startswith(f"gs://{TEST_PROJECT}/")

    vertex_sdk.CustomJob(
        display_name="other", labels={"app": "else"}, worker_pool_specs=POOLS
    ).submit()
    listed = vertex_sdk.CustomJob.list(filter='labels.app="launchq"')
    assert [j.resource_name for j in listed] == [job.resource_name]

    standin_admin.set_state(job.resource_name, "FAILED", (8, "resource exhausted"))
    failed = vertex_sdk.CustomJob.get(job.resource_name)
    assert failed.state.name == "JOB_STATE_FAILED"
    assert failed.gca_resource.error.code == 8


def test_sdk_calls_are_counted(vertex_sdk: ModuleType, standin_admin: AdminClient) -> None:
    job = vertex_sdk.CustomJob(display_name="count-me", worker_pool_specs=POOLS)
    job.submit()
    _ = job.state
    _ = job.state
    counts = standin_admin.counters()
    assert counts["CreateCustomJob"] == 1
    assert counts["GetCustomJob"] == 2
