"""What a waiting item waits for *now*, derived from its queue's current state.

An item's stored `reason` says why it waited when it was last written: `queue paused` when it
was recorded into a paused queue, `waiting for a free slot` otherwise. Nothing rewrites it when
the queue changes (a pause would cost one write per waiting item), so a display that shows it
goes stale: items of a paused queue read `waiting for a free slot` while every slot is free, and
after a resume they read `queue paused` until they start, even while the queue backs off on a
Vertex quota. Every display (`launchq queue pending`, `launchq status`/`ls`, the dashboard)
therefore asks `current_wait`, the one rule, with the queue as read now (`QueueState`).

The rule, first match wins:

1. BUILDING: its image is being built from its source (HELD: its sweep's max_parallel).
2. the queue is paused: nothing starts until it is resumed.
3. the item's own retry backoff (`not_before`) is running: it waits for that, whatever else.
4. the queue backs off after a Vertex quota refusal: until the backoff ends.
5. every slot is taken: a free slot.
6. its submitter holds `max_jobs_per_submitter` of the queue's slots: one of them ending.
7. admission last held it back for its queue's or cohort's monthly budget (`launchq.budgets`):
   the stored reason, which says what is left (rewritten when the item is next considered).
8. its cohort holds the queue's next item back (`launchq.cohorts`): every accelerator of the
   quota is in use, another member goes first by its share, or the queue may borrow no more.
9. a slot is free and it was last held back by the creation budget: the next budget window.
10. a slot is free: the next dispatch or sweep admits it.

Pure: no I/O, unit-tested for each transition (pause, resume, backoff starting and expiring).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from launchq.model.reasons import WaitReason, quota_reason
from launchq.model.records import ItemRecord, QueueBackoff
from launchq.model.states import ItemState
from launchq.model.submitters import submitter_of

WAITING_STATES = frozenset({ItemState.QUEUED, ItemState.BUILDING, ItemState.HELD})


@dataclass(frozen=True)
class QueueState:
    """What of a queue decides why its items wait, as read now."""

    paused: bool
    max_jobs: int  # -1: unlimited
    running: int  # items holding a slot
    backoff: QueueBackoff | None = None
    # Why the queue's cohort holds its next item back now, and the sentence that says so.
    cohort: tuple[WaitReason, str] | None = None
    # `max_jobs_per_submitter`, and the slots each submitter holds (read on demand).
    submitter_limit: int | None = None
    held_by_submitter: Mapping[str, int] = field(default_factory=dict)

    @property
    def full(self) -> bool:
        return self.max_jobs >= 0 and self.running >= self.max_jobs


@dataclass(frozen=True)
class Waiting:
    """Why an item waits now: the code, what a person reads, and until when if that is known."""

    reason: WaitReason
    message: str
    until: datetime | None = None


def current_wait(item: ItemRecord, queue: QueueState | None, now: datetime) -> Waiting | None:
    """Why `item` waits now, given its queue's current state; None if it is not waiting.

    `queue` None (the queue was deleted, or not read) leaves only what the item itself says.
    """
    if item.state is ItemState.BUILDING:
        return Waiting(WaitReason.BUILDING, WaitReason.BUILDING.text)
    if item.state is ItemState.HELD:
        return Waiting(WaitReason.MAX_PARALLEL, WaitReason.MAX_PARALLEL.text)
    if item.state is not ItemState.QUEUED:
        return None
    stored = WaitReason.of(item.reason)
    if queue is not None and queue.paused:
        return Waiting(WaitReason.PAUSED, WaitReason.PAUSED.value)
    if item.not_before is not None and item.not_before > now:
        message = item.reason if stored is WaitReason.RETRY and item.reason else "retrying"
        return Waiting(WaitReason.RETRY, message, item.not_before)
    if queue is None:
        return _as_stored(item.reason, stored)
    backoff = queue.backoff
    if backoff is not None and backoff.active(now):
        return Waiting(
            WaitReason.QUOTA, quota_reason(backoff.metric, backoff.region), backoff.until
        )
    if queue.full:
        return Waiting(WaitReason.FREE_SLOT, WaitReason.FREE_SLOT.value)
    if queue.submitter_limit is not None:
        who = submitter_of(item)
        held = queue.held_by_submitter.get(who, 0)
        if held >= queue.submitter_limit:
            message = (
                f"submitter {who} holds {held} jobs (max_jobs_per_submitter "
                f"{queue.submitter_limit}): it starts when one ends"
            )
            return Waiting(WaitReason.SUBMITTER_LIMIT, message)
    if stored is WaitReason.BUDGET and item.reason:
        return Waiting(WaitReason.BUDGET, item.reason)
    if queue.cohort is not None:
        return Waiting(*queue.cohort)
    if stored is WaitReason.RATE_LIMITED:
        return Waiting(WaitReason.RATE_LIMITED, WaitReason.RATE_LIMITED.value)
    return Waiting(WaitReason.ADMITTING, WaitReason.ADMITTING.text)


def _as_stored(reason: str | None, stored: WaitReason | None) -> Waiting:
    """Without the queue: the stored reason as it is (a slot, if none was recorded)."""
    if stored is None or reason is None:
        return Waiting(WaitReason.FREE_SLOT, reason or WaitReason.FREE_SLOT.value)
    particular = (WaitReason.QUOTA, WaitReason.RETRY, WaitReason.BUDGET)
    message = reason if stored in particular else stored.value
    return Waiting(stored, message)
