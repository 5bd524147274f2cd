"""What the Cloud Functions entry points call: event parsing and the per-process wiring.

The objects (`launchq.wiring.Launchq`: Firestore client, HTTP sessions, queue cache) live as
long as the function instance, so warm invocations reuse connections. They are built on the
first event, not at import, so a cold start pays only for what the first event needs.
"""

from __future__ import annotations

import base64
import json
import threading
from typing import TYPE_CHECKING, Any

from launchq import log as logsetup
from launchq.dispatch import DispatchResult, PubsubMessage
from launchq.log import get_logger
from launchq.spec.topics import topic_of_source

if TYPE_CHECKING:
    from launchq.notify import NotifyResult
    from launchq.wiring import Launchq

log = get_logger(__name__)
_lock = threading.Lock()
_built: dict[str, Launchq] = {}  # the process's one Launchq, under "app"


def message_from_event_data(data: Any, source: str | None = None) -> PubsubMessage:
    """The Pub/Sub message inside a `messagePublished` CloudEvent's data; `source` (the event's,
    `//pubsub.googleapis.com/projects/P/topics/T`) names the topic it was published to.

    Works for Eventarc's events and for functions-framework's conversion of the emulator's raw
    push, which drops `subscription`, `orderingKey` and `deliveryAttempt`: only `message.data`,
    `message.attributes`, `message.messageId` and `message.publishTime` are read.

    Never raises on content. Real Pub/Sub always sends base64 data and string attributes, but
    anyone who can reach the function's URL can post anything, and an exception here would come
    before the dispatcher's catch-all: a 500, a redelivery loop and no record. A malformed
    envelope becomes a message carrying `problem`, which the dispatcher records REJECTED
    (`undecodable`) and acknowledges.
    """
    problems: list[str] = []
    if not isinstance(data, dict):
        problems.append(f"event data must be a JSON object, got {type(data).__name__}")
        data = {}
    message = data.get("message")
    if message is None:
        message = {}
    elif not isinstance(message, dict):
        problems.append(f"message must be a JSON object, got {type(message).__name__}")
        message = {}
    body, problem = _body(message.get("data"))
    if problem is not None:
        problems.append(problem)
    attributes, problem = _attributes(message.get("attributes"))
    if problem is not None:
        problems.append(problem)
    message_id = message.get("messageId") or message.get("message_id") or ""
    publish_time = message.get("publishTime") or message.get("publish_time")
    return PubsubMessage(
        data=body,
        attributes=attributes,
        message_id=message_id if isinstance(message_id, str) else json.dumps(message_id)[:100],
        publish_time=publish_time if isinstance(publish_time, str) else None,
        topic=topic_of_source(source),
        problem="; ".join(problems) or None,
    )


def _body(raw: Any) -> tuple[bytes, str | None]:
    """The decoded `message.data`, or what could be read of it and why it is unreadable."""
    if raw is None or raw == "":
        return b"", None
    if not isinstance(raw, str):
        return b"", f"message.data must be a base64 string, got {type(raw).__name__}"
    try:
        # validate=True: the default silently drops characters outside the alphabet, so "@@@"
        # would decode to an empty body and be rejected for the wrong reason.
        return base64.b64decode(raw, validate=True), None
    except ValueError as exc:  # binascii.Error, or a non-ASCII character in the string
        return raw.encode("utf-8", errors="replace"), f"message.data is not base64: {exc}"


def _attributes(raw: Any) -> tuple[dict[str, str], str | None]:
    """`message.attributes` as a string map, or what could be kept and why it is malformed."""
    if raw is None:
        return {}, None
    if not isinstance(raw, dict):
        return {}, f"message.attributes must be a map of strings, got {type(raw).__name__}"
    kept = {key: value for key, value in raw.items() if isinstance(value, str)}
    if len(kept) != len(raw):
        dropped = sorted(key for key in raw if key not in kept)[:5]
        return kept, f"message.attributes values must be strings: {', '.join(dropped)}"
    return kept, None


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


def handle_pubsub_event(data: Any, source: str | None = None) -> DispatchResult:
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


def handle_notify_event(data: Any) -> NotifyResult:
    """Notify about one event of the events topic. Raises `DeliveryPending` when a receiver
    failed and should be tried again (a 500: Pub/Sub redelivers with its backoff); anything
    that is not a readable launchq event is logged and acknowledged."""
    from launchq.notify import NotifyResult

    message = message_from_event_data(data)
    try:
        event = json.loads(message.data.decode("utf-8")) if message.problem is None else None
    except ValueError:
        event = None
    if not isinstance(event, dict):
        log.warning("not a launchq event", message_id=message.message_id, problem=message.problem)
        return NotifyResult(None, None, "not a launchq event")
    result = app().notifier.handle(event)
    log.info(
        "event handled",
        item_id=result.item_id,
        outcome=result.outcome,
        skipped=result.skipped or None,
        rules={k: v.value for k, v in (result.rules or {}).items()} or None,
        message_id=message.message_id,
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
    summary = launchq.sweeper.loop(
        settings.sweep_interval_seconds,
        settings.sweep_period_seconds,
        settings.sweep_busy_interval_seconds,
    )
    return summary.as_dict(), 200
