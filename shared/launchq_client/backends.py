"""Settings and the clients built from them, one object every front end passes around.

Configuration comes from the front end's overrides (the CLI's `--project`, `--queue-topic`,
`--vertex-endpoint`), else environment variables (`launchq.settings`), so one command, one
dashboard, one demo works against the local stack and against a real project:

    project          LAUNCHQ_PROJECT, else GOOGLE_CLOUD_PROJECT
    queue topic      LAUNCHQ_QUEUE_TOPIC: the shared topic of a single-team install (default:
                     none; each queue has its own topic, launchq-q-<queue>)
    vertex endpoint  LAUNCHQ_VERTEX_ENDPOINT (default: the region's Vertex AI endpoint)
    (emulators)      PUBSUB_EMULATOR_HOST, FIRESTORE_EMULATOR_HOST

Clients are built when first used: `launchq --help` and a command that only publishes never load
Firestore, and a dead emulator fails in a second with the fix (`Unreachable`), not after a
minute of retries.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING

from launchq_client.errors import BadSettings, Unreachable

if TYPE_CHECKING:  # the clients are imported when first used
    from google.cloud.pubsub_v1 import PublisherClient

    from launchq.settings import Settings
    from launchq.store import Store
    from launchq.store.firestore import FirestoreStore
    from launchq.wiring import Launchq


class Backends:
    """Settings plus lazily built clients; a caller pays only for the clients it uses."""

    def __init__(
        self,
        project: str | None = None,
        queue_topic: str | None = None,
        vertex_endpoint: str | None = None,
        store: Store | None = None,
    ) -> None:
        # A caller that already has a store (a test's in-memory or emulator store, a dashboard
        # embedded in a bigger app) passes it; otherwise it is connected on first use.
        self._store = store
        self._overrides = {
            "LAUNCHQ_PROJECT": project,
            "LAUNCHQ_QUEUE_TOPIC": queue_topic,
            "LAUNCHQ_VERTEX_ENDPOINT": vertex_endpoint,
        }
        self._closers: list[Callable[[], None]] = []

    @cached_property
    def settings(self) -> Settings:
        from launchq.settings import Settings, SettingsError

        env = {**os.environ, **{k: v for k, v in self._overrides.items() if v}}
        try:
            return Settings.from_env(env)
        except SettingsError as exc:
            raise BadSettings(str(exc)) from None

    @cached_property
    def firestore(self) -> FirestoreStore:
        """The store on this Firestore (the emulator when FIRESTORE_EMULATOR_HOST is set)."""
        from launchq.store.firestore import connect

        check_emulator("FIRESTORE_EMULATOR_HOST", "Firestore")
        store = connect(self.settings.project, self.settings.firestore_database)
        self._closers.append(store.db.close)
        return store

    @cached_property
    def app(self) -> Launchq:
        """launchq's units wired like the functions' (`launchq.wiring`), on this Firestore.

        The queue cache is off: a command acts on the config as stored now.
        """
        from dataclasses import replace

        from launchq.wiring import build

        return build(replace(self.settings, queue_cache_seconds=0.0), store=self.firestore)

    @property
    def store(self) -> Store:
        return self._store if self._store is not None else self.app.store

    @cached_property
    def publisher(self) -> PublisherClient:
        from google.cloud.pubsub_v1 import PublisherClient

        check_emulator("PUBSUB_EMULATOR_HOST", "Pub/Sub")
        return PublisherClient()

    def topic_path_for(self, queue: str) -> str:
        """Where items for `queue` are published: the queue's own topic (`launchq-q-<queue>`,
        publisher rights on it are launch rights), or the shared topic when the install opted
        in (`--queue-topic` / `LAUNCHQ_QUEUE_TOPIC`)."""
        from launchq.spec.topics import queue_topic

        topic = self.settings.queue_topic or queue_topic(queue)
        return f"projects/{self.settings.project}/topics/{topic}"

    def close(self) -> None:
        for closer in self._closers:
            try:
                closer()
            except Exception:  # closing is best effort; the caller's outcome stands
                logging.getLogger(__name__).debug("client close failed", exc_info=True)


def check_emulator(variable: str, service: str) -> None:
    """Fail in a second with the fix, instead of the client retrying a dead port for a minute."""
    address = os.environ.get(variable)
    if not address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=1.0):
            return
    except (OSError, ValueError):
        raise Unreachable(
            f"cannot reach the {service} emulator at {address} ({variable}); "
            "start the local stack with `make dev`, or unset it to use Google Cloud"
        ) from None
