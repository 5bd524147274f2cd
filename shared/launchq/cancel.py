"""Cancelling an item: a waiting one at once, a submitted one through CancelCustomJob.

A sweep or array (launchq.expansion) is cancelled whole: its expansion stops, every open child is
cancelled (HELD and QUEUED ones at once) and the parent ends CANCELLED once none is open.

A BUILDING item is cancelled at once too; its build is cancelled when no other item still
waits on it (builds are shared by every item with the same source: `launchq.builds`).

The sweep records CANCELLED when Vertex reports it; a cancelled item is never retried. An item in
SUBMITTING has no job name yet: the request is recorded and the sweep sends the cancel once the
job exists.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence

from launchq.builds.builder import ImageBuilder
from launchq.errors import Conflict, NotFound
from launchq.expansion import cancel_children, settle
from launchq.gcp import vertex as vx
from launchq.model.reasons import CancelReason
from launchq.model.records import ItemRecord
from launchq.model.states import ItemState
from launchq.recorder import Recorder
from launchq.store import Store, Transition
from launchq.submission import VertexFor


class Canceller:
    """Carries out a cancel control message: a waiting (or building) item is CANCELLED at once
    (its build cancelled when no other item waits on it); a submitted one gets a
    CancelCustomJob and becomes CANCELLED when the sweep sees Vertex's final state; an ended
    one is left as it is.
    """

    def __init__(
        self,
        store: Store,
        recorder: Recorder,
        vertex_for: VertexFor,
        builds: ImageBuilder | None = None,
    ) -> None:
        self.store = store
        self.recorder = recorder
        self.vertex_for = vertex_for
        self.builds = builds

    def request(self, queue: str, item_id: str) -> ItemState:
        """Cancel `item_id`; its state afterwards. Raises `NotFound` for an unknown item."""
        item = self.store.get_item(queue, item_id)
        if item is None:
            raise NotFound(f"no item {item_id!r} in queue {queue!r}")
        return self.cancel_item(item)

    def cancel_item(self, item: ItemRecord) -> ItemState:
        """Cancel an item as read; Conflict when it changed since (nothing is written)."""
        if item.state.is_terminal:
            return item.state
        if item.state is ItemState.SWEEP:
            return self._cancel_sweep(item)
        if item.state in (ItemState.QUEUED, ItemState.HELD):
            self.recorder.transition(
                item, Transition(ItemState.CANCELLED, "cancelled by user"), {"reason": None}
            )
            return ItemState.CANCELLED
        if item.state is ItemState.BUILDING:
            self.recorder.transition(
                item, Transition(ItemState.CANCELLED, "cancelled by user while building")
            )
            self._leave_build(item.queue, item.item_id, item.stored.get("build"))
            return ItemState.CANCELLED
        sent_at = None
        if item.job is not None and item.state is not ItemState.CANCELLING:
            try:
                self.vertex_for(str(item.region)).cancel_custom_job(item.job.name)
            except vx.VertexError as exc:
                # 400 FAILED_PRECONDITION: the job ended before the cancel reached it. Not an
                # error: the sweep records how it really ended. Anything else is.
                if exc.http_status != 400:
                    raise
            sent_at = self.store.clock()
        self.recorder.touch(
            item,
            {
                "cancel_requested": True,
                "cancel_reason": CancelReason.USER,
                "cancel_sent_at": sent_at,
            },
        )
        return item.state

    def cancel_waiting(self, items: Sequence[ItemRecord]) -> int:
        """Cancel waiting (QUEUED, HELD) items in one write, each under its version; when one
        changed meanwhile, each on its own instead. How many were cancelled."""
        change = Transition(ItemState.CANCELLED, "cancelled by user")
        try:
            return len(self.recorder.transition_many(items, change, {"reason": None}))
        except Conflict:
            cancelled = 0
            for item in items:
                fresh = self.store.get_item(item.queue, item.item_id)
                if fresh is None or fresh.state.is_terminal:
                    continue
                with contextlib.suppress(Conflict):
                    self.cancel_item(fresh)
                    cancelled += 1
            return cancelled

    def _cancel_sweep(self, parent: ItemRecord) -> ItemState:
        """A sweep or array: its expansion stops (the request is recorded on the parent
        first), every open child is cancelled, and the parent ends CANCELLED once none is open.
        Cancelling it again (a redelivery, the sweep's upkeep) goes on from what is left."""
        if not parent.cancel_requested:
            parent = self.recorder.touch(
                parent, {"cancel_requested": True, "cancel_reason": CancelReason.USER}
            )
        cancel_children(self.store, self, parent)
        return settle(self.store, self.recorder, parent).state

    def _leave_build(self, queue: str, item_id: str, build: object) -> None:
        key = build.get("build_key") if isinstance(build, Mapping) else None
        if self.builds is None or not key:
            return

        def still_building(waiter: str) -> bool:
            other_queue, _, other_id = waiter.partition("/")
            other = self.store.get_item(other_queue, other_id)
            return other is not None and other.state is ItemState.BUILDING

        self.builds.leave(str(key), f"{queue}/{item_id}", still_building)
