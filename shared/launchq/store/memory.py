"""The store in memory: the same protocols as `launchq.store.firestore`, for fast unit tests.

It keeps documents under the same paths and writes them the same way: atomic batches whose
writes are `create` (fails if the document exists), `update` (fails if it is missing, or not at
the `version` given: the compare-and-swap), `set` and `delete`. Every commit gets a new version,
strictly later than the last, like Firestore's update times. Queries return Firestore's orders
(by the ordered fields, then document id; unordered by document id) and honour limits and field
projections. The contract tests (tests/integration/test_store_contract.py) run the same cases on
this store and on the Firestore emulator.

Documents are copied in and out, so a record a caller holds never changes under it. One lock
serialises commits: threads racing for an item or a slot see exactly one winner, as on Firestore.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from launchq.errors import Conflict
from launchq.model.budgets import (
    Charge,
    Ledger,
    ledger_deltas,
    reservation_deltas,
)
from launchq.model.notices import Notice, claim_fields
from launchq.model.records import (
    Changes,
    Claim,
    ItemRecord,
    NewItem,
    QueueBackoff,
    Slot,
    admission_order,
    item_doc_id,
)
from launchq.model.states import SLOT_STATES, ItemState
from launchq.store.base import (
    BACKOFF_FIELD,
    BUDGETS,
    BUILDS,
    COHORTS,
    ITEMS,
    LEASES,
    MIN_PAGE,
    NOTICES,
    POOLS,
    QUEUES,
    SETTINGS,
    SKIPPED_PAGES,
    SLOTS,
    SPEND,
    UNITS,
    Clock,
    FieldKey,
    StoredDocument,
    TokenTaken,
    Transition,
    backoff_from,
    check_max_jobs,
    from_document,
    held_fields,
    new_item_document,
    projection,
    slot_from,
    slot_id,
    split_unit,
    storage,
    transition_entries,
    unit_from,
    utcnow,
    waiting_only,
)
from launchq.store.protocols import Store

__all__ = ["MemoryStore", "Write"]

_DELETE = object()  # a field an update removes (Firestore's DELETE_FIELD)
_Doc = tuple[str, dict[str, Any], datetime]  # document id, data, version


class _AlreadyExists(Exception):
    """A `create` found its document (Firestore's ALREADY_EXISTS)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


@dataclass(frozen=True)
class _Union:
    values: tuple[Any, ...]


@dataclass(frozen=True)
class _Remove:
    values: tuple[Any, ...]


@dataclass(frozen=True)
class _Increment:
    """Firestore's `Increment`: add to a number (a missing field counts as 0)."""

    by: int


@dataclass(frozen=True)
class Write:
    """One write of a batch: `kind` is create, update, set or delete; `version` the update
    time the document must still have (None: no precondition)."""

    kind: str
    path: str
    data: Mapping[str, Any] = field(default_factory=dict)
    version: datetime | None = None
    conditional: bool = False


def _apply_update(current: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(current)
    for key, value in changes.items():
        if value is _DELETE:
            out.pop(key, None)
        elif isinstance(value, _Union):
            existing = list(out.get(key) or [])
            existing += [copy.deepcopy(v) for v in value.values if v not in existing]
            out[key] = existing
        elif isinstance(value, _Remove):
            out[key] = [v for v in out.get(key) or [] if v not in value.values]
        elif isinstance(value, _Increment):
            out[key] = int(out.get(key) or 0) + value.by
        else:
            out[key] = copy.deepcopy(value)
    return out


class MemoryStore:
    """All of `launchq.store.Store`, in one process's memory."""

    def __init__(self, clock: Clock = utcnow) -> None:
        self.clock = clock
        self._docs: dict[str, tuple[dict[str, Any], datetime]] = {}
        self._lock = threading.RLock()
        self._last = datetime(1970, 1, 1, tzinfo=UTC)
        self.commits = 0  # batches committed (the tests' "after the Nth write")

    # -- the document layer ---------------------------------------------------------------

    def _read(self, path: str) -> tuple[dict[str, Any], datetime] | None:
        with self._lock:
            found = self._docs.get(path)
            return (copy.deepcopy(found[0]), found[1]) if found else None

    def _children(self, collection: str) -> list[tuple[str, dict[str, Any], datetime]]:
        """The documents directly in `collection`, by document id (Firestore's default order)."""
        prefix = collection + "/"
        with self._lock:
            return sorted(
                (path[len(prefix) :], copy.deepcopy(data), version)
                for path, (data, version) in self._docs.items()
                if path.startswith(prefix) and "/" not in path[len(prefix) :]
            )

    def _commit(self, writes: Sequence[Write]) -> datetime:
        """Apply `writes` atomically: all of them, or none and an exception (`Conflict` for a
        missing document or a failed precondition, `_AlreadyExists` for a create)."""
        with self._lock:
            for write in writes:
                found = self._docs.get(write.path)
                if write.kind == "create" and found is not None:
                    raise _AlreadyExists(write.path)
                if write.kind == "update" and found is None:
                    raise Conflict(f"no document to update: {write.path}")
                if write.conditional and (found is None or found[1] != write.version):
                    raise Conflict(f"{write.path} changed since it was read")
            now = datetime.now(UTC)
            version = now if now > self._last else self._last + timedelta(microseconds=1)
            self._last = version
            for write in writes:
                if write.kind == "delete":
                    self._docs.pop(write.path, None)
                elif write.kind == "update":
                    current = self._docs[write.path][0]
                    self._docs[write.path] = (_apply_update(current, write.data), version)
                else:  # create, set
                    self._docs[write.path] = (_apply_update({}, write.data), version)
            self.commits += 1
            return version

    # -- paths ------------------------------------------------------------------------------

    @staticmethod
    def _item_path(queue: str, item_id: str) -> str:
        return f"{ITEMS}/{item_doc_id(queue, item_id)}"

    @staticmethod
    def _slot_path(queue: str, slot: str) -> str:
        return f"{QUEUES}/{queue}/{SLOTS}/{slot}"

    # -- items ------------------------------------------------------------------------------

    def get_item(self, queue: str, item_id: str) -> ItemRecord | None:
        found = self._read(self._item_path(queue, item_id))
        return from_document(*found) if found else None

    def item_document(self, queue: str, item_id: str) -> dict[str, Any] | None:
        found = self._read(self._item_path(queue, item_id))
        return found[0] if found else None

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
        now = self.clock()
        document = new_item_document(
            queue, item_id, state, fields, cause, now, claim, take_slot, claim_cause
        )
        path = self._item_path(queue, item_id)
        writes = [Write("create", path, document)]
        if take_slot is not None:
            writes.append(self._take(take_slot, item_doc_id(queue, item_id), now))
        if token is not None:
            token_doc = {"taken_at": now, "expire_at": token_expire_at or now}
            writes.append(Write("create", f"{BUDGETS}/{token}", token_doc))
        try:
            version = self._commit(writes)
        except _AlreadyExists as exc:
            if exc.path != path:
                raise TokenTaken(token or "") from exc
            return None
        return from_document(copy.deepcopy(document), version)

    def _take(self, slot: Slot, holder: str, now: datetime) -> Write:
        data: dict[str, Any] = {"holder": holder, "since": now}
        if slot.pool is not None:
            data["queue"] = holder.split("~", 1)[0]
        return Write("update", self._path_of(slot), data, slot.version, True)

    def _path_of(self, slot: Slot) -> str:
        if slot.pool is not None:
            return f"{POOLS}/{slot.pool}/{UNITS}/{slot.id}"
        return self._slot_path(slot.queue, slot.id)

    def _items(self, keep: Callable[[dict[str, Any]], bool]) -> list[_Doc]:
        return [(doc_id, d, v) for doc_id, d, v in self._children(ITEMS) if keep(d)]

    def waiting_items(self, queue: str, limit: int) -> list[ItemRecord]:
        found = self._items(lambda d: d.get("queue") == queue and d.get("state") == "QUEUED")
        found = [f for f in found if "priority" in f[1] and "enqueued_at" in f[1]]
        found.sort(key=lambda f: (f[1]["priority"], f[1]["enqueued_at"], f[0]))
        # As on Firestore: skip backing-off items for up to SKIPPED_PAGES extra pages.
        window = found[: max(limit, MIN_PAGE) * (1 + SKIPPED_PAGES)]
        records = [from_document(d, v) for _, d, v in window]
        return admission_order(records, self.clock())[:limit]

    def items_in_states(
        self,
        states: Iterable[ItemState],
        queue: str | None = None,
        fields: Sequence[str] | None = None,
    ) -> Iterator[ItemRecord]:
        values = {s.value for s in states}
        found = self._items(
            lambda d: d.get("state") in values and (queue is None or d.get("queue") == queue)
        )
        if fields is not None:
            keep = projection(fields)
            found = [(i, {k: d[k] for k in keep if k in d}, v) for i, d, v in found]
        return (from_document(d, v) for _, d, v in found)

    def recent_items(
        self,
        queue: str | None,
        states: Sequence[ItemState],
        limit: int,
        after: tuple[datetime, str] | None = None,
    ) -> list[ItemRecord]:
        values = {s.value for s in states}
        found = self._items(
            lambda d: (
                "enqueued_at" in d
                and (not queue or d.get("queue") == queue)
                and (not values or d.get("state") in values)
            )
        )
        found.sort(key=lambda f: (f[1]["enqueued_at"], f[0]), reverse=True)
        if after is not None:
            found = [f for f in found if (f[1]["enqueued_at"], f[0]) < after]
        return [from_document(d, v) for _, d, v in found[:limit]]

    def items_with_id(self, item_id: str, limit: int = 10) -> list[ItemRecord]:
        found = self._items(lambda d: d.get("item_id") == item_id)
        return [from_document(d, v) for _, d, v in found[:limit]]

    def items_enqueued_since(
        self, queue: str, since: datetime, fields: Sequence[str]
    ) -> list[dict[str, Any]]:
        found = self._items(
            lambda d: (
                d.get("queue") == queue
                and isinstance(d.get("enqueued_at"), datetime)
                and d["enqueued_at"] >= since
            )
        )
        found.sort(key=lambda f: (f[1]["enqueued_at"], f[0]))
        return [{k: d[k] for k in fields if k in d} for _, d, _v in found]

    def count_waiting(self, queue: str) -> int:
        return len(self._items(lambda d: d.get("queue") == queue and d.get("state") == "QUEUED"))

    def oldest_waiting(self, queue: str) -> datetime | None:
        waiting = self._items(lambda d: d.get("queue") == queue and d.get("state") == "QUEUED")
        times = [d["enqueued_at"] for _, d, _ in waiting if d.get("enqueued_at") is not None]
        return min(times, default=None)

    def count_holding_slots(self, queue: str) -> int:
        holding = {s.value for s in SLOT_STATES}
        return len(self._items(lambda d: d.get("queue") == queue and d.get("state") in holding))

    def children_of(
        self,
        queue: str,
        parent: str,
        states: Sequence[ItemState] = (),
        limit: int = 500,
        after: str | None = None,
        fields: Sequence[str] | None = None,
    ) -> list[ItemRecord]:
        values = {s.value for s in states}
        start = item_doc_id(queue, after) if after is not None else ""
        found = self._items(
            lambda d: (
                d.get("queue") == queue
                and d.get("sweep_of") == parent
                and (not values or d.get("state") in values)
            )
        )
        return [from_document(d, v) for doc_id, d, v in found if doc_id > start][:limit]

    def count_children(self, queue: str, parent: str, states: Sequence[ItemState]) -> int:
        return len(self.children_of(queue, parent, states, limit=10**9))

    def expand(self, parent: ItemRecord, children: Sequence[NewItem], expanded: int) -> ItemRecord:
        now = self.clock()
        writes = [
            Write(
                "create",
                self._item_path(child.queue, child.item_id),
                new_item_document(
                    child.queue,
                    child.item_id,
                    child.state,
                    child.fields,
                    child.cause,
                    now,
                    None,
                    None,
                    "",
                ),
            )
            for child in children
        ]
        update = {"expanded": expanded, "updated_at": now}
        path = self._item_path(parent.queue, parent.item_id)
        writes.append(Write("update", path, update, parent.version, True))
        try:
            version = self._commit(writes)
        except _AlreadyExists as exc:
            raise Conflict(f"{exc.path} exists") from exc
        return from_document({**parent.stored, **update}, version)

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
        now = self.clock()
        entries = transition_entries(item, change, now)
        update: dict[str, Any] = {
            **storage(changes or {}),
            "state": change.to.value,
            "updated_at": now,
        }
        held, settled = held_fields(item, changes, take_slot, release_slot, take_units, charge)
        update.update(held)
        path = self._item_path(item.queue, item.item_id)
        writes = [
            Write("update", path, {**update, "history": _Union(tuple(entries))}, item.version, True)
        ]
        if take_slot is not None:
            writes.append(self._take(take_slot, item.doc_id, now))
        writes += [self._take(unit, item.doc_id, now) for unit in take_units]
        if release_slot and item.slot is not None:
            writes += self._release(item, now)
        if release_slot:
            writes += self._release_units(item, now)
        if charge is not None:
            deltas = reservation_deltas(charge)
            for ledger in ledgers:
                inc = {k: _Increment(v) for k, v in deltas.items()}
                writes.append(Write("update", f"{SPEND}/{ledger.id}", inc, ledger.version, True))
        if settled is not None:
            for name in settled.ledgers:
                path_ = f"{SPEND}/{name}"
                inc = {k: _Increment(v) for k, v in ledger_deltas(settled).items()}
                kind = "update" if self._read(path_) is not None else "set"
                writes.append(Write(kind, path_, inc))
        version = self._commit(writes)
        history = [*item.stored.get("history", []), *entries]
        written = {**item.stored, **copy.deepcopy(update), "history": copy.deepcopy(history)}
        return from_document(written, version)

    def transition_many(
        self, items: Sequence[ItemRecord], change: Transition, changes: Changes | None = None
    ) -> list[ItemRecord]:
        now = self.clock()
        writes: list[Write] = []
        documents: list[dict[str, Any]] = []
        for item in items:
            waiting_only(item)
            entries = transition_entries(item, change, now)
            update = {**storage(changes or {}), "state": change.to.value, "updated_at": now}
            path = self._item_path(item.queue, item.item_id)
            data = {**update, "history": _Union(tuple(entries))}
            writes.append(Write("update", path, data, item.version, True))
            history = [*item.stored.get("history", []), *entries]
            documents.append({**item.stored, **copy.deepcopy(update), "history": history})
        version = self._commit(writes)
        return [from_document(document, version) for document in documents]

    def touch(self, item: ItemRecord, changes: Changes) -> ItemRecord:
        update = {**storage(changes), "updated_at": self.clock()}
        path = self._item_path(item.queue, item.item_id)
        version = self._commit([Write("update", path, update, item.version, True)])
        return from_document({**item.stored, **copy.deepcopy(update)}, version)

    def _release_units(self, item: ItemRecord, now: datetime) -> list[Write]:
        writes = []
        for ref in item.units:
            pool, unit_id = split_unit(ref)
            path = f"{POOLS}/{pool}/{UNITS}/{unit_id}"
            found = self._read(path)
            if found is None or found[0].get("holder") != item.doc_id:
                continue  # already released
            if found[0].get("retire"):
                writes.append(Write("delete", path, version=found[1], conditional=True))
            else:
                free = {"holder": None, "queue": None, "since": now}
                writes.append(Write("update", path, free, found[1], True))
        return writes

    def _release(self, item: ItemRecord, now: datetime) -> list[Write]:
        assert item.slot is not None
        path = self._slot_path(item.queue, item.slot)
        found = self._read(path)
        if found is None or found[0].get("holder") != item.doc_id:
            return []  # already released (a repaired double release is harmless)
        if found[0].get("retire"):
            return [Write("delete", path, version=found[1], conditional=True)]
        return [Write("update", path, {"holder": None, "since": now}, found[1], True)]

    # -- queues and slots -------------------------------------------------------------------

    def get_queue(self, queue: str) -> dict[str, Any] | None:
        found = self._read(f"{QUEUES}/{queue}")
        return found[0] if found else None

    def list_queues(self) -> list[dict[str, Any]]:
        return [data for _, data, _ in self._children(QUEUES)]

    def put_queue(self, name: str, document: dict[str, Any], max_jobs: int) -> None:
        check_max_jobs(max_jobs)
        now = self.clock()
        doc = {**document, "name": name, "max_jobs": max_jobs, "updated_at": now}
        self._commit([Write("set", f"{QUEUES}/{name}", doc)])
        writes = self._resize(f"{QUEUES}/{name}/{SLOTS}", max(max_jobs, 0), {"since": now})
        if writes:
            self._commit(writes)

    def _resize(self, collection: str, wanted: int, free: dict[str, Any]) -> list[Write]:
        """As `launchq.store.queues.resize`: the writes that bring slot-like documents to
        `wanted`, retiring held ones above it."""
        existing = {sid: data for sid, data, _ in self._children(collection)}
        writes = []
        for index in range(wanted):
            sid = slot_id(index)
            if sid not in existing:
                writes.append(Write("create", f"{collection}/{sid}", {"holder": None, **free}))
            elif existing[sid].get("retire"):
                writes.append(Write("update", f"{collection}/{sid}", {"retire": False}))
        for sid, data in existing.items():
            if int(sid) >= wanted:
                if data.get("holder") is None:
                    writes.append(Write("delete", f"{collection}/{sid}"))
                else:
                    writes.append(Write("update", f"{collection}/{sid}", {"retire": True}))
        return writes

    def set_submitter_usage(self, queue: str, usage: Mapping[str, Any]) -> None:
        with contextlib.suppress(Conflict):  # deleted meanwhile
            self._commit([Write("update", f"{QUEUES}/{queue}", {"submitter_usage": dict(usage)})])

    def count_submitter_holding(self, queue: str, submitter: str) -> int:
        holding = {s.value for s in SLOT_STATES}
        return len(
            self._items(
                lambda d: (
                    d.get("queue") == queue
                    and d.get("submitter") == submitter
                    and d.get("state") in holding
                )
            )
        )

    def set_paused(self, queue: str, paused: bool) -> None:
        update = {"paused": paused, "updated_at": self.clock()}
        self._commit([Write("update", f"{QUEUES}/{queue}", update)])

    def _slots(self, queue: str) -> list[Slot]:
        found = self._children(f"{QUEUES}/{queue}/{SLOTS}")
        return [slot_from(queue, sid, data, version) for sid, data, version in found]

    def free_slots(self, queue: str, limit: int) -> list[Slot]:
        return [s for s in self._slots(queue) if s.holder is None][:limit]

    def held_slots(self, queue: str) -> list[Slot]:
        # Firestore orders a `!=` query by that field first.
        held = [s for s in self._slots(queue) if s.holder is not None]
        return sorted(held, key=lambda s: (s.holder or "", s.id))

    def free_leaked_slot(self, slot: Slot) -> bool:
        if slot.holder is None:
            return False
        item = self._read(f"{ITEMS}/{slot.holder}")
        if item is not None and ItemState(item[0]["state"]) in SLOT_STATES:
            return False
        path = self._path_of(slot)
        if slot.retire:
            write = Write("delete", path, version=slot.version, conditional=True)
        else:
            free: dict[str, Any] = {"holder": None, "since": self.clock()}
            if slot.pool is not None:
                free["queue"] = None
            write = Write("update", path, free, slot.version, True)
        try:
            self._commit([write])
        except Conflict:
            return False
        return True

    def slot_holders(self, queue: str) -> dict[str, str | None]:
        return {s.id: s.holder for s in self._slots(queue)}

    # -- cohorts and their quota units -------------------------------------------------------

    def put_cohort(self, name: str, document: Mapping[str, Any], pools: Mapping[str, int]) -> None:
        now = self.clock()
        path = f"{COHORTS}/{name}"
        found = self._read(path)
        kept = found[0] if found else {}
        self._commit([Write("set", path, {**kept, **document, "name": name, "updated_at": now})])
        writes = []
        for pool, wanted in pools.items():
            pool_doc = {"limit": wanted, "cohort": name, "updated_at": now}
            writes.append(Write("set", f"{POOLS}/{pool}", pool_doc))
            free = {"queue": None, "since": now}
            writes += self._resize(f"{POOLS}/{pool}/{UNITS}", wanted, free)
        if writes:
            self._commit(writes)

    def get_cohort(self, name: str) -> dict[str, Any] | None:
        found = self._read(f"{COHORTS}/{name}")
        return found[0] if found else None

    def delete_cohort(self, name: str) -> None:
        self._commit([Write("delete", f"{COHORTS}/{name}")])

    def list_cohorts(self) -> list[dict[str, Any]]:
        return [data for _, data, _ in self._children(COHORTS)]

    def update_cohort(self, name: str, changes: Mapping[FieldKey, Any]) -> None:
        path = f"{COHORTS}/{name}"
        with self._lock:
            found = self._read(path)
            if found is None:
                raise Conflict(f"no document to update: {path}")
            data = found[0]
            for key, value in changes.items():
                parts = key if isinstance(key, tuple) else (key,)
                node = data
                for part in parts[:-1]:
                    node = node.setdefault(part, {})
                node[parts[-1]] = copy.deepcopy(value)
            self._commit([Write("set", path, data)])

    def _units(self, pool: str) -> list[Slot]:
        found = self._children(f"{POOLS}/{pool}/{UNITS}")
        return [unit_from(pool, uid, data, version) for uid, data, version in found]

    def free_units(self, pool: str, limit: int) -> list[Slot]:
        return [u for u in self._units(pool) if u.holder is None][:limit]

    def held_units(self, pool: str) -> list[Slot]:
        held = [u for u in self._units(pool) if u.holder is not None]
        return sorted(held, key=lambda u: (u.holder or "", u.id))

    def count_held_units(self, pool: str, queue: str) -> int:
        return sum(1 for u in self._units(pool) if u.holder is not None and u.queue == queue)

    # -- budget ledgers ---------------------------------------------------------------------

    def get_ledgers(self, ledgers: Sequence[str], create: bool = True) -> list[Ledger]:
        out = []
        for name in ledgers:
            path = f"{SPEND}/{name}"
            found = self._read(path)
            if found is None and not create:
                out.append(Ledger(name))
                continue
            if found is None:
                scope, _, rest = name.partition("~")
                owner, _, period = rest.rpartition("~")
                fields = {
                    "scope": scope,
                    "name": owner,
                    "period": period,
                    "created_at": self.clock(),
                }
                with contextlib.suppress(_AlreadyExists):
                    self._commit([Write("create", path, fields)])
                found = self._read(path)
            assert found is not None
            out.append(Ledger.from_document(name, found[0], found[1]))
        return out

    def list_ledgers(self, period: str) -> list[tuple[dict[str, Any], Ledger]]:
        return [
            (data, Ledger.from_document(name, data, version))
            for name, data, version in self._children(SPEND)
            if data.get("period") == period
        ]

    def get_prices(self) -> dict[str, Any] | None:
        found = self._read(f"{SETTINGS}/prices")
        return found[0] if found else None

    def put_prices(self, document: Mapping[str, Any] | None) -> None:
        path = f"{SETTINGS}/prices"
        if document is None:
            self._commit([Write("delete", path)])
        else:
            self._commit([Write("set", path, {**document, "updated_at": self.clock()})])

    # -- budget and backoff -----------------------------------------------------------------

    def take_token(self, token_ids: Sequence[str], expire_at: datetime) -> bool:
        now = self.clock()
        for token_id in token_ids:
            doc = {"taken_at": now, "expire_at": expire_at}
            try:
                self._commit([Write("create", f"{BUDGETS}/{token_id}", doc)])
            except _AlreadyExists:
                continue
            return True
        return False

    def update_backoff(
        self, queue: str, change: Callable[[QueueBackoff | None], QueueBackoff]
    ) -> QueueBackoff | None:
        path = f"{QUEUES}/{queue}"
        found = self._read(path)
        if found is None:
            return None
        current = backoff_from(found[0])
        new = change(current)
        if new == current:
            return current
        try:
            self._commit([Write("update", path, {BACKOFF_FIELD: asdict(new)}, found[1], True)])
        except Conflict:
            return None
        return new

    def clear_backoff(self, queue: str) -> None:
        with contextlib.suppress(Conflict):  # no queue: nothing to clear
            self._commit([Write("update", f"{QUEUES}/{queue}", {BACKOFF_FIELD: _DELETE})])

    # -- builds -----------------------------------------------------------------------------

    def claim_notice(self, key: str, document: Mapping[str, Any]) -> Notice | None:
        now = self.clock()
        path = f"{NOTICES}/{key}"
        fresh = {**document, **claim_fields(now, 1), "created_at": now}
        try:
            version = self._commit([Write("create", path, fresh)])
        except _AlreadyExists:
            pass
        else:
            return Notice.from_document(key, copy.deepcopy(fresh), version)
        found = self.get_notice(key)
        if found is None or not found.claimable(now):
            return None
        update = claim_fields(now, found.attempts + 1)
        try:
            version = self._commit([Write("update", path, update, found.version, True)])
        except Conflict:
            return None
        return Notice.from_document(key, {**found.document, **update}, version)

    def finish_notice(self, notice: Notice, changes: Mapping[str, Any]) -> Notice:
        update = {**changes, "updated_at": self.clock()}
        path = f"{NOTICES}/{notice.key}"
        version = self._commit([Write("update", path, update, notice.version, True)])
        return Notice.from_document(notice.key, {**notice.document, **update}, version)

    def get_notice(self, key: str) -> Notice | None:
        found = self._read(f"{NOTICES}/{key}")
        return Notice.from_document(key, *found) if found else None

    def create_build(self, key: str, document: Mapping[str, Any]) -> bool:
        try:
            self._commit([Write("create", f"{BUILDS}/{key}", document)])
        except _AlreadyExists:
            return False
        return True

    def get_build(self, key: str) -> StoredDocument | None:
        found = self._read(f"{BUILDS}/{key}")
        return StoredDocument(*found) if found else None

    def update_build(self, key: str, changes: Mapping[str, Any]) -> None:
        self._commit([Write("update", f"{BUILDS}/{key}", changes)])

    def join_build(self, key: str, waiter: str) -> None:
        self._commit([Write("update", f"{BUILDS}/{key}", {"waiting": _Union((waiter,))})])

    def leave_build(self, key: str, waiter: str) -> None:
        self._commit([Write("update", f"{BUILDS}/{key}", {"waiting": _Remove((waiter,))})])

    def restart_build(
        self,
        key: str,
        fields: Mapping[str, Any],
        clear: Sequence[str],
        waiter: str,
        failed_attempt: Mapping[str, Any],
        version: datetime | None,
    ) -> bool:
        restart = {
            **fields,
            **dict.fromkeys(clear, _DELETE),
            "waiting": _Union((waiter,)),
            "failed_attempts": _Union((dict(failed_attempt),)),
        }
        try:
            self._commit([Write("update", f"{BUILDS}/{key}", restart, version, True)])
        except Conflict:
            return False
        return True

    # -- leases -----------------------------------------------------------------------------

    def take_leadership(self, name: str, holder: str, seconds: float) -> bool:
        path = f"{LEASES}/{name}"
        found = self._read(path)
        now = self.clock()
        data = found[0] if found else {}
        if data.get("holder") not in (None, holder) and data.get("until", now) > now:
            return False
        lease = {"holder": holder, "until": now + timedelta(seconds=seconds), "taken_at": now}
        if found is not None:
            write = Write("update", path, lease, found[1], True)
        else:
            write = Write("create", path, lease)
        try:
            self._commit([write])
        except (Conflict, _AlreadyExists):
            return False
        return True

    def give_up_leadership(self, name: str, holder: str) -> None:
        path = f"{LEASES}/{name}"
        found = self._read(path)
        if found is not None and found[0].get("holder") == holder:
            update = {"holder": None, "released_at": self.clock()}
            with contextlib.suppress(Conflict):  # somebody took it over: theirs now
                self._commit([Write("update", path, update, found[1], True)])


def _conforms(store: MemoryStore) -> Store:
    return store  # mypy checks here that MemoryStore is a whole Store
