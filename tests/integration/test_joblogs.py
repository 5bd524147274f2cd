"""`launchq_client.logs` (the read side of `launchq logs`) against the Logging stand-in."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from launchq_client.logs import (
    JobRef,
    LogLine,
    LogsClient,
    LogsError,
    Position,
    follow,
    job_filter,
    job_ref,
    parse_duration,
)
from launchq_local.logging_standin import LoggingStandinServer
from launchq_local.standin.execute import JobLine

pytestmark = pytest.mark.integration
PROJECT = "launchq-logs"


@pytest.fixture(scope="module")
def logs_server() -> Iterator[LoggingStandinServer]:
    with LoggingStandinServer() as server:
        yield server


@pytest.fixture
def logs(logs_server: LoggingStandinServer) -> LoggingStandinServer:
    logs_server.book.clear()
    return logs_server


@pytest.fixture
def client(logs: LoggingStandinServer) -> Iterator[LogsClient]:
    client = LogsClient.for_endpoint(logs.url)
    yield client
    client.close()


def job(job_id: str, created: datetime) -> JobRef:
    return JobRef(
        f"projects/{PROJECT}/locations/us-central1/customJobs/{job_id}", PROJECT, job_id, created
    )


def add(
    logs: LoggingStandinServer,
    job_id: str,
    text: str,
    at: datetime,
    replica: str = "workerpool0-0",
    severity: str = "INFO",
) -> None:
    moment = int(at.timestamp() * 1_000_000)
    logs.book.add(PROJECT, job_id, replica, severity, text, moment)


def test_a_job_that_ended_days_ago_still_has_its_log(
    logs: LoggingStandinServer, client: LogsClient
) -> None:
    created = datetime.now(UTC) - timedelta(days=3)
    for i in range(3):
        add(logs, "100", f"old {i}", created + timedelta(seconds=10 + i))
    add(logs, "100", "chief only", created + timedelta(seconds=20), replica="workerpool1-0")
    add(logs, "101", "another job", created + timedelta(seconds=11))
    ref = job("100", created)
    everything = [line.message for line in client.entries(PROJECT, job_filter(ref, None, None))]
    assert everything == ["old 0", "old 1", "old 2", "chief only"]
    chief = client.entries(PROJECT, job_filter(ref, "workerpool0-0", None))
    assert [line.message for line in chief] == ["old 0", "old 1", "old 2"]
    assert [line.message for line in client.last(PROJECT, job_filter(ref, None, None), 2)] == [
        "old 2",
        "chief only",
    ]
    since = created + timedelta(seconds=11, milliseconds=500)
    assert [line.message for line in client.entries(PROJECT, job_filter(ref, None, since))] == [
        "old 2",
        "chief only",
    ]


def test_last_pages_back_past_the_page_size(logs: LoggingStandinServer) -> None:
    client = LogsClient.for_endpoint(logs.url)
    created = datetime.now(UTC) - timedelta(minutes=5)
    for i in range(1203):
        add(logs, "200", f"n{i}", created + timedelta(milliseconds=i))
    lines = client.last(PROJECT, job_filter(job("200", created), None, None), 1201)
    assert [line.message for line in lines] == [f"n{i}" for i in range(2, 1203)]
    assert len(list(client.entries(PROJECT, job_filter(job("200", created), None, None)))) == 1203
    client.close()


def test_follow_prints_each_line_once_and_stops_after_the_end(
    logs: LoggingStandinServer, client: LogsClient
) -> None:
    name = f"projects/{PROJECT}/locations/us-central1/customJobs/300"
    created = datetime.now(UTC)
    done = threading.Event()
    written: list[str] = []

    def writer() -> None:
        for i in range(12):
            stamp = time.time()
            # Pairs share a timestamp: the follower must tell them apart by insertId.
            for part in ("a", "b"):
                text = f"{i}{part}"
                logs.book.record(JobLine(name, "workerpool0-0", "stdout", text, stamp))
                written.append(text)
            time.sleep(0.05)
        logs.book.record(JobLine(name, "workerpool0-0", "stderr", "last words", time.time()))
        written.append("last words")
        done.set()

    seen: list[LogLine] = []
    thread = threading.Thread(target=writer)
    thread.start()
    started = time.monotonic()
    follow(
        client, job("300", created), None, None, Position(),
        watch=lambda: (None, done.is_set()), emit=seen.append, interval=0.1,
    )  # fmt: skip
    thread.join()
    assert [line.message for line in seen] == written
    assert seen[-1].severity == "ERROR"
    assert len({line.insert_id for line in seen}) == len(seen)
    assert time.monotonic() - started < 30  # it returned by itself, soon after the end


def test_follow_moves_to_the_job_of_a_retry(logs: LoggingStandinServer, client: LogsClient) -> None:
    created = datetime.now(UTC)
    first, second = job("400", created), job("401", created)
    add(logs, "400", "attempt 1 starts", created + timedelta(milliseconds=1))
    add(logs, "401", "attempt 2, written early", created + timedelta(milliseconds=2))
    calls = {"n": 0}
    switched: list[str] = []

    def watch() -> tuple[JobRef | None, bool]:
        calls["n"] += 1
        if calls["n"] == 1:  # still the first job
            return first, False
        if calls["n"] == 2:  # the sweep retried the item: a new job
            add(logs, "400", "attempt 1 last words", created + timedelta(milliseconds=3))
            return second, False
        add(logs, "401", "attempt 2 done", created + timedelta(milliseconds=4))
        return second, True

    seen: list[LogLine] = []
    follow(
        client, first, None, None, Position(), watch=watch, emit=seen.append,
        interval=0.01, switched=lambda ref: switched.append(ref.job_id),
    )  # fmt: skip
    assert [line.message for line in seen] == [
        "attempt 1 starts",
        "attempt 1 last words",  # the old job's end is read before moving on
        "attempt 2, written early",  # the new job from its start, whatever came before
        "attempt 2 done",
    ]
    assert switched == ["401"]


def test_position_skips_what_was_printed() -> None:
    def line(at: str, insert_id: str) -> LogLine:
        return LogLine(at, "INFO", "workerpool0-0", "m", insert_id, "1")

    position = Position()
    assert position.fresh(line("2026-01-01T00:00:01.000000001Z", "b"))
    assert not position.fresh(line("2026-01-01T00:00:01.000000001Z", "b"))
    assert position.fresh(line("2026-01-01T00:00:01.000000001Z", "a"))
    assert not position.fresh(line("2026-01-01T00:00:00Z", "z"))
    assert position.fresh(line("2026-01-01T00:00:02Z", "b"))


def test_job_ref_and_durations() -> None:
    created = "2026-01-01T00:00:00.123456Z"
    item = {
        "project": "my-project",
        "job": {"name": "projects/123/locations/us-central1/customJobs/9", "create_time": created},
    }
    ref = job_ref(item)
    assert ref is not None
    assert (ref.project, ref.job_id) == ("my-project", "9")
    assert 'timestamp>="2025-12-31T23:59:00.123456Z"' in job_filter(ref, None, None)
    assert 'resource.labels.task_name="workerpool0-0"' in job_filter(ref, "workerpool0-0", None)
    assert job_ref({"state": "QUEUED"}) is None
    with pytest.raises(LogsError):
        job_ref({"job": {"name": "customJobs/9"}})
    assert parse_duration("90") == timedelta(seconds=90)
    assert parse_duration("10m") == timedelta(minutes=10)
    assert parse_duration("1.5h") == timedelta(minutes=90)
    assert parse_duration("2d") == timedelta(days=2)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("yesterday")


def test_errors_name_the_service(logs: LoggingStandinServer, client: LogsClient) -> None:
    with pytest.raises(LogsError, match="400 INVALID_ARGUMENT: Invalid filter"):
        list(client.entries(PROJECT, "jsonPayload.x=1"))
    dead = LogsClient.for_endpoint("http://127.0.0.1:9", timeout=2)
    waits: list[float] = []
    dead.sleep = waits.append
    with pytest.raises(LogsError, match="no answer"):
        list(dead.entries(PROJECT, ""))
    assert waits == [1.0, 2.0, 4.0]  # no answer is worth retrying, like a 503


class _Throttled(requests.Session):
    """Answers the first `refusals` POSTs with Cloud Logging's quota error, then forwards."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.trust_env = False
        self.refusals = refusals

    def post(self, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if self.refusals:
            self.refusals -= 1
            refused = requests.Response()
            refused.status_code = 429
            refused._content = json.dumps(
                {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Quota"}}
            ).encode()
            return refused
        return super().post(url, *args, **kwargs)


def test_quota_errors_are_retried_with_backoff(logs: LoggingStandinServer) -> None:
    created = datetime.now(UTC)
    add(logs, "400", "hello", created)
    waits: list[float] = []
    client = LogsClient(logs.url, _Throttled(2), sleep=waits.append)
    assert [
        line.message
        for line in client.entries(PROJECT, job_filter(job("400", created), None, None))
    ] == ["hello"]
    assert waits == [1.0, 2.0]
    stubborn = LogsClient(logs.url, _Throttled(10), sleep=waits.append)
    with pytest.raises(LogsError, match="429 RESOURCE_EXHAUSTED"):
        list(stubborn.entries(PROJECT, ""))
    assert waits[2:] == [1.0, 2.0, 4.0]
