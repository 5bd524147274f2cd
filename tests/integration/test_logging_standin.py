"""The Cloud Logging stand-in, driven by the unmodified `google-cloud-logging` client over REST.

Entries come from jobs the Vertex stand-in really executes (its line sink), or are added to the
book directly where a test needs exact timestamps. Raw HTTP is used only to send what the
client never would (unknown fields, wrong types).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import google.cloud.logging
import pytest
import requests
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1.services.job_service import JobServiceClient

from launchq_local.logging_standin import LoggingStandinServer
from launchq_local.logging_standin.book import Entry
from launchq_local.standin import Delays, StandinServer
from launchq_local.standin.execute import JobLine
from launchq_local.standin.names import project_number
from tests.fixtures.standin import TEST_PROJECT, make_job, wait_for_state

pytestmark = pytest.mark.integration

# Recent: without a timestamp term the client itself adds `timestamp>=now-24h`.
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def us(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


_STAMP = re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+Z")


def z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture(scope="module")
def logs_server() -> Iterator[LoggingStandinServer]:
    with LoggingStandinServer() as server:
        yield server


@pytest.fixture
def logs(logs_server: LoggingStandinServer) -> LoggingStandinServer:
    logs_server.book.clear()
    return logs_server


@pytest.fixture(scope="module")
def client(logs_server: LoggingStandinServer) -> google.cloud.logging.Client:
    return google.cloud.logging.Client(
        project=TEST_PROJECT,
        credentials=AnonymousCredentials(),
        _use_grpc=False,
        client_options={"api_endpoint": logs_server.url},
    )


def seed(logs: LoggingStandinServer) -> list[Entry]:
    """Two jobs, two replicas, stdout and stderr, one entry per second from T0 (out of order)."""
    added = []
    plan = [
        ("111", "workerpool0-0", "INFO", "alpha starts"),
        ("111", "workerpool1-0", "INFO", "beta starts"),
        ("222", "workerpool0-0", "INFO", "other job"),
        ("111", "workerpool0-0", "ERROR", "alpha warns on stderr"),
        ("111", "workerpool1-0", "ERROR", "beta fails"),
        ("111", "workerpool0-0", "INFO", "alpha done"),
    ]
    for second in (3, 0, 5, 1, 4, 2):  # insertion order differs from time order
        job, task, severity, text = plan[second]
        moment = T0 + timedelta(seconds=second)
        added.append(logs.book.add(TEST_PROJECT, job, task, severity, text, us(moment)))
    logs.book.add("another-project", "111", "workerpool0-0", "INFO", "not ours", us(T0))
    return sorted(added, key=lambda e: e.key)


def texts(entries: object) -> list[str]:
    return [str(e.payload) for e in entries]  # type: ignore[attr-defined]


def test_an_executed_job_s_lines_become_ml_job_entries(
    logs: LoggingStandinServer, client: google.cloud.logging.Client, tmp_path: object
) -> None:
    script = (
        "import sys, time\n"
        "print('step 1', flush=True)\n"
        "print('warning: slow', file=sys.stderr, flush=True)\n"
        "time.sleep(0.05)\n"
        "print('step 2', flush=True)\n"
        "sys.stdout.write('no newline at the end')\n"
    )
    delays = Delays(queued=0.01, pending=0.01, running=None, cancelling=0.01)
    with StandinServer(mode="execute", delays=delays, line_sink=logs.book.record) as vertex:
        jobs = JobServiceClient(
            transport="rest",
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=vertex.url),
        )
        parent = f"projects/{TEST_PROJECT}/locations/us-central1"
        job = jobs.create_custom_job(
            parent=parent, custom_job=make_job("printer", command=[sys.executable, "-c", script])
        )
        wait_for_state(jobs, job.name, "JOB_STATE_SUCCEEDED")
        job_id = job.name.rsplit("/", 1)[-1]
        stdout_file = vertex.store.work_dir / "jobs" / job_id / "stdout.log"
        assert stdout_file.read_text() == "step 1\nstep 2\nno newline at the end"

    entries = list(
        client.list_entries(
            filter_=f'resource.type="ml_job" AND resource.labels.job_id="{job_id}"',
            order_by=google.cloud.logging.ASCENDING,
        )
    )
    by_text = {str(e.payload): e for e in entries}
    assert set(by_text) == {"step 1", "warning: slow", "step 2", "no newline at the end"}
    # One stream keeps its order; across stdout and stderr the order is the readers'.
    stdout = [t for t in texts(entries) if by_text[t].severity == "INFO"]
    assert stdout == ["step 1", "step 2", "no newline at the end"]
    assert by_text["warning: slow"].severity == "ERROR"
    assert {by_text[t].severity for t in ("step 1", "step 2")} == {"INFO"}
    for entry in entries:
        assert entry.resource.type == "ml_job"
        assert entry.resource.labels == {
            "job_id": job_id,
            # The job's name carries the project number (as Vertex's does), so do its entries.
            "project_id": project_number(TEST_PROJECT),
            "task_name": "workerpool0-0",
        }
        assert entry.log_name == f"projects/{project_number(TEST_PROJECT)}/logs/workerpool0-0"
    stamps = [e.timestamp for e in entries]
    assert stamps == sorted(stamps)
    assert len({e.insert_id for e in entries}) == len(entries)


@pytest.mark.parametrize(
    ("query", "wanted"),
    [
        ('resource.type="ml_job" AND resource.labels.job_id="111"', lambda e: e.job_id == "111"),
        (
            'resource.labels.job_id="111" resource.labels.task_name="workerpool1-0"',
            lambda e: e.job_id == "111" and e.task_name == "workerpool1-0",
        ),
        ("severity>=ERROR", lambda e: e.severity == "ERROR"),
        ("severity<WARNING", lambda e: e.severity == "INFO"),
        (
            f'timestamp>="{z(T0 + timedelta(seconds=2))}" AND '
            f'timestamp<"{z(T0 + timedelta(seconds=4))}"',
            lambda e: us(T0) + 2_000_000 <= e.timestamp_us < us(T0) + 4_000_000,
        ),
        (
            f'timestamp>"{z(T0 + timedelta(seconds=2))}"',
            lambda e: e.timestamp_us > us(T0) + 2_000_000,
        ),
        (
            'resource.labels.job_id="222" OR severity=ERROR AND textPayload:ALPHA',
            lambda e: (e.job_id == "222" or e.severity == "ERROR") and "alpha" in e.text,
        ),
        (
            'NOT resource.labels.task_name="workerpool0-0"',
            lambda e: e.task_name != "workerpool0-0",
        ),
        (
            f'logName="projects/{TEST_PROJECT}/logs/workerpool1-0"',
            lambda e: e.task_name == "workerpool1-0",
        ),
        ('labels."ml.googleapis.com/trial_id"="1"', lambda e: False),
    ],
    # Ids without the clock in them: every xdist worker must collect the same test names.
    ids=lambda value: _STAMP.sub("T", value) if isinstance(value, str) else "",
)
def test_filters(
    logs: LoggingStandinServer, client: google.cloud.logging.Client, query: str, wanted: object
) -> None:
    entries = seed(logs)
    expected = [e.text for e in entries if wanted(e)]  # type: ignore[operator]
    got = texts(client.list_entries(filter_=query, order_by=google.cloud.logging.ASCENDING))
    assert got == expected


def test_gcloud_stream_logs_lower_bound_resumes_after_an_insert_id(
    logs: LoggingStandinServer, client: google.cloud.logging.Client
) -> None:
    """gcloud's LogPosition filter: same timestamp with a later insertId, or a later time."""
    same = [
        logs.book.add(TEST_PROJECT, "9", "workerpool0-0", "INFO", f"tie {i}", us(T0))
        for i in range(3)
    ]
    later = logs.book.add(TEST_PROJECT, "9", "workerpool0-0", "INFO", "later", us(T0) + 1)
    query = (
        f'resource.labels.job_id="9" AND ((timestamp="{z(T0)}" AND insertId>"{same[0].insert_id}")'
        f' OR timestamp>"{z(T0)}")'
    )
    assert texts(client.list_entries(filter_=query)) == ["tie 1", "tie 2", later.text]


def test_ordering_and_paging(
    logs: LoggingStandinServer, client: google.cloud.logging.Client
) -> None:
    for i in range(23):
        logs.book.add(TEST_PROJECT, "7", "workerpool0-0", "INFO", f"line {i:02d}", us(T0) + i)
    query = 'resource.labels.job_id="7"'
    calls = logs.app.list_calls
    ascending = texts(client.list_entries(filter_=query, page_size=5))
    assert ascending == [f"line {i:02d}" for i in range(23)]
    assert logs.app.list_calls - calls == 5  # 5 + 5 + 5 + 5 + 3
    newest_first = texts(
        client.list_entries(filter_=query, order_by=google.cloud.logging.DESCENDING, page_size=4)
    )
    assert newest_first == [f"line {i:02d}" for i in reversed(range(23))]
    # A page token belongs to its query: replayed against another filter, it is refused.
    first = requests.post(
        f"{logs.url}/v2/entries:list",
        json={"resourceNames": [f"projects/{TEST_PROJECT}"], "filter": query, "pageSize": 5},
        timeout=10,
    ).json()
    token = first["nextPageToken"]
    replay = requests.post(
        f"{logs.url}/v2/entries:list",
        json={
            "resourceNames": [f"projects/{TEST_PROJECT}"],
            "filter": 'resource.labels.job_id="8"',
            "pageToken": token,
        },
        timeout=10,
    )
    assert replay.status_code == 400
    assert "page_token" in replay.json()["error"]["message"]


def test_an_entry_written_between_pages_does_not_shift_them(
    logs: LoggingStandinServer,
) -> None:
    for i in range(4):
        logs.book.add(TEST_PROJECT, "5", "workerpool0-0", "INFO", f"l{i}", us(T0) + i * 10)
    body = {"resourceNames": [f"projects/{TEST_PROJECT}"], "filter": "", "pageSize": 2}
    first = requests.post(f"{logs.url}/v2/entries:list", json=body, timeout=10).json()
    logs.book.add(TEST_PROJECT, "5", "workerpool0-0", "INFO", "early", us(T0) - 5)
    second = requests.post(
        f"{logs.url}/v2/entries:list",
        json={**body, "pageToken": first["nextPageToken"]},
        timeout=10,
    ).json()
    assert [e["textPayload"] for e in first["entries"]] == ["l0", "l1"]
    assert [e["textPayload"] for e in second["entries"]] == ["l2", "l3"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"resourceNames": [f"projects/{TEST_PROJECT}"], "limit": 3}, 'Unknown name "limit"'),
        ({"resourceNames": [f"projects/{TEST_PROJECT}"], "pageSize": "many"}, "page_size"),
        ({"resourceNames": f"projects/{TEST_PROJECT}"}, "resource_names"),
        ({"filter": 'resource.type="ml_job"'}, "resource_names"),
        ({"resourceNames": ["folders/123"]}, "folders/123"),
        ({"resourceNames": [f"projects/{TEST_PROJECT}"], "orderBy": "severity"}, "order_by"),
        ({"resourceNames": [f"projects/{TEST_PROJECT}"], "pageSize": -1}, "page_size"),
        ({"resourceNames": [f"projects/{TEST_PROJECT}"], "filter": "job=1"}, "unsupported field"),
        (
            {"resourceNames": [f"projects/{TEST_PROJECT}"], "filter": "(severity>=INFO"},
            "end of filter",
        ),
        ({"resourceNames": [f"projects/{TEST_PROJECT}"], "pageToken": "garbage"}, "page_token"),
        ({"resourceNames": [f"projects/{TEST_PROJECT}"], "filter": "a" * 20_001}, "20000"),
    ],
)
def test_strict_parse_rejects_bad_requests(
    logs: LoggingStandinServer, body: dict[str, object], fragment: str
) -> None:
    response = requests.post(f"{logs.url}/v2/entries:list", json=body, timeout=10)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["code"] == 400
    assert fragment in error["message"]
    assert error["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"


def test_the_client_sees_google_errors(
    logs: LoggingStandinServer, client: google.cloud.logging.Client
) -> None:
    with pytest.raises(gexc.BadRequest, match=r"unsupported field 'jsonPayload\.loss'"):
        list(client.list_entries(filter_="jsonPayload.loss<0.1"))
    missing = requests.get(f"{logs.url}/v2/entries", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"]["status"] == "NOT_FOUND"


def test_the_client_s_default_24_hours_needs_no_special_case(
    logs: LoggingStandinServer, client: google.cloud.logging.Client
) -> None:
    """Without a timestamp term, google-cloud-logging adds `timestamp>=now-24h` itself."""
    now = time.time()
    logs.book.add(
        TEST_PROJECT, "3", "workerpool0-0", "INFO", "two days ago", int((now - 172800) * 1e6)
    )
    logs.book.add(TEST_PROJECT, "3", "workerpool0-0", "INFO", "just now", int(now * 1e6))
    assert texts(client.list_entries(filter_='resource.labels.job_id="3"')) == ["just now"]
    three_days = z(datetime.fromtimestamp(now - 259200, UTC))
    old = f'resource.labels.job_id="3" AND timestamp>="{three_days}"'
    assert texts(client.list_entries(filter_=old)) == ["two days ago", "just now"]


def test_a_failing_sink_neither_stalls_nor_fails_the_job() -> None:
    calls: list[str] = []

    def broken(line: JobLine) -> None:
        calls.append(line.text)
        raise RuntimeError("sink down")

    # 3000 lines of 100 bytes overflow a 64 KiB pipe: a reader that died would block the job.
    script = "for i in range(3000): print(str(i).rjust(99, '.'))"
    delays = Delays(queued=0.01, pending=0.01, running=None, cancelling=0.01)
    with StandinServer(mode="execute", delays=delays, line_sink=broken) as vertex:
        jobs = JobServiceClient(
            transport="rest",
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=vertex.url),
        )
        job = jobs.create_custom_job(
            parent=f"projects/{TEST_PROJECT}/locations/us-central1",
            custom_job=make_job("flood", command=[sys.executable, "-c", script]),
        )
        wait_for_state(jobs, job.name, "JOB_STATE_SUCCEEDED", timeout=30)
        job_id = job.name.rsplit("/", 1)[-1]
        written = (vertex.store.work_dir / "jobs" / job_id / "stdout.log").read_text()
    assert len(written.splitlines()) == 3000
    assert len(calls) == 3000
