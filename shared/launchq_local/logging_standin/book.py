"""The log book: every entry the stand-in holds, kept sorted, and the `entries.list` query.

Entries are kept in one list sorted by (timestamp, insertId), the order Cloud Logging returns
them in, so a query is a filter over a slice. Page tokens are keyset tokens: the sort key of the
last entry returned plus a digest of the query, so a page is stable while jobs keep printing and
a token cannot be replayed against another filter.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import itertools
import json
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from google.cloud.logging_v2.types import ListLogEntriesResponse, LogEntry

from launchq_local.logging_standin.query import SEVERITIES, Fields, compile_filter
from launchq_local.standin.execute import JobLine
from launchq_local.standin.names import project_number
from launchq_local.standin.wire import ApiError, invalid_argument

RESOURCE_TYPE = "ml_job"
DEFAULT_PAGE_SIZE = 50  # entries.list's documented default
MAX_PAGE_SIZE = 1000  # and its maximum
_LogEntryPb: Any = type(LogEntry.pb(LogEntry()))
_ResponsePb: Any = type(ListLogEntriesResponse.pb(ListLogEntriesResponse()))


@dataclass(frozen=True)
class Entry:
    project: str
    job_id: str
    task_name: str
    severity: str
    text: str
    timestamp_us: int
    receive_us: int
    insert_id: str

    @property
    def key(self) -> tuple[int, str]:
        return (self.timestamp_us, self.insert_id)

    @property
    def log_name(self) -> str:
        # Vertex names each replica's log after the replica: projects/P/logs/workerpool0-0.
        return f"projects/{self.project}/logs/{self.task_name}"

    @property
    def resource_labels(self) -> dict[str, str]:
        return {"job_id": self.job_id, "project_id": self.project, "task_name": self.task_name}

    def fields(self) -> Fields:
        return Fields(
            RESOURCE_TYPE,
            self.resource_labels,
            {},
            self.log_name,
            self.insert_id,
            self.text,
            SEVERITIES[self.severity],
            self.timestamp_us,
        )

    def to_pb(self) -> Any:
        pb = _LogEntryPb(
            log_name=self.log_name,
            text_payload=self.text,
            insert_id=self.insert_id,
            severity=SEVERITIES[self.severity],
        )
        pb.resource.type = RESOURCE_TYPE
        pb.resource.labels.update(self.resource_labels)
        pb.timestamp.FromMicroseconds(self.timestamp_us)
        pb.receive_timestamp.FromMicroseconds(self.receive_us)
        return pb


@dataclass(frozen=True)
class Query:
    """A parsed, validated `ListLogEntriesRequest`."""

    projects: frozenset[str]
    filter: str
    descending: bool
    page_size: int
    page_token: str

    @property
    def digest(self) -> str:
        text = json.dumps([sorted(self.projects), self.filter, self.descending])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class LogBook:
    """Thread-safe; `record` is the `LineSink` the Vertex stand-in feeds."""

    _entries: list[Entry] = field(default_factory=list)
    _keys: list[tuple[int, str]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    # insertIds sort by arrival within one timestamp; the prefix keeps books apart.
    _prefix: str = field(default_factory=lambda: secrets.token_hex(3))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, line: JobLine) -> None:
        """One printed line as Vertex's agent logs it: stdout INFO, stderr ERROR."""
        parts = line.job_name.split("/")
        if len(parts) != 6 or parts[0] != "projects" or parts[4] != "customJobs":
            raise ValueError(f"not a CustomJob name: {line.job_name!r}")
        us = int(line.time * 1_000_000)
        self.add(
            project=parts[1],
            job_id=parts[5],
            task_name=line.replica,
            severity="INFO" if line.stream == "stdout" else "ERROR",
            text=line.text,
            timestamp_us=us,
        )

    def add(
        self,
        project: str,
        job_id: str,
        task_name: str,
        severity: str,
        text: str,
        timestamp_us: int,
    ) -> Entry:
        with self._lock:
            entry = Entry(
                project,
                job_id,
                task_name,
                severity,
                text,
                timestamp_us,
                timestamp_us,
                f"{self._prefix}{next(self._ids):010d}",
            )
            index = bisect.bisect_right(self._keys, entry.key)
            self._keys.insert(index, entry.key)
            self._entries.insert(index, entry)
            return entry

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._keys.clear()

    def list(self, query: Query) -> Any:
        """One page of matching entries, as a raw `ListLogEntriesResponse`."""
        predicate = compile_filter(query.filter)
        # Vertex names jobs by project number, so the stand-in's entries carry the number; a
        # project id and its number name the same project, as they do for the real service.
        projects = {project_number(p) for p in query.projects}
        after = _decode_token(query.page_token, query.digest) if query.page_token else None
        with self._lock:
            entries = list(self._entries)
        if query.descending:
            entries.reverse()
        if after is not None:
            # Skip up to and including the last entry of the previous page.
            keys = [e.key for e in entries]
            if query.descending:
                start = next((i for i, k in enumerate(keys) if k < after), len(keys))
            else:
                start = bisect.bisect_right(keys, after)
            entries = entries[start:]
        page: list[Entry] = []
        more = False
        for entry in entries:
            if project_number(entry.project) not in projects or not predicate(entry.fields()):
                continue
            if len(page) == query.page_size:
                more = True
                break
            page.append(entry)
        response = _ResponsePb()
        for entry in page:
            response.entries.append(entry.to_pb())
        if more:
            response.next_page_token = _encode_token(page[-1].key, query.digest)
        return response


def _encode_token(key: tuple[int, str], digest: str) -> str:
    raw = json.dumps({"t": key[0], "i": key[1], "q": digest}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, digest: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        key = (int(data["t"]), str(data["i"]))
        same = data["q"] == digest
    except (ValueError, KeyError, TypeError):
        raise _bad_token() from None
    if not same:
        raise _bad_token()
    return key


def _bad_token() -> ApiError:
    return invalid_argument(
        "page_token",
        "page_token is invalid: it was not returned by a previous call with the same "
        "resource_names, filter and order_by",
    )
