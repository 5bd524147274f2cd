"""Helpers for dispatcher tests: a Dispatcher wired to the emulators and the stand-in."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
import yaml
from google.cloud import firestore

from launchq.dispatch import Dispatcher, PubsubMessage
from launchq.events import EventPublisher
from launchq.queues import QueueSource
from launchq.settings import Settings
from launchq.store import Store, utcnow
from launchq.sweep import Sweeper
from launchq.vertex import RetryPolicy, VertexClient
from launchq_cli.configs import apply_queue

SEED_QUEUE = Path(__file__).resolve().parents[2] / "examples" / "queues" / "default.yaml"


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


def message(payload: Any, message_id: str | None = None, **attributes: str) -> PubsubMessage:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return PubsubMessage(data, attributes, message_id or uuid.uuid4().hex)


def item(queue: str, item_id: str, **extra: Any) -> dict[str, Any]:
    return {"queue": queue, "item_id": item_id, "image_uri": "gcr.io/p/trainer:1", **extra}


@dataclass
class Harness:
    db: firestore.Client
    project: str
    vertex_url: str
    lease_seconds: float = 600.0
    hook: Callable[[str], None] = lambda _p: None
    events_topic: str = ""
    store: Store = field(init=False)
    _vertex: VertexClient | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.store = Store(self.db)

    def settings(self) -> Settings:
        return Settings(
            project=self.project,
            events_topic=self.events_topic,
            vertex_endpoint=self.vertex_url,
            submit_lease_seconds=self.lease_seconds,
            queue_cache_seconds=0.0,
            vertex_timeout_seconds=10.0,
        )

    def dispatcher(self, hook: Callable[[str], None] | None = None) -> Dispatcher:
        settings = self.settings()
        return Dispatcher(
            settings,
            self.store,
            QueueSource(self.store, settings.queue_cache_seconds),
            EventPublisher(self.project, self.events_topic),
            vertex_for=lambda _region: self.vertex,
            hook=hook or self.hook,
            sleep=lambda _s: None,
        )

    @property
    def vertex(self) -> VertexClient:
        """One client per harness, retrying without sleeping (tests inject faults)."""
        if self._vertex is None:
            self._vertex = VertexClient(
                self.vertex_url, requests.Session(), 10.0, RetryPolicy(sleep=lambda _s: None)
            )
        return self._vertex

    @staticmethod
    def now() -> datetime:
        return utcnow()

    def sweeper(self) -> Sweeper:
        dispatcher = self.dispatcher()
        return Sweeper(self.store, dispatcher, dispatcher.queues)

    def apply(self, name: str, config: dict[str, Any]) -> None:
        apply_queue(self.store, name, config)

    def item_data(self, queue: str, item_id: str) -> dict[str, Any]:
        snap = self.store.get_item(queue, item_id)
        assert snap.exists, f"item {queue}/{item_id} was not recorded"
        return snap.to_dict() or {}
