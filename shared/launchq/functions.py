"""What the Cloud Functions entry points call: event parsing and the per-process wiring.

The objects (`launchq.wiring.Launchq`: Firestore client, HTTP sessions, queue cache) live as
long as the function instance, so warm invocations reuse connections. They are built on the
first event, not at import, so a cold start pays only for what the first event needs.
"""

from __future__ import annotations

import base64
import threading
from typing import TYPE_CHECKING, Any

from launchq import log as logsetup
from launchq.dispatch import DispatchResult, PubsubMessage
from launchq.log import get_logger
from launchq.topics import topic_of_source

if TYPE_CHECKING:
    from launchq.wiring import Launchq

log = get_logger(__name__)
_lock = threading.Lock()
_built: dict[str, Launchq] = {}  # the process's one Launchq, under "app"


def message_from_event_data(data: dict[str, Any], source: str | None = None) -> PubsubMessage:
    """The Pub/Sub message inside a `messagePublished` CloudEvent's data; `source` (the event's,
    `//pubsub.googleapis.com/projects/P/topics/T`) names the topic it was published to.

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
        topic=topic_of_source(source),
    )


def app() -> Launchq:
    """This process's launchq, built from the environment on first use."""
    with _lock:
        if "app" not in _built:
            from launchq.settings import Settings
            from launchq.wiring import build

            logsetup.configure()
            _built["app"] = build(Settings.from_env())
        return _built["app"]


def reset() -> None:
    """Forget the process-wide objects (tests change the environment between stacks)."""
    with _lock:
        _built.clear()


def handle_pubsub_event(data: dict[str, Any], source: str | None = None) -> DispatchResult:
    """Dispatch one event. Raises on infrastructure trouble so the platform redelivers."""
    message = message_from_event_data(data, source)
    result = app().dispatcher.handle(message)
    log.info(
        "message handled",
        outcome=result.outcome.value,
        item_id=result.item_id,
        queue=result.queue,
        message_id=message.message_id,
        topic=message.topic,
        submitted=result.submitted or None,
    )
    return result


def handle_sweep_request() -> tuple[dict[str, Any], int]:
    """Run the sweep loop for Cloud Scheduler: the JSON summary and the HTTP status to answer.

    One invocation loops (a pass every `LAUNCHQ_SWEEP_INTERVAL_SECONDS`) until just before the
    next scheduled one (`LAUNCHQ_SWEEP_PERIOD_SECONDS`): see `launchq.sweep.Sweeper.loop`.

    Errors inside the sweep (a Vertex list that failed, a queue that could not be admitted) are
    in the summary and logged at ERROR; they do not fail the request, because the next sweep
    simply retries them and a 5xx would only make Cloud Scheduler run a second sweep now.
    """
    launchq = app()
    settings = launchq.settings
    summary = launchq.sweeper.loop(settings.sweep_interval_seconds, settings.sweep_period_seconds)
    return summary.as_dict(), 200
