"""Fair sharing of a cohort's quota: who gets the next free accelerators, and why the others wait.

The rule (docs/cohorts.md works examples through it), for one quota (a pool of `limit`
accelerators) shared by the cohort's members, each with a weight (`share`):

1. A member's *nominal share* is `limit * share / sum(shares)` accelerators.
2. A member may take accelerators up to its nominal share plus its `borrowing_limit` (none: any
   capacity the others leave idle).
3. Among the members that may take, one holding less than its nominal share goes before one
   holding its share or more; within each group, the lowest *decayed usage per weight* goes
   first: accelerator-seconds held, halved every `half_life` seconds, divided by the share. A
   team that just used a lot waits behind one that did not; a week-old burst is forgotten.
   If the first needs more than is free and is below its share, the free accelerators are kept
   for it until enough are free; otherwise the next that fits goes.
4. Running jobs are never preempted: a member above its share gives back what it borrowed as its
   jobs end (docs/cohorts.md says why, and what preemption would need).

Pure policy: no I/O. `launchq.cohorts` reads the standings and applies it; the unit tests and a
property test (random arrivals and run times over many seeds) check it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from launchq.model.reasons import WaitReason

_EPSILON = 1e-9


def accrue(usage: float, held: float, seconds: float, half_life: float) -> float:
    """Decayed usage after `seconds` during which `held` accelerators were held.

    The old usage decays by `2**(-seconds/half_life)`; the new use is integrated with the same
    decay (`held * half_life / ln 2 * (1 - decay)`), so the result does not depend on how often
    it is accrued (one call of 60 s equals sixty of 1 s), which matters because the sweep's
    passes are irregular.
    """
    if seconds <= 0:
        return usage
    decay: float = 2.0 ** (-seconds / half_life)
    return usage * decay + held * half_life / math.log(2) * (1.0 - decay)


def decayed(usage: float, seconds: float, half_life: float) -> float:
    """Usage `seconds` later with nothing held meanwhile."""
    return accrue(usage, 0.0, seconds, half_life)


@dataclass(frozen=True)
class Standing:
    """One member's position in one quota, as read now."""

    queue: str
    weight: float
    nominal: float  # accelerators of this quota, possibly fractional
    borrowing_limit: int | None
    held: int
    usage: float  # decayed accelerator-seconds over all of the cohort's quotas

    @property
    def below_share(self) -> bool:
        return self.held < self.nominal - _EPSILON

    def may_take(self, need: int) -> bool:
        if self.borrowing_limit is None:
            return True
        return self.held + need <= self.nominal + self.borrowing_limit + _EPSILON

    def order_key(self) -> tuple[int, float, str]:
        return (0 if self.below_share else 1, self.usage / self.weight, self.queue)


@dataclass(frozen=True)
class Candidate:
    """A member's next item: how many accelerators of the quota it needs."""

    standing: Standing
    need: int


@dataclass(frozen=True)
class Decision:
    """Who takes the free accelerators now (`admit`, or None), and why each other candidate
    waits (by queue)."""

    admit: Candidate | None
    waiting: dict[str, WaitReason]
    first: str | None = None  # the queue first in order (admitted, or kept free units for)


def decide(candidates: Sequence[Candidate], free: int) -> Decision:
    """The candidate to admit into `free` accelerators, and why every other one waits.

    When the first in order needs more than is free, what is free is kept for it if its member
    is below its share (a 4-GPU job of a team under its share is not starved by 1-GPU jobs of
    a team above it: without this, a property test saw a 2:1 split come out 60:40); a member
    above its share keeps nothing back, and the next candidate that fits goes instead.
    """
    waiting: dict[str, WaitReason] = {}
    eligible: list[Candidate] = []
    for candidate in candidates:
        if candidate.standing.may_take(candidate.need):
            eligible.append(candidate)
        else:
            waiting[candidate.standing.queue] = WaitReason.BORROWING
    eligible.sort(key=lambda c: c.standing.order_key())
    chosen: Candidate | None = None
    for candidate in eligible:
        if chosen is None and candidate.need <= free:
            chosen = candidate
        elif chosen is None and candidate.standing.below_share:
            waiting[candidate.standing.queue] = WaitReason.QUOTA_FULL
            break  # the free accelerators are kept for it
        elif chosen is None:
            waiting[candidate.standing.queue] = WaitReason.QUOTA_FULL
        else:
            waiting[candidate.standing.queue] = WaitReason.SHARE
    for candidate in eligible:
        waiting.setdefault(candidate.standing.queue, WaitReason.SHARE)
    if chosen is not None:
        waiting.pop(chosen.standing.queue, None)
    return Decision(chosen, waiting, eligible[0].standing.queue if eligible else None)


def nominal_share(limit: int, weight: float, total_weight: float) -> float:
    return 0.0 if total_weight <= 0 else limit * weight / total_weight
