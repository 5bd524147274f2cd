"""The typed records the store returns: an item, its claim, its job, a slot.

The store converts Firestore documents to and from these in one place (`launchq.store`); every
other module reads attributes, never document keys. A record carries its `version` (the
document's update time when read): the store's compare-and-swap writes only if the document is
still at that version, so a record is also the precondition of the next write.

`Changes` is what a state change may set besides the state itself: a TypedDict, so a misspelt
field is a type error rather than a silently stored key. `NewItem` (and `Admit`, when it is
recorded already admitted) is a new item on its way from the dispatcher through admission,
submission and the recorder to the store: one value instead of the same arguments at each step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypedDict
from urllib.parse import quote

from launchq.model.reasons import quota_reason
from launchq.model.states import ItemState


def item_doc_id(queue: str, item_id: str) -> str:
    """Doc ids cannot contain '/', so the item id is percent-encoded; `~` separates the queue."""
    return f"{queue}~{quote(item_id, safe='')}"


@dataclass(frozen=True)
class Claim:
    """One submitter's lease on an item in SUBMITTING.

    It must outlive the longest invocation that can hold it (see `Settings`): until it expires,
    nobody else may create a job for the item; after, a repair looks the job up first.
    """

    id: str
    until: datetime

    def expired(self, now: datetime) -> bool:
        return self.until <= now

    def ended_at(self, now: datetime) -> Claim:
        """The same claim, over now: the next delivery may repair at once."""
        return Claim(self.id, now)

    @staticmethod
    def new(now: datetime, lease_seconds: float, claim_id: str) -> Claim:
        return Claim(claim_id, now + timedelta(seconds=lease_seconds))


@dataclass(frozen=True)
class AttemptJob:
    """The Vertex CustomJob of the current attempt, as launchq last saw it."""

    name: str
    vertex_state: str | None = None
    create_time: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    console_url: str | None = None
    logs_url: str | None = None

    @property
    def job_id(self) -> str:
        return self.name.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Slot:
    """One unit of a queue's `max_jobs` (`queues/{queue}/slots/{id}`), or with `pool`, one
    accelerator of a cohort's declared quota (`pools/{pool}/units/{id}`, `launchq.cohorts`);
    `holder` is the doc id of the item holding it."""

    queue: str
    id: str
    holder: str | None
    retire: bool
    version: datetime | None
    pool: str | None = None

    @property
    def ref(self) -> str:
        """How an item names a unit it holds (`units`): `{pool}/{id}`."""
        return f"{self.pool}/{self.id}"


@dataclass(frozen=True)
class ItemRecord:
    """A queue item as stored. Projected reads leave unread fields at their defaults."""

    queue: str
    item_id: str
    state: ItemState
    version: datetime | None = None
    attempt: int = 0
    claim: Claim | None = None
    job: AttemptJob | None = None
    error: Mapping[str, Any] | None = None
    slot: str | None = None
    priority: int = 0
    payload_hash: str | None = None
    job_body: Mapping[str, Any] | None = None
    parent: str | None = None
    project: str | None = None
    region: str | None = None
    reason: str | None = None
    not_before: datetime | None = None
    needs_lookup: bool = False
    cancel_requested: bool = False
    cancel_reason: str | None = None
    cancel_sent_at: datetime | None = None
    enqueued_at: datetime | None = None
    attempts: tuple[Mapping[str, Any], ...] = ()
    # The capacity ladder (launchq.spec.placements): the placement this attempt runs in, every
    # placement's job as rendered at dispatch (None/() for a queue without placements), and the
    # placement of every failure that moved the item so far, oldest first.
    placement: int | None = None
    placements: tuple[Mapping[str, Any], ...] = ()
    failed_placements: tuple[int, ...] = ()
    # Accelerators of a cohort's quota the item holds while it holds its slot ("{pool}/{unit}",
    # launchq.cohorts): taken in the claim's write, released in the write that ends the attempt.
    units: tuple[str, ...] = ()
    # Who the publisher said it is (`submitted_by.value`): unverified, a fairness aid only.
    submitter: str | None = None
    # A sweep or array (launchq.spec.family): a child names its parent (`sweep_of`); the parent
    # keeps what it expands into (`family`: kind, count, max_parallel ...) and how many of its
    # children are recorded so far (`expanded`, written with them).
    sweep_of: str | None = None
    family: Mapping[str, Any] | None = None
    expanded: int = 0
    # The document as stored, for display only (CLI `status`, events): logic reads the fields.
    stored: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def doc_id(self) -> str:
        return item_doc_id(self.queue, self.item_id)

    def lease_expired(self, now: datetime) -> bool:
        """True when no live submitter owns the item (no claim, or its lease is over)."""
        return self.claim is None or self.claim.expired(now)

    def ready(self, now: datetime) -> bool:
        """QUEUED and not backing off after a failed attempt."""
        return self.state is ItemState.QUEUED and (
            self.not_before is None or self.not_before <= now
        )


def admission_order(items: list[ItemRecord], now: datetime) -> list[ItemRecord]:
    """Waiting items in the order a queue admits them: priority rank, then enqueue time.

    Items backing off (`not_before` in the future) are left out. The store's query already
    returns this order (one composite index); this is the policy stated once, and tested.
    """
    far = datetime.max.replace(tzinfo=now.tzinfo)
    ready = [item for item in items if item.ready(now)]
    return sorted(ready, key=lambda item: (item.priority, item.enqueued_at or far))


@dataclass(frozen=True)
class QueueBackoff:
    """A queue's wait after Vertex refused a create for a resource quota (queue doc field)."""

    until: datetime
    refusals: int
    metric: str
    region: str

    @property
    def reason(self) -> str:
        return quota_reason(self.metric, self.region)

    def active(self, now: datetime) -> bool:
        return now < self.until


@dataclass(frozen=True)
class NewItem:
    """An item to record: where, its stored fields (already made storable), its first state,
    and the cause of its first history entry."""

    queue: str
    item_id: str
    fields: Mapping[str, Any]
    cause: str
    state: ItemState = ItemState.QUEUED

    def with_fields(self, **fields: Any) -> NewItem:
        return replace(self, fields={**self.fields, **fields})


@dataclass(frozen=True)
class Admit:
    """A new item recorded already admitted, QUEUED -> SUBMITTING in its first write: the claim
    (the submitter's lease), the slot taken (None on an unlimited queue) and the creation-budget
    token created in the same atomic batch, and the cause of the claim's history entry."""

    claim: Claim
    slot: Slot | None
    cause: str
    token: str | None = None
    token_expire_at: datetime | None = None


class Changes(TypedDict, total=False):
    """Fields a state change (or a touch) may set, besides `state` and the history entry."""

    claim: Claim | None
    attempt: int
    job: AttemptJob
    error: Mapping[str, Any] | None
    attempts: list[Mapping[str, Any]]
    needs_lookup: bool
    reason: str | None
    not_before: datetime | None
    cancel_requested: bool
    cancel_reason: str | None
    cancel_sent_at: datetime | None
    # A source item whose image is built (launchq.builds): the build's state, and the job
    # body pinned to the built digest once it exists.
    build: Mapping[str, Any]
    job_body: Mapping[str, Any]
    body_hash: str
    # A move to another placement: where the next attempt runs, all in the retry's write.
    placement: int
    placement_name: str
    placements: list[Mapping[str, Any]]
    failed_placements: list[int]
    placement_refusals: list[Mapping[str, str]]
    region: str
    parent: str
    project: str
    units: list[str]
    # A sweep's parent when it ends: how many children ended how (launchq.expansion).
    children: Mapping[str, int]
    # Notifications that could not be delivered, per rule (launchq.notify); and that the sweep
    # published the item's "waited too long" notice.
    notify: Mapping[str, Any]
    waiting_noticed: bool
