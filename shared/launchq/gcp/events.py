"""State-change CloudEvents, published to the events topic.

Every transition the dispatcher or the sweep records is published as a structured-mode CloudEvent
(JSON, `specversion` 1.0) with type `dev.launchq.item.state_changed`, `source`
`//launchq/queues/{queue}`, and the item id as `subject`. The Pub/Sub message carries the event
JSON as its data and `ce-type`/`ce-subject`/`queue`/`state` attributes for subscription filters.

Publishing is best effort by design: the transition is already committed in Firestore (the
source of truth), so a failed publish is logged and never fails or repeats a dispatch.

Why Pub/Sub's REST `:publish` and not `google.cloud.pubsub_v1`: the publisher client costs
0.39 s to import on the project machine (best of 3) and starts background batching threads, both
paid by the dispatcher's cold start and its first event. One REST call over the session launchq
already holds costs neither. Against the emulator the same REST surface is served on
`PUBSUB_EMULATOR_HOST` (tests publish through it and read back with the real client library).
"""

from __future__ import annotations

import base64
import json
import os
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import requests

from launchq.gcp.rest import session_for
from launchq.log import get_logger

log = get_logger(__name__)

EVENT_TYPE = "dev.launchq.item.state_changed"
# A message reused an item id with a different payload: the first item stands, nothing changed.
CONFLICT_EVENT_TYPE = "dev.launchq.item.conflict"
# An item has waited longer than a notification rule's `waiting_longer_than_seconds` (the sweep
# publishes it once per item: launchq.notify).
WAITING_EVENT_TYPE = "dev.launchq.item.waiting"
_SCOPES = ("https://www.googleapis.com/auth/pubsub",)
MAX_PER_REQUEST = 1000  # Pub/Sub accepts at most 1,000 messages (and 10 MB) per publish


def item_event(
    event_type: str,
    *,
    queue: str | None,
    item_id: str,
    data: Mapping[str, Any],
    at: datetime | None = None,
) -> dict[str, Any]:
    """A structured-mode CloudEvent (a JSON object) about one item."""
    at = at or datetime.now(UTC)
    return {
        "specversion": "1.0",
        "id": uuid.uuid4().hex,
        "type": event_type,
        "source": f"//launchq/queues/{queue or '_unknown'}",
        "subject": item_id,
        "time": at.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": {"queue": queue, "item_id": item_id, **data},
    }


def state_changed_event(
    *,
    queue: str | None,
    item_id: str,
    from_state: str | None,
    to_state: str,
    cause: str,
    at: datetime | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The CloudEvent for one transition."""
    data = {"from": from_state, "to": to_state, "cause": cause, **(details or {})}
    return item_event(EVENT_TYPE, queue=queue, item_id=item_id, data=data, at=at)


def pubsub_base() -> str:
    """Pub/Sub's REST endpoint: the emulator's when PUBSUB_EMULATOR_HOST is set."""
    emulator = os.environ.get("PUBSUB_EMULATOR_HOST")
    return f"http://{emulator}" if emulator else "https://pubsub.googleapis.com"


class EventPublisher:
    """Publishes CloudEvents to one topic; a no-op when the topic name is empty."""

    def __init__(self, project: str, topic: str, session: requests.Session | None = None) -> None:
        self.topic_path = f"projects/{project}/topics/{topic}" if topic else ""
        self._base = pubsub_base()
        self._session = session
        self._lock = threading.Lock()
        self.published = 0
        self.failed = 0

    def publish(self, event: dict[str, Any]) -> bool:
        return self.publish_many([event]) == 1

    def publish_many(self, events: list[dict[str, Any]]) -> int:
        """Publish events in order, up to 1,000 per request (Pub/Sub's limit); how many went."""
        if not self.topic_path:
            return 0
        sent = 0
        for start in range(0, len(events), MAX_PER_REQUEST):
            chunk = events[start : start + MAX_PER_REQUEST]
            if self._post([_message(event) for event in chunk], chunk[0]["subject"]):
                sent += len(chunk)
        return sent

    def _post(self, messages: list[dict[str, Any]], first_subject: str) -> bool:
        try:
            response = self._http().post(
                f"{self._base}/v1/{self.topic_path}:publish",
                json={"messages": messages},
                timeout=10,
            )
            response.raise_for_status()
        except requests.RequestException as exc:
            self.failed += len(messages)
            log.warning(
                "state-change events not published",
                topic=self.topic_path,
                count=len(messages),
                item_id=first_subject,
                error=str(exc),
            )
            return False
        self.published += len(messages)
        return True

    def _http(self) -> requests.Session:
        with self._lock:
            if self._session is None:
                self._session = session_for(self._base, _SCOPES)
            return self._session


def _message(event: dict[str, Any]) -> dict[str, Any]:
    data = event["data"]
    return {
        "data": base64.b64encode(json.dumps(event, default=str).encode()).decode(),
        "attributes": {
            "ce-type": event["type"],
            "ce-subject": event["subject"],
            "queue": str(data.get("queue") or ""),
            # What subscriptions filter on: the state entered, or WAITING for a "waited too
            # long" notice (the notify function's subscription takes only outcomes and these).
            "state": str(
                data.get("to") or ("WAITING" if event["type"] == WAITING_EVENT_TYPE else "")
            ),
        },
    }
