"""The recorder: a state change is a history entry, a log line and an event, always together.

Every transition the dispatcher, the sweep (repairs included) or a cancel makes goes through
here, so no path can commit a state without logging and publishing it
(`tests/unit/test_architecture.py` fails on a store write called from anywhere else).

Events are batched per invocation (`Recorder.batch`): one Pub/Sub request instead of one per
transition (measured: three synchronous publishes were 8-11 ms of a 36 ms dispatch). They are
published when the block ends, also when it raises: every event stands for a transition already
committed.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from launchq.gcp.events import EventPublisher, item_event, state_changed_event
from launchq.log import get_logger
from launchq.model.budgets import Charge, Ledger
from launchq.model.records import Admit, Changes, ItemRecord, NewItem, Slot
from launchq.model.states import ItemState
from launchq.store import Store, Transition

log = get_logger(__name__)


class Recorder:
    """The one writer of item state: each create and transition is a store write (with its
    history entry), a structured log line and a CloudEvent, always together. Events of one
    invocation are collected in `batch` and published at its end. Nothing else calls the store's
    item writes (tests/unit/test_architecture.py checks it).
    """

    def __init__(self, store: Store, events: EventPublisher) -> None:
        self.store = store
        self.events = events
        self._local = threading.local()  # the event batch of the invocation on this thread

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Collect the events of one invocation (or one sweep worker); publish them together."""
        if getattr(self._local, "events", None) is not None:
            yield  # nested: the outer block publishes
            return
        self._local.events = []
        try:
            yield
        finally:
            events, self._local.events = self._local.events, None
            if events:
                self.events.publish_many(events)

    def current_batch(self) -> list[dict[str, Any]] | None:
        """This thread's open event batch, for worker threads to join (`joining`)."""
        events: list[dict[str, Any]] | None = getattr(self._local, "events", None)
        return events

    @contextlib.contextmanager
    def joining(self, events: list[dict[str, Any]] | None) -> Iterator[None]:
        """Run a worker thread's writes with their events in another thread's batch (`events`,
        from `current_batch`): one publish for the invocation, not one per worker write.
        The batch's owner publishes; list appends are atomic, so workers may share it."""
        if events is None or getattr(self._local, "events", None) is not None:
            yield
            return
        self._local.events = events
        try:
            yield
        finally:
            self._local.events = None

    def create(self, new: NewItem, admit: Admit | None = None) -> ItemRecord | None:
        """Record a new item; None if it exists already (nothing is logged or published then).

        With `admit`, it is recorded already claimed (QUEUED -> SUBMITTING in one write): both
        steps are logged and published; Conflict if `admit.slot` was taken meanwhile,
        `TokenTaken` if its budget token is another create's.
        """
        # The one place a new item meets the store's keyword arguments.
        admitted: dict[str, Any] = {}
        if admit is not None:
            admitted = {
                "claim": admit.claim,
                "take_slot": admit.slot,
                "claim_cause": admit.cause,
                "token": admit.token,
                "token_expire_at": admit.token_expire_at,
            }
        created = self.store.create_item(
            new.queue, new.item_id, new.state, new.fields, new.cause, **admitted
        )
        if created is None:
            return None
        cause = admit.cause if admit is not None else new.cause
        log.info(cause, item_id=new.item_id, queue=new.queue, state=created.state.value)
        self._publish(new.queue, new.item_id, None, new.state, new.cause)
        if admit is not None:
            self._publish(new.queue, new.item_id, new.state, created.state, admit.cause)
        return created

    def expand(self, parent: ItemRecord, children: Sequence[NewItem], expanded: int) -> ItemRecord:
        """Record a batch of a sweep's children with the parent's new `expanded` count in one
        atomic write (launchq.expansion); Conflict when the parent changed or a child exists
        (nothing is written, logged or published then)."""
        written = self.store.expand(parent, children, expanded)
        log.info(
            "children recorded",
            item_id=parent.item_id,
            queue=parent.queue,
            children=len(children),
            expanded=expanded,
        )
        for child in children:
            self._publish(child.queue, child.item_id, None, child.state, child.cause)
        return written

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
        level: str = "info",
    ) -> ItemRecord:
        """Commit a state change (compare-and-swap), then log and publish it.

        Raises `launchq.errors.Conflict` when someone changed the item since it was read: then
        nothing was committed, logged or published.
        """
        written = self.store.transition(
            item,
            change,
            changes,
            take_slot=take_slot,
            release_slot=release_slot,
            take_units=take_units,
            charge=charge,
            ledgers=ledgers,
        )
        job = written.job.name if written.job else None
        getattr(log, level)(
            change.cause,
            item_id=item.item_id,
            queue=item.queue,
            job_name=job,
            state=change.to.value,
        )
        previous = item.state
        if change.via is not None:
            self._publish(
                item.queue, item.item_id, previous, change.via, change.via_cause, change.details
            )
            previous = change.via
        self._publish(item.queue, item.item_id, previous, change.to, change.cause, change.details)
        return written

    def transition_many(
        self, items: Sequence[ItemRecord], change: Transition, changes: Changes | None = None
    ) -> list[ItemRecord]:
        """The same state change for waiting items in one atomic write (a bulk cancel); each
        item is logged and published as `transition` does. Conflict if any changed meanwhile:
        nothing was committed, logged or published then."""
        written = self.store.transition_many(items, change, changes)
        for item in items:
            log.info(change.cause, item_id=item.item_id, queue=item.queue, state=change.to.value)
            self._publish(item.queue, item.item_id, item.state, change.to, change.cause)
        return written

    def touch(self, item: ItemRecord, changes: Changes) -> ItemRecord:
        """Fields without a state change (a cancel request, a lease release): no event."""
        return self.store.touch(item, changes)

    def notice(self, event_type: str, queue: str, item_id: str, **data: Any) -> None:
        """Something worth an event that is not a state change (e.g. a payload conflict)."""
        self._emit(item_event(event_type, queue=queue, item_id=item_id, data=data))

    def _publish(
        self,
        queue: str,
        item_id: str,
        from_state: ItemState | None,
        to_state: ItemState,
        cause: str,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self._emit(
            state_changed_event(
                queue=queue,
                item_id=item_id,
                from_state=from_state.value if from_state else None,
                to_state=to_state.value,
                cause=cause,
                details=details,
            )
        )

    def _emit(self, event: dict[str, Any]) -> None:
        buffered = getattr(self._local, "events", None)
        if buffered is not None:
            buffered.append(event)
        else:
            self.events.publish(event)
