"""The Logging stand-in's filter language: precedence, fields, values and its 400s."""

from __future__ import annotations

import pytest

from launchq_local.logging_standin.query import Fields, compile_filter, parse_timestamp_us
from launchq_local.standin.wire import ApiError

ENTRY = Fields(
    resource_type="ml_job",
    resource_labels={"job_id": "42", "task_name": "workerpool0-0", "project_id": "p"},
    labels={"ml.googleapis.com/trial_id": "3"},
    log_name="projects/p/logs/workerpool0-0",
    insert_id="abc0002",
    text="Epoch 3 loss=0.5",
    severity=500,
    timestamp_us=parse_timestamp_us("2026-05-01T10:00:00.250Z"),
)


@pytest.mark.parametrize(
    ("source", "matches"),
    [
        ("", True),
        ('resource.type="ml_job"', True),
        ("resource.type=ml_job", True),
        ('resource.type!="ml_job"', False),
        ('resource.labels.job_id="42" resource.labels.task_name="workerpool0-0"', True),
        ('resource.labels.job_id="42" AND resource.labels.task_name="workerpool1-0"', False),
        # OR binds tighter than AND: a AND (b OR c).
        ('resource.labels.job_id="7" AND severity=ERROR OR severity=INFO', False),
        ('resource.labels.job_id="42" AND severity=INFO OR severity=ERROR', True),
        ('(resource.labels.job_id="7" AND severity=INFO) OR severity=ERROR', True),
        ('NOT resource.labels.job_id="42"', False),
        ('-resource.labels.job_id="7"', True),
        ('labels."ml.googleapis.com/trial_id"="3"', True),
        ('labels."ml.googleapis.com/trial_id"!="3"', False),
        ('labels.missing="x"', False),
        ('labels.missing!="x"', True),
        ("severity>=ERROR", True),
        ("severity>error", False),
        ("severity>=500", True),
        ("textPayload:loss", True),
        ('textPayload:"EPOCH 3"', True),
        ('timestamp>="2026-05-01T10:00:00.250000000Z"', True),
        ('timestamp>"2026-05-01T10:00:00.250000000Z"', False),
        ('timestamp<"2026-05-01T12:00:01+02:00"', True),
        ('timestamp="2026-05-01T10:00:00.25Z" AND insertId>"abc0001"', True),
        ('insertId<"abc0002"', False),
        ('logName="projects/p/logs/workerpool0-0"', True),
        ('resource.type="ml_job"\nAND severity>=ERROR\nresource.labels.job_id="42"', True),
        ('resource.type="ml_job"\n\nseverity<ERROR', False),
    ],
)
def test_matches(source: str, matches: bool) -> None:
    assert compile_filter(source)(ENTRY) is matches


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("jsonPayload.message=x", "unsupported field 'jsonPayload.message'"),
        ("resource.type", "expected a comparator"),
        ("loss", "expected a comparator"),
        ("resource.type=", "unexpected end"),
        ('resource.type="ml_job', "unterminated string"),
        ("(severity>=ERROR", "unexpected end"),
        ("severity>=ERROR)", "unexpected ')'"),
        ('timestamp>="yesterday"', "not an RFC 3339 timestamp"),
        ('timestamp>="2026-05-01T10:00:00"', "no UTC offset"),
        ("severity>=LOUD", "not a severity"),
        ("resource.type>ml_job", "operator '>' is not supported"),
        ("severity:ERROR", "operator ':' is not supported"),
        ('textPayload=~"lo+s"', "operator '=~' is not supported for textPayload"),
        ('textPayload!~"lo+s"', "operator '!~' is not supported for textPayload"),
        ("severity=~ERROR", "operator '=~' is not supported for severity"),
    ],
)
def test_rejects(source: str, fragment: str) -> None:
    with pytest.raises(ApiError) as caught:
        compile_filter(source)
    assert caught.value.status == "INVALID_ARGUMENT"
    assert fragment in caught.value.message
    assert caught.value.violations[0].field == "filter"


def test_nanoseconds_truncate_to_microseconds() -> None:
    assert parse_timestamp_us("1970-01-01T00:00:01.123456789Z") == 1_123_456
    assert parse_timestamp_us("1970-01-01T00:00:01Z") == 1_000_000
