"""A job's log entries from Cloud Logging: the endpoint, the query, the REST client, following.

`launchq logs`, `launchq status` (a failed job's last lines) and the dashboard's item page all
read a job's log through here. The endpoint is the caller's (`--logging-endpoint`), else
`LAUNCHQ_LOGGING_ENDPOINT` (the local stack exports its Cloud Logging stand-in there), else Cloud
Logging itself, except that a job run by a local Vertex stand-in (`http://` Vertex endpoint) has
no logs in the cloud: asking there is an error that says which variable to set, instead of a
query that returns nothing (`logs_client`).

Vertex writes each replica's output as `ml_job` entries: resource labels `job_id` (the numeric
CustomJob id), `project_id` and `task_name` (the replica, `workerpool0-0`), stdout at INFO and
stderr at ERROR. `gcloud ai custom-jobs stream-logs JOB --task-name=T` filters on exactly
`resource.type="ml_job"`, `resource.labels.job_id="JOB"` and `resource.labels.task_name="T"`
(its own unit tests assert that filter list), so the replica is a *resource* label.

Following works as gcloud's `LogFetcher` does: the lower bound is the last timestamp seen
(`timestamp>="T"`, entries with that timestamp already printed are skipped by insertId), the
upper bound is now minus an ingestion delay (gcloud: 5 s) because Cloud Logging makes entries
visible out of order for a few seconds; the local stand-in makes an entry visible as it is
written, so `http://` endpoints use 0.5 s. The loop ends once the item is terminal in Firestore
and one more read without an upper bound has returned what is left.

Every read has an explicit lower bound (the job's create time, or `--since`), so the Python
client's implicit "last 24 hours" never applies: logs of a job that ended days ago still show.

Why REST through `requests` rather than `google.cloud.logging`: measured on the project machine
(2 cores, Python 3.11, google-cloud-logging 3.17.0; `python -m bench.logs_client_import --runs
5`: fresh interpreters, both import orders, each against the Firestore import the command needs
anyway, in the same process): `requests` + `google.auth.transport.requests` add 0.1 ms and 0 KiB
of peak RSS (google-auth and Firestore already loaded them), a ratio of 0.0003 to the Firestore
import; `import google.cloud.logging` plus a `Client(_use_grpc=False)` add 0.26-0.30 s and 10 MiB
under load (0.10-0.19 s idle), a ratio of 0.48-0.49. `entries:list` is one POST with a page
token; the client library earns nothing here, so it serves the stand-in and the tests only.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import requests

from launchq.gcp.joblogs import entry_text, ml_job_filter, rfc3339
from launchq_client.errors import ClientError, Unreachable

if TYPE_CHECKING:
    from launchq_client.backends import Backends

DEFAULT_ENDPOINT = "https://logging.googleapis.com"
ENDPOINT_VARIABLE = "LAUNCHQ_LOGGING_ENDPOINT"
CLOUD_INGESTION_DELAY = 5.0
LOCAL_INGESTION_DELAY = 0.5
PAGE_SIZE = 1000  # entries.list's maximum: fewest round trips
# entries.list has a per-project read quota (429 RESOURCE_EXHAUSTED past it), shared by every
# follower of the project: poll Cloud Logging every 10 s (gcloud's stream-logs polls every 60 s),
# the local stand-in every second.
CLOUD_POLL_INTERVAL = 10.0
LOCAL_POLL_INTERVAL = 1.0
_TRANSIENT = frozenset({0, 429, 500, 502, 503, 504})
_ATTEMPTS = 4
# Logs cannot precede the job; the margin absorbs clock skew between Vertex and Logging.
_CREATE_MARGIN = timedelta(minutes=1)
_SCOPES = ("https://www.googleapis.com/auth/logging.read",)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class LogsError(ClientError):
    """An error answer from Cloud Logging (or none at all: `http_status` 0)."""

    def __init__(self, http_status: int, status: str, message: str) -> None:
        super().__init__(f"Cloud Logging answered {http_status} {status}: {message}")
        self.http_status = http_status
        self.status = status
        self.message = message


@dataclass(frozen=True)
class LogLine:
    """One entry as people read it (`launchq logs --json` prints `to_json()` per line)."""

    timestamp: str
    severity: str
    replica: str
    message: str
    insert_id: str
    job_id: str

    @property
    def at(self) -> datetime:
        return parse_time(self.timestamp)

    def to_json(self) -> dict[str, str]:
        return {
            "timestamp": self.timestamp,
            "severity": self.severity,
            "replica": self.replica,
            "message": self.message,
            "insert_id": self.insert_id,
            "job_id": self.job_id,
        }


@dataclass(frozen=True)
class JobRef:
    """The job whose logs are read: the item's current (last) attempt."""

    name: str
    project: str
    job_id: str
    created: datetime | None


def job_ref(item: dict[str, Any]) -> JobRef | None:
    """The item's job from its Firestore document, or None while it has none."""
    job = item.get("job") or {}
    attempts = [a for a in item.get("attempts") or [] if isinstance(a, dict)]
    name = job.get("name") or (attempts[-1].get("job_name") if attempts else None)
    if not name:
        return None
    parts = str(name).split("/")
    if len(parts) != 6 or parts[0] != "projects":
        raise LogsError(0, "INVALID", f"unexpected job name {name!r}")
    created = _as_time(job.get("create_time")) or (
        _as_time(attempts[-1].get("created_at")) if attempts else None
    )
    # Vertex names the job by project number; the item keeps the project id it was sent to.
    project = str(item.get("project") or parts[1])
    return JobRef(str(name), project, parts[5], created)


def _as_time(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            return parse_time(value)
        except ValueError:
            return None
    return None


def parse_time(text: str) -> datetime:
    """RFC 3339 with up to nanoseconds (Cloud Logging sends nine digits)."""
    text = re.sub(r"\.(\d+)", lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def parse_duration(text: str) -> timedelta:
    """`90`, `30s`, `10m`, `2h`, `1d`; ValueError otherwise."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration (e.g. 30s, 10m, 2h, 1d)")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def job_filter(
    job: JobRef,
    replica: str | None,
    since: datetime | None,
    until: datetime | None = None,
) -> str:
    """The `entries.list` filter for one job (see the module docstring)."""
    lower = since or (job.created - _CREATE_MARGIN if job.created else None)
    return ml_job_filter(job.job_id, lower, until, replica)


def entry_line(entry: dict[str, Any]) -> LogLine:
    """An `entries.list` entry to a line; textPayload, else jsonPayload.message, else JSON."""
    message = entry_text(entry)
    resource = (entry.get("resource") or {}).get("labels") or {}
    # proto3 JSON writes 0, 3, 6 or 9 fraction digits; one width keeps the strings sortable.
    stamp = str(entry.get("timestamp", ""))
    with contextlib.suppress(ValueError):
        stamp = rfc3339(parse_time(stamp))
    return LogLine(
        timestamp=stamp,
        severity=str(entry.get("severity", "DEFAULT")),
        replica=str(resource.get("task_name", "")),
        message=message,
        insert_id=str(entry.get("insertId", "")),
        job_id=str(resource.get("job_id", "")),
    )


# -- the REST client -------------------------------------------------------------------------


def endpoint_from_env(env: dict[str, str] | None = None) -> str | None:
    value = (env if env is not None else os.environ).get(ENDPOINT_VARIABLE, "")
    return value.rstrip("/") or None


def logs_client(
    backends: Backends, endpoint: str | None = None, timeout: float = 30.0
) -> LogsClient:
    """The client for an item's logs (see the module docstring for the choice of endpoint).
    Raises `Unreachable` for a local stand-in's job without a local endpoint."""
    endpoint = endpoint or endpoint_from_env()
    if endpoint is None:
        vertex = backends.settings.vertex_endpoint or ""
        if vertex.startswith("http://"):
            raise Unreachable(
                f"the job ran on the local Vertex stand-in ({vertex}), whose logs are not in "
                f"Cloud Logging: set {ENDPOINT_VARIABLE} to the local Logging stand-in "
                "(`launchq dev` prints it) or pass --logging-endpoint"
            )
        endpoint = DEFAULT_ENDPOINT
    return LogsClient.for_endpoint(endpoint, timeout)


@dataclass
class LogsClient:
    """`entries:list` against one endpoint, over one pooled session."""

    base_url: str
    session: requests.Session
    timeout: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def for_endpoint(cls, base_url: str, timeout: float = 30.0) -> LogsClient:
        """`http://` is the local stand-in: no credentials; else Application Default
        Credentials, as `launchq.gcp.vertex` does."""
        if base_url.startswith("http://"):
            session = requests.Session()
            session.trust_env = False  # a loopback stand-in needs no proxy
        else:
            import google.auth
            from google.auth.transport.requests import AuthorizedSession

            credentials, _ = google.auth.default(scopes=_SCOPES)
            session = cast(requests.Session, AuthorizedSession(credentials))  # type: ignore[no-untyped-call]
        return cls(base_url.rstrip("/"), session, timeout)

    @property
    def local(self) -> bool:
        return self.base_url.startswith("http://")

    @property
    def poll_interval(self) -> float:
        return LOCAL_POLL_INTERVAL if self.local else CLOUD_POLL_INTERVAL

    @property
    def ingestion_delay(self) -> float:
        return (
            LOCAL_INGESTION_DELAY if self.base_url.startswith("http://") else CLOUD_INGESTION_DELAY
        )

    def close(self) -> None:
        self.session.close()

    def page(
        self, project: str, filter: str, descending: bool, page_size: int, token: str = ""
    ) -> tuple[list[dict[str, Any]], str]:
        body: dict[str, Any] = {
            "resourceNames": [f"projects/{project}"],
            "filter": filter,
            "orderBy": "timestamp desc" if descending else "timestamp asc",
            "pageSize": page_size,
        }
        if token:
            body["pageToken"] = token
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return self._post(body)
            except LogsError as exc:
                if exc.http_status not in _TRANSIENT or attempt == _ATTEMPTS:
                    raise
                self.sleep(2.0 ** (attempt - 1))  # 1, 2, 4 s: quota refills by the minute
        raise AssertionError("unreachable")

    def _post(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        try:
            response = self.session.post(
                f"{self.base_url}/v2/entries:list", json=body, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise LogsError(0, "UNAVAILABLE", f"no answer from {self.base_url}: {exc}") from exc
        if response.status_code >= 400:
            status, message = "UNKNOWN", response.text[:300]
            try:
                error = response.json()["error"]
                status, message = str(error["status"]), str(error["message"])
            except (ValueError, KeyError, TypeError):
                pass
            raise LogsError(response.status_code, status, message)
        data = response.json() if response.content else {}
        return list(data.get("entries", [])), str(data.get("nextPageToken", ""))

    def entries(self, project: str, filter: str) -> Iterator[LogLine]:
        """Every matching entry, oldest first, following page tokens."""
        token = ""
        while True:
            entries, token = self.page(project, filter, False, PAGE_SIZE, token)
            yield from (entry_line(e) for e in entries)
            if not token:
                return

    def last(self, project: str, filter: str, count: int) -> list[LogLine]:
        """The newest `count` matching entries, oldest first."""
        lines: list[LogLine] = []
        token = ""
        while len(lines) < count:
            size = min(count - len(lines), PAGE_SIZE)
            entries, token = self.page(project, filter, True, size, token)
            lines.extend(entry_line(e) for e in entries)
            if not token:
                break
        return list(reversed(lines[:count]))


# -- following -------------------------------------------------------------------------------


@dataclass
class Position:
    """Where a follower is: the newest timestamp printed and the insertIds printed with it."""

    at: datetime | None = None
    seen: set[str] = field(default_factory=set)

    def fresh(self, line: LogLine) -> bool:
        """True (and advance) for a line not printed yet; entries arrive oldest first."""
        at = line.at
        if self.at is not None and at < self.at:
            return False
        if self.at is None or at > self.at:
            self.at, self.seen = at, set()
        if line.insert_id in self.seen:
            return False
        self.seen.add(line.insert_id)
        return True


def follow(
    client: LogsClient,
    job: JobRef,
    replica: str | None,
    since: datetime | None,
    position: Position,
    watch: Callable[[], tuple[JobRef | None, bool]],
    emit: Callable[[LogLine], None],
    interval: float = 2.0,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
    switched: Callable[[JobRef], None] = lambda job: None,
) -> None:
    """Print new entries every `interval` seconds until the item ends and the last are read.

    `watch()` is the item's current job and whether the item has ended. A retried item gets a
    new job: the old one's last lines are read first, then `switched(new)` is called and the
    new job is followed, so `--follow` shows every attempt of an item, not only the first.
    """
    delay = timedelta(seconds=client.ingestion_delay)
    finishing = False
    after: JobRef | None = None  # the job to follow once this one's last lines are read
    while True:
        until = None if finishing else clock() - delay
        lower = position.at or since
        for line in client.entries(job.project, job_filter(job, replica, lower, until)):
            if position.fresh(line):
                emit(line)
        if finishing:
            if after is None:
                return
            job, after, finishing, position = after, None, False, Position()
            switched(job)
            continue
        current, ended = watch()
        if current is not None and current.name != job.name:
            after = current
        if ended or after is not None:
            # Entries written just before the end may not be visible yet: wait out the
            # ingestion delay once, then read everything that is left.
            sleep(client.ingestion_delay)
            finishing = True
            continue
        sleep(interval)
