"""The composition root: settings -> clients -> units, built in one place.

The functions, the CLI, the tests and the benchmarks all build launchq through `build`, so a unit
is constructed one way everywhere; what differs is passed in (a store: Firestore on the
emulator, or `launchq.store.memory.MemoryStore` in unit tests; a Vertex client without sleeps;
a clock). Clients are created lazily by the callers
that need them: building the units does no I/O.

    settings = Settings.from_env()
    app = build(settings)
    app.dispatcher.handle(message)
    app.sweeper.run()
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from launchq.admission import Admission
from launchq.builds.builder import ImageBuilder
from launchq.builds.gate import BuildGate
from launchq.builds.sources import ObjectReader, SourceChecker
from launchq.cancel import Canceller
from launchq.capacity import Capacity
from launchq.cohorts import CohortSource
from launchq.dispatch import Dispatcher
from launchq.gcp import cloudbuild as cb
from launchq.gcp import gcs, joblogs, quotas
from launchq.gcp import vertex as vx
from launchq.gcp.events import EventPublisher, pubsub_base
from launchq.gcp.secrets import SecretReader
from launchq.notify import Notifier
from launchq.queues import QueueSource
from launchq.recorder import Recorder
from launchq.settings import Settings
from launchq.store import Clock, Store, utcnow
from launchq.submission import Submitter, VertexFor
from launchq.sweep import Sweeper


@dataclass(frozen=True)
class Launchq:
    """Every unit of one process, wired to the same store, queues, recorder and clients."""

    settings: Settings
    store: Store
    queues: QueueSource
    events: EventPublisher
    recorder: Recorder
    vertex_for: VertexFor
    capacity: Capacity
    submitter: Submitter
    admission: Admission
    dispatcher: Dispatcher
    builds: ImageBuilder
    sweeper: Sweeper
    canceller: Canceller
    notifier: Notifier


def build(
    settings: Settings,
    *,
    vertex_for: VertexFor | None = None,
    events: EventPublisher | None = None,
    clock: Clock = utcnow,
    sleep: Callable[[float], None] = time.sleep,
    store: Store | None = None,
    storage: ObjectReader | None = None,
    cloudbuild: cb.CloudBuildClient | None = None,
) -> Launchq:
    """Wire launchq from `settings`; every keyword replaces one dependency (tests, benchmarks).

    Without `store`, the store is Firestore's for the settings' project and database.
    """
    if store is None:
        # Imported here: a process given its store (the unit tests) never loads the client.
        from launchq.store.firestore import connect

        store = connect(settings.project, settings.firestore_database, clock)
    if vertex_for is None:

        def vertex_for(region: str) -> vx.VertexClient:
            return vx.client_for(settings.vertex_base_url(region), settings.vertex_timeout_seconds)

    events = events or EventPublisher(settings.project, settings.events_topic)
    sources = SourceChecker(
        (lambda: storage)
        if storage is not None
        else (lambda: gcs.client_for(settings.storage_base_url, settings.vertex_timeout_seconds))
    )
    queues = QueueSource(store, settings.queue_cache_seconds)

    def cloudbuild_client() -> cb.CloudBuildClient:
        if cloudbuild is not None:
            return cloudbuild
        return cb.client_for(
            settings.cloudbuild_endpoint or cb.CLOUDBUILD_ENDPOINT,
            settings.artifactregistry_endpoint or cb.ARTIFACTREGISTRY_ENDPOINT,
        )

    builds = ImageBuilder(store, cloudbuild_client, store.clock)
    recorder = Recorder(store, events)
    cohorts = CohortSource(store, settings.queue_cache_seconds)
    capacity = Capacity(
        store,
        queues,
        settings.create_rate,
        settings.quota_backoff_initial_seconds,
        settings.quota_backoff_max_seconds,
        cohorts,
    )
    submitter = Submitter(
        store, recorder, vertex_for, settings.submit_lease_seconds, sleep, capacity, queues
    )
    admission = Admission(store, queues, submitter, sleep, cohorts)
    canceller = Canceller(store, recorder, vertex_for, builds)
    return Launchq(
        settings=settings,
        store=store,
        queues=queues,
        events=events,
        recorder=recorder,
        vertex_for=vertex_for,
        capacity=capacity,
        submitter=submitter,
        admission=admission,
        dispatcher=Dispatcher(
            store,
            queues,
            recorder,
            admission,
            submitter,
            canceller,
            settings.queue_topic,
            sources,
            BuildGate(builds, settings.build_repository),
            settings.expand_seconds,
        ),
        builds=builds,
        sweeper=Sweeper(
            store,
            queues,
            recorder,
            submitter,
            admission,
            vertex_for,
            builds=builds,
            quota_reader=quotas.reader_for(
                settings.cloudquotas_endpoint or quotas.DEFAULT_ENDPOINT
            ),
            quota_read_seconds=settings.quota_read_seconds,
            canceller=canceller,
        ),
        canceller=canceller,
        notifier=Notifier(
            store,
            queues,
            recorder,
            SecretReader(settings.secretmanager_endpoint),
            pubsub_base(),
            settings.logging_endpoint or joblogs.DEFAULT_ENDPOINT,
            settings.dashboard_url,
        ),
    )
