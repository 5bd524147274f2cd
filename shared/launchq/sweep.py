"""The sweep: Vertex job states into Firestore, freed slots refilled, failures retried.

Cloud Scheduler calls it every minute (`functions/sweep/main.py`); `launchq sweep` runs one
locally. One sweep:

1. takes the `leases/sweep` lease (a second, overlapping sweep exits at once; a sweep that dies
   mid-way leaves nothing half-done that the next one does not simply redo);
2. reads the active items (projected: no job bodies), groups them by (project, region), and for
   each group lists the launchq-labelled jobs created since the oldest active one, following
   the pages: `ListCustomJobs` pages of up to 1,000 jobs instead of one `GetCustomJob` per job
   (W&B's agent polls every job every 10 s; Vertex allows 600 get/list calls per minute per
   region). Items the list did not return are fetched one by one, up to `MAX_FALLBACK_GETS`;
3. records every change (and only changes) with Vertex's own times, its error, and the cause;
   a terminal state frees the item's slot in the same write; a failure the queue's retry policy
   covers goes back to QUEUED with an exponential backoff (`not_before`) in that same write;
4. cancels jobs that have not started within the queue's `start_timeout_seconds`, sends pending
   cancel requests, and repairs items stuck in SUBMITTING past their lease (through the
   dispatcher's own submission path, which looks the job up by label before creating);
5. admits waiting items into free slots, per queue, through `Dispatcher.admit` (the same code
   the dispatcher runs; nothing is copied).

Every transition is published as the same CloudEvent the dispatcher emits.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from launchq import vertex as vx
from launchq.config import QueueConfig
from launchq.dispatch import Dispatcher
from launchq.labels import QUEUE_LABEL
from launchq.log import get_logger
from launchq.queues import QueueSource
from launchq.states import (
    POLLED_STATES,
    STATES,
    ItemState,
    item_state_for_vertex,
    vertex_state_name,
)
from launchq.store import Conflict, Snapshot, Store, Transition

log = get_logger(__name__)

LEASE_NAME = "sweep"
LEASE_SECONDS = 300.0
MAX_FALLBACK_GETS = 50
LIST_PAGE_SIZE = 1000
WRITERS = 8  # concurrent transition writers (Firestore clients are thread-safe)
# Jobs created slightly before the oldest item recorded its create time are still found.
_CREATE_TIME_SLACK = timedelta(minutes=5)
_ITEM_FIELDS = (
    "state",
    "queue",
    "item_id",
    "parent",
    "project",
    "region",
    "job",
    "attempt",
    "attempts",
    "claim",
    "slot",
    "cancel_requested",
    "cancel_reason",
    "cancel_sent_at",
)

# Failure classes. Vertex reports a job's failure as a google.rpc.Status; the class decides
# whether the queue's retry policy applies (SkyPilot-style: capacity and infrastructure failures
# are not the user's fault, a non-zero exit is).
NO_CAPACITY = "no_capacity"
QUOTA = "quota"
INFRASTRUCTURE = "infrastructure"
PREEMPTED = "preempted"
START_TIMEOUT = "start_timeout"
USER_ERROR = "user_error"
CANCELLED_BY_USER = "cancelled"
_INFRA_CODES = frozenset({4, 10, 13, 14})  # DEADLINE_EXCEEDED, ABORTED, INTERNAL, UNAVAILABLE
_CAPACITY_WORDS = ("stockout", "resources are insufficient", "not enough resources", "capacity")


def failure_class(
    state: ItemState, error: Mapping[str, Any] | None, data: Mapping[str, Any]
) -> str:
    """Why an attempt ended badly, from Vertex's error and what launchq itself did."""
    if state is ItemState.CANCELLED:
        return START_TIMEOUT if data.get("cancel_reason") == START_TIMEOUT else CANCELLED_BY_USER
    if state is ItemState.EXPIRED:
        return NO_CAPACITY  # FLEX_START waited max_wait_duration without capacity
    code = int((error or {}).get("code") or 0)
    message = str((error or {}).get("message") or "").lower()
    if "preempt" in message:
        return PREEMPTED
    if code == 8 or any(word in message for word in _CAPACITY_WORDS):
        return QUOTA if "quota" in message else NO_CAPACITY
    if code in _INFRA_CODES:
        return INFRASTRUCTURE
    return USER_ERROR


def retry_delay(config: QueueConfig, klass: str, attempt: int) -> float | None:
    """Seconds until the next attempt, or None when the policy does not retry this failure."""
    policy = config.retry
    if klass == CANCELLED_BY_USER or attempt >= policy.max_attempts:
        return None
    allowed = klass in policy.reasons or (klass == USER_ERROR and policy.user_errors)
    if not allowed:
        return None
    delay = policy.backoff_initial_seconds * 2 ** max(attempt - 1, 0)
    return float(min(delay, policy.backoff_max_seconds))


@dataclass
class SweepSummary:
    """What one sweep did; the sweep function returns it as JSON."""

    skipped: str | None = None
    items_seen: int = 0
    transitions: int = 0
    admitted: int = 0
    retried: int = 0
    repaired: int = 0
    cancelled_start_timeout: int = 0
    cancels_sent: int = 0
    slots_freed: int = 0
    errors: list[str] = field(default_factory=list)
    vertex_calls: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0

    def merge(self, other: SweepSummary) -> None:
        """Add the counts and errors of a worker's part of the sweep."""
        for name in ("transitions", "retried", "cancelled_start_timeout", "cancels_sent"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.extend(other.errors)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["vertex_calls_total"] = sum(self.vertex_calls.values())
        return data


class Sweeper:
    def __init__(
        self,
        store: Store,
        dispatcher: Dispatcher,
        queues: QueueSource,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.queues = queues
        self.monotonic = monotonic
        # Clients seen during a sweep, with their call counters when first seen: the summary
        # reports the calls this sweep made, whoever else shares the (cached) client.
        self._clients: dict[int, tuple[vx.VertexClient, dict[str, int]]] = {}

    def run(self) -> SweepSummary:
        started = self.monotonic()
        summary = SweepSummary()
        holder = uuid.uuid4().hex
        if not self.store.acquire_lease(LEASE_NAME, holder, LEASE_SECONDS):
            summary.skipped = "another sweep holds the lease"
            return summary
        self._clients.clear()
        try:
            with self.dispatcher.event_batch():
                self._sweep(summary)
        finally:
            self.store.release_lease(LEASE_NAME, holder)
            summary.vertex_calls = self._calls_made()
            summary.duration_s = round(self.monotonic() - started, 3)
        log.info("sweep done", **{k: v for k, v in summary.as_dict().items() if v})
        return summary

    # -- the steps ------------------------------------------------------------------------

    def _sweep(self, summary: SweepSummary) -> None:
        active = list(
            self.store.items_in_states(POLLED_STATES | {ItemState.SUBMITTING}, fields=_ITEM_FIELDS)
        )
        summary.items_seen = len(active)
        polled = [s for s in active if _state(s) in POLLED_STATES]
        submitting = [s for s in active if _state(s) is ItemState.SUBMITTING]
        jobs = self._read_jobs(polled, summary)
        observed = [(item, jobs[_job_id(item)]) for item in polled if _job_id(item) in jobs]
        self._observe_all(observed, summary)
        for item in submitting:
            self._repair(item, summary)
        active_ids = {s.id for s in active}
        for queue in sorted({(s.to_dict() or {})["queue"] for s in active} | self._queue_names()):
            self._free_leaked_slots(queue, active_ids, summary)
            runtime = self.queues.get(queue)
            if runtime is not None and runtime.config.region:
                self._client(runtime.config.region)  # so admission's calls are counted too
            try:
                summary.admitted += len(self.dispatcher.admit(queue, budget=1000))
            except Exception as exc:  # one queue's trouble must not stop the others
                summary.errors.append(f"admitting {queue}: {exc}")
                log.exception("admission failed", queue=queue)

    def _free_leaked_slots(self, queue: str, active: set[str], summary: SweepSummary) -> None:
        """A safety net: capacity held by an item that no longer runs is given back."""
        for slot in self.store.held_slots(queue):
            if (slot.to_dict() or {}).get("holder") in active:
                continue  # the common case: no extra read
            if self.store.free_leaked_slot(slot):
                summary.slots_freed += 1
                log.warning(
                    "freed a leaked slot",
                    queue=queue,
                    slot=slot.id,
                    item_id=(slot.to_dict() or {}).get("holder"),
                )

    def _observe_all(
        self, observed: list[tuple[Snapshot, dict[str, Any]]], summary: SweepSummary
    ) -> None:
        """Record what Vertex reported, `WRITERS` items at a time.

        Each item's write is its own compare-and-swap, independent of the others, so they can
        go concurrently (measured: 10,000 changed items took 70 s one by one on the local stack).
        Each worker keeps its own summary and its own event batch: no shared counters.
        """
        chunks = [observed[start::WRITERS] for start in range(WRITERS)]

        def work(chunk: list[tuple[Snapshot, dict[str, Any]]]) -> SweepSummary:
            local = SweepSummary()
            with self.dispatcher.event_batch():
                for item, job in chunk:
                    self._observe(item, job, local)
            return local

        with ThreadPoolExecutor(WRITERS) as pool:
            for local in pool.map(work, [c for c in chunks if c]):
                summary.merge(local)

    def _queue_names(self) -> set[str]:
        return {str(q.get("name")) for q in self.store.list_queues() if q.get("name")}

    def _read_jobs(self, items: list[Snapshot], summary: SweepSummary) -> dict[str, dict[str, Any]]:
        """Every job of `items`, by job id: bulk lists per (project, region), then a few GETs."""
        groups: dict[tuple[str, str], list[Snapshot]] = defaultdict(list)
        for item in items:
            data = item.to_dict() or {}
            groups[(data["parent"], data["region"])].append(item)
        jobs: dict[str, dict[str, Any]] = {}
        for (parent, region), members in groups.items():
            client = self._client(region)
            flt = _list_filter(members)
            try:
                for job in client.list_custom_jobs(parent, flt, page_size=LIST_PAGE_SIZE):
                    jobs[vx.job_id(str(job["name"]))] = job
            except vx.VertexError as exc:
                summary.errors.append(f"listing jobs in {parent}: {exc}")
                log.error(
                    "listing jobs failed; items keep their state", parent=parent, error=str(exc)
                )
                continue
            missing = [m for m in members if _job_id(m) not in jobs]
            for item in missing[:MAX_FALLBACK_GETS]:
                self._get_one(client, item, jobs, summary)
        return jobs

    def _get_one(
        self,
        client: vx.VertexClient,
        item: Snapshot,
        jobs: dict[str, dict[str, Any]],
        summary: SweepSummary,
    ) -> None:
        data = item.to_dict() or {}
        name = str(data["job"]["name"])
        try:
            jobs[vx.job_id(name)] = client.get_custom_job(name)
        except vx.VertexError as exc:
            if exc.http_status == 404:
                # The job is gone (deleted outside launchq): nothing will ever finish it.
                jobs[vx.job_id(name)] = {
                    "name": name,
                    "state": "JOB_STATE_FAILED",
                    "error": {"code": 5, "message": "the job no longer exists on Vertex AI"},
                }
                return
            summary.errors.append(f"reading {name}: {exc}")

    def _observe(self, item: Snapshot, job: Mapping[str, Any], summary: SweepSummary) -> None:
        data = item.to_dict() or {}
        current = ItemState(data["state"])
        raw_state = job.get("state")
        observed = item_state_for_vertex(raw_state)
        vertex_name = vertex_state_name(raw_state)
        known = data.get("job") or {}
        job_fields = {
            **known,
            "vertex_state": vertex_name,
            "start_time": job.get("startTime"),
            "end_time": job.get("endTime"),
        }
        if observed is current and known.get("vertex_state") == vertex_name:
            self._maybe_cancel(item, job, summary)
            return
        details = {
            "vertex_state": vertex_name,
            "start_time": job.get("startTime"),
            "end_time": job.get("endTime"),
            "observed_at": self.store.clock(),
        }
        if observed is current:  # e.g. RUNNING <-> UPDATING: same item state, new Vertex state
            self._commit(item, None, {"job": job_fields}, summary)
            return
        if STATES[observed].terminal:
            self._finish(item, observed, job, job_fields, details, summary)
            return
        change = Transition(observed, f"vertex: {vertex_name}", details)
        if self._commit(item, change, {"job": job_fields}, summary):
            self._maybe_cancel(item, job, summary)

    def _finish(
        self,
        item: Snapshot,
        observed: ItemState,
        job: Mapping[str, Any],
        job_fields: dict[str, Any],
        details: dict[str, Any],
        summary: SweepSummary,
    ) -> None:
        data = item.to_dict() or {}
        error = job.get("error") if observed in (ItemState.FAILED, ItemState.CANCELLED) else None
        attempts = _close_attempt(data.get("attempts") or [], observed, error, details)
        fields: dict[str, Any] = {"job": job_fields, "attempts": attempts}
        klass = None
        if observed is not ItemState.SUCCEEDED and observed is not ItemState.PARTIALLY_SUCCEEDED:
            klass = failure_class(observed, error, data)
            fields["error"] = {
                "reason": klass,
                "code": (error or {}).get("code"),
                "message": (error or {}).get("message") or f"the job ended {observed.value}",
                "path": None,
                "errors": [],
            }
        vertex_cause = f"vertex: {details['vertex_state']}"
        delay = self._retry_delay(data, klass) if klass else None
        if delay is None:
            change = Transition(observed, vertex_cause, details)
            self._commit(item, change, fields, summary, release_slot=True)
            return
        attempt = int(data.get("attempt") or 1)
        not_before = self.store.clock() + timedelta(seconds=delay)
        change = Transition(
            ItemState.QUEUED,
            f"retry: {klass}, attempt {attempt + 1} after {delay:.0f} s",
            {**details, "retry_at": not_before},
            via=observed,
            via_cause=vertex_cause,
        )
        retry_fields = {
            **fields,
            "not_before": not_before,
            "reason": f"retrying after {klass}",
            "cancel_requested": False,
            "cancel_reason": None,
            "cancel_sent_at": None,
        }
        if self._commit(item, change, retry_fields, summary, release_slot=True):
            summary.retried += 1

    def _retry_delay(self, data: Mapping[str, Any], klass: str) -> float | None:
        runtime = self.queues.get(data["queue"])
        if runtime is None:
            return None
        return retry_delay(runtime.config, klass, int(data.get("attempt") or 1))

    def _maybe_cancel(self, item: Snapshot, job: Mapping[str, Any], summary: SweepSummary) -> None:
        """Send a requested cancel, or cancel a job that has not started in time."""
        data = item.to_dict() or {}
        state = item_state_for_vertex(job.get("state"))
        if data.get("cancel_sent_at") or STATES[state].terminal or state is ItemState.CANCELLING:
            return
        reason = None
        if data.get("cancel_requested"):
            reason = "user"
        elif state in (ItemState.SUBMITTED, ItemState.PENDING) and self._start_timed_out(data, job):
            reason = START_TIMEOUT
        if reason is None:
            return
        name = str(job["name"])
        try:
            self._client(data["region"]).cancel_custom_job(name)
        except vx.VertexError as exc:
            summary.errors.append(f"cancelling {name}: {exc}")
            return
        summary.cancels_sent += 1
        if reason == START_TIMEOUT:
            summary.cancelled_start_timeout += 1
        fields = {"cancel_sent_at": self.store.clock(), "cancel_reason": reason}
        with contextlib.suppress(Conflict):  # recorded next time; Vertex cancel is idempotent
            self.store.touch(self.store.item_ref(data["queue"], data["item_id"]).get(), fields)

    def _start_timed_out(self, data: Mapping[str, Any], job: Mapping[str, Any]) -> bool:
        runtime = self.queues.get(data["queue"])
        if runtime is None or runtime.config.start_timeout_seconds == 0:
            return False
        created = _parse_time(job.get("createTime"))
        if created is None:
            return False
        limit = timedelta(seconds=runtime.config.start_timeout_seconds)
        return self.store.clock() - created > limit

    def _repair(self, item: Snapshot, summary: SweepSummary) -> None:
        data = item.to_dict() or {}
        until = (data.get("claim") or {}).get("until")
        if until is not None and until > self.store.clock():
            return  # a live dispatcher owns it
        full = self.store.item_ref(data["queue"], data["item_id"]).get()  # needs job_body
        try:
            if self.dispatcher.repair_submitting(full):
                summary.repaired += 1
        except Exception as exc:
            summary.errors.append(f"repairing {data['item_id']}: {exc}")
            log.exception("repair failed", item_id=data["item_id"], queue=data["queue"])

    # -- helpers --------------------------------------------------------------------------

    def _commit(
        self,
        item: Snapshot,
        change: Transition | None,
        fields: dict[str, Any],
        summary: SweepSummary,
        release_slot: bool = False,
    ) -> bool:
        data = item.to_dict() or {}
        try:
            if change is None:
                self.store.touch(item, fields)
                return True
            self.store.transition(item, change, fields, release_slot=release_slot)
        except Conflict:
            return False  # somebody else moved it; the next sweep looks again
        summary.transitions += 1 + (change.via is not None)
        log.info(
            change.cause,
            item_id=data["item_id"],
            queue=data["queue"],
            job_name=(data.get("job") or {}).get("name"),
            state=change.to.value,
        )
        if change.via is not None:
            self.dispatcher.publish_transition(
                data["queue"],
                data["item_id"],
                ItemState(data["state"]),
                change.via,
                change.via_cause,
                change.details,
            )
            previous = change.via
        else:
            previous = ItemState(data["state"])
        self.dispatcher.publish_transition(
            data["queue"], data["item_id"], previous, change.to, change.cause, change.details
        )
        return True

    def _client(self, region: str) -> vx.VertexClient:
        client = self.dispatcher.vertex_for(region)
        self._clients.setdefault(id(client), (client, dict(client.calls)))
        return client

    def _calls_made(self) -> dict[str, int]:
        totals: dict[str, int] = defaultdict(int)
        for client, before in self._clients.values():
            for method, count in client.calls.items():
                if count - before.get(method, 0):
                    totals[method] += count - before.get(method, 0)
        return dict(totals)


def request_cancel(store: Store, dispatcher: Dispatcher, queue: str, item_id: str) -> str:
    """Cancel an item: a waiting one at once, a submitted one through CancelCustomJob.

    Returns the item's state afterwards. The sweep records CANCELLED when Vertex reports it;
    a cancelled item is never retried. Raises KeyError for an unknown item.
    """
    snap = store.get_item(queue, item_id)
    if not snap.exists:
        raise KeyError(f"no item {item_id!r} in queue {queue!r}")
    data = snap.to_dict() or {}
    state = ItemState(data["state"])
    if STATES[state].terminal:
        return state.value
    if state is ItemState.QUEUED:
        store.transition(
            snap, Transition(ItemState.CANCELLED, "cancelled by user"), {"reason": None}
        )
        dispatcher.publish_transition(
            queue, item_id, state, ItemState.CANCELLED, "cancelled by user"
        )
        return ItemState.CANCELLED.value
    fields: dict[str, Any] = {"cancel_requested": True, "cancel_reason": "user"}
    job_name = (data.get("job") or {}).get("name")
    if job_name and state is not ItemState.CANCELLING:
        try:
            dispatcher.vertex_for(data["region"]).cancel_custom_job(str(job_name))
        except vx.VertexError as exc:
            # 400 FAILED_PRECONDITION: the job ended before the cancel reached it. Not an
            # error: the sweep records how it really ended. Anything else is.
            if exc.http_status != 400:
                raise
        fields["cancel_sent_at"] = store.clock()
    store.touch(snap, fields)  # SUBMITTING: the sweep sends the cancel once the job exists
    return state.value


def _state(item: Snapshot) -> ItemState:
    return ItemState((item.to_dict() or {})["state"])


def _job_id(item: Snapshot) -> str:
    return vx.job_id(str(((item.to_dict() or {}).get("job") or {}).get("name", "")))


def _list_filter(items: Iterable[Snapshot]) -> str:
    """launchq's jobs created since the oldest active one (with slack for clock skew)."""
    created = (((i.to_dict() or {}).get("job") or {}).get("create_time") for i in items)
    times = [t for t in map(_parse_time, created) if t is not None]
    flt = f"labels.{QUEUE_LABEL}:*"
    if times:
        oldest = (min(times) - _CREATE_TIME_SLACK).strftime("%Y-%m-%dT%H:%M:%SZ")
        flt += f' AND create_time>="{oldest}"'
    return flt


def _parse_time(raw: object) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None


def _close_attempt(
    attempts: list[dict[str, Any]],
    state: ItemState,
    error: Mapping[str, Any] | None,
    details: Mapping[str, Any],
) -> list[dict[str, Any]]:
    if not attempts:
        return attempts
    last = {**attempts[-1], "state": state.value, "ended_at": details.get("observed_at")}
    last["start_time"] = details.get("start_time")
    last["end_time"] = details.get("end_time")
    if error:
        last["error"] = {"code": error.get("code"), "message": error.get("message")}
    return [*attempts[:-1], last]


def run_sweep(store: Store, dispatcher: Dispatcher, queues: QueueSource) -> dict[str, Any]:
    """One sweep; the JSON summary (see `SweepSummary`, plus `vertex_calls_total`)."""
    return Sweeper(store, dispatcher, queues).run().as_dict()
