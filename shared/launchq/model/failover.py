"""Where an item's next attempt runs: the failover policy over a queue's placements.

Pure policy, no I/O, like `launchq.model.failures`: the sweep (a failed attempt) and the
submitter (a create refused for quota) call `choose` with what the item has recorded, and write
the move in the same compare-and-swap as the retry itself, so a move is one write and can never
yield two jobs (the new placement's create is an ordinary, claimed, exactly-once submission).

The classes that move an item are the placement's fault, never the job's (SkyPilot's managed
jobs move on the same ones): a stockout or FLEX_START expiry (`no_capacity`), a quota refusal,
a SPOT preemption, a start timeout. A user-code failure, an infrastructure error or a cancel stay
where they are.

`eager_next` (SkyPilot's EAGER_NEXT_REGION, the default): move at once to the placement that
has failed least recently, in the queue's order among equals, so the one that just failed is
tried last. `same_first` (SkyPilot's FAILOVER): retry the same placement `same_tries` times in a
row, then move as `eager_next` does.

Backoff is per placement: moving to a placement that has not failed this item yet starts at once;
going back to one that has failed waits `backoff_initial * 2^(failures there - 1)` (capped), so a
quota refusal in one region never holds back another.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from launchq.model.reasons import FailureClass, every_placement_reason
from launchq.model.records import Changes, ItemRecord
from launchq.spec.config import RetryPolicy
from launchq.spec.placements import Failover

MOVING = frozenset(
    {
        FailureClass.NO_CAPACITY,
        FailureClass.QUOTA,
        FailureClass.PREEMPTED,
        FailureClass.START_TIMEOUT,
    }
)


@dataclass(frozen=True)
class Move:
    """The next attempt's placement, and how long to wait before it."""

    placement: int
    delay: float
    moved: bool


def choose(
    policy: Failover,
    retry: RetryPolicy,
    count: int,
    current: int,
    failed: Sequence[int],
    klass: FailureClass,
) -> Move:
    """Where the next attempt goes after `klass` in placement `current`.

    `failed`: the placement of every failure that moves items so far (failed attempts and
    creates refused for quota; the item's `failed_placements`), oldest first, the current one
    last.
    """
    if count <= 1 or klass not in MOVING:
        return Move(current, _backoff(retry, _streak(failed, current)), moved=False)
    if policy.policy == "same_first" and _streak(failed, current) < policy.same_tries:
        return Move(current, _backoff(retry, _streak(failed, current)), moved=False)
    last_failure = {index: position for position, index in enumerate(failed)}
    # Never failed first (in the queue's order), then the least recently failed; the placement
    # that just failed is the most recent, so it comes last.
    order = sorted(range(count), key=lambda index: (last_failure.get(index, -1), index))
    target = order[0]
    if target == current:  # only one placement has ever been tried: that is all there is
        return Move(current, _backoff(retry, _streak(failed, current)), moved=False)
    return Move(target, _backoff(retry, failed.count(target)), moved=True)


def _streak(failed: Sequence[int], current: int) -> int:
    """How many of the latest failures in a row were in `current`."""
    run = 0
    for index in reversed(failed):
        if index != current:
            break
        run += 1
    return max(run, 1)


def _backoff(retry: RetryPolicy, failures: int) -> float:
    if failures <= 0:
        return 0.0
    delay = retry.backoff_initial_seconds * 2 ** (failures - 1)
    return float(min(delay, retry.backoff_max_seconds))


def placement_of(item: ItemRecord, index: int) -> Mapping[str, Any]:
    """The stored job of placement `index` (the item must be a full read)."""
    for placed in item.placements:
        if int(placed.get("index", -1)) == index:
            return placed
    raise LookupError(f"item {item.item_id} has no placement {index}")


def move_changes(item: ItemRecord, move: Move, failed: Sequence[int], why: str) -> Changes:
    """The fields a retry writes with its state change: where the next attempt runs (every
    field the submitter reads: body, region, parent, project), the failures so far, and why
    each placement refused the item (`why`: the current one's). When every placement has
    refused it, `reason` says so, with each placement's reason (what displays show while its
    backoff runs)."""
    # A list, not a map: Firestore does not keep a map's key order, and this is an order.
    name = placement_label(item, item.placement)
    earlier = item.stored.get("placement_refusals") or []
    refusals = [r for r in earlier if isinstance(r, Mapping) and r.get("placement") != name]
    refusals.append({"placement": name, "why": why})
    changes: Changes = {"failed_placements": list(failed), "placement_refusals": refusals}
    if len(refusals) >= len(item.placements):
        changes["reason"] = every_placement_reason(
            {str(r["placement"]): str(r["why"]) for r in refusals}
        )
    if move.moved:
        placed = placement_of(item, move.placement)
        changes["placement"] = move.placement
        changes["placement_name"] = placement_label(item, move.placement)
        changes["job_body"] = placed["body"]
        changes["body_hash"] = str(placed.get("body_hash") or "")
        changes["region"] = str(placed["region"])
        changes["parent"] = str(placed["parent"])
        changes["project"] = str(placed["project"])
    return changes


def placement_label(item: ItemRecord, index: int | None) -> str:
    """A placement's name for history and logs ("" when the item has no placements)."""
    if index is None or not item.placements:
        return ""
    try:
        return str(placement_of(item, index).get("name") or f"#{index}")
    except LookupError:
        return f"#{index}"
