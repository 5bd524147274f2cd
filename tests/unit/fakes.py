"""launchq wired through `launchq.wiring.build` on the in-memory store, with fakes for Vertex
and the events topic: the orchestration units' unit tests need no emulator and no server.

Crashes are injected from outside, as in the emulator tests (tests/fixtures/dispatch.py):
a store that "kills the process" right after its Nth commit, a Vertex client whose create
succeeds and then does the same.
"""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
import yaml

from launchq.dispatch import DispatchResult, PubsubMessage
from launchq.gcp.events import EventPublisher
from launchq.gcp.vertex import CallRetry, VertexClient, VertexError
from launchq.settings import Settings
from launchq.store.memory import MemoryStore, Write
from launchq.wiring import Launchq, build
from launchq_client.configs import apply_queue

SEED_QUEUE = Path(__file__).resolve().parents[2] / "examples" / "queues" / "default.yaml"
SHARED_TOPIC = "launchq-items"
PARENT = "projects/launchq-test/locations/us-central1"


class SimulatedCrash(BaseException):
    """The process dies here: a BaseException, so no `except Exception` tidies up after it."""


class Clock:
    """Time that moves a millisecond per reading (and on request): deterministic, never still."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            self.now += timedelta(milliseconds=1)
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += timedelta(seconds=seconds)


class CrashingStore(MemoryStore):
    """The memory store, which dies right after its Nth commit once armed (`crash_after`)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self._crash_at: int | None = None
        self._error: Exception | None = None

    def crash_after(self, writes: int | None, error: Exception | None = None) -> None:
        """Die (or raise `error`: an outage right after a write) after `writes` more commits."""
        self._crash_at = None if writes is None else self.commits + writes
        self._error = error

    def _commit(self, writes: Sequence[Write]) -> datetime:
        version = super()._commit(writes)
        if self._crash_at is not None and self.commits >= self._crash_at:
            self._crash_at = None  # one death per arming
            if self._error is not None:
                raise self._error
            raise SimulatedCrash(f"after commit {self.commits}")
        return version


class FakeVertex(VertexClient):
    """CustomJobs in a dict: create, get, cancel, and a list that honours label filters."""

    def __init__(self) -> None:
        super().__init__("http://vertex.invalid", requests.Session(), 1.0, CallRetry(sleep=_no))
        self.jobs: dict[str, dict[str, Any]] = {}
        self.crash_after_create = False  # the create succeeds, then the process dies
        self.refuse: list[VertexError] = []  # errors the next creates answer, in order
        self.lose_answers = 0  # creates that succeed but answer 503 (the answer was lost)
        self._ids = itertools.count(1000)
        self._lock = threading.Lock()

    def create_custom_job(self, parent: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls["CreateCustomJob"] += 1
        with self._lock:
            if self.refuse:
                raise self.refuse.pop(0)
            name = f"{parent}/customJobs/{next(self._ids)}"
            job = {
                **json.loads(json.dumps(body)),
                "name": name,
                "state": "JOB_STATE_QUEUED",
                "createTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            }
            self.jobs[name] = job
        if self.crash_after_create:
            self.crash_after_create = False
            raise SimulatedCrash("created")
        if self.lose_answers:
            self.lose_answers -= 1
            raise VertexError(503, "UNAVAILABLE", "the answer was lost", "CreateCustomJob")
        return dict(job)

    def get_custom_job(self, name: str) -> dict[str, Any]:
        self.calls["GetCustomJob"] += 1
        if name not in self.jobs:
            raise VertexError(404, "NOT_FOUND", f"{name} not found", "GetCustomJob")
        return dict(self.jobs[name])

    def cancel_custom_job(self, name: str) -> None:
        self.calls["CancelCustomJob"] += 1
        self.jobs[name]["state"] = "JOB_STATE_CANCELLED"

    def list_custom_jobs(
        self, parent: str, filter: str = "", page_size: int = 1000, read_mask: Sequence[str] = ()
    ) -> Any:
        self.calls["ListCustomJobs"] += 1
        clauses = [c.strip() for c in filter.split(" AND ") if c.strip()]
        for job in list(self.jobs.values()):
            if job["name"].startswith(parent + "/") and all(_matches(job, c) for c in clauses):
                yield dict(job)

    def set_state(self, name: str, state: str, **extra: Any) -> None:
        self.jobs[name].update(state=state, **extra)

    def job_of(self, item_id: str) -> list[dict[str, Any]]:
        return [j for j in self.jobs.values() if j["labels"].get("launchq-item") == item_id]


def _matches(job: dict[str, Any], clause: str) -> bool:
    labels = job.get("labels", {})
    if clause.startswith("labels.") and clause.endswith(":*"):
        return clause[len("labels.") : -2] in labels
    if clause.startswith("labels.") and "=" in clause:
        key, value = clause[len("labels.") :].split("=", 1)
        return bool(labels.get(key) == value.strip('"'))
    return True  # create_time bounds: a superset is what a list may return anyway


def _no(_seconds: float) -> None:
    return None


class RecordingPublisher(EventPublisher):
    """Keeps the events instead of publishing them."""

    def __init__(self) -> None:
        super().__init__("test", "")
        self.sent: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def publish_many(self, events: list[dict[str, Any]]) -> int:
        with self._lock:
            self.sent.extend(events)
        return len(events)


def queue_config(max_jobs: int = -1, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(SEED_QUEUE.read_text())
    config["spec"]["staging_bucket"] = "gs://launchq-test-staging"
    return {
        **config,
        "project": "launchq-test",
        "region": "us-central1",
        "max_jobs": max_jobs,
        **extra,
    }


def message(payload: Any, message_id: str | None = None) -> PubsubMessage:
    data = json.dumps(payload).encode()
    return PubsubMessage(data, {}, message_id or uuid.uuid4().hex, topic=SHARED_TOPIC)


def item(queue: str, item_id: str, **extra: Any) -> dict[str, Any]:
    return {"queue": queue, "item_id": item_id, "image_uri": "gcr.io/p/trainer:1", **extra}


@dataclass
class World:
    """One in-memory launchq world: a store, a Vertex, an events topic, and a clock that every
    process built on them (`app`) shares."""

    lease_seconds: float = 600.0
    create_rate_per_minute: float = 0.0
    clock: Clock = field(default_factory=Clock)
    vertex: FakeVertex = field(default_factory=FakeVertex)
    events: RecordingPublisher = field(default_factory=RecordingPublisher)
    store: CrashingStore = field(init=False)

    def __post_init__(self) -> None:
        self.store = CrashingStore(self.clock)

    def settings(self) -> Settings:
        return Settings(
            project="launchq-test",
            queue_topic=SHARED_TOPIC,
            events_topic="",
            submit_lease_seconds=self.lease_seconds,
            queue_cache_seconds=0.0,
            create_rate_per_minute=self.create_rate_per_minute,
        )

    def app(self) -> Launchq:
        """A fresh process: launchq as the functions build it, on this world."""
        return build(
            self.settings(),
            store=self.store,
            vertex_for=lambda _region: self.vertex,
            events=self.events,
            clock=self.clock,
            sleep=_no,
        )

    def apply(self, name: str, config: dict[str, Any]) -> None:
        apply_queue(self.store, name, config)

    def deliver(self, payload: Any, message_id: str | None = None) -> DispatchResult:
        return self.app().dispatcher.handle(message(payload, message_id))

    def data(self, queue: str, item_id: str) -> dict[str, Any]:
        document = self.store.item_document(queue, item_id)
        assert document is not None, f"{queue}/{item_id} was not recorded"
        return document


class FakeCloudBuild:
    """Cloud Build and Artifact Registry as `launchq.builds` calls them: builds in a dict,
    listed by tag; `finish` ends one."""

    def __init__(self) -> None:
        self.builds: dict[str, dict[str, Any]] = {}
        self.created = 0
        self._lock = threading.Lock()

    def get_tag(self, image: Any, tag: str) -> str | None:
        return None

    def create_build(self, project: str, location: str, build: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.created += 1
            build_id = f"b-{self.created}"
            self.builds[build_id] = {
                **build,
                "id": build_id,
                "status": "WORKING",
                "logUrl": f"https://logs/{build_id}",
            }
        return {"metadata": {"build": dict(self.builds[build_id])}}

    def list_builds(self, project: str, location: str, filter: str = "") -> Any:
        tags = {t.strip().removeprefix('tags="').rstrip('"') for t in filter.split(" OR ")}
        for found in reversed(list(self.builds.values())):  # newest first
            if tags & set(found.get("tags", [])):
                yield dict(found)

    def cancel_build(self, project: str, location: str, build_id: str) -> dict[str, Any]:
        self.builds[build_id]["status"] = "CANCELLED"
        return dict(self.builds[build_id])

    def finish(self, build_id: str, status: str, image: str = "") -> None:
        build = self.builds[build_id]
        build["status"] = status
        if status == "SUCCESS":
            build["results"] = {"images": [{"name": image, "digest": "sha256:" + "a" * 64}]}
