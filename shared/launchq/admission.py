"""Admission: which waiting items get a queue's free slots, and in what order.

While a queue has a free slot, its best waiting item (priority rank, then enqueue time:
`launchq.model.records.admission_order`) is claimed and submitted (`launchq.submission`).
That may be another, older item than the one a dispatcher just received: the queue's order wins over
Pub/Sub's arrival order. The dispatcher and the sweep both call `Admission.admit`.

On an unlimited queue every waiting item is admitted, so order cannot matter: a dispatcher claims
just the item it received (`own`) instead of racing every other instance for the head of the
queue (measured: 300 items x 3 deliveries on 24 threads took 26.8 s that way, dominated by
contended waiting-set queries). The sweep admits whatever else waits there.

Capacity (`launchq.capacity`): a queue backing off after a quota refusal is not admitted at all
until its backoff ends, and a round stops at the first deferred create (no budget token, or
Vertex said no): the items after it would only meet the same limit.

A queue in a cohort (`launchq.cohorts`) is admitted with its cohort: each round reads every
member's next item and the units of the cohort's quotas each member holds, and the policy
(`launchq.model.fairshare.decide`) picks whose item takes the free units, in the claim's write.
Measured (bench/fairshare.py, two 40-slot queues on a 5-job quota, time scaled 10x): 73-91% of
the quota busy while work waited when each queue learnt it from 429s, 96.7-97.9% this way, and
each team's share within 2.1 points of half over 10 seeds (docs/performance.md, "Cohorts").
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable
from typing import Literal

from launchq.budgets import Budgets, Held, Reservation
from launchq.cohorts import CohortSource, CohortState
from launchq.errors import Conflict
from launchq.model.reasons import WaitReason, budget_reason
from launchq.model.records import ItemRecord, NewItem, Slot
from launchq.model.states import ItemState
from launchq.model.submitters import submitter_of, submitter_order, usage_now
from launchq.queues import QueueRuntime, QueueSource
from launchq.store import Store, TokenTaken
from launchq.submission import SubmitOutcome, Submitter

_REDELIVERY, _OVER_BUDGET, _SLOT_LOST = object(), object(), object()
MAX_CONFLICTS = 8  # lost claims before an admission round gives way to the other claimers
MAX_MOVES = 8  # quota moves between placements in one round
PAGE = 8  # waiting items and free slots read per round
# Outcomes after which the round stops: the items after it would meet the same limit.
ROUND_ENDS = frozenset({SubmitOutcome.DEFERRED, SubmitOutcome.RATE_LIMITED})
# Waiting items read per round on a queue with `max_jobs_per_submitter`: items of submitters at
# their limit are passed over, so admission looks this deep for one that may start.
SUBMITTER_PAGE = 32


def _per_submitter(runtime: QueueRuntime | None) -> bool:
    return runtime is not None and runtime.config.max_jobs_per_submitter is not None


class Admission:
    """Which waiting items get a queue's free slots, and in what order: the queue's
    `admission_order` (priority, then age) over its free slots, each admitted item claimed and
    submitted by the `Submitter`. The dispatcher calls it for the queue a message arrived on,
    the sweep for every queue after freeing slots; both stop at a paused queue, a queue backing
    off on quota, or the creation budget.
    """

    def __init__(
        self,
        store: Store,
        queues: QueueSource,
        submitter: Submitter,
        sleep: Callable[[float], None],
        cohorts: CohortSource | None = None,
        budgets: Budgets | None = None,
    ) -> None:
        self.store = store
        self.queues = queues
        self.submitter = submitter
        self.sleep = sleep
        self.cohorts = cohorts
        self.budgets = budgets if budgets is not None else Budgets(store)

    def cohort_of(self, queue: str) -> CohortState | None:
        return self.cohorts.of_queue(queue) if self.cohorts is not None else None

    def admit(
        self,
        queue: str,
        max_creates: int = 16,
        own: ItemRecord | None = None,
        deadline: float | None = None,
    ) -> list[str]:
        """Claim and submit waiting items while the queue has free slots, at most `max_creates`;
        returns item ids.

        Each create takes a token of the creation budget *before* its item is claimed, so an
        item over budget is not claimed and put back (two writes for nothing). Until the
        monotonic `deadline` (the sweep's), admission waits for the next budget window instead
        of stopping; without one, the waiting item is marked `rate_limited` and left to the
        sweep.
        """
        cohort = self.cohort_of(queue)
        if cohort is not None:
            return self.admit_cohort(cohort.name, max_creates, deadline)
        runtime = self.queues.get(queue, fresh=True)
        if not self._open(runtime):
            return []
        assert runtime is not None
        if runtime.max_jobs < 0 and own is not None and not _per_submitter(runtime):
            return self._admit_own(own)
        submitted: list[str] = []
        conflicts = moves = 0
        while len(submitted) < max_creates and conflicts < MAX_CONFLICTS and moves < MAX_MOVES:
            waiting = self._waiting(runtime, PAGE)
            if not waiting:
                break
            slots: list[Slot | None]
            if runtime.max_jobs < 0:
                slots = [None]
            else:
                slots = list(self.store.free_slots(queue, limit=PAGE))
                if not slots:
                    break
            if not self._token(waiting[0], deadline):
                self._mark_rate_limited(own if own is not None else waiting[0])
                break
            claimed = self._claim_first(waiting, slots, runtime)
            if isinstance(claimed, Held):
                if claimed.reject:
                    moves += 1  # bounded like a move: a fail that lost a race is seen again
                    continue  # that item failed: the next one may fit
                break  # the queue's next item waits for its budget: so do the ones after it
            if claimed is None:
                conflicts += 1
                self.sleep(random.uniform(0.005, 0.05))
                continue
            outcome = self._submit(claimed, submitted)
            if outcome in ROUND_ENDS:
                break
            # MOVED: refused for quota in one placement, the item waits ready in the next: the
            # round goes on (it may be the next one admitted, in its new region), a bounded
            # number of times (with a zero backoff every placement could refuse in turn).
            if outcome is SubmitOutcome.MOVED:
                moves += 1
        return submitted

    def admit_new(self, new: NewItem) -> tuple[ItemRecord | None, list[str]]:
        """Record a new item and admit; (None, []) if it exists already (a redelivery).

        When the item can start at once (queue open, nothing waiting ahead of it, a free slot,
        a budget token) it is recorded already claimed: one write instead of QUEUED-then-claim
        (and instead of a token write of its own), the slot taken and the budget token created
        in the same atomic batch as the item's `create()`, so exactly-once holds as before (a
        lost slot race writes nothing and falls back to the queued path; a taken token tries
        the next one).
        """
        runtime = self.queues.get(new.queue, fresh=True)
        # A cohort's member queues it first: who starts is its cohort's decision.
        # So does a queue with `max_jobs_per_submitter`: who starts depends on who else waits.
        # So does a budgeted queue: its claim reserves in a ledger read just before.
        at_once = (
            self.cohort_of(new.queue) is None
            and not _per_submitter(runtime)
            and (runtime is None or runtime.config.budget is None)
        )
        if self._open(runtime) and runtime is not None and at_once:
            slot = self._direct_slot(runtime)
            if slot is not False:
                direct = self._create_admitted(new, slot)
                if direct is _REDELIVERY:
                    return None, []
                if isinstance(direct, ItemRecord):
                    outcome = self.submitter.submit(direct, token_taken=True)
                    if outcome is SubmitOutcome.MOVED:  # its next placement may have room now
                        return direct, self.admit(new.queue)
                    return direct, [new.item_id] if outcome is SubmitOutcome.RECORDED else []
                if direct is _OVER_BUDGET:
                    new = new.with_fields(reason=WaitReason.RATE_LIMITED)
        created = self.submitter.recorder.create(new)
        if created is None:
            return None, []
        if created.reason == WaitReason.RATE_LIMITED:
            return created, []  # the sweep admits it when the budget allows
        return created, self.admit(new.queue, own=created)

    def _create_admitted(self, new: NewItem, slot: Slot | None) -> ItemRecord | object:
        """The item created already claimed, with a budget token in the same batch; or why
        not: `_REDELIVERY`, `_OVER_BUDGET`, `_SLOT_LOST`."""
        capacity = self.submitter.capacity
        fields = new.fields
        tokens = capacity.candidates(str(fields.get("project")), str(fields.get("region")))
        expire_at = tokens.expire_at if tokens is not None else None
        body = fields.get("job_body")
        charge = self.budgets.charge(body if isinstance(body, dict) else {}, fields.get("region"))
        new = new.with_fields(charge=charge.document())
        for token in tokens.ids if tokens is not None else [None]:
            try:
                created = self.submitter.create_claimed(new, slot, token, expire_at)
            except TokenTaken:
                continue
            except Conflict:
                return _SLOT_LOST  # the slot went to someone else: queue as usual
            return _REDELIVERY if created is None else created
        return _OVER_BUDGET

    def _open(self, runtime: QueueRuntime | None) -> bool:
        if runtime is None or runtime.paused:
            return False
        # A queue backing off after a quota refusal: the sweep tries after the backoff.
        return runtime.backoff is None or not runtime.backoff.active(self.store.clock())

    def _direct_slot(self, runtime: QueueRuntime) -> Slot | Literal[False] | None:
        """The slot a new item may take at once (None: unlimited), or False if it must queue."""
        if runtime.max_jobs < 0:
            return None
        if self.store.waiting_items(runtime.name, limit=1):
            return False  # older or higher-priority items go first
        slots = self.store.free_slots(runtime.name, limit=PAGE)
        return random.choice(slots) if slots else False

    def _token(self, item: ItemRecord, deadline: float | None) -> bool:
        capacity = self.submitter.capacity
        region = str(item.region)
        while True:
            if capacity.take_create(str(item.project), region):
                return True
            wait = capacity.until_next_window(region)
            if deadline is None or time.monotonic() + wait > deadline:
                return False
            capacity.wait_for_window(region)

    def _mark_rate_limited(self, item: ItemRecord) -> None:
        """Show why the item waits (one write, only when the reason changes)."""
        if item.reason == WaitReason.RATE_LIMITED or item.state is not ItemState.QUEUED:
            return
        with contextlib.suppress(Conflict):
            self.submitter.recorder.touch(item, {"reason": WaitReason.RATE_LIMITED})

    def admit_cohort(
        self, name: str, max_creates: int = 16, deadline: float | None = None
    ) -> list[str]:
        """Admit the cohort's members' items while its quotas have free units, each time the
        item of the member the fair-share policy picks; returns item ids."""
        assert self.cohorts is not None
        submitted: list[str] = []
        conflicts = moves = 0
        blocked: set[str] = set()  # members without a free slot of their own this call
        while len(submitted) < max_creates and conflicts < MAX_CONFLICTS and moves < MAX_MOVES:
            cohort = self.cohorts.all().get(name)
            if cohort is None:
                break
            pick = self._cohort_pick(cohort, blocked)
            if pick is None:
                break
            item, units = pick
            slot: Slot | None = None
            runtime = self.queues.get(item.queue)
            if runtime is not None and runtime.max_jobs >= 0:
                slots = self.store.free_slots(item.queue, limit=PAGE)
                if not slots:
                    blocked.add(item.queue)  # its own max_jobs: the others may go on
                    continue
                slot = random.choice(slots)
            reservation = self._reservation(item, runtime, cohort)
            if isinstance(reservation, Held):
                if not reservation.reject:
                    blocked.add(item.queue)  # over its budget: the other members may go on
                moves += 1  # bounded: a fail that lost a race to another writer is seen again
                continue
            if not self._token(item, deadline):
                self._mark_rate_limited(item)
                break
            claimed = self.submitter.claim(item, slot, units, reservation)
            if claimed is None:
                conflicts += 1
                self.cohorts.forget()
                self.sleep(random.uniform(0.005, 0.05))
                continue
            outcome = self._submit(claimed, submitted)
            if outcome in ROUND_ENDS:
                # DEFERRED although units were free: the cohort's limit is lowered (or, for a
                # quota it does not declare, the queue backs off); the next pass goes on from
                # there rather than this round trying again on a picture a second old.
                break
            if outcome is SubmitOutcome.MOVED:
                moves += 1
            self.cohorts.forget()
        return submitted

    def _submit(self, claimed: ItemRecord, submitted: list[str]) -> SubmitOutcome:
        """Submit a claimed item, noting it in `submitted` when its job is recorded."""
        outcome = self.submitter.submit(claimed, token_taken=True)
        if outcome is SubmitOutcome.RECORDED:
            submitted.append(claimed.item_id)
        return outcome

    def _cohort_pick(
        self, cohort: CohortState, blocked: set[str]
    ) -> tuple[ItemRecord, list[Slot]] | None:
        """The next item of the cohort to admit and the quota units it takes; None if nothing
        may start now."""
        assert self.cohorts is not None
        now = self.store.clock()
        heads: list[ItemRecord] = []
        for member in cohort.config.members:
            runtime = self.queues.get(member.queue, True)
            if member.queue in blocked or not self._open(runtime) or runtime is None:
                continue
            waiting = self._waiting(runtime, 1)
            if waiting:
                heads.append(waiting[0])
        if not heads:
            return None
        chosen = self.cohorts.decide(cohort, heads, now)
        for item, need in chosen.order:
            units = self._free_units(cohort, need)
            if units is not None:
                return item, units
        return None

    def _waiting(self, runtime: QueueRuntime, limit: int) -> list[ItemRecord]:
        """The queue's next `limit` items in the order admission takes them: its admission
        order, or with `max_jobs_per_submitter` that order filtered and re-ranked by
        submitter (`launchq.model.submitters`), from a deeper page: one count per submitter
        seen there."""
        per = runtime.config.max_jobs_per_submitter
        if per is None:
            return self.store.waiting_items(runtime.name, limit=limit)
        page = self.store.waiting_items(runtime.name, limit=SUBMITTER_PAGE)
        names = {submitter_of(item) for item in page}
        held = {name: self.store.count_submitter_holding(runtime.name, name) for name in names}
        half_life = runtime.config.submitter_half_life_seconds
        usage = usage_now(runtime.submitter_usage, self.store.clock(), half_life)
        return submitter_order(page, per, held, usage)[:limit]

    def _free_units(self, cohort: CohortState, need: dict[str, int]) -> list[Slot] | None:
        """Free unit documents for `need`, spread at random so concurrent admitters of the
        same cohort rarely pick the same ones; None if a quota has too few."""
        units: list[Slot] = []
        for metric, count in need.items():
            free = self.store.free_units(cohort.config.pool_id(metric), limit=count + PAGE)
            if len(free) < count:
                return None
            units += random.sample(free, count)
        return units

    def _admit_own(self, item: ItemRecord) -> list[str]:
        if not item.ready(self.store.clock()):
            return []
        if not self._token(item, None):
            self._mark_rate_limited(item)
            return []
        claimed = self._claim_first([item], [None], self.queues.get(item.queue))
        if claimed is None or isinstance(claimed, Held):
            return []
        outcome = self.submitter.submit(claimed, token_taken=True)
        if outcome is SubmitOutcome.RECORDED:
            return [item.item_id]
        if outcome is SubmitOutcome.MOVED:
            return self.admit(item.queue)  # in its next placement, as the queue's order allows
        return []

    def _claim_first(
        self, waiting: list[ItemRecord], slots: list[Slot | None], runtime: QueueRuntime | None
    ) -> ItemRecord | Held | None:
        """Claim the first of `waiting` that wins a slot; Held if the first that would be
        claimed does not fit in its budget (it is marked, or failed); None if every claim lost."""
        # Spread concurrent claimers over the free slots so they rarely collide.
        random.shuffle(slots)
        for item, slot in zip(waiting, slots * len(waiting), strict=False):
            reservation = self._reservation(item, runtime, None)
            if isinstance(reservation, Held):
                return reservation
            claimed = self.submitter.claim(item, slot, (), reservation)
            if claimed is not None:
                return claimed
        return None

    def _reservation(
        self, item: ItemRecord, runtime: QueueRuntime | None, cohort: CohortState | None
    ) -> Reservation | Held:
        """The item's attempt's charge, reserved in its budgets; or, marked on the item (a
        wait reason) or carried out (failed, with `on_exceed: reject`), why it does not fit."""
        budget = runtime.config.budget if runtime is not None else None
        got = self.budgets.reserve(item, budget, cohort)
        if isinstance(got, Held):
            if got.reject:
                self.submitter.fail_over_budget(item, got.message)
            elif item.reason != budget_reason(got.message):
                with contextlib.suppress(Conflict):
                    self.submitter.recorder.touch(item, {"reason": budget_reason(got.message)})
        return got
