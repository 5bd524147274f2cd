"""Sweeps and job arrays: a parent item expanded into its children, exactly once, in batches.

The dispatcher records the parent (state SWEEP, with what it expands into) after checking every
child against the queue, then `Expander.expand` records the children `<parent>~00001` ... in
batches of `BATCH`: each batch creates its children *and* sets the parent's `expanded` count in
one atomic write conditioned on the parent's version (`Store.expand`). So:

- a redelivered message, a second dispatcher or the sweep continuing a crashed expansion all
  start from `expanded` and never create a child twice (a racing writer's batch fails whole:
  the loser reads the parent again and goes on from the new count);
- a crash between batches leaves a consistent prefix; whoever comes next (the redelivery, or
  the sweep's upkeep of every parent in SWEEP) continues it;
- an invocation expands until its deadline and leaves the rest to the sweep, so no invocation
  runs over its limits whatever the sweep's size.

`max_parallel`: children beyond it are created HELD, outside the queue's waiting set, and the
sweep (`upkeep`, one leader at a time) releases HELD children in child order while fewer than
`max_parallel` children are waiting or holding slots. A parent ends (SUCCEEDED when every child
did, CANCELLED when it was cancelled, FAILED otherwise) once it is expanded (or cancelled) and no
child is open; it keeps how many children ended how (`children`).

Measured (bench/sweeps.py, the local stack: Firestore emulator, Pub/Sub emulator, Vertex
stand-in): see docs/performance.md, "Sweeps".
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Protocol

from launchq.errors import Conflict
from launchq.log import get_logger
from launchq.model.reasons import ErrorRecord, RejectReason, WaitReason
from launchq.model.records import ItemRecord, NewItem
from launchq.model.states import SLOT_STATES, TERMINAL_STATES, ItemState
from launchq.queues import PreparedItem, QueueRuntime, QueueSource, item_fields
from launchq.recorder import Recorder
from launchq.spec.family import Family, child_id, family_of
from launchq.spec.item import parse_item
from launchq.spec.validation import Issue, ItemError
from launchq.store import Store, Transition


class Canceller(Protocol):
    """What expansion needs of `launchq.cancel.Canceller` (which needs this module)."""

    recorder: Recorder

    def request(self, queue: str, item_id: str) -> ItemState: ...

    def cancel_item(self, item: ItemRecord) -> ItemState: ...

    def cancel_waiting(self, items: Sequence[ItemRecord]) -> int: ...


log = get_logger(__name__)

# Children per atomic write. A child's record is ~1.2 KB for a small item (its rendered job and
# payload; a few KiB for a big one), so a batch stays far under Firestore's 10 MiB request;
# measured on the emulator (bench/sweeps.py), 1,000 children took 1.80 s in batches of 100 and
# 1.50-2.02 s in batches of 50-400: the emulator's cost is per child, and a smaller batch loses
# less work to a racing expander.
BATCH = 100
OPEN_STATES = tuple(s for s in ItemState if not s.is_terminal and s is not ItemState.SWEEP)
ACTIVE_STATES = (ItemState.QUEUED, *sorted(SLOT_STATES))  # what max_parallel counts
CANCEL_THREADS = 8
CHILD_PAGE = 500
CANCEL_FIELDS = ("state", "cancel_requested", "slot", "units")


class Expander:
    """Expands parents into children, releases HELD children, ends parents."""

    def __init__(self, store: Store, recorder: Recorder, queues: QueueSource) -> None:
        self.store = store
        self.recorder = recorder
        self.queues = queues

    # -- expansion --------------------------------------------------------------------------

    def expand(self, parent: ItemRecord, deadline: float | None = None) -> ItemRecord:
        """Record the parent's children from `expanded` on, a batch at a time, until all are
        recorded, the parent is cancelled or ended, or the monotonic `deadline` passes."""
        if parent.expanded >= int((parent.family or {}).get("count") or 0):
            return parent  # the sweep's every pass: recorded whole, nothing to parse
        family = self.family(parent)
        while family is not None and parent.expanded < family.count:
            if parent.state is not ItemState.SWEEP or parent.cancel_requested:
                break
            if deadline is not None and time.monotonic() > deadline:
                log.info(
                    "expansion continues in the sweep",
                    item_id=parent.item_id,
                    queue=parent.queue,
                    expanded=parent.expanded,
                    count=family.count,
                )
                break
            start = parent.expanded + 1
            end = min(family.count, parent.expanded + BATCH)
            children = [self._child(parent, family, n) for n in range(start, end + 1)]
            try:
                parent = self.recorder.expand(parent, children, end)
            except Conflict:
                # Another expander (a redelivery) or a cancel wrote the parent: go on from it.
                fresh = self.store.get_item(parent.queue, parent.item_id)
                if fresh is None:
                    break
                parent = fresh
        return parent

    def family(self, parent: ItemRecord) -> Family | None:
        payload = parent.stored.get("payload")
        if not isinstance(payload, Mapping) or parent.payload_hash is None:
            return None
        try:
            item = parse_item({**payload, "queue": parent.queue, "item_id": parent.item_id})
        except ItemError:
            return None
        return family_of(item, parent.payload_hash)

    def _child(self, parent: ItemRecord, family: Family, number: int) -> NewItem:
        """Child `number`, rendered now on its queue as a single item would be."""
        stored = parent.stored
        payload = family.child_payload(stored["payload"], number)
        item_id = child_id(parent.item_id, number)
        common: dict[str, Any] = {
            "payload": payload,
            "message_id": stored.get("message_id"),
            "topic": stored.get("topic"),
            "sweep_of": parent.item_id,
            "submitter": parent.submitter or stored.get("submitter"),
        }
        if stored.get("submitted_by") is not None:
            common["submitted_by"] = stored["submitted_by"]
        runtime = self.queues.get(parent.queue)
        prepared = (
            runtime.prepare(payload, item_id, self.store.clock()) if runtime is not None else None
        )
        if runtime is None or prepared is None or isinstance(prepared, list):
            # Checked when the parent was accepted; the queue changed (or went) since.
            problem = (
                f"{prepared[0].path}: {prepared[0]}"
                if isinstance(prepared, list) and prepared
                else f"queue {parent.queue!r} is gone"
            )
            error = ErrorRecord(RejectReason.INVALID_ITEM, problem).document()
            cause = "rejected: invalid child (its queue changed)"
            fields = {**common, "error": error}
            return NewItem(parent.queue, item_id, fields, cause, ItemState.REJECTED)
        fields = {**common, **item_fields(prepared, runtime.paused)}
        held = family.max_parallel is not None and number > family.max_parallel
        if held:
            fields["reason"] = WaitReason.MAX_PARALLEL
        return NewItem(
            parent.queue,
            item_id,
            fields,
            f"expanded from {parent.item_id} ({number} of {family.count})",
            ItemState.HELD if held else ItemState.QUEUED,
        )

    # -- the sweep's upkeep -----------------------------------------------------------------

    def upkeep(
        self, parent: ItemRecord, canceller: Canceller, deadline: float | None = None
    ) -> int:
        """One sweep pass over a parent in SWEEP: continue its expansion (or its cancel),
        release HELD children into max_parallel's free places, end it when it is over.
        Returns how many children it released."""
        if parent.cancel_requested:
            canceller.request(parent.queue, parent.item_id)
            return 0
        parent = self.expand(parent, deadline)
        released = self.release(parent)
        self.settle(parent)
        return released

    def release(self, parent: ItemRecord) -> int:
        """Move HELD children to QUEUED while fewer than max_parallel are waiting or running."""
        family = parent.family or {}
        limit = family.get("max_parallel")
        if not isinstance(limit, int) or parent.state is not ItemState.SWEEP:
            return 0
        free = limit - self.store.count_children(parent.queue, parent.item_id, ACTIVE_STATES)
        if free <= 0:
            return 0
        released = 0
        held = self.store.children_of(parent.queue, parent.item_id, (ItemState.HELD,), free)
        for child in held:
            try:
                cause = f"released: a place among {parent.item_id}'s max_parallel {limit} is free"
                self.recorder.transition(
                    child, Transition(ItemState.QUEUED, cause), {"reason": WaitReason.FREE_SLOT}
                )
                released += 1
            except Conflict:
                continue  # cancelled meanwhile
        return released

    def settle(self, parent: ItemRecord) -> ItemRecord:
        return settle(self.store, self.recorder, parent)


def cancel_children(
    store: Store, canceller: Canceller, parent: ItemRecord, deadline: float | None = None
) -> int:
    """Cancel every open child of `parent` once: a page at a time in child order,
    `CANCEL_THREADS` at once, each child a cancel of its own, so a crash leaves nothing
    half-done (the next call goes on from what is still open). A child whose cancel was sent
    already (it is stopping on Vertex) is not sent another. Returns how many it cancelled or
    sent a cancel to; stops at the monotonic `deadline`."""
    done = 0
    after: str | None = None
    # The workers' events go into this invocation's batch: one publish for the whole cancel
    # (measured: one publish per child was half of a 1,000-child cancel's 8 s).
    events = canceller.recorder.current_batch()
    while deadline is None or time.monotonic() < deadline:
        # A page of what decides whether a child needs a cancel: a sweep's upkeep passes
        # over a cancelled parent's running children until they end, and need not read their
        # jobs and histories each time.
        page = store.children_of(
            parent.queue, parent.item_id, OPEN_STATES, CHILD_PAGE, after, CANCEL_FIELDS
        )
        if not page:
            break
        after = page[-1].item_id
        # Waiting children in writes of BATCH, each under its version (a page of 500 is 5
        # commits, not 500); the others, whose jobs must be cancelled on Vertex or whose build
        # must be left, one by one.
        waiting = [c for c in page if c.state in (ItemState.QUEUED, ItemState.HELD)]
        for start in range(0, len(waiting), BATCH):
            done += canceller.cancel_waiting(waiting[start : start + BATCH])
        todo = [c for c in page if c not in waiting and not c.cancel_requested]

        def one(child: ItemRecord) -> bool:
            full = store.get_item(child.queue, child.item_id)
            if full is None or full.cancel_requested:
                return False
            try:
                with canceller.recorder.joining(events):
                    canceller.cancel_item(full)
            except Conflict:
                return False  # it moved on meanwhile: the next call sees it again if still open
            return True

        with ThreadPoolExecutor(CANCEL_THREADS) as pool:
            done += sum(pool.map(one, todo))
    return done


def settle(store: Store, recorder: Recorder, parent: ItemRecord) -> ItemRecord:
    """End the parent when it is expanded (or cancelled) and no child is open."""
    if parent.state is not ItemState.SWEEP:
        return parent
    family = parent.family or {}
    count = int(family.get("count") or 0)
    if parent.expanded < count and not parent.cancel_requested:
        return parent
    if store.count_children(parent.queue, parent.item_id, OPEN_STATES):
        return parent
    ended = {
        state.value: n
        for state in sorted(TERMINAL_STATES)
        if (n := store.count_children(parent.queue, parent.item_id, (state,)))
    }
    if parent.cancel_requested:
        to, cause = ItemState.CANCELLED, "cancelled: every child has ended"
    elif ended.get(ItemState.SUCCEEDED.value, 0) == count:
        to, cause = ItemState.SUCCEEDED, f"all {count} children succeeded"
    else:
        failed = count - ended.get(ItemState.SUCCEEDED.value, 0)
        to, cause = ItemState.FAILED, f"{failed} of {count} children did not succeed"
    try:
        return recorder.transition(
            parent, Transition(to, cause, details={"children": ended}), {"children": ended}
        )
    except Conflict:
        return parent  # the next pass sees it again


def check_children(
    runtime: QueueRuntime, family: Family, payload: Mapping[str, Any], parent: str, now: datetime
) -> PreparedItem | list[Issue]:
    """Every child of a sweep checked against its queue exactly as a single item is: the first
    child prepared, or the first invalid child's problems, each naming the child (and the
    sweep parameter it came from, when it went into a template variable), the first one also
    how many children are invalid. The dispatcher rejects the whole sweep on them; `launchq
    enqueue` refuses it before publishing."""
    first: PreparedItem | None = None
    invalid: list[Issue] = []
    bad = 0
    for number in range(1, family.count + 1):
        child = family.child_payload(payload, number)
        prepared = runtime.prepare(child, child_id(parent, number), now)
        if isinstance(prepared, list):
            bad += 1
            if not invalid:
                invalid = [_child_issue(issue, number, family) for issue in prepared]
        elif first is None:
            first = prepared
    if invalid:
        note = f" ({bad} of {family.count} children are invalid)" if bad > 1 else ""
        head = invalid[0]
        invalid[0] = Issue(head.path, f"{head.message}{note}", head.suggestion, head.code)
        return invalid
    assert first is not None
    return first


def _child_issue(issue: Issue, number: int, family: Family) -> Issue:
    path = issue.path
    sweep = family.sweep
    if sweep is not None and sweep.parameters_to == "template_variables":
        name = path.removeprefix("template_variables.").split(".", 1)[0]
        if path.startswith("template_variables.") and any(p.path[0] == name for p in sweep.params):
            path = f"sweep.parameters.{name}"
    message = f"child {number} of {family.count}: {issue.message}"
    return Issue(path, message, issue.suggestion, issue.code)
