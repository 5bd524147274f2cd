"""Capacity: Vertex's limits as admission sees them: resource quotas and the creation budget.

Two limits stand between a free slot and a created job, and neither is an error of the item:

- **Resource quota** (`custom_model_training_nvidia_a100_gpus` …): Vertex refuses a create with
  429 RESOURCE_EXHAUSTED while the project's GPUs are in use. That clears when jobs end, minutes
  to hours later, so retrying the item in-process or by redelivery only burns creates and ends in
  the dead-letter topic. Instead the item goes back to QUEUED with a visible reason, its slot is
  released, and the *queue* backs off (`QueueBackoff`, exponential per refusal, capped a few
  minutes, reset by the next create that succeeds). Admission does not try a backed-off queue;
  the sweep tries again after the backoff.
- **Creation rate** (Vertex allows 60 job-creation requests per minute per project and region):
  every create first takes a token of a budget shared by every dispatcher and sweep instance.
  The budget is a set of per-window token documents, `budgets/{project}~{region}~{window}~{k}`,
  each created once with `create()` (which fails if it exists): whoever creates token k of the
  current window may create one job. No document is ever written twice, so the budget stays
  within Firestore's sustained write rate of about one write per second per document, whatever
  the number of instances (a shared counter would take every create on one document). At the
  default rate a window is one second holding one token. Window math is `window_at`.

Everything in this module but `Capacity` is pure policy and unit-tested.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from launchq.cohorts import CohortSource
    from launchq.queues import QueueSource
    from launchq.store import Store

from launchq.model.reasons import quota_reason
from launchq.model.records import QueueBackoff

__all__ = ["QueueBackoff", "quota_reason"]

# Token documents outlive their window by this much, then a Firestore TTL policy deletes them.
TOKEN_TTL = timedelta(hours=1)


def backoff_seconds(refusals: int, initial: float, cap: float) -> float:
    """How long a queue waits after its `refusals`-th quota refusal in a row: doubling, capped."""
    if refusals <= 0:
        return 0.0
    return float(min(initial * 2 ** (refusals - 1), cap))


def next_backoff(
    current: QueueBackoff | None,
    now: datetime,
    metric: str,
    region: str,
    initial: float,
    cap: float,
) -> QueueBackoff:
    """The backoff after one more refusal.

    A refusal while the queue is already backing off (another instance's create that was in
    flight) does not lengthen it: only refusals of creates tried *after* a backoff count.
    """
    if current is not None and current.active(now):
        return current
    refusals = (current.refusals if current is not None else 0) + 1
    until = now + timedelta(seconds=backoff_seconds(refusals, initial, cap))
    return QueueBackoff(until, refusals, metric, region)


@dataclass(frozen=True)
class Window:
    """One budget window: `tokens` creates allowed from epoch second `start` for `seconds`."""

    start: int
    seconds: int
    tokens: int

    @property
    def end(self) -> int:
        return self.start + self.seconds

    def token_ids(self, key: str, first: int = 0, count: int | None = None) -> list[str]:
        """Ids of `count` tokens (all by default) from token `first` on, wrapping around."""
        count = self.tokens if count is None else min(count, self.tokens)
        return [f"{key}~{self.start}~{(first + k) % self.tokens}" for k in range(count)]


def window_at(epoch_seconds: float, rate_per_minute: float) -> Window | None:
    """The budget window holding `epoch_seconds` for a rate; None when there is no budget.

    The window is the shortest whole number of seconds that holds a whole number of tokens
    (60/min: 1 s and 1 token; 90/min: 2 s and 3; 30/min: 2 s and 1; 7/min: 60 s and 7), so
    tokens are spread over the minute instead of all being free at its start. Windows are
    aligned to the epoch, so every instance computes the same ones from its own clock.
    """
    rate = round(rate_per_minute)
    if rate <= 0:
        return None
    common = math.gcd(rate, 60)
    seconds, tokens = 60 // common, rate // common
    start = int(epoch_seconds) // seconds * seconds
    return Window(start, seconds, tokens)


def budget_key(project: str, region: str) -> str:
    return f"{project}~{region}"


MAX_TRIES = 8  # token documents one take tries before it counts the window as spent


@dataclass(frozen=True)
class Tokens:
    """Token documents to try (`budgets/{id}`), and when they may be deleted."""

    ids: list[str]
    expire_at: datetime


class Capacity:
    """The shared creation budget and the queues' quota backoffs, over the store."""

    def __init__(
        self,
        store: Store,
        queues: QueueSource,
        rate_for: Callable[[str], float],
        backoff_initial_seconds: float = 15.0,
        backoff_max_seconds: float = 240.0,
        cohorts: CohortSource | None = None,
    ) -> None:
        self.cohorts = cohorts
        self.store = store
        self.queues = queues
        self.rate_for = rate_for
        self.backoff_initial = backoff_initial_seconds
        self.backoff_max = backoff_max_seconds

    def candidates(self, project: str, region: str) -> Tokens | None:
        """Token documents a create may take now, in the order to try them; None: no budget.

        At most `MAX_TRIES`, from a random start, so concurrent takers rarely collide and a
        nearly spent window of a high rate costs a few failed creates, not thousands (under
        such contention a window may grant a little less than its tokens, never more).
        """
        now = self.store.clock()
        window = window_at(now.timestamp(), self.rate_for(region))
        if window is None:
            return None
        # Only the ids tried are built: a high rate's window holds thousands of tokens.
        first = random.randrange(window.tokens)
        ids = window.token_ids(budget_key(project, region), first, MAX_TRIES)
        return Tokens(ids, datetime.fromtimestamp(window.end, UTC) + TOKEN_TTL)

    def take_create(self, project: str, region: str) -> bool:
        """Take one create of the (project, region) budget; False when the window is spent."""
        tokens = self.candidates(project, region)
        return tokens is None or self.store.take_token(tokens.ids, tokens.expire_at)

    def until_next_window(self, region: str) -> float:
        """Seconds until the region's next budget window opens (0 without a budget)."""
        now = self.store.clock().timestamp()
        window = window_at(now, self.rate_for(region))
        return 0.0 if window is None else max(window.end - now, 0.0)

    def wait_for_window(self, region: str) -> None:
        """Sleep until the next window opens, plus a little jitter so waiters do not all
        create the same token at once. A real sleep: what it waits for is the wall clock."""
        threading.Event().wait(self.until_next_window(region) + random.uniform(0.0, 0.02))

    def refused(
        self, queue: str, metric: str, region: str, project: str = "", own_units: int = 0
    ) -> QueueBackoff | None:
        """Vertex refused a create of `queue` for a resource quota: back the queue off; or, for
        a quota its cohort declares, lower that quota's limit for a while instead
        (`launchq.cohorts.CohortSource.refused`; the queue goes on admitting)."""
        if self.cohorts is not None and self.cohorts.refused(
            queue, metric, region, project, own_units
        ):
            return None
        now = self.store.clock()

        def bump(current: QueueBackoff | None) -> QueueBackoff:
            return next_backoff(
                current, now, metric, region, self.backoff_initial, self.backoff_max
            )

        return self.store.update_backoff(queue, bump)

    def backoff(self, queue: str, fresh: bool = True) -> QueueBackoff | None:
        """The queue's quota backoff if it is still running (from the cached queue document)."""
        runtime = self.queues.get(queue, fresh=fresh)
        backoff = runtime.backoff if runtime is not None else None
        return backoff if backoff is not None and backoff.active(self.store.clock()) else None

    def created(self, queue: str) -> None:
        """A create of `queue` succeeded: its quota backoff (if it had one) is over.

        Read from the queue cache, so the common case (no backoff) costs no request.
        """
        runtime = self.queues.get(queue)
        if runtime is not None and runtime.backoff is not None:
            self.store.clear_backoff(queue)
            self.queues.forget(queue)
