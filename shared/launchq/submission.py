"""Submission: the exactly-once unit. Claim an item, create (or find) its job, record it.

1. **Claim** (`claim`): QUEUED -> SUBMITTING with a `Claim` (a lease) and, on a limited queue, a
   slot, in one compare-and-swap. Only the winner goes on.
2. **Create or find** (`submit`), outside any transaction: CreateCustomJob with the stored body
   plus the attempt's labels. Create is retried in-process only for transient errors, and after
   an ambiguous one (no answer, 5xx) only after looking the job up by its labels, because the
   create may have happened.
3. **Record**: SUBMITTING -> the job's state, on the version the claim wrote. If anyone touched
   the item since (a repair that took over), the precondition fails and this records nothing:
   they record the same job.
4. **Repair** (`repair`): a submitter that dies leaves the item visibly SUBMITTING until its lease
   ends; whoever repairs it (a redelivery or the sweep) looks the job up by labels first and
   records it if it exists, so a crash between create and record never yields a second job.
5. **Release** (`_end_claim`): after a failure we know of, the lease is ended at once so the
   next delivery repairs without waiting.

A permanent Vertex refusal (400/403/404) fails the item and frees its slot; a transient one
raises `InfrastructureError` for a redelivery.

Capacity is not an error (`launchq.capacity`): every create first takes a token of the shared
creation budget, and a create refused for a resource quota, or still refused for the request rate
after a few jittered retries, is *deferred*: the item goes back to QUEUED with the reason, its
slot is released, its attempt number is restored (so the next claim uses the same labels and a
lookup finds a job an ambiguous create may have made) and no exception leaves the dispatcher, so
the message is acknowledged instead of redelivered into the dead-letter topic.
"""

from __future__ import annotations

import contextlib
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from launchq.budgets import Reservation
from launchq.capacity import Capacity
from launchq.errors import Conflict, InfrastructureError
from launchq.gcp import vertex as vx
from launchq.log import get_logger
from launchq.model.failover import choose, move_changes, placement_label
from launchq.model.reasons import (
    ErrorRecord,
    FailureClass,
    FailureReason,
    WaitReason,
    quota_reason,
)
from launchq.model.records import Admit, AttemptJob, Changes, Claim, ItemRecord, NewItem, Slot
from launchq.model.states import ItemState, item_state_for_vertex, vertex_state_name
from launchq.queues import QueueSource
from launchq.recorder import Recorder
from launchq.spec.labels import ATTEMPT_LABEL
from launchq.spec.render import ATTEMPT_ENV, job_strategy, with_launchq_env
from launchq.spec.wandb import attempt_env
from launchq.store import Store, Transition

log = get_logger(__name__)

ADMITTED = "admitted: slot free"
CREATE_RETRY_DELAYS = (0.5, 1.0, 2.0)

VertexFor = Callable[[str], vx.VertexClient]


class SubmitOutcome(StrEnum):
    RECORDED = "recorded"  # the job exists and is recorded
    LOST = "lost"  # somebody else moved the item meanwhile; they record it
    FAILED = "failed"  # Vertex refused the job for good
    DEFERRED = "deferred"  # Vertex has no quota for it now: back to QUEUED, the queue backs off
    RATE_LIMITED = "rate_limited"  # over the creation rate: back to QUEUED
    MOVED = "moved"  # refused for quota in its placement: QUEUED in another, ready to admit


@dataclass
class _Deferred(Exception):
    """Raised inside `_create_or_find` when the create must wait for capacity."""

    reason: str
    metric: str | None = None
    ambiguous: bool = False


def with_attempt(body: Mapping[str, Any], attempt: int) -> dict[str, Any]:
    """The job body of one attempt: the stored body plus the `launchq-attempt` label, and the
    attempt number in every pool's LAUNCHQ_ATTEMPT (what a training script reads to know it is
    resuming)."""
    labels = {**body.get("labels", {}), ATTEMPT_LABEL: str(attempt)}
    # A W&B run's second attempt continues the run (WANDB_RESUME=allow; launchq.spec.wandb).
    values = {ATTEMPT_ENV: str(attempt), **attempt_env(body, attempt)}
    return with_launchq_env({**body, "labels": labels}, values)


def label_filter(body: Mapping[str, Any]) -> str:
    """The List filter that finds exactly the job of this item's attempt (AIP-160, AND)."""
    labels = body.get("labels", {})
    keys = sorted(k for k in labels if k.startswith("launchq-"))
    return " AND ".join(f'labels.{k}="{labels[k]}"' for k in keys)


class Submitter:
    """The exactly-once unit: claim an item (QUEUED -> SUBMITTING with a `Claim` that expires
    after `lease_seconds`, and a slot on a limited queue), create its Vertex job under a
    deterministic job id (a redelivery or a second claimer finds the job, never makes two),
    record the job, and release or repair a claim whose create failed or whose submitter died.

    Every state change goes through the `Recorder`; a create takes its creation-budget token from
    `Capacity` first and, refused for a resource quota, backs the queue off.
    """

    def __init__(
        self,
        store: Store,
        recorder: Recorder,
        vertex_for: VertexFor,
        lease_seconds: float,
        sleep: Callable[[float], None],
        capacity: Capacity,
        queues: QueueSource | None = None,
    ) -> None:
        self.queues = queues  # failover policies of queues with placements
        self.store = store
        self.recorder = recorder
        self.capacity = capacity
        self.vertex_for = vertex_for
        self.lease_seconds = lease_seconds
        self.sleep = sleep

    def _new_claim(self) -> Claim:
        return Claim.new(self.store.clock(), self.lease_seconds, uuid.uuid4().hex)

    def claim(
        self,
        item: ItemRecord,
        slot: Slot | None,
        units: Sequence[Slot] = (),
        reservation: Reservation | None = None,
    ) -> ItemRecord | None:
        """QUEUED -> SUBMITTING (taking `slot`, if any, a cohort's quota `units`, and the
        attempt's charge, reserved in its budgets' ledgers); None if another claimer won."""
        try:
            # The accelerators of a cohort's quota it takes: what the dashboard charts per member.
            details = {"accelerators": len(units)} if units else None
            return self.recorder.transition(
                item,
                Transition(ItemState.SUBMITTING, ADMITTED, details),
                {"claim": self._new_claim(), "attempt": item.attempt + 1, "reason": None},
                take_slot=slot,
                take_units=units,
                charge=reservation.charge if reservation is not None else None,
                ledgers=reservation.ledgers if reservation is not None else (),
            )
        except Conflict:
            return None

    def fail_over_budget(self, item: ItemRecord, message: str) -> None:
        """QUEUED -> FAILED: its attempt would not fit in a budget that says `reject`."""
        error = ErrorRecord(FailureReason.OVER_BUDGET, message).document()
        with contextlib.suppress(Conflict):
            self.recorder.transition(
                item,
                Transition(ItemState.FAILED, f"over budget: {message}"),
                {"error": error, "reason": None},
                level="warning",
            )

    def create_claimed(
        self,
        new: NewItem,
        slot: Slot | None,
        token: str | None = None,
        token_expire_at: datetime | None = None,
    ) -> ItemRecord | None:
        """Record a new item already claimed (one write instead of create-then-claim), taking
        the budget `token` in the same write (with its attempt's `charge` among its fields:
        never one that reserves, a budgeted queue's items are claimed from the queue).

        None if the item exists (a redelivery); TokenTaken if the token is another create's;
        Conflict if `slot` was taken meanwhile.
        """
        admit = Admit(self._new_claim(), slot, ADMITTED, token, token_expire_at)
        return self.recorder.create(new, admit)

    def repair(self, item: ItemRecord) -> SubmitOutcome | None:
        """Take over an item whose submitter died: look the job up first, create only if absent.

        `item` must be a full read (the sweep's projected reads have no job body).
        """
        try:
            # Through the recorder like every state change: the takeover is logged and published.
            claimed = self.recorder.transition(
                item,
                Transition(ItemState.SUBMITTING, "repair: submit lease expired"),
                {"claim": self._new_claim(), "needs_lookup": True},
            )
        except Conflict:
            return None
        log.warning("repairing a stuck submission", item_id=item.item_id, queue=item.queue)
        return self.submit(claimed)

    def submit(self, item: ItemRecord, token_taken: bool = False) -> SubmitOutcome:
        """Create (or find) the job of a claimed item and record it.

        `token_taken`: the caller already took this create's budget token.
        """
        assert item.job_body is not None, "a full read is needed"
        assert item.region is not None
        body = with_attempt(item.job_body, item.attempt)
        client = self.vertex_for(item.region)
        try:
            job = self._create_or_find(client, item, body, token_taken)
        except _Deferred as wait:
            deferred = self._defer(item, wait)
            if deferred is None:
                return SubmitOutcome.LOST
            if wait.metric is None:
                return SubmitOutcome.RATE_LIMITED
            return SubmitOutcome.MOVED if deferred else SubmitOutcome.DEFERRED
        except vx.VertexError as exc:
            if exc.transient:
                self._end_claim(item)
                raise InfrastructureError(str(exc)) from exc
            self._fail(item, exc)
            return SubmitOutcome.FAILED
        except BaseException:
            self._end_claim(item)
            raise
        self.capacity.created(item.queue)
        return SubmitOutcome.RECORDED if self._record_job(item, job) else SubmitOutcome.LOST

    def _create_or_find(
        self, client: vx.VertexClient, item: ItemRecord, body: dict[str, Any], token_taken: bool
    ) -> dict[str, Any]:
        parent = str(item.parent)
        ambiguous = False
        if item.needs_lookup:
            found = self._find(client, parent, body)
            if found is not None:
                return found
        delays = iter(CREATE_RETRY_DELAYS)
        last: vx.VertexError | None = None
        while True:
            if not token_taken and not self.capacity.take_create(
                str(item.project), str(item.region)
            ):
                if last is None or last.rate_limited:
                    raise _Deferred(WaitReason.RATE_LIMITED, ambiguous=ambiguous)
                raise last  # a retry of a 5xx found no budget: redelivery retries it later
            token_taken = False  # a retried create takes a token of its own
            try:
                return client.create_custom_job(parent, body)
            except vx.VertexError as exc:
                last = exc
                if exc.quota_metric is not None:
                    raise _Deferred(
                        quota_reason(exc.quota_metric, str(item.region)),
                        exc.quota_metric,
                        ambiguous,
                    ) from exc
                delay = next(delays, None)
                if delay is None and exc.rate_limited:
                    raise _Deferred(WaitReason.RATE_LIMITED, ambiguous=ambiguous) from exc
                if not exc.transient or delay is None:
                    raise
                log.warning("create failed; retrying", item_id=item.item_id, error=str(exc))
                self.sleep(delay + random.uniform(0, delay / 2))
                if exc.ambiguous:
                    ambiguous = True
                    found = self._find(client, parent, body)
                    if found is not None:
                        return found

    def _defer(self, item: ItemRecord, wait: _Deferred) -> bool | None:
        """No capacity now: back to QUEUED with the reason, the slot released, no exception.

        A quota refusal on a queue with placements moves the item instead of backing the whole
        queue off (`_quota_move`): the refusal is this placement's, not the queue's. Returns
        None when somebody else moved the item meanwhile, else whether it moved to another
        placement it may start in now.
        """
        changes: Changes = {
            "claim": None,
            # The next claim adds one again: the same attempt, the same labels, so a lookup
            # finds a job that an ambiguous create of this attempt may have made.
            "attempt": max(item.attempt - 1, 0),
            "reason": wait.reason,
            "needs_lookup": item.needs_lookup or wait.ambiguous,
        }
        details: dict[str, Any] = {"reason": wait.reason}
        cause = f"deferred: {wait.reason}"
        ready = False
        if wait.metric is not None:
            details["quota_metric"] = wait.metric
            moved = self._quota_move(item, wait)
            if moved is None:
                # The queue backs off (or its cohort lowers the quota's limit) whether or not
                # this item's write below wins.
                self.capacity.refused(
                    item.queue, wait.metric, str(item.region), str(item.project), len(item.units)
                )
            else:
                placed, name, delay = moved
                changes.update(placed)
                changes["not_before"] = self.store.clock() + timedelta(seconds=delay)
                if name:
                    cause += f"; moved to {name}"
                    details["moved_to"] = name
                ready = bool(name) and delay <= 0
        try:
            self.recorder.transition(
                item,
                Transition(ItemState.QUEUED, cause, details),
                changes,
                release_slot=True,
            )
        except Conflict:
            return None
        log.info("create deferred", item_id=item.item_id, queue=item.queue, reason=wait.reason)
        return ready

    def _quota_move(self, item: ItemRecord, wait: _Deferred) -> tuple[Changes, str, float] | None:
        """Where a quota-refused item of a queue with placements goes next: (its placement
        fields, the name of the placement it moves to or "", the delay). None: the queue backs
        off as a whole (no placements, or a lookup is pending: an ambiguous create may have
        made a job in this placement's region, and only a lookup here would find it)."""
        if item.placement is None or not item.placements or wait.ambiguous or item.needs_lookup:
            return None
        runtime = self.queues.get(item.queue) if self.queues is not None else None
        if runtime is None:
            return None
        failed = [*item.failed_placements, item.placement]
        move = choose(
            runtime.config.failover_policy,
            runtime.config.retry,
            len(item.placements),
            item.placement,
            failed,
            FailureClass.QUOTA,
        )
        name = placement_label(item, move.placement) if move.moved else ""
        why = f"quota {wait.metric} exhausted in {item.region}"
        return move_changes(item, move, failed, why), name, move.delay

    @staticmethod
    def _find(
        client: vx.VertexClient, parent: str, body: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        jobs = list(client.list_custom_jobs(parent, label_filter(body), page_size=10))
        return jobs[0] if jobs else None

    def _record_job(self, current: ItemRecord, job: Mapping[str, Any]) -> bool:
        new_state = item_state_for_vertex(job.get("state"))
        name = str(job["name"])
        region, project = str(current.region), str(current.project)
        ref = AttemptJob(
            name=name,
            vertex_state=vertex_state_name(job.get("state")),
            create_time=job.get("createTime"),
            console_url=vx.console_url(name, region, project),
            logs_url=vx.logs_url(name, project),
        )
        attempt: dict[str, Any] = {
            "n": current.attempt,
            "job_name": name,
            "created_at": self.store.clock(),
            "region": region,
        }
        if current.placement is not None:
            attempt["placement"] = current.placement
            attempt["placement_name"] = placement_label(current, current.placement)
            attempt["strategy"] = job_strategy(current.job_body or {})
        attempts = [*current.attempts, attempt]
        terminal = new_state.is_terminal
        changes: Changes = {
            "job": ref,
            "attempts": attempts,
            "claim": None,
            "needs_lookup": False,
        }
        # A repair's lookup can find a job that has already ended: record its end, free the
        # slot in the same write (the sweep never polls a terminal item, so nobody else would).
        if terminal and job.get("error"):
            error = job["error"]
            changes["error"] = ErrorRecord(
                FailureReason.JOB_ERROR,
                str(error.get("message", "")),
                details={"code": error.get("code")},
            ).document()
        try:
            self.recorder.transition(
                current,
                Transition(new_state, "submitted", {"job_name": name}),
                changes,
                release_slot=terminal,
            )
        except Conflict:
            return False
        return True

    def _fail(self, current: ItemRecord, exc: vx.VertexError) -> None:
        error = ErrorRecord(
            FailureReason.VERTEX_REJECTED,
            exc.message,
            details={"status": exc.status, "http_status": exc.http_status},
        ).document()
        try:
            self.recorder.transition(
                current,
                Transition(ItemState.FAILED, f"Vertex rejected the job: {exc.status}"),
                {"error": error, "claim": None},
                release_slot=True,
                level="error",
            )
        except Conflict:
            return

    def _end_claim(self, item: ItemRecord) -> None:
        """After a failure we know of, let the next delivery repair at once (with a lookup)."""
        try:
            current = self.store.get_item(item.queue, item.item_id)
            mine = item.claim.id if item.claim else None
            if current is not None and current.claim is not None and current.claim.id == mine:
                self.recorder.touch(
                    current,
                    {"claim": current.claim.ended_at(self.store.clock()), "needs_lookup": True},
                )
        except Exception as exc:  # the lease then simply runs out
            log.warning("could not release a submit lease", item_id=item.item_id, error=str(exc))
