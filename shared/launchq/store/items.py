"""Items on Firestore: `items/{queue}~{item_id}`, one document per queue item (top level, so
`ls` and the sweep query across queues without collection-group indexes)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from launchq.errors import Conflict
from launchq.model.budgets import Charge, Ledger
from launchq.model.records import (
    Changes,
    Claim,
    ItemRecord,
    NewItem,
    Slot,
    admission_order,
    item_doc_id,
)
from launchq.model.states import SLOT_STATES, ItemState
from launchq.store.base import (
    BUDGETS,
    ITEMS,
    MIN_PAGE,
    POOLS,
    SKIPPED_PAGES,
    SLOTS,
    UNITS,
    TokenTaken,
    Transition,
    from_document,
    held_fields,
    new_item_document,
    projection,
    split_unit,
    storage,
    transition_entries,
    waiting_only,
)
from launchq.store.client import CONFLICTS, FirestoreBase, Snapshot, count
from launchq.store.spend import reserve, settle

_DOCUMENT_ID = "__name__"  # a query's name for the document id (`FieldPath.document_id()`)


def _record(snap: Snapshot) -> ItemRecord:
    return from_document(snap.to_dict() or {}, snap.update_time)


class FirestoreItems(FirestoreBase):
    """`launchq.store.protocols.ItemStore` on `items/{queue}~{item_id}`: every write is a
    `create()` or conditioned on the update time read, and a state change frees or takes its
    slot in the same batch."""

    def get_item(self, queue: str, item_id: str) -> ItemRecord | None:
        snap = self.item_ref(queue, item_id).get()
        return _record(snap) if snap.exists else None

    def item_document(self, queue: str, item_id: str) -> dict[str, Any] | None:
        """The stored document as it is, for display (`status --json`) and tests."""
        snap = self.item_ref(queue, item_id).get()
        return (snap.to_dict() or {}) if snap.exists else None

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
    ) -> ItemRecord | None:
        """Record a new item and return it; None if it already exists (a redelivery).

        `fields` are the new item's stored fields (the dispatcher's, already made storable).
        With `claim`, the item is recorded already admitted: QUEUED -> SUBMITTING in its first
        write, taking `take_slot` (if any) in the same atomic batch, conditioned on the slot
        being unchanged since it was read. Raises Conflict if the slot was taken meanwhile
        (nothing is written then). `token`: a creation-budget token document created in the
        same batch (no commit of its own); TokenTaken if another create has it.
        """
        now = self.clock()
        document = new_item_document(
            queue, item_id, state, fields, cause, now, claim, take_slot, claim_cause
        )
        ref = self.item_ref(queue, item_id)
        batch = self.db.batch()
        batch.create(ref, document)
        if take_slot is not None:
            holder = item_doc_id(queue, item_id)
            batch.update(
                self._slot_ref(take_slot),
                {"holder": holder, "since": now},
                option=self._unchanged(take_slot.version),
            )
        if token is not None:
            token_doc = {"taken_at": now, "expire_at": token_expire_at or now}
            batch.create(self.db.collection(BUDGETS).document(token), token_doc)
        try:
            results = list(batch.commit())
        except gexc.AlreadyExists as exc:
            # The item (a redelivery) or the token (another create's): only a read can tell,
            # and it is needed only on this rare path.
            if token is not None and not ref.get().exists:
                raise TokenTaken(token) from exc
            return None
        except CONFLICTS as exc:
            raise Conflict(str(exc)) from exc
        return from_document(document, results[0].update_time)

    def waiting_items(self, queue: str, limit: int) -> list[ItemRecord]:
        """Up to `limit` QUEUED items of a queue ready to start, in admission order
        (`launchq.model.records.admission_order`).

        Needs the composite index (queue ASC, state ASC, priority ASC, enqueued_at ASC), declared
        in firestore.indexes.json. Items backing off after a failure carry `not_before`; they are
        skipped here rather than in the query so the index stays one, reading on past them for
        up to `SKIPPED_PAGES` more pages: a head of the queue that all backs off (retries, a
        placement's quota) must not hide the ready items behind it.
        """
        query = (
            self.db.collection(ITEMS)
            .where(filter=firestore.FieldFilter("queue", "==", queue))
            .where(filter=firestore.FieldFilter("state", "==", ItemState.QUEUED.value))
            .order_by("priority")
            .order_by("enqueued_at")
        )
        now = self.clock()
        ready: list[ItemRecord] = []
        last = None
        size = max(limit, MIN_PAGE)
        for _ in range(1 + SKIPPED_PAGES):
            page = query.start_after(last) if last is not None else query
            snaps = list(page.limit(size).stream())
            ready += admission_order([_record(snap) for snap in snaps], now)
            if len(ready) >= limit or len(snaps) < size:
                break
            last = snaps[-1]
        return ready[:limit]

    def items_in_states(
        self,
        states: Iterable[ItemState],
        queue: str | None = None,
        fields: Sequence[str] | None = None,
    ) -> Iterator[ItemRecord]:
        """Items in any of `states` (at most 30, Firestore's `in` limit).

        `fields` projects the read: the sweep reads 10,000 active items a minute and needs none
        of their job bodies or histories.
        """
        values = [s.value for s in states]
        query = self.db.collection(ITEMS).where(filter=firestore.FieldFilter("state", "in", values))
        if queue is not None:
            query = query.where(filter=firestore.FieldFilter("queue", "==", queue))
        if fields is not None:
            query = query.select(projection(fields))
        return (_record(snap) for snap in query.stream())

    def recent_items(
        self,
        queue: str | None,
        states: Sequence[ItemState],
        limit: int,
        after: tuple[datetime, str] | None = None,
    ) -> list[ItemRecord]:
        """Newest first, optionally of one queue and in some states (the CLI's `ls`, the
        dashboard's item pages).

        Ties on `enqueued_at` are ordered by document id, descending: the order every composite
        index on `enqueued_at desc` already keeps (an index ends with the document id in its
        last field's direction), so no index is added. `after` is the `(enqueued_at, doc_id)` of
        the last item of the previous page; the query starts right behind it, so a page reads
        `limit` documents at any depth and equal timestamps are neither repeated nor skipped.
        """
        query: Any = self.db.collection(ITEMS)
        if queue:
            query = query.where(filter=firestore.FieldFilter("queue", "==", queue))
        if states:
            values = [s.value for s in states]
            query = query.where(filter=firestore.FieldFilter("state", "in", values))
        query = query.order_by("enqueued_at", direction=firestore.Query.DESCENDING).order_by(
            _DOCUMENT_ID, direction=firestore.Query.DESCENDING
        )
        if after is not None:
            at, doc_id = after
            query = query.start_after({"enqueued_at": at, _DOCUMENT_ID: doc_id})
        return [_record(snap) for snap in query.limit(limit).stream()]

    def items_with_id(self, item_id: str, limit: int = 10) -> list[ItemRecord]:
        """Items called `item_id` in any queue (the CLI resolves an id without its queue)."""
        query = (
            self.db.collection(ITEMS)
            .where(filter=firestore.FieldFilter("item_id", "==", item_id))
            .limit(limit)
        )
        return [_record(snap) for snap in query.stream()]

    def items_enqueued_since(
        self, queue: str, since: datetime, fields: Sequence[str]
    ) -> list[dict[str, Any]]:
        """The queue's items enqueued at or after `since`, projected to `fields` (the
        dashboard's 24-hour window: on the `(queue, enqueued_at)` index `ls` already needs)."""
        query = (
            self.db.collection(ITEMS)
            .where(filter=firestore.FieldFilter("queue", "==", queue))
            .where(filter=firestore.FieldFilter("enqueued_at", ">=", since))
            .select(list(fields))
        )
        return [snap.to_dict() or {} for snap in query.stream()]

    def count_waiting(self, queue: str) -> int:
        query = (
            self.db.collection(ITEMS)
            .where(filter=firestore.FieldFilter("queue", "==", queue))
            .where(filter=firestore.FieldFilter("state", "==", ItemState.QUEUED.value))
        )
        return count(query)

    def oldest_waiting(self, queue: str) -> datetime | None:
        """When the queue's longest-waiting QUEUED item was enqueued (the sweep's queue
        signals): one document on the (queue, state, enqueued_at) index."""
        query = (
            self.db.collection(ITEMS)
            .where(filter=firestore.FieldFilter("queue", "==", queue))
            .where(filter=firestore.FieldFilter("state", "==", ItemState.QUEUED.value))
            .order_by("enqueued_at")
            .select(["enqueued_at"])
            .limit(1)
        )
        for snap in query.stream():
            at = (snap.to_dict() or {}).get("enqueued_at")
            return at if isinstance(at, datetime) else None
        return None

    def count_holding_slots(self, queue: str) -> int:
        query = (
            self.db.collection(ITEMS)
            .where(filter=firestore.FieldFilter("queue", "==", queue))
            .where(filter=firestore.FieldFilter("state", "in", [s.value for s in SLOT_STATES]))
        )
        return count(query)

    def count_submitter_holding(self, queue: str, submitter: str) -> int:
        """Slot-holding items of one submitter in a queue (`max_jobs_per_submitter`): one
        aggregation on the (queue, submitter, state) index."""
        query = (
            self.db.collection(ITEMS)
            .where(filter=firestore.FieldFilter("queue", "==", queue))
            .where(filter=firestore.FieldFilter("submitter", "==", submitter))
            .where(filter=firestore.FieldFilter("state", "in", [s.value for s in SLOT_STATES]))
        )
        return count(query)

    def children_of(
        self,
        queue: str,
        parent: str,
        states: Sequence[ItemState] = (),
        limit: int = 500,
        after: str | None = None,
        fields: Sequence[str] | None = None,
    ) -> list[ItemRecord]:
        """A sweep's children (`sweep_of == parent`), in child order (their ids), optionally
        only in `states`; `after` is the last child id of the previous page."""
        query = self._children(queue, parent, states).order_by(_DOCUMENT_ID)
        if after is not None:
            query = query.start_after({_DOCUMENT_ID: self.item_ref(queue, after)})
        if fields is not None:
            query = query.select(projection(fields))
        return [_record(snap) for snap in query.limit(limit).stream()]

    def count_children(self, queue: str, parent: str, states: Sequence[ItemState]) -> int:
        """How many of a sweep's children are in `states`: one aggregation on the
        (queue, sweep_of, state) index."""
        return count(self._children(queue, parent, states))

    def _children(self, queue: str, parent: str, states: Sequence[ItemState]) -> Any:
        """The query of a sweep's children, in `states` when some are given."""
        query = (
            self.db.collection(ITEMS)
            .where(filter=firestore.FieldFilter("queue", "==", queue))
            .where(filter=firestore.FieldFilter("sweep_of", "==", parent))
        )
        if states:
            values = [s.value for s in states]
            query = query.where(filter=firestore.FieldFilter("state", "in", values))
        return query

    def expand(self, parent: ItemRecord, children: Sequence[NewItem], expanded: int) -> ItemRecord:
        """Create `children` and set the parent's `expanded` in one atomic write, conditioned
        on the parent being unchanged since it was read; Conflict (nothing written) when it
        changed or a child exists. So a child is created once, with the count that says so."""
        now = self.clock()
        batch = self.db.batch()
        for child in children:
            document = new_item_document(
                child.queue,
                child.item_id,
                child.state,
                child.fields,
                child.cause,
                now,
                None,
                None,
                "",
            )
            batch.create(self.item_ref(child.queue, child.item_id), document)
        update = {"expanded": expanded, "updated_at": now}
        batch.update(
            self.item_ref(parent.queue, parent.item_id),
            update,
            option=self._unchanged(parent.version),
        )
        try:
            results = list(batch.commit())
        except (gexc.AlreadyExists, *CONFLICTS) as exc:
            raise Conflict(str(exc)) from exc
        return from_document({**parent.stored, **update}, results[-1].update_time)

    # -- compare-and-swap -----------------------------------------------------------------

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
    ) -> ItemRecord:
        """Move an item to `change.to` if nobody changed it since `item` was read.

        Taking or releasing a slot happens in the same atomic batch, so a slot is held exactly
        while the item is in a slot-holding state; so do a cohort's quota units (`take_units`,
        and `release_slot` releases the item's), and an attempt's `charge`: reserved in its
        budget `ledgers` (under their versions) as it is claimed, settled as the release ends
        it (`launchq.model.budgets`). Raises Conflict when a precondition fails.
        Returns the item as written, with the commit's update time: the next compare-and-swap
        can start from it without reading the document again.
        """
        now = self.clock()
        entries = transition_entries(item, change, now)
        update: dict[str, Any] = {
            **storage(changes or {}),
            "state": change.to.value,
            "updated_at": now,
            "history": firestore.ArrayUnion(entries),
        }
        held, settled = held_fields(item, changes, take_slot, release_slot, take_units, charge)
        update.update(held)
        ref = self.item_ref(item.queue, item.item_id)
        batch = self.db.batch()
        batch.update(ref, update, option=self._unchanged(item.version))
        if take_slot is not None:
            batch.update(
                self._slot_ref(take_slot),
                {"holder": item.doc_id, "since": now},
                option=self._unchanged(take_slot.version),
            )
        for unit in take_units:
            batch.update(
                self._slot_ref(unit),
                {"holder": item.doc_id, "queue": item.queue, "since": now},
                option=self._unchanged(unit.version),
            )
        if release_slot and item.slot is not None:
            self._release(batch, item, now)
        if release_slot:
            self._release_units(batch, item, now)
        if charge is not None:
            reserve(self, batch, charge, ledgers)
        if settled is not None:
            settle(self, batch, settled)
        results = self._commit(batch)
        history = [*item.stored.get("history", []), *entries]
        written = {**item.stored, **update, "history": history}
        return from_document(written, results[0].update_time)

    def transition_many(
        self, items: Sequence[ItemRecord], change: Transition, changes: Changes | None = None
    ) -> list[ItemRecord]:
        """The same state change for waiting items (which hold no slot, unit or charge) in one
        atomic write, each under its own version: Conflict (nothing written) if any changed."""
        now = self.clock()
        batch = self.db.batch()
        written: list[tuple[ItemRecord, dict[str, Any]]] = []
        for item in items:
            waiting_only(item)
            entries = transition_entries(item, change, now)
            update: dict[str, Any] = {
                **storage(changes or {}),
                "state": change.to.value,
                "updated_at": now,
            }
            batch.update(
                self.item_ref(item.queue, item.item_id),
                {**update, "history": firestore.ArrayUnion(entries)},
                option=self._unchanged(item.version),
            )
            history = [*item.stored.get("history", []), *entries]
            written.append((item, {**item.stored, **update, "history": history}))
        results = self._commit(batch)
        return [
            from_document(document, result.update_time)
            for (_, document), result in zip(written, results, strict=True)
        ]

    def touch(self, item: ItemRecord, changes: Changes) -> ItemRecord:
        """Update fields without a state change, under the same precondition."""
        update = {**storage(changes), "updated_at": self.clock()}
        batch = self.db.batch()
        ref = self.item_ref(item.queue, item.item_id)
        batch.update(ref, update, option=self._unchanged(item.version))
        results = self._commit(batch)
        return from_document({**item.stored, **update}, results[0].update_time)

    def _release_units(self, batch: firestore.WriteBatch, item: ItemRecord, now: datetime) -> None:
        for ref_text in item.units:
            pool, unit_id = split_unit(ref_text)
            ref = self.db.collection(POOLS).document(pool).collection(UNITS).document(unit_id)
            unit = ref.get()
            if not unit.exists or (unit.to_dict() or {}).get("holder") != item.doc_id:
                continue  # already released
            option = self._unchanged(unit.update_time)
            if (unit.to_dict() or {}).get("retire"):
                batch.delete(ref, option=option)
            else:
                batch.update(ref, {"holder": None, "queue": None, "since": now}, option=option)

    def _release(self, batch: firestore.WriteBatch, item: ItemRecord, now: datetime) -> None:
        assert item.slot is not None
        slot_ref = self.queue_ref(item.queue).collection(SLOTS).document(item.slot)
        slot = slot_ref.get()
        if not slot.exists or (slot.to_dict() or {}).get("holder") != item.doc_id:
            return  # already released (a repaired double release is harmless)
        if (slot.to_dict() or {}).get("retire"):
            batch.delete(slot_ref, option=self._unchanged(slot.update_time))
        else:
            update = {"holder": None, "since": now}
            batch.update(slot_ref, update, option=self._unchanged(slot.update_time))
