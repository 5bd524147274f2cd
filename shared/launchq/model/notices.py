"""A notification's delivery record (`notices/{key}`): one per item, rule and outcome.

The notify function may get the same event twice and may die at any point; the record is what
makes it tell a person once. Its key is the item, the rule and the outcome, so a redelivered
event (or a second event for the same end) finds it. Claiming it is a `create()` or, for a
record whose sender died or whose receiver failed, a compare-and-swap on its update time, so two
instances never send it at once; it ends SENT, or UNDELIVERED past `MAX_ATTEMPTS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import quote

# Deliveries tried before a notification is recorded UNDELIVERED: Pub/Sub redelivers the event
# after each failure with the subscription's backoff (10 s doubling to 600 s in the Terraform
# module), so five attempts span about five minutes of a receiver being down.
MAX_ATTEMPTS = 5
# How long one sender owns a notification: past it, a redelivery may take over (the sender died
# after claiming). Longer than a send's timeout and its retries.
LEASE_SECONDS = 60.0


class NoticeState(StrEnum):
    """Where a notification is; stored by value."""

    SENDING = "SENDING"  # claimed by a sender until `lease_until`
    RETRYING = "RETRYING"  # the receiver failed; the event's redelivery tries again
    SENT = "SENT"  # the receiver took it: never sent again
    UNDELIVERED = "UNDELIVERED"  # MAX_ATTEMPTS failed; recorded on the item, never sent again

    @property
    def final(self) -> bool:
        return self in (NoticeState.SENT, NoticeState.UNDELIVERED)


def notice_key(queue: str, item_id: str, rule: str, outcome: str) -> str:
    """`{queue}~{item}~{rule}~{outcome}`, the item id percent-encoded as in item documents."""
    return f"{queue}~{quote(item_id, safe='')}~{rule}~{outcome}"


@dataclass(frozen=True)
class Notice:
    """A claimed (or read) notification record, with the version its next write is checked
    against."""

    key: str
    state: NoticeState
    attempts: int
    lease_until: datetime | None
    version: datetime | None
    document: dict[str, Any] = field(default_factory=dict, repr=False)

    @staticmethod
    def from_document(key: str, data: dict[str, Any], version: datetime | None) -> Notice:
        return Notice(
            key=key,
            state=NoticeState(data.get("state", NoticeState.SENDING.value)),
            attempts=int(data.get("attempts") or 0),
            lease_until=data.get("lease_until"),
            version=version,
            document=data,
        )

    def claimable(self, now: datetime) -> bool:
        """Not ended, and nobody's lease runs."""
        if self.state.final:
            return False
        if self.state is NoticeState.SENDING:
            return self.lease_until is None or self.lease_until <= now
        return True


def claim_fields(now: datetime, attempts: int) -> dict[str, Any]:
    """What a claim writes: SENDING under a lease, one more attempt."""
    return {
        "state": NoticeState.SENDING.value,
        "attempts": attempts,
        "lease_until": now + timedelta(seconds=LEASE_SECONDS),
        "updated_at": now,
    }
