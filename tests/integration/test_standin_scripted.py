"""Scripted lifecycle and the admin API that steers it (delays, outcomes, rules, states)."""

from __future__ import annotations

import time

import pytest
from google.cloud.aiplatform_v1.services.job_service import JobServiceClient

from launchq_local.standin import AdminClient, AdminError
from tests.fixtures.standin import make_job, wait_for_state

pytestmark = pytest.mark.integration


def _states(admin: AdminClient, name: str) -> list[str]:
    return [step["state"] for step in admin.job(name)["history"]]


def test_scripted_timeline_visits_every_state(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> None:
    standin_admin.set_delays(queued=0.05, pending=0.05, running=0.05)
    job = job_client.create_custom_job(parent=standin_parent, custom_job=make_job())
    wait_for_state(job_client, job.name, "JOB_STATE_SUCCEEDED")
    assert _states(standin_admin, job.name) == [
        "JOB_STATE_QUEUED",
        "JOB_STATE_PENDING",
        "JOB_STATE_RUNNING",
        "JOB_STATE_SUCCEEDED",
    ]


def test_open_ended_delay_holds_the_state(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> None:
    standin_admin.set_delays(queued=0, pending=0, running=None)
    job = job_client.create_custom_job(parent=standin_parent, custom_job=make_job())
    wait_for_state(job_client, job.name, "JOB_STATE_RUNNING")
    time.sleep(0.3)
    assert job_client.get_custom_job(name=job.name).state.name == "JOB_STATE_RUNNING"


def test_outcome_rule_fails_next_matching_job_with_stockout(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> None:
    rule = standin_admin.add_outcome_rule(
        "FAILED", (8, "resource exhausted"), labels={"queue": "gpu"}, after="PENDING"
    )
    other = job_client.create_custom_job(
        parent=standin_parent, custom_job=make_job(labels={"queue": "cpu"})
    )
    hit = job_client.create_custom_job(
        parent=standin_parent, custom_job=make_job(labels={"queue": "gpu"})
    )
    again = job_client.create_custom_job(
        parent=standin_parent, custom_job=make_job(labels={"queue": "gpu"})
    )
    failed = wait_for_state(job_client, hit.name, "JOB_STATE_FAILED")
    assert (failed.error.code, failed.error.message) == (8, "resource exhausted")
    assert not failed.start_time  # never ran: failed straight from PENDING
    wait_for_state(job_client, other.name, "JOB_STATE_SUCCEEDED")
    wait_for_state(job_client, again.name, "JOB_STATE_SUCCEEDED")  # count=1: used up
    assert standin_admin.outcome_rules()[0]["matched"] == 1
    assert rule["id"] == standin_admin.outcome_rules()[0]["id"]


def test_outcome_rule_by_display_name_glob_for_every_job(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> None:
    standin_admin.add_outcome_rule("FAILED", display_name="flaky-*", count=None)
    names = [
        job_client.create_custom_job(parent=standin_parent, custom_job=make_job(f"flaky-{i}")).name
        for i in range(3)
    ]
    for name in names:
        job = wait_for_state(job_client, name, "JOB_STATE_FAILED")
        assert job.error.code == 13


def test_set_outcome_ahead_of_time(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> None:
    job = job_client.create_custom_job(parent=standin_parent, custom_job=make_job())
    standin_admin.set_outcome(job.name, "FAILED", (3, "The replica workerpool0-0 exited 1"))
    failed = wait_for_state(job_client, job.name, "JOB_STATE_FAILED")
    assert failed.error.code == 3
    assert failed.start_time  # the outcome came after RUNNING, as scheduled


def test_set_state_at_any_moment_pins_the_job(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> None:
    job = job_client.create_custom_job(parent=standin_parent, custom_job=make_job())
    standin_admin.set_state(job.name, "RUNNING")
    time.sleep(0.8)  # longer than the whole scripted timeline
    assert job_client.get_custom_job(name=job.name).state.name == "JOB_STATE_RUNNING"
    job_id = job.name.rsplit("/", 1)[1]
    standin_admin.set_state(job_id, "JOB_STATE_FAILED", (8, "stockout"))
    failed = job_client.get_custom_job(name=job.name)
    assert failed.state.name == "JOB_STATE_FAILED"
    assert failed.error.code == 8
    assert failed.end_time


def test_set_outcome_of_finished_job_is_rejected(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> None:
    job = job_client.create_custom_job(parent=standin_parent, custom_job=make_job())
    standin_admin.set_state(job.name, "SUCCEEDED")
    with pytest.raises(AdminError, match="FAILED_PRECONDITION"):
        standin_admin.set_outcome(job.name, "FAILED")


@pytest.mark.parametrize(
    "call",
    [
        lambda a: a.set_state("123", "FAILED"),
        lambda a: a.add_outcome_rule("RUNNING"),
        lambda a: a.add_fault(methods=["NoSuchMethod"], http_status=503),  # type: ignore[list-item]
        lambda a: a.set_delays(queued=-1),
    ],
)
def test_admin_rejects_bad_input(standin_admin: AdminClient, call: object) -> None:
    with pytest.raises(AdminError):
        call(standin_admin)  # type: ignore[operator]


def test_reset_forgets_everything(
    job_client: JobServiceClient, standin_parent: str, standin_admin: AdminClient
) -> None:
    job_client.create_custom_job(parent=standin_parent, custom_job=make_job())
    standin_admin.add_outcome_rule("FAILED")
    standin_admin.add_fault(methods=["GetCustomJob"], http_status=503, count=None)
    standin_admin.set_mode("execute")
    standin_admin.reset()
    assert standin_admin.jobs() == []
    assert standin_admin.outcome_rules() == []
    assert standin_admin.faults() == []
    assert set(standin_admin.counters().values()) == {0}
    assert standin_admin.config()["mode"] == "scripted"
