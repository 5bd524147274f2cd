"""What the Cloud Functions entry points call: event parsing and per-process wiring.

The objects built here (Firestore client, HTTP sessions, queue cache) live as long as the
function instance, so warm invocations reuse connections. They are built on the first event, not
at import, so a cold start pays only for what the first event needs.
"""

from __future__ import annotations

import base64
import threading
from typing import TYPE_CHECKING, Any, cast

from launchq import log as logsetup
from launchq.dispatch import Dispatcher, DispatchResult, PubsubMessage
from launchq.log import get_logger

if TYPE_CHECKING:
    from launchq.sweep import Sweeper

log = get_logger(__name__)
_lock = threading.RLock()  # sweeper() builds the dispatcher() under it
_instances: dict[str, Any] = {}


def message_from_event_data(data: dict[str, Any]) -> PubsubMessage:
    """The Pub/Sub message inside a `messagePublished` CloudEvent's data.

    Works for Eventarc's events and for functions-framework's conversion of the emulator's raw
    push, which drops `subscription`, `orderingKey` and `deliveryAttempt`: only `message.data`,
    `message.attributes`, `message.messageId` and `message.publishTime` are read.
    """
    message = data.get("message") or {}
    raw = message.get("data") or ""
    return PubsubMessage(
        data=base64.b64decode(raw) if raw else b"",
        attributes=dict(message.get("attributes") or {}),
        message_id=str(message.get("messageId") or message.get("message_id") or ""),
        publish_time=message.get("publishTime") or message.get("publish_time"),
    )


def dispatcher() -> Dispatcher:
    with _lock:
        if "dispatcher" not in _instances:
            _instances["dispatcher"] = _build_dispatcher()
        return cast(Dispatcher, _instances["dispatcher"])


def reset() -> None:
    """Forget the process-wide objects (tests change the environment between stacks)."""
    with _lock:
        _instances.clear()


def _build_dispatcher() -> Dispatcher:
    from google.cloud import firestore

    from launchq.events import EventPublisher
    from launchq.queues import QueueSource
    from launchq.settings import Settings
    from launchq.store import Store

    logsetup.configure()
    settings = Settings.from_env()
    store = Store(firestore.Client(project=settings.project, database=settings.firestore_database))
    return Dispatcher(
        settings,
        store,
        QueueSource(store, settings.queue_cache_seconds),
        EventPublisher(settings.project, settings.events_topic),
    )


def handle_pubsub_event(data: dict[str, Any]) -> DispatchResult:
    """Dispatch one event. Raises on transient failure so the platform redelivers."""
    message = message_from_event_data(data)
    result = dispatcher().handle(message)
    log.info(
        "message handled",
        outcome=result.outcome,
        item_id=result.item_id,
        queue=result.queue,
        message_id=message.message_id,
        submitted=result.submitted or None,
    )
    return result


def sweeper() -> Sweeper:
    with _lock:
        if "sweeper" not in _instances:
            _instances["sweeper"] = _build_sweeper()
        return cast("Sweeper", _instances["sweeper"])


def _build_sweeper() -> Sweeper:
    from launchq.sweep import Sweeper

    dispatch = dispatcher()
    return Sweeper(dispatch.store, dispatch, dispatch.queues)


def handle_sweep_request() -> tuple[dict[str, Any], int]:
    """Run one sweep for Cloud Scheduler: the JSON summary and the HTTP status to answer.

    Errors inside the sweep (a Vertex list that failed, a queue that could not be admitted) are
    in the summary and logged at ERROR; they do not fail the request, because the next sweep
    simply retries them and a 5xx would only make Cloud Scheduler run a second sweep now.
    """
    summary = sweeper().run().as_dict()
    return summary, 200
