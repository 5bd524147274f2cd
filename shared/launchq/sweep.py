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
   cancel requests, and repairs items stuck in SUBMITTING past their lease
   (`launchq.submission`, which looks the job up by label before creating);
5. admits waiting items into free slots, per queue (`launchq.admission`, the same unit the
   dispatcher uses; nothing is copied).

Every transition goes through `launchq.recorder` (history, log line, CloudEvent).

**The loop** (`Sweeper.loop`, what the sweep function runs): Cloud Scheduler cannot fire more
often than once a minute, so a slot freed right after a sweep would wait up to a minute for its
refill. One invocation therefore runs a pass every `sweep_interval` (10 s) until just before the
next scheduled invocation (`sweep_period`, 60 s, minus a margin of one pass's duration plus the
interval), holding and renewing the `sweep` lease, so refill latency is bounded by the interval,
not the schedule. A pass lists jobs with a `readMask` of the fields it reads, one page per 1,000
active jobs, so six passes a minute cost six list calls per 1,000 active jobs (of Vertex's 600
read requests per minute per region).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from launchq.admission import Admission
from launchq.builds.builder import ImageBuilder
from launchq.builds.follower import settle_building
from launchq.cancel import Canceller
from launchq.cohorts import ACCRUE_EVERY_SECONDS
from launchq.errors import Conflict
from launchq.expansion import Expander
from launchq.gcp import vertex as vx
from launchq.gcp.events import WAITING_EVENT_TYPE, item_event
from launchq.gcp.quotas import QuotaReader
from launchq.log import get_logger
from launchq.model.budgets import Charge, cost_fields
from launchq.model.failover import MOVING, choose, move_changes, placement_label
from launchq.model.failures import FailureClass, failure_class, retry_delay
from launchq.model.reasons import CancelReason, ErrorRecord, retry_reason
from launchq.model.records import AttemptJob, Changes, ItemRecord
from launchq.model.states import (
    POLLED_STATES,
    SLOT_STATES,
    ItemState,
    item_state_for_vertex,
    vertex_state_name,
)
from launchq.model.submitters import accrue_submitters, submitter_of
from launchq.queues import QueueRuntime, QueueSource
from launchq.recorder import Recorder
from launchq.spec.labels import QUEUE_LABEL
from launchq.spec.ladder import placed_config
from launchq.store import Store, Transition
from launchq.submission import SubmitOutcome, Submitter, VertexFor

log = get_logger(__name__)
# Log messages Cloud Monitoring's log-based metrics match on (terraform/monitoring.tf; the tests
# tie the two together).
QUEUE_SIGNALS = "queue signals"
ATTEMPT_FAILED = "attempt failed"

LEASE_NAME = "sweep"
LEASE_SECONDS = 300.0
# The CustomJob fields a pass reads (`_observe`, `_finish`, `_maybe_cancel`, `_read_jobs`):
# ListCustomJobs returns only these (`readMask`), not every job's full spec.
JOB_READ_MASK = (
    "name",
    "state",
    "labels",
    "create_time",
    "start_time",
    "end_time",
    "update_time",
    "error",
)
MAX_FALLBACK_GETS = 50
# How long one pass of `launchq sweep` may wait for creation-budget windows while items wait.
ADMIT_SECONDS = 5.0
UNIT_AUDIT_SECONDS = 60.0  # how often a sweep process audits cohort quota units for leaks
QUOTA_READ_SECONDS = 300.0  # how often it reads `read_quotas` cohorts' limits from Cloud Quotas
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
    "units",
    "charge",
    "submitter",
    "cancel_requested",
    "cancel_reason",
    "cancel_sent_at",
    "placement",
    "failed_placements",
)


@dataclass
class SweepSummary:
    """What one sweep did; the sweep function returns it as JSON."""

    skipped: str | None = None
    passes: int = 0
    items_seen: int = 0
    transitions: int = 0
    admitted: int = 0
    retried: int = 0
    moved: int = 0  # retries that went to another placement
    repaired: int = 0
    cancelled_start_timeout: int = 0
    cancels_sent: int = 0
    slots_freed: int = 0
    released: int = 0  # HELD children of sweeps released into their max_parallel
    waiting_notices: int = 0  # "waited too long" notices published (launchq.notify)
    waiting_queues: int = 0  # queues with items still waiting after admission
    errors: list[str] = field(default_factory=list)
    vertex_calls: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0

    def merge(self, other: SweepSummary) -> None:
        """Add the counts and errors of a worker's part of the sweep."""
        for name in ("transitions", "retried", "moved", "cancelled_start_timeout", "cancels_sent"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.extend(other.errors)

    def add_pass(self, other: SweepSummary) -> None:
        """Add one pass of a loop: every count, its errors and Vertex calls."""
        self.passes += 1
        for name in (
            "transitions",
            "admitted",
            "retried",
            "moved",
            "repaired",
            "cancelled_start_timeout",
            "cancels_sent",
            "slots_freed",
            "released",
            "waiting_notices",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.items_seen = other.items_seen  # what the last pass saw
        self.waiting_queues = other.waiting_queues
        self.errors.extend(other.errors)
        for method, count in other.vertex_calls.items():
            self.vertex_calls[method] = self.vertex_calls.get(method, 0) + count

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["vertex_calls_total"] = sum(self.vertex_calls.values())
        return data


class Sweeper:
    """One sweep pass over every active item, run by Cloud Scheduler through the sweep function
    (or `launchq sweep` locally): read job states from Vertex in bulk (one list per project and
    region, not a GET per job), record each change through the recorder, retry failed attempts
    by their failure class, repair claims whose submitter died, free leaked slots, settle
    finished image builds, and refill the freed slots through `Admission`.

    Only one pass runs at a time (the `leases/sweep` leader document); `loop` paces passes start
    to start for a local stack.
    """

    def __init__(
        self,
        store: Store,
        queues: QueueSource,
        recorder: Recorder,
        submitter: Submitter,
        admission: Admission,
        vertex_for: VertexFor,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        builds: ImageBuilder | None = None,
        quota_reader: QuotaReader | None = None,
        quota_read_seconds: float = QUOTA_READ_SECONDS,
        *,
        canceller: Canceller,
    ) -> None:
        self.expander = Expander(store, recorder, queues)
        self.canceller = canceller  # the process's one (launchq.wiring), for sweeps' cancels
        self.sleep = sleep
        self.builds = builds
        self.quota_reader = quota_reader
        self.quota_read_seconds = quota_read_seconds
        self.store = store
        self.queues = queues
        self.recorder = recorder
        self.submitter = submitter
        self.admission = admission
        self.vertex_for = vertex_for
        self.monotonic = monotonic
        self._units_audited = float("-inf")  # the last audit of cohort quota units
        # Clients seen during a sweep, with their call counters when first seen: the summary
        # reports the calls this sweep made, whoever else shares the (cached) client.
        self._clients: dict[int, tuple[vx.VertexClient, dict[str, int]]] = {}
        self._admit_deadline: float | None = None

    def run(self) -> SweepSummary:
        """One pass (`launchq sweep`)."""
        holder = uuid.uuid4().hex
        try:
            return self._pass(holder, ADMIT_SECONDS)
        finally:
            self.store.give_up_leadership(LEASE_NAME, holder)

    def loop(
        self, interval: float, period: float, busy_interval: float | None = None
    ) -> SweepSummary:
        """Passes every `interval` seconds until just before the next scheduled sweep.

        The next pass starts only if it (as long as the longest pass so far) and the pause
        before it end `interval` seconds before `period` is over, so this invocation has let go
        of the lease when the scheduler starts the next one. The lease is renewed by every pass.
        A pass may wait for creation-budget windows while items wait and slots are free, up to
        `interval` seconds (`ADMIT_SECONDS` with `interval` 0: a single pass).
        """
        started = self.monotonic()
        total = SweepSummary()
        holder = uuid.uuid4().hex
        longest = 0.0
        # One pass per invocation (interval 0: the local stack's scheduler calls every few
        # seconds) still waits for budget windows like `launchq sweep`: with no wait at all, a
        # pass found the one-second window spent and admitted one item per call.
        admit_seconds = interval if interval > 0 else ADMIT_SECONDS
        try:
            while True:
                begun = self.monotonic()
                summary = self._pass(holder, admit_seconds)
                if summary.skipped:
                    total.skipped = summary.skipped
                    break
                total.add_pass(summary)
                took = self.monotonic() - begun
                longest = max(longest, took)
                # Passes start every `interval`: a pass that spent its interval waiting for
                # budget windows is followed at once, not after another idle interval.
                # While items wait (capacity is full), the next pass comes after `busy_interval`:
                # a job's end is seen, and its slot and quota refilled, that much sooner.
                every = interval
                if busy_interval is not None and summary.waiting_queues:
                    every = min(interval, busy_interval)
                pause = max(every - took, 0.0)
                next_end = self.monotonic() - started + pause + longest
                if interval <= 0 or next_end > period - interval:
                    break
                self.sleep(pause)
        finally:
            self.store.give_up_leadership(LEASE_NAME, holder)
        total.duration_s = round(self.monotonic() - started, 3)
        log.info("sweep loop done", **{k: v for k, v in total.as_dict().items() if v})
        return total

    def _pass(self, holder: str, admit_seconds: float) -> SweepSummary:
        """One pass; admission may wait for the creation budget until `admit_seconds` after
        the pass started (the loop's interval: the next pass takes over then)."""
        started = self.monotonic()
        self._admit_deadline = time.monotonic() + admit_seconds
        summary = SweepSummary()
        if not self.store.take_leadership(LEASE_NAME, holder, LEASE_SECONDS):
            summary.skipped = "another sweep holds the lease"
            return summary
        self._clients.clear()
        try:
            with self.recorder.batch():
                self._sweep(summary)
        finally:
            summary.vertex_calls = self._calls_made()
            summary.duration_s = round(self.monotonic() - started, 3)
        summary.passes = 1
        log.info("sweep done", **{k: v for k, v in summary.as_dict().items() if v})
        return summary

    # -- the steps ------------------------------------------------------------------------

    def _sweep(self, summary: SweepSummary) -> None:
        self._follow_builds(summary)
        active = list(
            self.store.items_in_states(POLLED_STATES | {ItemState.SUBMITTING}, fields=_ITEM_FIELDS)
        )
        summary.items_seen = len(active)
        polled = [item for item in active if item.state in POLLED_STATES]
        submitting = [item for item in active if item.state is ItemState.SUBMITTING]
        jobs = self._read_jobs(polled, summary)
        observed = [(item, jobs[_job_id(item)]) for item in polled if _job_id(item) in jobs]
        self._observe_all(observed, summary)
        for item in submitting:
            self._repair(item, summary)
        self._families(summary)
        active_ids = {item.doc_id for item in active}
        self._cohort_upkeep(active_ids, summary)
        queues = sorted({item.queue for item in active} | self._queue_names())
        self._accrue_submitters(active, queues, summary)
        admitted_cohorts: set[str] = set()
        for queue in queues:
            self._free_leaked_slots(queue, active_ids, summary)
            runtime = self.queues.get(queue)
            if runtime is not None and runtime.config.region:
                self._client(runtime.config.region)  # so admission's calls are counted too
            cohort = self.admission.cohort_of(queue)
            try:
                # A cohort is admitted whole with its first member's call.
                if cohort is None or cohort.name not in admitted_cohorts:
                    if cohort is not None:
                        admitted_cohorts.add(cohort.name)
                    admitted = self.admission.admit(
                        queue, max_creates=1000, deadline=self._admit_deadline
                    )
                    summary.admitted += len(admitted)
                # Ready items left waiting on an open queue: the next pass comes sooner.
                open_queue = runtime is not None and not runtime.paused
                if open_queue and self.store.waiting_items(queue, limit=1):
                    summary.waiting_queues += 1
            except Exception as exc:  # one queue's trouble must not stop the others
                summary.errors.append(f"admitting {queue}: {exc}")
                log.exception("admission failed", queue=queue)
            self._waiting_notices(queue, runtime, summary)
            self._signals(queue, runtime, summary)

    def _signals(self, queue: str, runtime: QueueRuntime | None, summary: SweepSummary) -> None:
        """The queue's figures an operator alerts on, as one structured log line a pass
        (`QUEUE_SIGNALS`): Cloud Logging's log-based metrics (the Terraform module's
        `launchq/queue_*`) read them, so the sweep makes no Monitoring API call
        (docs/monitoring.md has the measured cost). Admissions, failures by class and quota
        refusals are counted from the lines their own events already write."""
        try:
            oldest = self.store.oldest_waiting(queue)
            now = self.store.clock()
            log.info(
                QUEUE_SIGNALS,
                queue=queue,
                waiting=self.store.count_waiting(queue),
                running=self.store.count_holding_slots(queue),
                oldest_wait_s=round((now - oldest).total_seconds(), 1) if oldest else 0.0,
                paused=bool(runtime is not None and runtime.paused),
                backing_off=bool(
                    runtime is not None
                    and runtime.backoff is not None
                    and runtime.backoff.active(now)
                ),
            )
        except Exception as exc:  # a figure not written must not stop the sweep
            summary.errors.append(f"signals of {queue}: {exc}")

    def _waiting_notices(
        self, queue: str, runtime: QueueRuntime | None, summary: SweepSummary
    ) -> None:
        """Publish, once per item, that an item waited longer than a notification rule of its
        queue allows (launchq.notify tells the people). Published before the item is marked:
        a crash in between publishes it again, and the notify function sends it once."""
        thresholds = [
            rule.waiting_longer_than_seconds
            for rule in (runtime.config.notify if runtime is not None else [])
            if rule.waiting_longer_than_seconds is not None
        ]
        if not thresholds:
            return
        now = self.store.clock()
        oldest = now - timedelta(seconds=min(thresholds))
        waiting = self.store.items_in_states(
            [ItemState.QUEUED, ItemState.HELD, ItemState.BUILDING],
            queue=queue,
            fields=("enqueued_at", "waiting_noticed", "sweep_of"),
        )
        for item in waiting:
            enqueued = item.enqueued_at
            if item.sweep_of or item.stored.get("waiting_noticed"):
                continue
            if enqueued is None or enqueued > oldest:
                continue
            waited = round((now - enqueued).total_seconds())
            event = item_event(
                WAITING_EVENT_TYPE, queue=queue, item_id=item.item_id, data={"waited_s": waited}
            )
            if not self.recorder.events.publish(event):
                continue  # not published: the next pass tries again
            try:
                self.recorder.touch(item, {"waiting_noticed": True})
                summary.waiting_notices += 1
            except Conflict:
                continue  # it moved on meanwhile (admitted): a notice too many is harmless

    def _families(self, summary: SweepSummary) -> None:
        """Sweeps and arrays (launchq.expansion): go on with expansions and cancels a
        delivery left unfinished, release HELD children into free max_parallel places, end
        parents whose children have all ended. After the jobs' states are read (a child that
        ended frees its place now) and before admission (a released child starts now)."""
        for parent in self.store.items_in_states([ItemState.SWEEP]):
            try:
                summary.released += self.expander.upkeep(
                    parent, self.canceller, self._admit_deadline
                )
            except Exception as exc:  # one sweep's trouble must not stop the others
                summary.errors.append(f"sweep {parent.queue}/{parent.item_id}: {exc}")
                log.exception("sweep upkeep failed", item_id=parent.item_id, queue=parent.queue)

    def _follow_builds(self, summary: SweepSummary) -> None:
        """Images built from source (launchq.builds): first, so a built item is admitted by
        this same sweep."""
        if self.builds is not None:
            moved, errors = settle_building(self.builds, self.store, self.recorder)
            summary.transitions += moved
            summary.errors.extend(errors)

    def _cohort_upkeep(self, active: set[str], summary: SweepSummary) -> None:
        """Cohorts (launchq.cohorts): accrue each member's usage (a cohort document at most once
        a second), and free quota units whose holder no longer holds them (a leak; at most
        once a minute per process)."""
        cohorts = self.admission.cohorts
        if cohorts is None:
            return
        try:
            cohorts.accrue_usage(self.store.clock())
            # Limits Google enforces (cohorts with `read_quotas`): each cohort's read when its
            # last is `quota_read_seconds` old (kept on the cohort, so one read whichever process
            # sweeps); quotas change when someone asks Google, not by the second.
            if self.quota_reader is not None:
                cohorts.read_quotas(self.quota_reader, self.store.clock(), self.quota_read_seconds)
            # The audit reads every held unit: once a minute, not every pass, so a busy pass
            # reads no more per active job than it did before cohorts.
            if self.monotonic() - self._units_audited < UNIT_AUDIT_SECONDS:
                return
            self._units_audited = self.monotonic()
            for state in cohorts.all().values():
                for metric in state.config.quotas:
                    for unit in self.store.held_units(state.config.pool_id(metric)):
                        if unit.holder not in active and self.store.free_leaked_slot(unit):
                            summary.slots_freed += 1
                            log.warning("freed a leaked quota unit", pool=unit.pool, unit=unit.id)
        except Exception as exc:  # the cohorts' trouble must not stop the sweep
            summary.errors.append(f"cohort upkeep: {exc}")
            log.exception("cohort upkeep failed")

    def _accrue_submitters(
        self, active: list[ItemRecord], queues: list[str], summary: SweepSummary
    ) -> None:
        """Queues with `max_jobs_per_submitter`: add the job-seconds each submitter's items held
        since the last accrual to its decayed usage (launchq.model.submitters), from the active
        items this pass read anyway; a queue document at most once a second."""
        now = self.store.clock()
        holding: dict[str, Counter[str]] = defaultdict(Counter)
        for item in active:
            if item.state in SLOT_STATES:
                holding[item.queue][submitter_of(item)] += 1
        for queue in queues:
            runtime = self.queues.get(queue)
            if runtime is None or runtime.config.max_jobs_per_submitter is None:
                continue
            stamps = [e.get("at") for e in runtime.submitter_usage.values()]
            last = max((at for at in stamps if isinstance(at, datetime)), default=None)
            if last is not None and (now - last).total_seconds() < ACCRUE_EVERY_SECONDS:
                continue
            half_life = runtime.config.submitter_half_life_seconds
            try:
                usage = accrue_submitters(runtime.submitter_usage, holding[queue], now, half_life)
                self.store.set_submitter_usage(queue, usage)
            except Exception as exc:  # one queue's trouble must not stop the others
                summary.errors.append(f"submitter usage of {queue}: {exc}")
                log.exception("submitter usage failed", queue=queue)
            self.queues.forget(queue)

    def _free_leaked_slots(self, queue: str, active: set[str], summary: SweepSummary) -> None:
        """A safety net: capacity held by an item that no longer runs is given back."""
        for slot in self.store.held_slots(queue):
            if slot.holder in active:
                continue  # the common case: no extra read
            if self.store.free_leaked_slot(slot):
                summary.slots_freed += 1
                log.warning("freed a leaked slot", queue=queue, slot=slot.id, item_id=slot.holder)

    def _observe_all(
        self, observed: list[tuple[ItemRecord, dict[str, Any]]], summary: SweepSummary
    ) -> None:
        """Record what Vertex reported, `WRITERS` items at a time.

        Each item's write is its own compare-and-swap, independent of the others, so they can
        go concurrently (measured: 10,000 changed items took 70 s one by one on the local stack).
        Each worker keeps its own summary and its own event batch: no shared counters.
        """
        chunks = [observed[start::WRITERS] for start in range(WRITERS)]

        def work(chunk: list[tuple[ItemRecord, dict[str, Any]]]) -> SweepSummary:
            local = SweepSummary()
            with self.recorder.batch():
                for item, job in chunk:
                    self._observe(item, job, local)
            return local

        with ThreadPoolExecutor(WRITERS) as pool:
            for local in pool.map(work, [c for c in chunks if c]):
                summary.merge(local)

    def _queue_names(self) -> set[str]:
        return {str(q.get("name")) for q in self.store.list_queues() if q.get("name")}

    def _read_jobs(
        self, items: list[ItemRecord], summary: SweepSummary
    ) -> dict[str, dict[str, Any]]:
        """Every job of `items`, by job id: bulk lists per (project, region), then a few GETs."""
        groups: dict[tuple[str, str], list[ItemRecord]] = defaultdict(list)
        for item in items:
            groups[(str(item.parent), str(item.region))].append(item)
        jobs: dict[str, dict[str, Any]] = {}
        for (parent, region), members in groups.items():
            client = self._client(region)
            flt = _list_filter(members)
            try:
                pages = client.list_custom_jobs(
                    parent, flt, page_size=LIST_PAGE_SIZE, read_mask=JOB_READ_MASK
                )
                for job in pages:
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
        item: ItemRecord,
        jobs: dict[str, dict[str, Any]],
        summary: SweepSummary,
    ) -> None:
        assert item.job is not None
        name = item.job.name
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

    def _observe(self, item: ItemRecord, job: Mapping[str, Any], summary: SweepSummary) -> None:
        raw_state = job.get("state")
        observed = item_state_for_vertex(raw_state)
        vertex_name = vertex_state_name(raw_state)
        known = item.job or AttemptJob(name=str(job["name"]))
        job_ref = replace(
            known,
            vertex_state=vertex_name,
            start_time=job.get("startTime"),
            end_time=job.get("endTime"),
        )
        if observed is item.state and known.vertex_state == vertex_name:
            self._maybe_cancel(item, job, summary)
            return
        details = {
            "vertex_state": vertex_name,
            "start_time": job.get("startTime"),
            "end_time": job.get("endTime"),
            "observed_at": self.store.clock(),
        }
        if observed is item.state:  # e.g. RUNNING <-> UPDATING: same item state, new Vertex state
            self._commit(item, None, {"job": job_ref}, summary)
            return
        if observed.is_terminal:
            self._finish(item, observed, job, job_ref, details, summary)
            return
        change = Transition(observed, f"vertex: {vertex_name}", details)
        if self._commit(item, change, {"job": job_ref}, summary):
            self._maybe_cancel(item, job, summary)

    def _finish(
        self,
        item: ItemRecord,
        observed: ItemState,
        job: Mapping[str, Any],
        job_ref: AttemptJob,
        details: dict[str, Any],
        summary: SweepSummary,
    ) -> None:
        error = job.get("error") if observed in (ItemState.FAILED, ItemState.CANCELLED) else None
        charge = Charge.from_document(item.stored.get("charge"))
        attempts = _close_attempt(list(item.attempts), observed, error, details, charge)
        changes: Changes = {"job": job_ref, "attempts": attempts}
        klass = None
        if observed is not ItemState.SUCCEEDED and observed is not ItemState.PARTIALLY_SUCCEEDED:
            klass = failure_class(observed, error, item.cancel_reason)
            changes["error"] = ErrorRecord(
                klass,
                (error or {}).get("message") or f"the job ended {observed.value}",
                details={"code": (error or {}).get("code")},
            ).document()
        vertex_cause = f"vertex: {details['vertex_state']}"
        plan = self._plan_retry(item, klass) if klass else None
        if klass is not None:
            # One line per failed attempt, retried or not: the log-based metric
            # `launchq/attempt_failures` counts them by queue and class.
            log.info(
                ATTEMPT_FAILED,
                item_id=item.item_id,
                queue=item.queue,
                failure_class=klass.value,
                retried=plan is not None,
            )
        if klass is not None and attempts:
            # The item's history says why each attempt ended, and where the next one went.
            last = {**attempts[-1], "failure_class": klass.value}
            if plan is not None and plan[3]:
                last["moved_to"] = plan[3]
            changes["attempts"] = [*attempts[:-1], last]
        if plan is None:
            change = Transition(observed, vertex_cause, details)
            self._commit(item, change, changes, summary, release_slot=True)
            return
        assert klass is not None
        current, delay, placed, moved = plan
        attempt = current.attempt or 1
        not_before = self.store.clock() + timedelta(seconds=delay)
        cause = f"retry: {klass.value}, attempt {attempt + 1} after {delay:.0f} s"
        if moved:
            cause += f", moved to {moved}"
            details = {**details, "moved_to": moved}
        change = Transition(
            ItemState.QUEUED,
            cause,
            {**details, "retry_at": not_before},
            via=observed,
            via_cause=vertex_cause,
        )
        retry: Changes = {
            **changes,
            "not_before": not_before,
            "reason": retry_reason(klass),
            "cancel_requested": False,
            "cancel_reason": None,
            "cancel_sent_at": None,
            **placed,  # its `reason`, when every placement has refused the item, wins
        }
        if self._commit(current, change, retry, summary, release_slot=True):
            summary.retried += 1
            if moved:
                summary.moved += 1
                log.info(
                    "attempt moves to another placement",
                    item_id=item.item_id,
                    queue=item.queue,
                    failure=klass.value,
                    placement=moved,
                )

    def _plan_retry(
        self, item: ItemRecord, klass: FailureClass
    ) -> tuple[ItemRecord, float, Changes, str] | None:
        """Whether the failed attempt is retried: (the record to write on, the delay, the
        placement fields of the next attempt, the name of the placement it moves to or "").

        A queue with placements retries the failures that move an item (`MOVING`) whatever its
        `retry.reasons` say, up to `retry.max_attempts`: moving is what the ladder is for.
        """
        runtime = self.queues.get(item.queue)
        if runtime is None:
            return None
        retry = runtime.config.retry
        attempt = item.attempt or 1
        if item.placement is None:
            delay = retry_delay(retry, klass, attempt)
            return None if delay is None else (item, delay, {}, "")
        if klass is FailureClass.CANCELLED_BY_USER or attempt >= retry.max_attempts:
            return None
        if klass not in MOVING:  # the job's own failure or Vertex's: retried in place, or not
            plain = retry_delay(retry, klass, attempt)
            return None if plain is None else (item, plain, {}, "")
        full = self.store.get_item(item.queue, item.item_id)  # the placements' bodies
        if full is None or full.version != item.version:
            return None  # changed since this pass read it: the next pass decides
        failed = [*full.failed_placements, item.placement]
        move = choose(
            runtime.config.failover_policy,
            retry,
            len(full.placements),
            item.placement,
            failed,
            klass,
        )
        moved = placement_label(full, move.placement) if move.moved else ""
        why = f"{klass.value} in {item.region}"
        return full, move.delay, move_changes(full, move, failed, why), moved

    def _maybe_cancel(
        self, item: ItemRecord, job: Mapping[str, Any], summary: SweepSummary
    ) -> None:
        """Send a requested cancel, or cancel a job that has not started in time."""
        state = item_state_for_vertex(job.get("state"))
        if item.cancel_sent_at or state.is_terminal or state is ItemState.CANCELLING:
            return
        reason = None
        if item.cancel_requested:
            reason = CancelReason.USER
        elif state in (ItemState.SUBMITTED, ItemState.PENDING) and self._start_timed_out(item, job):
            reason = CancelReason.START_TIMEOUT
        if reason is None:
            return
        name = str(job["name"])
        try:
            self._client(str(item.region)).cancel_custom_job(name)
        except vx.VertexError as exc:
            summary.errors.append(f"cancelling {name}: {exc}")
            return
        summary.cancels_sent += 1
        if reason is CancelReason.START_TIMEOUT:
            summary.cancelled_start_timeout += 1
        current = self.store.get_item(item.queue, item.item_id)
        if current is not None:
            with contextlib.suppress(Conflict):  # recorded next time; Vertex cancel is idempotent
                self.recorder.touch(
                    current, {"cancel_sent_at": self.store.clock(), "cancel_reason": reason}
                )

    def _start_timed_out(self, item: ItemRecord, job: Mapping[str, Any]) -> bool:
        runtime = self.queues.get(item.queue)
        if runtime is None or runtime.config.start_timeout_seconds == 0:
            return False
        placed = runtime.config
        if item.placement is not None and item.placement < len(runtime.config.placements):
            placed = placed_config(runtime.config, item.placement)
        if placed.run.get("scheduling_strategy") == "FLEX_START":
            # Waiting for resources is what a FLEX_START job is for: Vertex itself ends the wait
            # after `max_wait_duration` (EXPIRED, retried as no_capacity), so the queue's start
            # timeout must not cancel it first.
            return False
        created = _parse_time(job.get("createTime"))
        if created is None:
            return False
        limit = timedelta(seconds=runtime.config.start_timeout_seconds)
        return self.store.clock() - created > limit

    def _repair(self, item: ItemRecord, summary: SweepSummary) -> None:
        if not item.lease_expired(self.store.clock()):
            return  # a live submitter owns it
        full = self.store.get_item(item.queue, item.item_id)  # needs the job body
        if full is None:
            return
        try:
            if self.submitter.repair(full) is SubmitOutcome.RECORDED:
                summary.repaired += 1
        except Exception as exc:
            summary.errors.append(f"repairing {item.item_id}: {exc}")
            log.exception("repair failed", item_id=item.item_id, queue=item.queue)

    # -- helpers --------------------------------------------------------------------------

    def _commit(
        self,
        item: ItemRecord,
        change: Transition | None,
        changes: Changes,
        summary: SweepSummary,
        release_slot: bool = False,
    ) -> bool:
        try:
            if change is None:
                self.recorder.touch(item, changes)
                return True
            self.recorder.transition(item, change, changes, release_slot=release_slot)
        except Conflict:
            return False  # somebody else moved it; the next sweep looks again
        summary.transitions += 1 + (change.via is not None)
        return True

    def _client(self, region: str) -> vx.VertexClient:
        client = self.vertex_for(region)
        self._clients.setdefault(id(client), (client, dict(client.calls)))
        return client

    def _calls_made(self) -> dict[str, int]:
        totals: dict[str, int] = defaultdict(int)
        for client, before in self._clients.values():
            for method, count in client.calls.items():
                if count - before.get(method, 0):
                    totals[method] += count - before.get(method, 0)
        return dict(totals)


def _job_id(item: ItemRecord) -> str:
    return vx.job_id(item.job.name if item.job else "")


def _list_filter(items: Iterable[ItemRecord]) -> str:
    """launchq's jobs created since the oldest active one (with slack for clock skew)."""
    created = (item.job.create_time for item in items if item.job is not None)
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
    attempts: list[Mapping[str, Any]],
    state: ItemState,
    error: Mapping[str, Any] | None,
    details: Mapping[str, Any],
    charge: Charge | None = None,
) -> list[Mapping[str, Any]]:
    if not attempts:
        return attempts
    last = {**attempts[-1], "state": state.value, "ended_at": details.get("observed_at")}
    last["start_time"] = details.get("start_time")
    last["end_time"] = details.get("end_time")
    # Run time and estimated cost, from the rates its claim recorded (launchq.model.budgets):
    # the same figures the release books in its budgets' ledgers.
    last.update(cost_fields(charge, last))
    if error:
        last["error"] = {"code": error.get("code"), "message": error.get("message")}
    return [*attempts[:-1], last]
