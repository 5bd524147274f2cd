"""The dispatcher: one Pub/Sub message in, at most one Vertex CustomJob out, all of it recorded.

Flow for a message (`Dispatcher.handle`):

1. Decode. Not JSON, not an object, no queue: recorded REJECTED (keyed by the message id when
   nothing better exists) and acknowledged: retrying cannot fix it.
2. Record. The item is validated against its queue and rendered once; the document is created
   with `create()` (fails if it exists), so a redelivery finds the first record and changes
   nothing. Invalid items are recorded REJECTED with every error and acknowledged.
3. Admit (`Dispatcher.admit`, shared with the sweep). While the queue has a free slot, its best
   waiting item (priority rank, then enqueue time) is claimed: QUEUED -> SUBMITTING and the slot
   taken, in one compare-and-swap. That may be another, older item than the one just received:
   the queue's order wins over Pub/Sub's arrival order.
4. Submit (`Dispatcher.submit_claimed`, shared with the sweep's repair). Outside any transaction:
   CreateCustomJob with the stored body plus the attempt's labels, then SUBMITTING -> the job's
   state, recording its name. A claim is a lease (`submit_lease_seconds`, longer than any
   invocation can live). If a dispatcher dies while holding it, the item stays visibly SUBMITTING
   until the lease ends; whoever repairs it (a redelivery or the sweep) first looks the job up by
   its labels and records it if it exists, so a crash between create and record never yields a
   second job. Create is retried in-process only for transient errors, and after an ambiguous one
   (no answer, 5xx) only after the same lookup.

Errors: permanent ones (bad input, Vertex 400/403/404) are recorded and acknowledged; transient
ones (Firestore unavailable, Vertex 429/5xx after bounded retries) raise `TransientError`, which
the entry point turns into a 500 so Pub/Sub redelivers.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from launchq import sanitize
from launchq import vertex as vx
from launchq.config import QUEUE_NAME_PATTERN
from launchq.errors import is_infrastructure
from launchq.events import EventPublisher, state_changed_event
from launchq.item import ITEM_ID_PATTERN
from launchq.log import get_logger
from launchq.queues import PreparedItem, QueueRuntime, QueueSource
from launchq.settings import Settings
from launchq.states import STATES, ItemState, item_state_for_vertex, vertex_state_name
from launchq.store import Conflict, Snapshot, Store, Transition
from launchq.validation import describe

log = get_logger(__name__)

ATTEMPT_LABEL = "launchq-attempt"
# Far below Firestore's 1 MiB document limit, which the stored item (payload plus rendered body
# plus history) must respect; a real queue item is a few KiB.
MAX_ITEM_BYTES = 256 * 1024
_QUEUE_NAME = re.compile(QUEUE_NAME_PATTERN)
_ITEM_ID = re.compile(ITEM_ID_PATTERN)


class TransientError(Exception):
    """Worth a redelivery: nothing permanent went wrong, the item is safe in Firestore."""


class SimulatedCrash(BaseException):
    """Raised by test hooks to emulate a process dying at a given line.

    A BaseException so that no `except Exception` in the dispatcher can tidy up after it: a
    real crash does not run cleanup either.
    """


@dataclass(frozen=True)
class PubsubMessage:
    data: bytes
    attributes: Mapping[str, str]
    message_id: str
    publish_time: str | None = None


@dataclass
class DispatchResult:
    outcome: str  # recorded | duplicate | rejected | admitted-none ...
    item_id: str | None = None
    queue: str | None = None
    submitted: list[str] = field(default_factory=list)
    detail: str = ""


Hook = Callable[[str], None]


def _no_hook(_point: str) -> None:
    return None


class Dispatcher:
    """Everything between a queue item and its Vertex job. One instance per process."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        queues: QueueSource,
        events: EventPublisher,
        vertex_for: Callable[[str], vx.VertexClient] | None = None,
        hook: Hook = _no_hook,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.store = store
        self.queues = queues
        self.events = events
        self.vertex_for = vertex_for or (
            lambda region: vx.client_for(
                settings.vertex_base_url(region), settings.vertex_timeout_seconds
            )
        )
        self.hook = hook
        self.sleep = sleep
        self._local = threading.local()  # the event batch of the dispatch on this thread

    # -- entry ----------------------------------------------------------------------------

    def handle(self, message: PubsubMessage) -> DispatchResult:
        self._local.routing = None  # (queue, item_id) once `_handle` knows them
        try:
            with self.event_batch():
                return self._handle(message)
        except TransientError:
            raise
        except Exception as exc:
            # THE catch-all: only infrastructure trouble earns a redelivery (launchq.errors);
            # anything else would fail the same way every time, so it is recorded and acked.
            if is_infrastructure(exc):
                raise TransientError(f"infrastructure unavailable: {exc}") from exc
            return self._reject_internal(message, exc)

    def _reject_internal(self, message: PubsubMessage, exc: Exception) -> DispatchResult:
        """Record an unexpected content error REJECTED (`internal_error`), under the item id
        when it is known, else as an unroutable message."""
        log.exception("message failed on its content", message_id=message.message_id)
        problem = f"internal error: {type(exc).__name__}: {exc}"
        routing: tuple[str, str] | None = self._local.routing
        try:
            if routing is None:
                return self._reject_message(message, problem, "internal_error")
            queue, item_id = routing
            error = _error("internal_error", problem, None)
            fields = {"message_id": message.message_id, "error": error}
            created = self._create(
                queue, item_id, ItemState.REJECTED, sanitize.untrusted_record(fields),
                cause="rejected: internal error",
            )  # fmt: skip
            # Already recorded (it failed after that, or on a redelivery): the record stands.
            outcome = "rejected" if created is not None else "duplicate"
            return DispatchResult(outcome, item_id, queue, detail=problem)
        except Exception as again:
            if is_infrastructure(again):
                raise TransientError(f"infrastructure unavailable: {again}") from again
            raise

    @contextlib.contextmanager
    def event_batch(self) -> Iterator[None]:
        """Collect the state-change events of one dispatch (or sweep); publish them together.

        One Pub/Sub request instead of one per transition (measured: three synchronous
        publishes were 8-11 ms of a 36 ms dispatch). They are published when the block ends,
        also when it raises: every event stands for a transition already committed.
        """
        if getattr(self._local, "events", None) is not None:
            yield  # nested: the outer block publishes
            return
        self._local.events = []
        try:
            yield
        finally:
            events, self._local.events = self._local.events, None
            if events:
                self.events.publish_many(events)

    def _handle(self, message: PubsubMessage) -> DispatchResult:
        if len(message.data) > MAX_ITEM_BYTES:
            return self._reject_message(
                message,
                f"item is {len(message.data)} bytes; the limit is {MAX_ITEM_BYTES}",
                "too_large",
            )
        payload, problem = _decode(message.data)
        if problem is not None:
            return self._reject_message(message, problem)
        assert payload is not None
        routed = _route(payload, message)
        if isinstance(routed, _Unroutable):
            return self._reject_message(message, routed.problem, routed.reason, routed.path)
        queue, item_id = routed
        self._local.routing = routed
        # No read first: create() fails if the item exists, and only a redelivery pays for the
        # read that follows.
        outcome = self._record(queue, item_id, payload, message)
        if isinstance(outcome, DispatchResult):
            return outcome
        submitted = self.admit(queue, own_item=outcome)
        return DispatchResult("recorded", item_id, queue, submitted)

    def _record(
        self, queue: str, item_id: str, payload: dict[str, Any], message: PubsubMessage
    ) -> DispatchResult | Snapshot:
        """Record a new item: its snapshot when it is QUEUED, else what became of it."""
        runtime = self.queues.get(queue)
        received = {"payload": payload, "message_id": message.message_id}
        if runtime is None:
            rejected = self._create(
                queue,
                item_id,
                ItemState.REJECTED,
                sanitize.untrusted_record(
                    {
                        **received,
                        "error": _error("unknown_queue", f"no queue named {queue!r}", "queue"),
                    }
                ),
                cause="rejected: unknown queue",
            )
            if rejected is None:
                return self._redelivered(self.store.get_item(queue, item_id))
            return DispatchResult("rejected", item_id, queue, detail="unknown queue")
        prepared = runtime.prepare(payload, item_id, self.store.clock())
        if isinstance(prepared, list):
            errors: list[dict[str, Any]] = [
                {"path": e.path, "message": str(e), "code": e.code, "suggestion": e.suggestion}
                for e in prepared
            ]
            first = errors[0]
            rejected = self._create(
                queue,
                item_id,
                ItemState.REJECTED,
                sanitize.untrusted_record(
                    {
                        **received,
                        "error": _error(
                            "invalid_item", first["message"], first.get("path"), errors[:100]
                        ),
                    }
                ),
                cause="rejected: invalid item",
            )
            if rejected is None:
                return self._redelivered(self.store.get_item(queue, item_id))
            return DispatchResult("rejected", item_id, queue, detail=first["message"])
        fields = {**received, **_item_fields(prepared, runtime)}
        size = sanitize.firestore_size(fields)
        if size > sanitize.RECORD_BYTES:  # the record must fit, not only the message
            problem = (
                f"the record would take {size} bytes (the item plus the job it renders into); "
                f"the limit is {sanitize.RECORD_BYTES}"
            )
            error = _error("record_too_large", problem, None)
            rejected = self._create(
                queue, item_id, ItemState.REJECTED,
                sanitize.untrusted_record({**received, "error": error}),
                cause="rejected: record too large",
            )  # fmt: skip
            if rejected is None:
                return self._redelivered(self.store.get_item(queue, item_id))
            return DispatchResult("rejected", item_id, queue, detail=problem)
        created = self._create(queue, item_id, ItemState.QUEUED, fields, cause="accepted")
        if created is None:
            return self._redelivered(self.store.get_item(queue, item_id))
        self.hook("recorded")
        return created

    def _redelivered(self, item: Snapshot) -> DispatchResult | Snapshot:
        """A message for an item we already know: the item itself if it still waits."""
        data = item.to_dict() or {}
        state = ItemState(data["state"])
        queue, item_id = data["queue"], data["item_id"]
        if state is ItemState.SUBMITTING and self._lease_expired(data):
            self.repair_submitting(item)
            return DispatchResult("repaired", item_id, queue)
        if state is ItemState.QUEUED:
            return item  # try to admit again: maybe a slot is free now
        return DispatchResult("duplicate", item_id, queue, detail=f"already {state}")

    def _create(
        self, queue: str, item_id: str, state: ItemState, fields: dict[str, Any], cause: str
    ) -> Snapshot | None:
        created = self.store.create_item(queue, item_id, {**fields, "state": state.value}, cause)
        if created is not None:
            log.info(cause, item_id=item_id, queue=queue, state=state.value)
            self.publish_transition(queue, item_id, None, state, cause)
        return created

    def _reject_message(
        self,
        message: PubsubMessage,
        problem: str,
        reason: str = "undecodable",
        path: str | None = None,
    ) -> DispatchResult:
        item_id = f"_message-{sanitize.text(message.message_id, 256)}"
        raw = message.data[:4096].decode("utf-8", errors="replace")
        fields = {
            "received_raw": raw,
            "message_id": message.message_id,
            "attributes": dict(message.attributes),
            "error": _error(reason, problem, path),
        }
        self._create(
            "_unroutable",
            item_id,
            ItemState.REJECTED,
            sanitize.untrusted_record(fields),
            cause=f"rejected: {sanitize.text(problem, 300)}",
        )
        return DispatchResult("rejected", item_id, None, detail=problem)

    # -- admission (shared with the sweep) ------------------------------------------------

    def admit(self, queue: str, budget: int = 16, own_item: Snapshot | None = None) -> list[str]:
        """Claim and submit waiting items while the queue has free slots; returns item ids.

        On an unlimited queue every waiting item is admitted, so order cannot matter: a
        dispatcher claims just the item it received (`own_item`) instead of racing every
        other instance for the head of the queue (measured: 300 items x 3 deliveries on 24
        threads took 26.8 s that way, dominated by contended waiting-set queries). The sweep
        admits whatever else waits there.
        """
        runtime = self.queues.get(queue, fresh=True)
        if runtime is None or runtime.paused:
            return []
        if runtime.max_jobs < 0 and own_item is not None:
            return self._admit_own(own_item)
        submitted: list[str] = []
        conflicts = 0
        while len(submitted) < budget and conflicts < 8:
            waiting = self.store.waiting_items(queue, limit=8)
            if not waiting:
                break
            slots: list[Snapshot | None]
            if runtime.max_jobs < 0:
                slots = [None]
            else:
                slots = list(self.store.free_slots(queue, limit=8))
                if not slots:
                    break
            claimed = self._claim_first(waiting, slots)
            if claimed is None:
                conflicts += 1
                self.sleep(random.uniform(0.005, 0.05))
                continue
            if self.submit_claimed(claimed):
                submitted.append((claimed.to_dict() or {})["item_id"])
        return submitted

    def _admit_own(self, item: Snapshot) -> list[str]:
        data = item.to_dict() or {}
        not_before = data.get("not_before")
        if data.get("state") != ItemState.QUEUED.value or (
            not_before is not None and not_before > self.store.clock()
        ):
            return []
        claimed = self._claim_first([item], [None])
        if claimed is not None and self.submit_claimed(claimed):
            return [str(data["item_id"])]
        return []

    def _claim_first(
        self, waiting: list[Snapshot], slots: list[Snapshot | None]
    ) -> Snapshot | None:
        # Spread concurrent claimers over the free slots so they rarely collide.
        random.shuffle(slots)
        for item, slot in zip(waiting, slots * len(waiting), strict=False):
            data = item.to_dict() or {}
            claim = self._new_claim()
            try:
                claimed = self.store.transition(
                    item,
                    Transition(ItemState.SUBMITTING, "admitted: slot free"),
                    {"claim": claim, "attempt": int(data.get("attempt", 0)) + 1, "reason": None},
                    take_slot=slot,
                )
            except Conflict:
                continue
            self.publish_transition(
                data["queue"], data["item_id"], ItemState.QUEUED, ItemState.SUBMITTING, "admitted"
            )
            self.hook("claimed")
            return claimed
        return None

    def _new_claim(self) -> dict[str, Any]:
        now = self.store.clock()
        return {
            "id": uuid.uuid4().hex,
            "until": now + timedelta(seconds=self.settings.submit_lease_seconds),
        }

    def _lease_expired(self, data: Mapping[str, Any]) -> bool:
        until = (data.get("claim") or {}).get("until")
        return until is None or until <= self.store.clock()

    # -- submission (shared with the sweep's repair) -----------------------------------------

    def repair_submitting(self, item: Snapshot) -> bool:
        """Take over an item whose submitter died: look the job up first, create only if absent."""
        data = item.to_dict() or {}
        try:
            claimed = self.store.transition(
                item,
                Transition(ItemState.SUBMITTING, "repair: submit lease expired"),
                {"claim": self._new_claim(), "needs_lookup": True},
            )
        except Conflict:
            return False
        log.warning("repairing a stuck submission", item_id=data["item_id"], queue=data["queue"])
        return self.submit_claimed(claimed)

    def submit_claimed(self, item: Snapshot) -> bool:
        """Create (or find) the job of a claimed item and record it. True if recorded."""
        data = item.to_dict() or {}
        body = _with_attempt(data["job_body"], int(data["attempt"]))
        client = self.vertex_for(data["region"])
        try:
            job = self._create_or_find(client, data, body)
        except vx.VertexError as exc:
            if exc.transient:
                self._release_lease(data)
                raise TransientError(str(exc)) from exc
            self._fail_submission(item, exc)
            return False
        except Exception:
            self._release_lease(data)
            raise
        self.hook("created")
        return self._record_job(item, job)

    def _create_or_find(
        self, client: vx.VertexClient, data: Mapping[str, Any], body: dict[str, Any]
    ) -> dict[str, Any]:
        parent = data["parent"]
        if data.get("needs_lookup"):
            found = self._find(client, parent, body)
            if found is not None:
                return found
        delays = iter((0.5, 1.0, 2.0))
        while True:
            try:
                return client.create_custom_job(parent, body)
            except vx.VertexError as exc:
                delay = next(delays, None)
                if not exc.transient or delay is None:
                    raise
                log.warning("create failed; retrying", item_id=data["item_id"], error=str(exc))
                self.sleep(delay + random.uniform(0, delay / 2))
                if exc.ambiguous:
                    found = self._find(client, parent, body)
                    if found is not None:
                        return found

    @staticmethod
    def _find(
        client: vx.VertexClient, parent: str, body: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        labels = body.get("labels", {})
        keys = sorted(k for k in labels if k.startswith("launchq-"))
        flt = " AND ".join(f'labels.{k}="{labels[k]}"' for k in keys)
        jobs = list(client.list_custom_jobs(parent, flt, page_size=10))
        return jobs[0] if jobs else None

    def _record_job(self, current: Snapshot, job: Mapping[str, Any]) -> bool:
        """SUBMITTING -> the job's state, on the snapshot the claim wrote.

        If anyone touched the item since (a repair that took over), the precondition fails and
        this records nothing: they record the same job.
        """
        data = current.to_dict() or {}
        new_state = item_state_for_vertex(job.get("state"))
        name = str(job["name"])
        job_fields = {
            "name": name,
            "vertex_state": vertex_state_name(job.get("state")),
            "create_time": job.get("createTime"),
            "console_url": vx.console_url(name, data["region"], data["project"]),
            "logs_url": vx.logs_url(name, data["project"]),
        }
        attempts = list(data.get("attempts", []))
        attempts.append({"n": data["attempt"], "job_name": name, "created_at": self.store.clock()})
        fields: dict[str, Any] = {
            "job": job_fields,
            "attempts": attempts,
            "claim": None,
            "needs_lookup": False,
        }
        # A repair's lookup can find a job that has already ended: record its end, free the
        # slot in the same write (the sweep never polls a terminal item, so nobody else would).
        terminal = STATES[new_state].terminal
        if terminal and job.get("error"):
            fields["error"] = _error(
                "vertex", str(job["error"].get("message", "")), None, code=job["error"].get("code")
            )
        try:
            self.store.transition(
                current,
                Transition(new_state, "submitted", {"job_name": name}),
                fields,
                release_slot=terminal,
            )
        except Conflict:
            return False
        log.info("job submitted", item_id=data["item_id"], queue=data["queue"], job_name=name)
        self.publish_transition(
            data["queue"],
            data["item_id"],
            ItemState.SUBMITTING,
            new_state,
            "submitted",
            {"job_name": name},
        )
        return True

    def _fail_submission(self, current: Snapshot, exc: vx.VertexError) -> None:
        data = current.to_dict() or {}
        error = _error(
            "vertex_rejected", exc.message, None, status=exc.status, http_status=exc.http_status
        )
        try:
            self.store.transition(
                current,
                Transition(ItemState.FAILED, f"Vertex rejected the job: {exc.status}"),
                {"error": error, "claim": None},
                release_slot=True,
            )
        except Conflict:
            return
        log.error(
            "Vertex rejected the job",
            item_id=data["item_id"],
            queue=data["queue"],
            error=exc.message,
        )
        self.publish_transition(
            data["queue"],
            data["item_id"],
            ItemState.SUBMITTING,
            ItemState.FAILED,
            "vertex rejected the job",
        )

    def _release_lease(self, data: Mapping[str, Any]) -> None:
        """After a failure we know of, let the next delivery repair at once (with a lookup)."""
        try:
            current = self.store.item_ref(data["queue"], data["item_id"]).get()
            claim = (current.to_dict() or {}).get("claim") or {}
            if claim.get("id") == data["claim"]["id"]:
                self.store.touch(
                    current,
                    {"claim": {**claim, "until": self.store.clock()}, "needs_lookup": True},
                )
        except Exception as exc:  # the lease then simply runs out
            log.warning("could not release a submit lease", item_id=data["item_id"], error=str(exc))

    def publish_transition(
        self,
        queue: str | None,
        item_id: str,
        from_state: ItemState | None,
        to_state: ItemState,
        cause: str,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        event = state_changed_event(
            queue=queue,
            item_id=item_id,
            from_state=from_state.value if from_state else None,
            to_state=to_state.value,
            cause=cause,
            details=details,
        )
        buffered = getattr(self._local, "events", None)
        if buffered is not None:
            buffered.append(event)
        else:
            self.events.publish(event)


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
    reason: str
    path: str | None


def _route(payload: Mapping[str, Any], message: PubsubMessage) -> tuple[str, str] | _Unroutable:
    """The queue and item id, from the body or else the attributes, never coerced.

    Checked before anything is keyed by them: an id Firestore cannot hold would make even the
    rejection fail. A wrong type or an empty string is rejected rather than replaced (by the
    attribute, or the message id): replacing an item_id silently loses idempotency.
    """
    queue, where = _key_field(payload, message, "queue")
    if isinstance(queue, _Unroutable):
        return queue
    if queue is None:
        return _Unroutable(
            "no queue: set `queue` in the item or as a message attribute", "no_queue", "queue"
        )
    # fullmatch: `$` alone would let a trailing newline through.
    if not _QUEUE_NAME.fullmatch(queue):
        return _Unroutable(f"invalid queue name {queue[:100]!r}", "invalid_queue", where)
    item_id, where = _key_field(payload, message, "item_id")
    if isinstance(item_id, _Unroutable):
        return item_id
    item_id = item_id if item_id is not None else message.message_id
    if not _ITEM_ID.fullmatch(item_id):
        return _Unroutable(
            f"invalid item_id {item_id[:130]!r}: 1-128 letters, digits and . _ : @ -, "
            "starting with a letter or digit",
            "invalid_item_id",
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
        return _Unroutable(problem, f"invalid_{name}", where), where
    return value, where


def _error(
    reason: str,
    message: str,
    path: str | None,
    errors: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {"reason": reason, "message": message, "path": path, "errors": errors or [], **extra}


def _with_attempt(body: Mapping[str, Any], attempt: int) -> dict[str, Any]:
    labels = {**body.get("labels", {}), ATTEMPT_LABEL: str(attempt)}
    return {**body, "labels": labels}


def _item_fields(prepared: PreparedItem, runtime: QueueRuntime) -> dict[str, Any]:
    return {
        "priority": prepared.priority,
        "job_body": prepared.body,
        "body_hash": prepared.body_hash,
        "parent": prepared.parent,
        "project": prepared.project,
        "region": prepared.region,
        "display_name": prepared.display_name,
        "metadata": prepared.metadata,
        "attempt": 0,
        "reason": "queue paused" if runtime.paused else "waiting for a free slot",
    }
