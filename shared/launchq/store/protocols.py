"""What launchq keeps, as typed protocols: one per kind of state, and `Store`, all of them.

The orchestration units type their store as one of these; `launchq.store.firestore` implements
them on Firestore and `launchq.store.memory` in memory (the unit tests). The semantics both
honour, and `tests/integration/test_store_contract.py` checks on both:

- every item state change is a compare-and-swap on the `version` the record was read at, and
  raises `Conflict` when someone wrote the item (or the slot it takes) meanwhile;
- `create_item` returns None for an item that exists, raises `TokenTaken` for a creation token
  that exists, and `Conflict` for a slot taken meanwhile, writing nothing in each case;
- a slot is held exactly while its holder is in a slot-holding state (taken and released in the
  same atomic write as the state change);
- queries return admission order (`waiting_items`) or newest first with document id ties
  (`recent_items`), and honour their limits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from launchq.model.budgets import Charge, Ledger
from launchq.model.notices import Notice
from launchq.model.records import Changes, Claim, ItemRecord, NewItem, QueueBackoff, Slot
from launchq.model.states import ItemState
from launchq.store.base import Clock, FieldKey, StoredDocument, Transition


class ItemStore(Protocol):
    """`items/{queue}~{item_id}`: one document per queue item."""

    clock: Clock

    def get_item(self, queue: str, item_id: str) -> ItemRecord | None: ...

    def item_document(self, queue: str, item_id: str) -> dict[str, Any] | None: ...

    def create_item(
        self,
        queue: str,
        item_id: str,
        state: ItemState,
        fields: Mapping[str, Any],
        cause: str,
        *,
        claim: Claim | None = None,
        take_slot: Slot | None = None,
        claim_cause: str = "",
        token: str | None = None,
        token_expire_at: datetime | None = None,
    ) -> ItemRecord | None: ...

    def transition(
        self,
        item: ItemRecord,
        change: Transition,
        changes: Changes | None = None,
        *,
        take_slot: Slot | None = None,
        release_slot: bool = False,
        take_units: Sequence[Slot] = (),
        charge: Charge | None = None,
        ledgers: Sequence[Ledger] = (),
    ) -> ItemRecord: ...

    def transition_many(
        self, items: Sequence[ItemRecord], change: Transition, changes: Changes | None = None
    ) -> list[ItemRecord]: ...

    def touch(self, item: ItemRecord, changes: Changes) -> ItemRecord: ...

    def waiting_items(self, queue: str, limit: int) -> list[ItemRecord]: ...

    def items_in_states(
        self,
        states: Iterable[ItemState],
        queue: str | None = None,
        fields: Sequence[str] | None = None,
    ) -> Iterator[ItemRecord]: ...

    def recent_items(
        self,
        queue: str | None,
        states: Sequence[ItemState],
        limit: int,
        after: tuple[datetime, str] | None = None,
    ) -> list[ItemRecord]: ...

    def items_with_id(self, item_id: str, limit: int = 10) -> list[ItemRecord]: ...

    def items_enqueued_since(
        self, queue: str, since: datetime, fields: Sequence[str]
    ) -> list[dict[str, Any]]: ...

    def count_waiting(self, queue: str) -> int: ...

    def count_holding_slots(self, queue: str) -> int: ...

    def oldest_waiting(self, queue: str) -> datetime | None: ...

    def count_submitter_holding(self, queue: str, submitter: str) -> int: ...

    def children_of(
        self,
        queue: str,
        parent: str,
        states: Sequence[ItemState] = (),
        limit: int = 500,
        after: str | None = None,
        fields: Sequence[str] | None = None,
    ) -> list[ItemRecord]: ...

    def count_children(self, queue: str, parent: str, states: Sequence[ItemState]) -> int: ...

    def expand(
        self, parent: ItemRecord, children: Sequence[NewItem], expanded: int
    ) -> ItemRecord: ...


class QueueStore(Protocol):
    """`queues/{queue}` and its admission slots `queues/{queue}/slots/{n}`."""

    def get_queue(self, queue: str) -> dict[str, Any] | None: ...

    def list_queues(self) -> list[dict[str, Any]]: ...

    def put_queue(self, name: str, document: dict[str, Any], max_jobs: int) -> None: ...

    def set_paused(self, queue: str, paused: bool) -> None: ...

    def set_submitter_usage(self, queue: str, usage: Mapping[str, Any]) -> None: ...

    def free_slots(self, queue: str, limit: int) -> list[Slot]: ...

    def held_slots(self, queue: str) -> list[Slot]: ...

    def free_leaked_slot(self, slot: Slot) -> bool: ...

    def slot_holders(self, queue: str) -> dict[str, str | None]: ...


class CapacityStore(Protocol):
    """The creation budget's tokens (`budgets/{token}`) and a queue's quota backoff."""

    def take_token(self, token_ids: Sequence[str], expire_at: datetime) -> bool: ...

    def update_backoff(
        self, queue: str, change: Callable[[QueueBackoff | None], QueueBackoff]
    ) -> QueueBackoff | None: ...

    def clear_backoff(self, queue: str) -> None: ...


class CohortStore(Protocol):
    """`cohorts/{name}` and the units of each declared quota, `pools/{pool}/units/{n}`."""

    def put_cohort(
        self, name: str, document: Mapping[str, Any], pools: Mapping[str, int]
    ) -> None: ...

    def get_cohort(self, name: str) -> dict[str, Any] | None: ...

    def delete_cohort(self, name: str) -> None: ...

    def list_cohorts(self) -> list[dict[str, Any]]: ...

    def update_cohort(self, name: str, changes: Mapping[FieldKey, Any]) -> None: ...

    def free_units(self, pool: str, limit: int) -> list[Slot]: ...

    def held_units(self, pool: str) -> list[Slot]: ...

    def count_held_units(self, pool: str, queue: str) -> int: ...


class SpendStore(Protocol):
    """`spend/{scope}~{name}~{month}`: budget ledgers (`launchq.model.budgets`). A claim
    reserves in them through `ItemStore.transition(charge=..., ledgers=...)`, under each
    ledger's version; the release that ends the attempt settles them."""

    def get_ledgers(self, ledgers: Sequence[str], create: bool = True) -> list[Ledger]:
        """The ledgers named, in order, each created empty if absent (`create`; else read as
        empty)."""
        ...

    def list_ledgers(self, period: str) -> list[tuple[dict[str, Any], Ledger]]: ...

    def get_prices(self) -> dict[str, Any] | None:
        """The price table applied with `launchq prices apply` (`settings/prices`), if any."""
        ...

    def put_prices(self, document: Mapping[str, Any] | None) -> None:
        """Store the price table (None: back to the one launchq ships)."""
        ...


class BuildStore(Protocol):
    """`builds/{key}`: one document per image build key (`launchq.builds`)."""

    def create_build(self, key: str, document: Mapping[str, Any]) -> bool:
        """Create the build document; False if it exists (somebody else claimed the key)."""
        ...

    def get_build(self, key: str) -> StoredDocument | None: ...

    def update_build(self, key: str, changes: Mapping[str, Any]) -> None: ...

    def join_build(self, key: str, waiter: str) -> None:
        """Add `waiter` to the build's `waiting` (once, whoever else joins meanwhile)."""
        ...

    def leave_build(self, key: str, waiter: str) -> None: ...

    def restart_build(
        self,
        key: str,
        fields: Mapping[str, Any],
        clear: Sequence[str],
        waiter: str,
        failed_attempt: Mapping[str, Any],
        version: datetime | None,
    ) -> bool:
        """Start the key's build again if the document is still at `version`: set `fields`,
        remove `clear`, join `waiter`, append `failed_attempt`. False if it changed."""
        ...


class NoticeStore(Protocol):
    """`notices/{key}`: one document per notification (launchq.model.notices)."""

    def claim_notice(self, key: str, document: Mapping[str, Any]) -> Notice | None:
        """Own the notification: create it SENDING under a lease, or take over one whose
        sender's lease ran out or whose receiver failed (attempts + 1), under its version;
        None when it was sent, is undelivered, or another sender holds it."""
        ...

    def finish_notice(self, notice: Notice, changes: Mapping[str, Any]) -> Notice:
        """Record how the claimed attempt went, under the claim's version (Conflict if the
        lease was taken over meanwhile)."""
        ...

    def get_notice(self, key: str) -> Notice | None: ...


class LeaderStore(Protocol):
    """`leases/{name}`: who runs the sweep now."""

    def take_leadership(self, name: str, holder: str, seconds: float) -> bool: ...

    def give_up_leadership(self, name: str, holder: str) -> None: ...


class Store(
    ItemStore,
    QueueStore,
    CapacityStore,
    CohortStore,
    SpendStore,
    BuildStore,
    NoticeStore,
    LeaderStore,
    Protocol,
):
    """Everything launchq keeps: the one object `launchq.wiring` hands to every unit."""
