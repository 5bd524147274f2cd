"""Strict parsing, error envelopes, names and the scripted timeline, without a server."""

from __future__ import annotations

import pytest
from google.cloud.aiplatform_v1 import types

from launchq_local.standin import lifecycle
from launchq_local.standin.jobs import decode_token, encode_token
from launchq_local.standin.lifecycle import Delays, Outcome, ScheduledState
from launchq_local.standin.names import new_id, project_number
from launchq_local.standin.wire import ApiError, parse_message


def _parse(body: dict[str, object]) -> object:
    return parse_message(body, types.CustomJob.pb(types.CustomJob()), "custom_job")


def test_camel_and_snake_case_keys_are_both_accepted() -> None:
    job = _parse({"display_name": "a", "jobSpec": {"worker_pool_specs": [{"replicaCount": 2}]}})
    assert job.job_spec.worker_pool_specs[0].replica_count == 2  # type: ignore[attr-defined]


def test_unknown_nested_field_path_uses_indexes() -> None:
    body = {"jobSpec": {"workerPoolSpecs": [{}, {"containerSpec": {"imageUrl": "x"}}]}}
    with pytest.raises(ApiError) as caught:
        _parse(body)
    path = "custom_job.job_spec.worker_pool_specs[1].container_spec"
    assert caught.value.message == (
        f"Invalid JSON payload received. Unknown name \"imageUrl\" at '{path}': Cannot find field."
    )
    assert caught.value.envelope()["error"]["details"][0]["fieldViolations"][0]["field"] == path


@pytest.mark.parametrize(
    ("body", "type_label"),
    [
        ({"displayName": True}, "TYPE_STRING"),
        ({"satisfiesPzs": "yes"}, "TYPE_BOOL"),
        ({"jobSpec": {"workerPoolSpecs": [{"replicaCount": 1.5}]}}, "TYPE_INT64"),
        (
            {"jobSpec": {"scheduling": {"strategy": "SOMETIMES"}}},
            "type.googleapis.com/google.cloud.aiplatform.v1.Scheduling.Strategy",
        ),
        (
            {"jobSpec": {"scheduling": {"timeout": 30}}},
            "type.googleapis.com/google.protobuf.Duration",
        ),
    ],
)
def test_wrong_types_are_named(body: dict[str, object], type_label: str) -> None:
    with pytest.raises(ApiError) as caught:
        _parse(body)
    assert caught.value.status == "INVALID_ARGUMENT"
    assert f"({type_label})" in caught.value.message


def test_int64_as_string_and_enum_as_int_are_accepted() -> None:
    job = _parse(
        {"jobSpec": {"workerPoolSpecs": [{"replicaCount": "3"}], "scheduling": {"strategy": 6}}}
    )
    assert job.job_spec.scheduling.strategy == 6  # type: ignore[attr-defined]


def test_envelope_without_violations_has_no_details() -> None:
    envelope = ApiError("NOT_FOUND", "gone").envelope()
    assert envelope == {"error": {"code": 404, "message": "gone", "status": "NOT_FOUND"}}


def test_project_numbers_are_stable_12_digit_and_numbers_pass_through() -> None:
    assert project_number("my-project") == project_number("my-project")
    assert len(project_number("my-project")) == 12
    assert project_number("my-project") != project_number("my-project-2")
    assert project_number("42") == "42"


def test_ids_are_19_digit_int64() -> None:
    for _ in range(1000):
        job_id = new_id()
        assert len(job_id) == 19
        assert int(job_id) < 2**63


def test_page_token_round_trip_and_fingerprint() -> None:
    token = encode_token(41, 7)
    assert decode_token(token, 7) == 41
    with pytest.raises(ApiError):
        decode_token(token, 8)
    with pytest.raises(ApiError):
        decode_token("%%%", 7)


def test_schedule_with_outcome_after_pending_skips_running() -> None:
    timeline = lifecycle.schedule(
        100.0, Delays(1, 2, 3), Outcome("JOB_STATE_FAILED", (8, "x"), after="JOB_STATE_PENDING")
    )
    assert timeline == [
        ScheduledState("JOB_STATE_QUEUED", 100.0),
        ScheduledState("JOB_STATE_PENDING", 101.0),
        ScheduledState("JOB_STATE_FAILED", 103.0, (8, "x")),
    ]


def test_schedule_stops_at_open_ended_delay() -> None:
    timeline = lifecycle.schedule(0.0, Delays(1, None, 3), Outcome())
    assert [t.state for t in timeline] == ["JOB_STATE_QUEUED", "JOB_STATE_PENDING"]


def test_remaining_moves_overdue_outcome_to_now() -> None:
    timeline = lifecycle.schedule(0.0, Delays(1, 1, 1), Outcome(after="JOB_STATE_QUEUED"))
    assert lifecycle.remaining(timeline, "JOB_STATE_RUNNING", 50.0) == [
        ScheduledState("JOB_STATE_SUCCEEDED", 50.0)
    ]


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("RUNNING", "JOB_STATE_RUNNING"),
        ("job_state_failed", "JOB_STATE_FAILED"),
        (4, "JOB_STATE_SUCCEEDED"),
    ],
)
def test_state_names(given: str | int, name: str) -> None:
    assert lifecycle.state_name(given) == name


def test_outcome_must_be_terminal() -> None:
    with pytest.raises(ValueError, match="terminal"):
        Outcome("JOB_STATE_RUNNING")
