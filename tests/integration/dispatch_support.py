"""Helpers for dispatcher tests: launchq wired to the emulators and the stand-in.

Crashes are injected from outside, through the seams every unit already has: a store whose
writes succeed and then "kill the process" (`SimulatedCrash`), and a Vertex client whose create
succeeds and then does the same. Production code carries no test hooks.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
import yaml
from google.cloud import firestore

from launchq.dispatch import Dispatcher, PubsubMessage
from launchq.gcp.events import EventPublisher
from launchq.gcp.vertex import CallRetry, VertexClient
from launchq.model.records import Changes, ItemRecord, Slot
from launchq.model.states import ItemState
from launchq.settings import Settings
from launchq.store import Store, Transition, utcnow
from launchq.store.firestore import FirestoreStore
from launchq.sweep import Sweeper
from launchq.wiring import Launchq, build
from launchq_client.configs import apply_queue

SEED_QUEUE = Path(__file__).resolve().parents[2] / "examples" / "queues" / "default.yaml"


class SimulatedCrash(BaseException):
    """The process dies here. A BaseException, so no `except Exception` can tidy up after it:
    a real crash does not run cleanup either."""


# Where a dispatcher can die, in the order it gets there.
CRASH_POINTS = ("recorded", "claimed", "created")


class CrashingStore(FirestoreStore):
    """A store that dies right after committing the write at `point` (or raises `error` there:
    what a bug or an outage right after a write looks like to the dispatcher)."""

    def __init__(self, db: firestore.Client, point: str, error: Exception | None = None) -> None:
        super().__init__(db)
        self.point = point
        self.error = error

    def _fail(self) -> None:
        if self.error is not None:
            raise self.error
        raise SimulatedCrash(self.point)

    def create_item(
        self,
        queue: str,
        item_id: str,
        state: ItemState,
        fields: Any,
        cause: str,
        **admitted: Any,
    ) -> ItemRecord | None:
        created = super().create_item(queue, item_id, state, fields, cause, **admitted)
        if created is None or state is not ItemState.QUEUED:
            return created
        # An item that can start at once is recorded already claimed: one write is both points.
        if self.point == "recorded" or (
            self.point == "claimed" and created.state is ItemState.SUBMITTING
        ):
            self._fail()
        return created

    def transition(
        self,
        item: ItemRecord,
        change: Transition,
        changes: Changes | None = None,
        *,
        take_slot: Slot | None = None,
        release_slot: bool = False,
    ) -> ItemRecord:
        written = super().transition(
            item, change, changes, take_slot=take_slot, release_slot=release_slot
        )
        if self.point == "claimed" and change.to is ItemState.SUBMITTING:
            self._fail()
        return written


class CrashingVertex(VertexClient):
    """A Vertex client that dies right after CreateCustomJob succeeded."""

    def create_custom_job(self, parent: str, body: dict[str, Any]) -> dict[str, Any]:
        super().create_custom_job(parent, body)
        raise SimulatedCrash("created")


class RecordingPublisher(EventPublisher):
    """Keeps the events instead of publishing them (what a test asserts on)."""

    def __init__(self) -> None:
        super().__init__("test", "")
        self.sent: list[dict[str, Any]] = []

    def publish_many(self, events: list[dict[str, Any]]) -> int:
        self.sent.extend(events)
        return len(events)


def queue_config(max_jobs: int = -1, **extra: Any) -> dict[str, Any]:
    """The seed's default Vertex queue config (examples/queues/default.yaml), for the tests'
    project, region and bucket."""
    config: dict[str, Any] = yaml.safe_load(SEED_QUEUE.read_text())
    config["spec"]["staging_bucket"] = "gs://launchq-test-staging"
    return {
        **config,
        "project": "launchq-test",
        "region": "us-central1",
        "max_jobs": max_jobs,
        **extra,
    }


# The harness's launchq takes items from the opted-in shared topic (items name their queue), as
# the tests of everything but routing want; routing is tested with `topic=launchq-q-<queue>`.
SHARED_TOPIC = "launchq-items"


def message(
    payload: Any, message_id: str | None = None, topic: str | None = SHARED_TOPIC, **attributes: str
) -> PubsubMessage:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return PubsubMessage(data, attributes, message_id or uuid.uuid4().hex, topic=topic)


def item(queue: str, item_id: str, **extra: Any) -> dict[str, Any]:
    return {"queue": queue, "item_id": item_id, "image_uri": "gcr.io/p/trainer:1", **extra}


@dataclass
class Harness:
    db: firestore.Client
    project: str
    vertex_url: str
    lease_seconds: float = 600.0
    events_topic: str = ""
    storage_endpoint: str | None = None  # the GCS emulator, for source items
    # No creation budget unless a test asks for one: most tests create jobs faster than 1/s.
    create_rate_per_minute: float = 0.0
    quota_backoff_seconds: float = 15.0
    store: Store = field(init=False)
    _vertex: VertexClient | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.store = FirestoreStore(self.db)

    def settings(self) -> Settings:
        return Settings(
            project=self.project,
            queue_topic=SHARED_TOPIC,
            events_topic=self.events_topic,
            vertex_endpoint=self.vertex_url,
            submit_lease_seconds=self.lease_seconds,
            queue_cache_seconds=0.0,
            vertex_timeout_seconds=10.0,
            storage_endpoint=self.storage_endpoint,
            create_rate_per_minute=self.create_rate_per_minute,
            quota_backoff_initial_seconds=self.quota_backoff_seconds,
        )

    def app(
        self,
        crash_at: str | None = None,
        events: EventPublisher | None = None,
        crash_with: Exception | None = None,
    ) -> Launchq:
        """launchq as the functions build it, on the emulators; `crash_at` one of CRASH_POINTS."""
        vertex = self.vertex
        store = self.store
        if crash_at == "created":
            vertex = CrashingVertex(
                self.vertex_url, requests.Session(), 10.0, CallRetry(sleep=lambda _s: None)
            )
        elif crash_at is not None:
            store = CrashingStore(self.db, crash_at, crash_with)
        return build(
            self.settings(),
            store=store,
            vertex_for=lambda _region: vertex,
            events=events or EventPublisher(self.project, self.events_topic),
            sleep=lambda _s: None,
        )

    def dispatcher(
        self, crash_at: str | None = None, crash_with: Exception | None = None
    ) -> Dispatcher:
        return self.app(crash_at, crash_with=crash_with).dispatcher

    @property
    def vertex(self) -> VertexClient:
        """One client per harness, retrying without sleeping (tests inject faults)."""
        if self._vertex is None:
            self._vertex = VertexClient(
                self.vertex_url, requests.Session(), 10.0, CallRetry(sleep=lambda _s: None)
            )
        return self._vertex

    @staticmethod
    def now() -> datetime:
        return utcnow()

    def sweeper(self) -> Sweeper:
        return self.app().sweeper

    def apply(self, name: str, config: dict[str, Any]) -> None:
        apply_queue(self.store, name, config)

    def item_data(self, queue: str, item_id: str) -> dict[str, Any]:
        document = self.store.item_document(queue, item_id)
        assert document is not None, f"item {queue}/{item_id} was not recorded"
        return document
