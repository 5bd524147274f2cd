"""The dispatcher: one Pub/Sub message in, at most one Vertex CustomJob out, all of it recorded.

Flow for a message (`Dispatcher.handle`):

1. Route and decode. The queue is the one whose topic the message was published to
   (`launchq.spec.topics`: a topic per queue, so publishing rights are launch rights); an item that
   names another queue is REJECTED `queue_mismatch` (a `queue` that is no non-empty string,
   `invalid_queue`), a message from a topic that is no queue's (and not the opted-in shared
   topic) is REJECTED `unknown_topic`. Not JSON, not an object: recorded REJECTED (keyed by the
   message id when nothing better exists) and acknowledged: retrying cannot fix it. A message
   with `launchq-action: cancel` is a control message: it cancels an item of the topic's queue,
   with the function's own credentials; a refused one is recorded under `_unroutable`, keyed by
   its message id, never under the item id it names.
2. Record. The item is validated against its queue and rendered once; the document is created
   with `create()` (fails if it exists), so a redelivery finds the first record and changes
   nothing. Invalid items are recorded REJECTED with every error and acknowledged. A message
   that reuses an item id with a *different* payload is a conflict, not a redelivery: the first
   item stands, and the conflict is logged and published (`CONFLICT`).
3. Admit and submit through the units the sweep uses too: `launchq.admission` (free slots,
   order) and `launchq.submission` (the exactly-once claim -> create-or-find -> record).

Errors: content problems are recorded and acknowledged; infrastructure trouble (Firestore or
Vertex unavailable after bounded retries) raises `InfrastructureError`, which the entry point
turns into a 500 so Pub/Sub redelivers (`launchq.errors.is_infrastructure` decides). Anything
else that fails on a message is recorded REJECTED `internal_error` by the one catch-all in
`handle`: a message's content never answers a 5xx. What a REJECTED record stores from the
message is made storable in one place (`launchq.spec.sanitize`, through `_reject` and
`_reject_message`).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from launchq.admission import Admission
from launchq.builds.gate import BuildGate
from launchq.builds.sources import SourceChecker
from launchq.cancel import Canceller
from launchq.errors import InfrastructureError, NotFound, is_infrastructure
from launchq.expansion import Expander, check_children
from launchq.gcp.events import CONFLICT_EVENT_TYPE
from launchq.log import get_logger
from launchq.model.reasons import ErrorRecord, RejectReason
from launchq.model.records import ItemRecord, NewItem
from launchq.model.states import ItemState
from launchq.model.submitters import ANONYMOUS
from launchq.queues import QueueRuntime, QueueSource, item_fields
from launchq.recorder import Recorder
from launchq.spec import sanitize
from launchq.spec.buildplan import plan_for
from launchq.spec.family import family_of, parent_of
from launchq.spec.fields import ITEM_ID_PATTERN, QUEUE_NAME_PATTERN
from launchq.spec.item import canonical_hash, item_hash, parse_item, payload_hash
from launchq.spec.topics import (
    ACTION_ATTRIBUTE,
    CANCEL_ACTION,
    QUEUE_TOPIC_PREFIX,
    SUBMITTED_BY_ATTRIBUTE,
    queue_of_topic,
)
from launchq.spec.validation import Issue, ItemError, describe
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
    CONTROLLED = "controlled"  # a control message (cancel) was carried out


# How long one delivery checks and records a sweep's children before leaving the rest to the
# sweep (`LAUNCHQ_EXPAND_SECONDS`; docs/performance.md, "Sweeps", has the measured rate).
EXPAND_SECONDS = 30.0
MAX_ERRORS = 100  # issues stored per rejected item (the first is also the error's message)


@dataclass(frozen=True)
class PubsubMessage:
    data: bytes
    attributes: Mapping[str, str]
    message_id: str
    publish_time: str | None = None
    topic: str | None = None  # the topic id it was published to (from the CloudEvent source)
    problem: str | None = None  # why the envelope itself is malformed (launchq.functions)


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
        canceller: Canceller,
        shared_topic: str | None = None,
        sources: SourceChecker | None = None,
        builds: BuildGate | None = None,
        expand_seconds: float = EXPAND_SECONDS,
    ) -> None:
        self.expander = Expander(store, recorder, queues)
        self.expand_seconds = expand_seconds
        self.store = store
        self.queues = queues
        self.recorder = recorder
        self.admission = admission
        self.submitter = submitter
        self.canceller = canceller
        self.shared_topic = shared_topic
        self._local = threading.local()  # this thread's message routing, for the catch-all
        self.sources = sources
        self.builds = builds

    def handle(self, message: PubsubMessage) -> DispatchResult:
        self._local.routing = None  # (queue, item_id) once `_handle` knows them
        try:
            with self.recorder.batch():
                return self._handle(message)
        except InfrastructureError:
            raise
        except Exception as exc:
            # THE catch-all: only infrastructure trouble earns a redelivery (launchq.errors);
            # anything else would fail the same way every time, so it is recorded and acked.
            if is_infrastructure(exc):
                raise InfrastructureError(f"infrastructure unavailable: {exc}") from exc
            return self._reject_internal(message, exc)

    def _reject_internal(self, message: PubsubMessage, exc: Exception) -> DispatchResult:
        """Record an unexpected content error REJECTED (`internal_error`), under the item id
        when it is known, else as an unroutable message."""
        log.exception("message failed on its content", message_id=message.message_id)
        problem = f"internal error: {type(exc).__name__}: {exc}"
        routing: tuple[str, str] | None = self._local.routing
        try:
            with self.recorder.batch():
                if routing is None:
                    return self._reject_message(message, problem, RejectReason.INTERNAL_ERROR)
                queue, item_id = routing
                fields = {
                    "message_id": message.message_id,
                    "error": ErrorRecord(RejectReason.INTERNAL_ERROR, problem).document(),
                }
                stored = sanitize.untrusted_record(fields)
                created = self.recorder.create(
                    NewItem(queue, item_id, stored, "rejected: internal error", ItemState.REJECTED)
                )
        except Exception as again:
            if is_infrastructure(again):
                raise InfrastructureError(f"infrastructure unavailable: {again}") from again
            raise
        # Already recorded (it failed after that, or on a redelivery): the record stands.
        outcome = DispatchOutcome.REJECTED if created is not None else DispatchOutcome.DUPLICATE
        return DispatchResult(outcome, item_id, queue, detail=problem)

    def _handle(self, message: PubsubMessage) -> DispatchResult:
        if message.problem is not None:
            return self._reject_message(message, message.problem)
        if len(message.data) > MAX_ITEM_BYTES:
            return self._reject_message(
                message,
                f"item is {len(message.data)} bytes; the limit is {MAX_ITEM_BYTES}",
                RejectReason.TOO_LARGE,
            )
        payload, problem = _decode(message.data)
        if problem is not None:
            return self._reject_message(message, problem)
        assert payload is not None
        topic_queue = queue_of_topic(message.topic or "")
        if topic_queue is None and (message.topic is None or message.topic != self.shared_topic):
            return self._reject_message(
                message,
                f"published to {message.topic or 'no topic'}: launchq takes items from its "
                f"queues' topics ({QUEUE_TOPIC_PREFIX}<queue>)"
                + (f" and the shared topic {self.shared_topic}" if self.shared_topic else ""),
                RejectReason.UNKNOWN_TOPIC,
            )
        routed = _route(payload, message, topic_queue)
        if isinstance(routed, _Unroutable):
            return self._reject_message(message, routed.problem, routed.reason, routed.path)
        queue, item_id = routed
        named = _queue_named(payload, message, topic_queue) if topic_queue is not None else None
        if message.attributes.get(ACTION_ATTRIBUTE) is not None:
            # A control message never occupies an item id, refused or not (not even through
            # the catch-all, so routing stays unset): its item id names somebody's item.
            if named is not None:
                return self._reject_message(
                    message,
                    f"cancel refused: {named.problem}",
                    RejectReason.CONTROL_REFUSED,
                    named.path,
                )
            return self._control(queue, item_id, payload, message)
        self._local.routing = routed
        if named is not None:
            return self._reject_named(queue, item_id, payload, message, named)
        return self._record(queue, item_id, payload, message)

    def _reject_named(
        self,
        queue: str,
        item_id: str,
        payload: dict[str, Any],
        message: PubsubMessage,
        named: _Unroutable,
    ) -> DispatchResult:
        """An item on queue A's topic whose `queue` is not A: another queue (publishing to A
        gives no right to B) or no queue name at all. The topic says which queue it reached, so
        it is recorded there, under its own id, where its publisher looks for it."""
        return self._reject(
            queue,
            item_id,
            {
                **_received(payload, message),
                "payload_hash": item_hash(payload, queue, item_id),
                "error": ErrorRecord(named.reason, named.problem, named.path).document(),
            },
            f"rejected: {named.reason.replace('_', ' ')}",
            named.problem,
        )

    def _control(
        self, queue: str, item_id: str, payload: dict[str, Any], message: PubsubMessage
    ) -> DispatchResult:
        """A control message: whoever may publish to a queue's topic may cancel in that queue.

        Carried out with the function's own credentials; a refused one is recorded under
        `_unroutable` with the reason, so the publisher can find out why.
        """
        action = message.attributes.get(ACTION_ATTRIBUTE)
        if action != CANCEL_ACTION:
            return self._reject_message(
                message,
                f"unknown {ACTION_ATTRIBUTE} {str(action)[:40]!r}",
                RejectReason.CONTROL_REFUSED,
            )
        try:
            state = self.canceller.request(queue, item_id)
        except NotFound:
            return self._reject_message(
                message,
                f"cancel refused: no item {item_id!r} in queue {queue!r}",
                RejectReason.CONTROL_REFUSED,
            )
        log.info(
            "cancel requested by control message",
            item_id=item_id,
            queue=queue,
            message_id=message.message_id,
            state=state.value,
        )
        return DispatchResult(DispatchOutcome.CONTROLLED, item_id, queue, detail=state.value)

    def _record(
        self, queue: str, item_id: str, payload: dict[str, Any], message: PubsubMessage
    ) -> DispatchResult:
        """Record a new item (no read first: `create` fails if it exists), then admit."""
        runtime = self.queues.get(queue)
        received = _received(payload, message)
        if runtime is None:
            return self._reject(
                queue,
                item_id,
                {
                    **received,
                    # The hash it would have once its queue exists: sent again then, it is a
                    # duplicate of this rejection, not a conflict.
                    "payload_hash": item_hash(payload, queue, item_id),
                    "error": ErrorRecord(
                        RejectReason.UNKNOWN_QUEUE, f"no queue named {queue!r}", "queue"
                    ).document(),
                },
                "rejected: unknown queue",
                "unknown queue",
            )
        if payload.get("sweep") is not None or payload.get("array") is not None:
            return self._record_family(runtime, queue, item_id, payload, received)
        prepared = runtime.prepare(payload, item_id, self.store.clock())
        if isinstance(prepared, list):
            base = {**received, "payload_hash": item_hash(payload, queue, item_id)}
            return self._reject_invalid(queue, item_id, base, prepared)
        metadata: Mapping[str, Any] = {}
        if prepared.source is not None and self.sources is not None:
            # Before anything is queued: a job whose package is missing fails minutes later.
            unusable, metadata = self.sources.inspect(prepared.source, prepared.body)
            if unusable is not None:
                error = ErrorRecord(unusable.reason, unusable.message, unusable.path).document()
                fields = {**received, "payload_hash": prepared.payload_hash, "error": error}
                return self._reject(
                    queue, item_id, fields, f"rejected: {unusable.reason}", unusable.message
                )
        fields = {**received, **item_fields(prepared, runtime.paused)}
        # Who to count it against under `max_jobs_per_submitter` (launchq.model.submitters): a
        # top-level field, so a count query finds a submitter's items, "(none)" included.
        fields["submitter"] = (received.get("submitted_by") or {}).get("value") or ANONYMOUS
        size = sanitize.firestore_size(fields)
        count = sanitize.field_count(fields)
        if size > sanitize.RECORD_BYTES or count > sanitize.RECORD_FIELDS:
            # The record must fit, not only the message.
            problem = (
                f"the record would take {size} bytes (the item plus the job it renders into); "
                f"the limit is {sanitize.RECORD_BYTES}"
                if size > sanitize.RECORD_BYTES
                else f"the record would hold {count} fields (the item's metadata is stored "
                f"twice); Firestore's limit leaves {sanitize.RECORD_FIELDS} for it"
            )
            error = ErrorRecord(RejectReason.RECORD_TOO_LARGE, problem).document()
            fields = {**received, "payload_hash": prepared.payload_hash, "error": error}
            return self._reject(queue, item_id, fields, "rejected: record too large", problem)
        builder = runtime.config.builder
        if prepared.source is not None and builder is not None and self.builds is not None:
            # An image built from the source (launchq.builds): BUILDING until it exists.
            plan = plan_for(prepared.source, builder)
            decision = self.builds.decide(plan, f"{queue}/{item_id}", metadata, prepared.body)
            if decision.state is ItemState.REJECTED:
                fields = {**received, "payload_hash": prepared.payload_hash, **decision.fields}
                return self._reject(queue, item_id, fields, decision.cause, str(decision.problem))
            fields.update(decision.fields)
            created = self.recorder.create(
                NewItem(queue, item_id, fields, decision.cause, decision.state)
            )
            if created is None:
                return self._redelivered(queue, item_id, prepared.payload_hash, payload)
            if decision.state is not ItemState.QUEUED:
                return DispatchResult(DispatchOutcome.RECORDED, item_id, queue)
            submitted = self.admission.admit(queue, own=created)
        else:
            created, submitted = self.admission.admit_new(
                NewItem(queue, item_id, fields, "accepted")
            )
            if created is None:
                return self._redelivered(queue, item_id, prepared.payload_hash, payload)
        return DispatchResult(DispatchOutcome.RECORDED, item_id, queue, submitted)

    def _record_family(
        self,
        runtime: QueueRuntime,
        queue: str,
        item_id: str,
        payload: dict[str, Any],
        received: dict[str, Any],
    ) -> DispatchResult:
        """A sweep or array (launchq.expansion): every child is checked against the queue as
        a single item; one invalid child rejects the whole item, naming the child. Otherwise
        the parent is recorded (SWEEP) and expanded, a batch at a time, until the deadline:
        `expand_seconds` from now, checking included."""
        deadline = time.monotonic() + self.expand_seconds
        try:
            item = parse_item({**payload, "queue": queue, "item_id": item_id})
        except ItemError as exc:
            base = {**received, "payload_hash": item_hash(payload, queue, item_id)}
            return self._reject_invalid(queue, item_id, base, list(exc.issues))
        hashed = payload_hash(item)  # what `item_hash` gives a valid item, without parsing again
        base = {**received, "payload_hash": hashed}
        family = family_of(item, hashed)
        assert family is not None
        if item.source is not None and runtime.config.builder is not None:
            problem = (
                "a sweep or array of source items on a queue that builds images is not "
                "supported yet: build the image once (launchq build) and sweep over image_uri"
            )
            issue = Issue("sweep" if item.sweep is not None else "array", problem)
            return self._reject_invalid(queue, item_id, base, [issue])
        checked = check_children(runtime, family, payload, item_id, self.store.clock())
        if isinstance(checked, list):
            return self._reject_invalid(queue, item_id, base, checked)
        first = checked
        if first.source is not None and self.sources is not None:
            unusable, _ = self.sources.inspect(first.source, first.body)
            if unusable is not None:
                error = ErrorRecord(unusable.reason, unusable.message, unusable.path).document()
                cause = f"rejected: {unusable.reason}"
                return self._reject(
                    queue, item_id, {**base, "error": error}, cause, unusable.message
                )
        fields = {
            **base,
            "priority": first.priority,
            "display_name": item.display_name or f"{queue}-{item_id}",
            "metadata": first.metadata,
            "sweep": family.document(),
            "expanded": 0,
            "submitter": (received.get("submitted_by") or {}).get("value") or ANONYMOUS,
        }
        article = "an" if family.kind == "array" else "a"
        cause = f"accepted: {article} {family.kind} of {family.count}"
        created = self.recorder.create(NewItem(queue, item_id, fields, cause, ItemState.SWEEP))
        if created is None:
            return self._redelivered(queue, item_id, hashed, payload)
        return self._expand(created, deadline)

    def _expand(self, parent: ItemRecord, deadline: float | None = None) -> DispatchResult:
        """Expand a parent until the deadline (the sweep goes on after it), then admit what
        waits."""
        if deadline is None:
            deadline = time.monotonic() + self.expand_seconds
        parent = self.expander.expand(parent, deadline)
        submitted = self.admission.admit(parent.queue)
        count = (parent.family or {}).get("count")
        return DispatchResult(
            DispatchOutcome.RECORDED,
            parent.item_id,
            parent.queue,
            submitted,
            detail=f"{parent.expanded} of {count} children recorded",
        )

    def _reject_invalid(
        self, queue: str, item_id: str, base: dict[str, Any], issues: list[Issue]
    ) -> DispatchResult:
        """Record an item REJECTED `invalid_item` with every problem (the first is the message)."""
        errors: list[dict[str, Any]] = [
            {"path": e.path, "message": str(e), "code": e.code, "suggestion": e.suggestion}
            for e in issues
        ]
        first = errors[0]
        error = ErrorRecord(
            RejectReason.INVALID_ITEM,
            first["message"],
            first.get("path"),
            tuple(errors[:MAX_ERRORS]),
        ).document()
        fields = {**base, "error": error}
        return self._reject(queue, item_id, fields, "rejected: invalid item", first["message"])

    def _reject(
        self, queue: str, item_id: str, fields: dict[str, Any], cause: str, detail: str
    ) -> DispatchResult:
        """Record the item REJECTED: what a message carries is made storable first (one place,
        `launchq.spec.sanitize`), so no payload can make the rejection itself fail."""
        stored = sanitize.untrusted_record(fields)
        created = self.recorder.create(NewItem(queue, item_id, stored, cause, ItemState.REJECTED))
        if created is None:
            payload = fields["payload"]
            return self._redelivered(queue, item_id, str(fields["payload_hash"]), payload)
        return DispatchResult(DispatchOutcome.REJECTED, item_id, queue, detail=detail)

    def _redelivered(
        self, queue: str, item_id: str, payload_hash: str, payload: Mapping[str, Any]
    ) -> DispatchResult:
        """A message for an item we already know: a redelivery, or a reused id."""
        item = self.store.get_item(queue, item_id)
        if item is None:  # deleted in between (by hand): nothing sensible to add
            return DispatchResult(DispatchOutcome.DUPLICATE, item_id, queue, detail="vanished")
        # Records rejected before `item_hash` stored the raw payload's hash: still the same item.
        known = (payload_hash, canonical_hash(payload))
        if item.payload_hash is not None and item.payload_hash not in known:
            return self._conflict(item, payload_hash)
        if item.state is ItemState.SUBMITTING and item.lease_expired(self.store.clock()):
            self.submitter.repair(item)
            return DispatchResult(DispatchOutcome.REPAIRED, item_id, queue)
        if item.state is ItemState.SWEEP:  # an expansion that did not finish: go on with it
            return self._expand(item)
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

    def _reject_message(
        self,
        message: PubsubMessage,
        problem: str,
        reason: RejectReason = RejectReason.UNDECODABLE,
        path: str | None = None,
    ) -> DispatchResult:
        # Pub/Sub always sets a message id; a hand-posted event may not, and one shared
        # `_message-` record would hide every such message after the first.
        key = message.message_id or "sha256-" + hashlib.sha256(message.data).hexdigest()[:32]
        item_id = f"_message-{sanitize.text(key, 256)}"
        raw = message.data[:4096].decode("utf-8", errors="replace")
        fields = {
            "received_raw": raw,
            "message_id": message.message_id,
            "attributes": dict(message.attributes),
            "topic": message.topic,
            "error": ErrorRecord(reason, problem, path).document(),
        }
        cause = f"rejected: {sanitize.text(problem, 300)}"
        stored = sanitize.untrusted_record(fields)
        self.recorder.create(NewItem(UNROUTABLE, item_id, stored, cause, ItemState.REJECTED))
        return DispatchResult(DispatchOutcome.REJECTED, item_id, None, detail=problem)


def _decode(data: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The payload, or why it is none. Whatever `json.loads` raises is the message's fault:
    ValueError (bad JSON, an integer over 4,300 digits) and RecursionError (deep nesting)."""
    try:
        payload = json.loads(data.decode("utf-8"), parse_constant=_not_json)
    except UnicodeDecodeError as exc:
        return None, f"message body is not UTF-8: {exc}"
    except RecursionError:
        return None, "message body is not JSON this parser can read: nested too deeply"
    except ValueError as exc:
        return None, f"message body is not JSON: {exc}"
    if not isinstance(payload, dict):
        return None, f"message body must be a JSON object, got {type(payload).__name__}"
    return payload, None


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


@dataclass(frozen=True)
class _Unroutable:
    problem: str
    reason: RejectReason
    path: str | None


def _route(
    payload: Mapping[str, Any], message: PubsubMessage, topic_queue: str | None
) -> tuple[str, str] | _Unroutable:
    """The queue (the topic's; on the shared topic, from the body or else the attributes) and
    the item id, never coerced.

    Checked before anything is keyed by them: an id Firestore cannot hold would make even the
    rejection fail. A wrong type or an empty string is rejected rather than replaced (by the
    attribute, or the message id): replacing an item_id silently loses idempotency.
    """
    if topic_queue is not None:
        queue: str | _Unroutable | None
        queue, where = topic_queue, "topic"
    else:
        queue, where = _key_field(payload, message, "queue")
    if isinstance(queue, _Unroutable):
        return queue
    if queue is None:
        return _Unroutable(
            "no queue: set `queue` in the item or as a message attribute",
            RejectReason.NO_QUEUE,
            "queue",
        )
    # fullmatch: `$` alone would let a trailing newline through.
    if not _QUEUE_NAME.fullmatch(queue):
        return _Unroutable(f"invalid queue name {queue[:100]!r}", RejectReason.INVALID_QUEUE, where)
    item_id, where = _key_field(payload, message, "item_id")
    if isinstance(item_id, _Unroutable):
        return item_id
    item_id = item_id if item_id is not None else message.message_id
    # A control message may name a sweep's child (`<parent>~00001`), an id no item may take.
    child = parent_of(item_id) if message.attributes.get(ACTION_ATTRIBUTE) else None
    named = child[0] if child is not None else item_id
    if not _ITEM_ID.fullmatch(named):
        return _Unroutable(
            f"invalid item_id {item_id[:130]!r}: 1-128 letters, digits and . _ : @ -, "
            "starting with a letter or digit",
            RejectReason.INVALID_ITEM_ID,
            where,
        )
    return queue, item_id


def _key_field(
    payload: Mapping[str, Any], message: PubsubMessage, name: str
) -> tuple[str | _Unroutable | None, str]:
    """`name` from the body (null = absent), else from the attributes, and where it was."""
    value = payload.get(name)
    where = name
    if value is None:
        value = message.attributes.get(name)
        where = f"attributes.{name}"
    if value is None:
        return None, name
    if not isinstance(value, str) or not value:
        shown = describe(value)[:100]
        problem = f"{where}: expected a non-empty string, got {shown}"
        return _Unroutable(problem, _INVALID_KEY[name], where), where
    return value, where


_INVALID_KEY = {"queue": RejectReason.INVALID_QUEUE, "item_id": RejectReason.INVALID_ITEM_ID}


def _queue_named(
    payload: Mapping[str, Any], message: PubsubMessage, queue: str
) -> _Unroutable | None:
    """What is wrong with the `queue` a message on `queue`'s topic names, if anything.

    Naming the topic's own queue, or none (absent or null, as on the shared topic), is fine.
    A value that is no non-empty string is `invalid_queue`, as `_route` calls it on the shared
    topic; a string naming another queue is `queue_mismatch`. The body is judged first, then
    the attribute: either one naming another queue is a mismatch.
    """
    named = [("queue", payload.get("queue"))]
    if "queue" in message.attributes:
        named.append(("attributes.queue", message.attributes["queue"]))
    for where, value in named:
        if value is None or value == queue:
            continue
        if not isinstance(value, str) or not value:
            shown = describe(value)[:100]
            problem = f"{where}: expected a non-empty string, got {shown}"
            return _Unroutable(problem, RejectReason.INVALID_QUEUE, where)
        problem = (
            f"published to the topic of queue {queue!r} but names queue {value[:100]!r}: a "
            "queue's topic only launches onto that queue"
        )
        return _Unroutable(problem, RejectReason.QUEUE_MISMATCH, where)
    return None


def _received(payload: dict[str, Any], message: PubsubMessage) -> dict[str, Any]:
    """Where an item came from: what is knowable, and the publisher's unverified word on who.

    Pub/Sub carries no publisher identity: `submitted_by` is what the publisher claims (the CLI
    sends the local user name), stored with `verified: false`. The only decision it enters is
    the fairness aid `max_jobs_per_submitter` (launchq.model.submitters), never an access one.
    """
    received: dict[str, Any] = {
        "payload": payload,
        "message_id": message.message_id,
        "topic": message.topic,
    }
    claimed = message.attributes.get(SUBMITTED_BY_ATTRIBUTE)
    if claimed:
        received["submitted_by"] = {"value": claimed[:200], "verified": False}
    return received
