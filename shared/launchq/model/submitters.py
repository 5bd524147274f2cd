"""Sharing one queue between the people who publish to it: `max_jobs_per_submitter`.

With the limit set, admission takes a queue's waiting items in this order (`submitter_order`):
items whose submitter already holds `max_jobs_per_submitter` slots are passed over; the rest go by
priority, then by their submitter's *decayed usage* (job-seconds, halved every
`submitter_half_life_seconds`: a colleague who ran nothing today goes before one who ran all
night), then by age. The sweep accrues each submitter's usage onto the queue document, at most
once a second (`accrue_submitters`).

The submitter is what the publisher claims (`submitted_by`, the CLI sends the local user name;
Pub/Sub carries no identity): anyone may claim any name, so this is a fairness aid between
colleagues, never a security boundary (that is a queue per team, with its own topic and IAM).
Items published without a claim share one submitter, `(none)`.

Pure policy: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from launchq.model.fairshare import accrue
from launchq.model.records import ItemRecord

ANONYMOUS = "(none)"


def submitter_of(item: ItemRecord) -> str:
    return item.submitter or ANONYMOUS


def usage_key(submitter: str) -> str:
    """The key of a submitter in the queue document's `submitter_usage` map: prefixed, so no
    claim can be a name Firestore refuses (empty, or `__reserved__`)."""
    return f"s:{submitter}"


def submitter_order(
    items: Sequence[ItemRecord],
    limit: int,
    held: Mapping[str, int],
    usage: Mapping[str, float],
) -> list[ItemRecord]:
    """`items` (one queue's, in its admission order) as admission takes them under the limit."""
    allowed = [item for item in items if held.get(submitter_of(item), 0) < limit]
    position = {id(item): index for index, item in enumerate(items)}
    return sorted(
        allowed,
        key=lambda item: (
            item.priority,
            usage.get(submitter_of(item), 0.0),
            position[id(item)],
        ),
    )


def accrue_submitters(
    stored: Mapping[str, Mapping[str, object]],
    held: Mapping[str, int],
    now: datetime,
    half_life: float,
) -> dict[str, dict[str, object]]:
    """The queue's new `submitter_usage` map: every submitter's usage decayed to `now`, plus
    the slots it held since its last accrual (taken as held all along: passes are seconds
    apart). Submitters whose usage decayed below a second of use and hold nothing are dropped,
    so the map stays as small as the set of recent submitters."""
    out: dict[str, dict[str, object]] = {}
    names = {key.removeprefix("s:") for key in stored} | set(held)
    for name in names:
        value, seconds = _since(stored.get(usage_key(name)) or {}, now)
        value = accrue(value, held.get(name, 0), seconds, half_life)
        if value < 1.0 and not held.get(name):
            continue
        out[usage_key(name)] = {"value": value, "at": now, "held": held.get(name, 0)}
    return out


def usage_now(
    stored: Mapping[str, Mapping[str, object]], now: datetime, half_life: float
) -> dict[str, float]:
    """Each submitter's usage decayed to `now`, from the stored map."""
    out: dict[str, float] = {}
    for key, entry in stored.items():
        value, seconds = _since(entry, now)
        out[key.removeprefix("s:")] = accrue(value, 0, seconds, half_life)
    return out


def _since(entry: Mapping[str, object], now: datetime) -> tuple[float, float]:
    """A stored usage entry: its value, and the seconds from its `at` to `now`."""
    value, at = entry.get("value"), entry.get("at")
    seconds = max((now - at).total_seconds(), 0.0) if isinstance(at, datetime) else 0.0
    return (float(value) if isinstance(value, int | float) else 0.0), seconds
