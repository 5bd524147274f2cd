"""The dispatcher: one Pub/Sub message in, at most one Vertex CustomJob out, all of it recorded.

Flow for a message (`Dispatcher.handle`):

1. Decode. Not JSON, not an object, no queue: recorded REJECTED (keyed by the message id when
   nothing better exists) and acknowledged: retrying cannot fix it.
2. Record. The item is validated against its queue and rendered once; the document is created
   with `create()` (fails if it exists), so a redelivery finds the first record and changes
   nothing. Invalid items are recorded REJECTED with every error and acknowledged. A message
   that reuses an item id with a *different* payload is a conflict, not a redelivery: the first
   item stands, and the conflict is logged and published (`CONFLICT`).
3. Admit and submit through the units the sweep uses too: `launchq.admission` (free slots,
   order) and `launchq.submission` (the exactly-once claim -> create-or-find -> record).

Errors: content problems are recorded and acknowledged; infrastructure trouble (Firestore or
Vertex unavailable after bounded retries) raises `InfrastructureError`, which the entry point
turns into a 500 so Pub/Sub redelivers (`launchq.errors.is_infrastructure` decides).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from launchq.admission import Admission
from launchq.errors import InfrastructureError, is_infrastructure
from launchq.events import CONFLICT_EVENT_TYPE
from launchq.fields import ITEM_ID_PATTERN, QUEUE_NAME_PATTERN
from launchq.item import canonical_hash
from launchq.log import get_logger
from launchq.queues import PreparedItem, QueueRuntime, QueueSource
from launchq.recorder import Recorder
from launchq.records import ItemRecord, error_record
from launchq.states import ItemState
from launchq.store import Store
from launchq.submission import Submitter

log = get_logger(__name__)

# Far below Firestore's 1 MiB document limit, which the stored item (payload plus rendered body
# plus history) must respect; a real queue item is a few KiB.
MAX_ITEM_BYTES = 256 * 1024
UNROUTABLE = "_unroutable"
_QUEUE_NAME = re.compile(QUEUE_NAME_PATTERN)
_ITEM_ID = re.compile(ITEM_ID_PATTERN)


class DispatchOutcome(StrEnum):
    """What became of one message (the function logs it; tests assert it)."""

    RECORDED = "recorded"  # a new item (or a waiting one) was recorded and admission ran
    DUPLICATE = "duplicate"  # a redelivery of an item already past waiting: nothing to do
    REPAIRED = "repaired"  # a redelivery took over a submission whose submitter died
    REJECTED = "rejected"  # recorded REJECTED (invalid, unknown queue, undecodable)
    CONFLICT = "conflict"  # the item id is taken by a different payload: nothing changed


@dataclass(frozen=True)
class PubsubMessage:
    data: bytes
    attributes: Mapping[str, str]
    message_id: str
    publish_time: str | None = None


@dataclass
class DispatchResult:
    outcome: DispatchOutcome
    item_id: str | None = None
    queue: str | None = None
    submitted: list[str] = field(default_factory=list)
    detail: str = ""


class Dispatcher:
    """Decodes and records one message, then hands the queue to admission."""

    def __init__(
        self,
        store: Store,
        queues: QueueSource,
        recorder: Recorder,
        admission: Admission,
        submitter: Submitter,
    ) -> None:
        self.store = store
        self.queues = queues
        self.recorder = recorder
        self.admission = admission
        self.submitter = submitter

    def handle(self, message: PubsubMessage) -> DispatchResult:
        try:
            with self.recorder.batch():
                return self._handle(message)
        except InfrastructureError:
            raise
        except Exception as exc:
            if is_infrastructure(exc):
                raise InfrastructureError(f"{type(exc).__name__}: {exc}") from exc
            raise

    def _handle(self, message: PubsubMessage) -> DispatchResult:
        if len(message.data) > MAX_ITEM_BYTES:
            return self._reject_message(
                message, f"item is {len(message.data)} bytes; the limit is {MAX_ITEM_BYTES}"
            )
        payload, problem = _decode(message.data)
        if problem is not None:
            return self._reject_message(message, problem)
        assert payload is not None
        queue = _text(payload.get("queue")) or message.attributes.get("queue")
        item_id = (
            _text(payload.get("item_id")) or message.attributes.get("item_id") or message.message_id
        )
        if not queue:
            return self._reject_message(
                message, "no queue: set `queue` in the item or as a message attribute"
            )
        # Checked before anything is keyed by them: an id Firestore cannot hold would make
        # even the rejection fail, and the message would loop until it is dead-lettered.
        if not _QUEUE_NAME.match(queue):
            return self._reject_message(message, f"invalid queue name {queue[:100]!r}")
        if not _ITEM_ID.match(item_id):
            return self._reject_message(
                message,
                f"invalid item_id {item_id[:130]!r}: 1-128 letters, digits and . _ : @ -, "
                "starting with a letter or digit",
            )
        return self._record(queue, item_id, payload, message)

    def _record(
        self, queue: str, item_id: str, payload: dict[str, Any], message: PubsubMessage
    ) -> DispatchResult:
        """Record a new item (no read first: `create` fails if it exists), then admit."""
        runtime = self.queues.get(queue)
        received: dict[str, Any] = {"payload": payload, "message_id": message.message_id}
        if runtime is None:
            return self._reject(
                queue,
                item_id,
                {
                    **received,
                    "payload_hash": canonical_hash(payload),
                    "error": error_record("unknown_queue", f"no queue named {queue!r}", "queue"),
                },
                "rejected: unknown queue",
                "unknown queue",
            )
        prepared = runtime.prepare(payload, item_id, self.store.clock())
        if isinstance(prepared, list):
            errors: list[dict[str, Any]] = [
                {"path": e.path, "message": str(e), "code": e.code, "suggestion": e.suggestion}
                for e in prepared
            ]
            first = errors[0]
            error = error_record("invalid_item", first["message"], first.get("path"), errors)
            return self._reject(
                queue,
                item_id,
                {**received, "payload_hash": canonical_hash(payload), "error": error},
                "rejected: invalid item",
                first["message"],
            )
        created, submitted = self.admission.admit_new(
            queue, item_id, {**received, **_item_fields(prepared, runtime)}, "accepted"
        )
        if created is None:
            return self._redelivered(queue, item_id, prepared.payload_hash)
        return DispatchResult(DispatchOutcome.RECORDED, item_id, queue, submitted)

    def _reject(
        self, queue: str, item_id: str, fields: dict[str, Any], cause: str, detail: str
    ) -> DispatchResult:
        created = self.recorder.create(queue, item_id, ItemState.REJECTED, fields, cause)
        if created is None:
            return self._redelivered(queue, item_id, str(fields["payload_hash"]))
        return DispatchResult(DispatchOutcome.REJECTED, item_id, queue, detail=detail)

    def _redelivered(self, queue: str, item_id: str, payload_hash: str) -> DispatchResult:
        """A message for an item we already know: a redelivery, or a reused id."""
        item = self.store.get_item(queue, item_id)
        if item is None:  # deleted in between (by hand): nothing sensible to add
            return DispatchResult(DispatchOutcome.DUPLICATE, item_id, queue, detail="vanished")
        if item.payload_hash is not None and item.payload_hash != payload_hash:
            return self._conflict(item, payload_hash)
        if item.state is ItemState.SUBMITTING and item.lease_expired(self.store.clock()):
            self.submitter.repair(item)
            return DispatchResult(DispatchOutcome.REPAIRED, item_id, queue)
        if item.state is ItemState.QUEUED:  # try to admit again: maybe a slot is free now
            submitted = self.admission.admit(queue, own=item)
            return DispatchResult(DispatchOutcome.RECORDED, item_id, queue, submitted)
        return DispatchResult(
            DispatchOutcome.DUPLICATE, item_id, queue, detail=f"already {item.state}"
        )

    def _conflict(self, item: ItemRecord, payload_hash: str) -> DispatchResult:
        log.warning(
            "item id reused with a different payload; the first item stands",
            item_id=item.item_id,
            queue=item.queue,
            stored_hash=item.payload_hash,
            received_hash=payload_hash,
        )
        self.recorder.notice(
            CONFLICT_EVENT_TYPE,
            item.queue,
            item.item_id,
            stored_hash=item.payload_hash,
            received_hash=payload_hash,
            state=item.state.value,
        )
        return DispatchResult(
            DispatchOutcome.CONFLICT,
            item.item_id,
            item.queue,
            detail=f"item id taken by a different payload (stored {item.payload_hash})",
        )

    def _reject_message(self, message: PubsubMessage, problem: str) -> DispatchResult:
        item_id = f"_message-{message.message_id}"
        raw = message.data[:4096].decode("utf-8", errors="replace")
        self.recorder.create(
            UNROUTABLE,
            item_id,
            ItemState.REJECTED,
            {
                "received_raw": raw,
                "message_id": message.message_id,
                "attributes": dict(message.attributes),
                "error": error_record("undecodable", problem),
            },
            f"rejected: {problem}",
        )
        return DispatchResult(DispatchOutcome.REJECTED, item_id, None, detail=problem)


def _decode(data: bytes) -> tuple[dict[str, Any] | None, str | None]:
    try:
        payload = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"message body is not JSON: {exc}"
    if not isinstance(payload, dict):
        return None, f"message body must be a JSON object, got {type(payload).__name__}"
    return payload, None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _item_fields(prepared: PreparedItem, runtime: QueueRuntime) -> dict[str, Any]:
    return {
        "priority": prepared.priority,
        "job_body": prepared.body,
        "body_hash": prepared.body_hash,
        "payload_hash": prepared.payload_hash,
        "parent": prepared.parent,
        "project": prepared.project,
        "region": prepared.region,
        "display_name": prepared.display_name,
        "metadata": prepared.metadata,
        "attempt": 0,
        "reason": "queue paused" if runtime.paused else "waiting for a free slot",
    }
