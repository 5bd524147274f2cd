"""The store's contract, run against both implementations: Firestore (the emulator) and memory.

Every case here runs twice, once per `store` parameter, so `launchq.store.memory.MemoryStore`
(what the orchestration unit tests run on) cannot drift from what Firestore does: the
compare-and-swap on update times, `create()` conflicts, slots taken and released in the same
atomic write as the state change, query orders, limits and projections.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import firestore

from launchq.errors import Conflict
from launchq.model.budgets import Amount, Charge, Ledger, Rates
from launchq.model.notices import LEASE_SECONDS, NoticeState
from launchq.model.records import Claim, NewItem, QueueBackoff
from launchq.model.states import ItemState
from launchq.store import Store, TokenTaken, Transition
from launchq.store.firestore import FirestoreStore
from launchq.store.memory import MemoryStore

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
Q = ItemState.QUEUED
FIELDS = {"priority": 2, "payload_hash": "h", "project": "p", "region": "us-central1"}


class Clock:
    """A clock that moves only when told: enqueue times are exact and ties are possible."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float = 1.0) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", "firestore"])
def store(request: pytest.FixtureRequest, clock: Clock) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore(clock)
        return
    db: firestore.Client = request.getfixturevalue("firestore_db")
    yield FirestoreStore(db, clock)


def _create(store: Store, clock: Clock, item_id: str, queue: str = "q", **fields: Any) -> Any:
    clock.tick()
    record = store.create_item(queue, item_id, Q, {**FIELDS, **fields}, "enqueued")
    assert record is not None
    return record


# -- items: create, compare-and-swap -------------------------------------------------------------


def test_create_is_once_and_a_redelivery_reads_none(store: Store, clock: Clock) -> None:
    first = _create(store, clock, "a")
    assert (first.state, first.queue, first.item_id, first.priority) == (Q, "q", "a", 2)
    assert first.version is not None
    assert store.create_item("q", "a", Q, FIELDS, "again") is None
    document = store.item_document("q", "a")
    assert document is not None
    assert [h["cause"] for h in document["history"]] == ["enqueued"]
    assert document["enqueued_at"] == T0 + timedelta(seconds=1)
    got = store.get_item("q", "a")
    assert got is not None
    assert got.version == first.version
    assert store.get_item("q", "missing") is None
    assert store.item_document("q", "x") is None


def test_create_claimed_takes_the_slot_or_writes_nothing(store: Store, clock: Clock) -> None:
    store.put_queue("q", {"config": {}}, 1)
    [slot] = store.free_slots("q", 5)
    claim = Claim("c1", T0 + timedelta(minutes=10))
    made = store.create_item(
        "q", "a", Q, FIELDS, "enqueued", claim=claim, take_slot=slot, claim_cause="admitted"
    )
    assert made is not None
    assert made.state is ItemState.SUBMITTING
    assert (made.claim, made.attempt, made.slot) == (claim, 1, slot.id)
    assert store.slot_holders("q") == {slot.id: made.doc_id}
    # The same (stale) slot for another item: the slot moved, so nothing at all is written.
    with pytest.raises(Conflict):
        store.create_item("q", "b", Q, FIELDS, "enqueued", claim=claim, take_slot=slot)
    assert store.get_item("q", "b") is None
    assert store.free_slots("q", 5) == []


def test_create_with_a_taken_token_writes_nothing(store: Store, clock: Clock) -> None:
    assert store.take_token(["t1"], T0)
    with pytest.raises(TokenTaken):
        store.create_item("q", "a", Q, FIELDS, "enqueued", token="t1", token_expire_at=T0)
    assert store.get_item("q", "a") is None
    made = store.create_item("q", "a", Q, FIELDS, "enqueued", token="t2", token_expire_at=T0)
    assert made is not None
    assert not store.take_token(["t1", "t2"], T0)
    # A redelivery with a fresh token is a redelivery, not a token conflict.
    assert store.create_item("q", "a", Q, FIELDS, "again", token="t3") is None


def test_transition_is_a_compare_and_swap(store: Store, clock: Clock) -> None:
    read = _create(store, clock, "a")
    clock.tick()
    moved = store.transition(
        read, Transition(ItemState.SUBMITTING, "admitted"), {"attempt": 1, "reason": None}
    )
    assert moved.state is ItemState.SUBMITTING
    assert moved.attempt == 1
    assert moved.version != read.version
    with pytest.raises(Conflict):  # `read` is stale now
        store.transition(read, Transition(ItemState.CANCELLED, "late"))
    with pytest.raises(Conflict):
        store.touch(read, {"reason": "stale"})
    touched = store.touch(moved, {"reason": "waiting"})
    assert touched.reason == "waiting"
    assert touched.state is ItemState.SUBMITTING
    again = store.get_item("q", "a")
    assert again is not None
    assert (again.version, again.reason, again.state) == (touched.version, "waiting", moved.state)
    document = store.item_document("q", "a") or {}
    assert [(h["from"], h["to"]) for h in document["history"]] == [
        (None, "QUEUED"),
        ("QUEUED", "SUBMITTING"),
    ]


def test_a_transition_via_records_both_steps(store: Store, clock: Clock) -> None:
    read = _create(store, clock, "a")
    submitting = store.transition(read, Transition(ItemState.SUBMITTING, "admitted"))
    submitted = store.transition(submitting, Transition(ItemState.SUBMITTED, "created"))
    running = store.transition(submitted, Transition(ItemState.RUNNING, "started"))
    retried = store.transition(
        running,
        Transition(ItemState.QUEUED, "retry", {"n": 1}, via=ItemState.FAILED, via_cause="died"),
    )
    assert retried.state is Q
    history = (store.item_document("q", "a") or {})["history"]
    assert [(h["to"], h["cause"]) for h in history[-2:]] == [
        ("FAILED", "died"),
        ("QUEUED", "retry"),
    ]
    assert history[-1]["n"] == 1
    assert retried.stored["history"] == history


def test_only_one_of_racing_transitions_wins(store: Store, clock: Clock) -> None:
    read = _create(store, clock, "a")
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def race(n: int) -> None:
        barrier.wait()
        try:
            store.transition(read, Transition(ItemState.SUBMITTING, f"claim-{n}"))
        except Conflict:
            outcomes.append("lost")
        else:
            outcomes.append("won")

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["lost"] * 7 + ["won"]
    assert len((store.item_document("q", "a") or {})["history"]) == 2


# -- slots -------------------------------------------------------------------------------------


def test_slots_follow_the_state_and_max_jobs(store: Store, clock: Clock) -> None:
    store.put_queue("q", {"config": {"x": 1}}, 2)
    assert (store.get_queue("q") or {})["max_jobs"] == 2
    assert len(store.free_slots("q", 1)) == 1
    first, second = store.free_slots("q", 5)
    a = store.transition(
        _create(store, clock, "a"), Transition(ItemState.SUBMITTING, "go"), take_slot=first
    )
    b = store.transition(
        _create(store, clock, "b"), Transition(ItemState.SUBMITTING, "go"), take_slot=second
    )
    assert (a.slot, b.slot) == (first.id, second.id)
    assert store.count_holding_slots("q") == 2
    assert store.free_slots("q", 5) == []
    with pytest.raises(Conflict):  # a slot read before it was taken
        store.transition(
            _create(store, clock, "c"), Transition(ItemState.SUBMITTING, "go"), take_slot=first
        )
    assert store.get_item("q", "c") is not None  # only the compare-and-swap failed
    assert {s.holder for s in store.held_slots("q")} == {a.doc_id, b.doc_id}
    # Shrink to 1: the held slot above the limit retires and is deleted when released.
    store.put_queue("q", {"config": {}}, 1)
    assert store.slot_holders("q") == {first.id: a.doc_id, second.id: b.doc_id}
    store.transition(b, Transition(ItemState.CANCELLED, "stop"), release_slot=True)
    assert store.slot_holders("q") == {first.id: a.doc_id}
    store.transition(a, Transition(ItemState.CANCELLED, "stop"), release_slot=True)
    assert store.slot_holders("q") == {first.id: None}
    assert [s.id for s in store.free_slots("q", 5)] == [first.id]
    # Unlimited: no slots at all.
    store.put_queue("q", {"config": {}}, -1)
    assert store.slot_holders("q") == {}


def test_a_leaked_slot_is_freed_only_if_unchanged(store: Store, clock: Clock) -> None:
    store.put_queue("q", {}, 1)
    [slot] = store.free_slots("q", 1)
    held = store.transition(
        _create(store, clock, "a"), Transition(ItemState.SUBMITTING, "go"), take_slot=slot
    )
    [taken] = store.held_slots("q")
    assert not store.free_leaked_slot(taken)  # its holder is in a slot-holding state
    # The holder ends without releasing (a bug, a hand edit): the slot leaked.
    store.transition(held, Transition(ItemState.CANCELLED, "edit"))
    assert not store.free_leaked_slot(slot)  # a stale read of the slot: never freed
    assert store.free_leaked_slot(taken)
    assert store.slot_holders("q") == {slot.id: None}


def test_quota_units_follow_the_state_with_the_slot(store: Store, clock: Clock) -> None:
    pool = "p~us-central1~custom_model_training_nvidia_l4_gpus"
    store.put_cohort("c", {"config": {"name": "c"}}, {pool: 3})
    assert len(store.free_units(pool, 10)) == 3
    store.put_queue("q", {}, 2)
    [slot, _] = store.free_slots("q", 2)
    two = store.free_units(pool, 2)
    a = store.transition(
        _create(store, clock, "a"),
        Transition(ItemState.SUBMITTING, "go"),
        take_slot=slot,
        take_units=two,
    )
    assert a.units == tuple(u.ref for u in two)
    assert store.count_held_units(pool, "q") == 2
    assert store.count_held_units(pool, "other") == 0
    assert {u.holder for u in store.held_units(pool)} == {a.doc_id}
    assert all(u.queue == "q" for u in store.held_units(pool))
    with pytest.raises(Conflict):  # a unit read before it was taken: nothing is written
        store.transition(
            _create(store, clock, "b"), Transition(ItemState.SUBMITTING, "go"), take_units=two
        )
    assert store.count_holding_slots("q") == 1
    # Shrink to 1: a held unit above the limit retires and is deleted when released.
    store.put_cohort("c", {"config": {"name": "c", "x": 1}}, {pool: 1})
    assert (store.get_cohort("c") or {})["config"] == {"name": "c", "x": 1}
    ended = store.transition(a, Transition(ItemState.CANCELLED, "stop"), release_slot=True)
    assert ended.units == ()
    assert store.held_units(pool) == []
    assert len(store.free_units(pool, 10)) == 1
    assert store.count_held_units(pool, "q") == 0


def test_a_leaked_unit_is_freed_only_if_unchanged(store: Store, clock: Clock) -> None:
    pool = "p~us-central1~custom_model_training_nvidia_l4_gpus"
    store.put_cohort("c", {"config": {}}, {pool: 1})
    [unit] = store.free_units(pool, 1)
    held = store.transition(
        _create(store, clock, "a"), Transition(ItemState.SUBMITTING, "go"), take_units=[unit]
    )
    [taken] = store.held_units(pool)
    assert not store.free_leaked_slot(taken)  # its holder holds it rightly
    store.transition(held, Transition(ItemState.CANCELLED, "edit"))
    assert not store.free_leaked_slot(unit)  # a stale read: never freed
    assert store.free_leaked_slot(taken)
    assert store.count_held_units(pool, "q") == 0
    assert len(store.free_units(pool, 1)) == 1


def test_cohort_fields_are_set_by_path(store: Store, clock: Clock) -> None:
    store.put_cohort("c", {"config": {"name": "c"}}, {})
    pool = "example.com:p~us-central1~m"  # dots and colons stay one key
    store.update_cohort("c", {("refusals", pool): {"held": 2}, "usage": {"q.a": {"value": 1.0}}})
    store.update_cohort("c", {("refusals", "other"): {"held": 1}})
    document = store.get_cohort("c") or {}
    assert document["refusals"] == {pool: {"held": 2}, "other": {"held": 1}}
    assert document["usage"] == {"q.a": {"value": 1.0}}
    store.put_cohort("c", {"config": {"v": 2}}, {})  # a re-apply keeps usage
    assert (store.get_cohort("c") or {})["usage"] == {"q.a": {"value": 1.0}}
    assert (store.get_cohort("c") or {})["config"] == {"v": 2}  # replaced whole, not merged
    assert [d["name"] for d in store.list_cohorts()] == ["c"]


def _charge(gpus: int, timeout: int, ledgers: tuple[str, ...]) -> Charge:
    rates = Rates(gpus, 2_000_000 * gpus, timeout)
    return Charge(rates, ledgers, rates.most)


def test_a_budget_reservation_is_a_compare_and_swap_and_the_release_settles_it(
    store: Store, clock: Clock
) -> None:
    name = "queue~q~2026-03"
    [empty] = store.get_ledgers([name], create=False)
    assert empty == Ledger(name)  # a reader never creates one
    assert store.list_ledgers("2026-03") == []
    [ledger] = store.get_ledgers([name])
    assert ledger.version is not None
    assert ledger.used == Amount(0, 0)
    charge = _charge(2, 3600, (name,))
    a = store.transition(
        _create(store, clock, "a"), Transition(ItemState.SUBMITTING, "go"),
        charge=charge, ledgers=[ledger],
    )  # fmt: skip
    assert a.stored["charge"]["reserved_gpu_ms"] == 7_200_000
    with pytest.raises(Conflict):  # decided on the ledger as it was before a's reservation
        store.transition(
            _create(store, clock, "b"), Transition(ItemState.SUBMITTING, "go"),
            charge=charge, ledgers=[ledger],
        )  # fmt: skip
    [after] = store.get_ledgers([name])
    assert (after.reserved, after.attempts) == (Amount(7_200_000, 4_000_000), 1)
    # The attempt ran 30 minutes (Vertex's start and end times): that is what it costs.
    attempt = {"n": 0, "start_time": "2026-03-01T12:00:00Z", "end_time": "2026-03-01T12:30:00Z"}
    ended = store.transition(
        a, Transition(ItemState.SUCCEEDED, "done"), {"attempts": [attempt]}, release_slot=True
    )
    assert ended.stored.get("charge") is None
    [settled] = store.get_ledgers([name])
    assert settled.reserved == Amount(0, 0)
    assert settled.spent == Amount(3_600_000, 2_000_000)  # 2 GPUs x $2/h x 0.5 h
    [(fields, listed)] = store.list_ledgers("2026-03")
    assert (fields["scope"], fields["name"], listed.spent) == ("queue", "q", settled.spent)
    # A second release of the same item (a repaired double end) books nothing twice.
    with pytest.raises(Conflict):
        store.transition(a, Transition(ItemState.SUCCEEDED, "again"), release_slot=True)
    assert store.get_ledgers([name])[0].spent == settled.spent


def test_the_price_table_is_stored_and_removed(store: Store, clock: Clock) -> None:
    assert store.get_prices() is None
    store.put_prices({"source": "s", "retrieved": "2026-12-01", "rates": []})
    assert (store.get_prices() or {})["source"] == "s"
    store.put_prices(None)
    assert store.get_prices() is None


# -- queries -----------------------------------------------------------------------------------


def test_waiting_items_come_in_admission_order_within_the_limit(store: Store, clock: Clock) -> None:
    _create(store, clock, "low-old", priority=3)
    _create(store, clock, "high-new", priority=1)
    _create(store, clock, "mid", priority=2)
    _create(store, clock, "high-newer", priority=1)
    _create(store, clock, "other", queue="other", priority=0)
    backing = _create(store, clock, "backing-off", priority=0)
    store.touch(backing, {"not_before": clock.now + timedelta(hours=1)})
    ids = [r.item_id for r in store.waiting_items("q", 10)]
    assert ids == ["high-new", "high-newer", "mid", "low-old"]
    # The limit counts ready items: the backing-off one at the head does not take a place.
    assert [r.item_id for r in store.waiting_items("q", 2)] == ["high-new", "high-newer"]
    assert store.count_waiting("q") == 5
    assert store.count_waiting("other") == 1


def test_ready_items_behind_a_head_that_backs_off_are_found(store: Store, clock: Clock) -> None:
    """Eleven retries backing off at the head of the queue (priority 0) must not hide the item
    behind them from admission's page of 8."""
    for n in range(11):
        backing = _create(store, clock, f"retry-{n:02d}", priority=0)
        store.touch(backing, {"not_before": clock.now + timedelta(minutes=5)})
    _create(store, clock, "ready", priority=2)
    assert [r.item_id for r in store.waiting_items("q", 8)] == ["ready"]
    assert [r.item_id for r in store.waiting_items("q", 1)] == ["ready"]
    # Bounded: behind more than SKIPPED_PAGES pages of backing-off items, nothing is read.
    for n in range(11, 60):
        backing = _create(store, clock, f"retry-{n:02d}", priority=0)
        store.touch(backing, {"not_before": clock.now + timedelta(minutes=5)})
    assert store.waiting_items("q", 8) == []


def test_recent_items_page_without_repeats_or_gaps(store: Store, clock: Clock) -> None:
    for n in range(7):
        store.create_item("q", f"tie-{n}", Q, FIELDS, "enqueued")  # one enqueue time: ties
    clock.tick()
    _create(store, clock, "newest")
    _create(store, clock, "elsewhere", queue="other")
    seen: list[str] = []
    after = None
    while True:
        page = store.recent_items("q", [], 3, after)
        seen += [r.item_id for r in page]
        if len(page) < 3:
            break
        last = page[-1]
        assert last.enqueued_at is not None
        after = (last.enqueued_at, last.doc_id)
    assert seen[0] == "newest"
    assert seen[1:] == [f"tie-{n}" for n in reversed(range(7))]  # doc id, descending
    everywhere = store.recent_items(None, [], 20)
    assert [r.item_id for r in everywhere][:2] == ["elsewhere", "newest"]
    assert store.recent_items("q", [ItemState.SUBMITTING], 20) == []


def test_state_and_id_queries(store: Store, clock: Clock) -> None:
    a = _create(store, clock, "same")
    _create(store, clock, "same", queue="other")
    _create(store, clock, "b")
    store.transition(a, Transition(ItemState.SUBMITTING, "go"))
    assert sorted(r.queue for r in store.items_with_id("same")) == ["other", "q"]
    assert len(store.items_with_id("same", limit=1)) == 1
    active = list(store.items_in_states([ItemState.SUBMITTING, ItemState.RUNNING]))
    assert [r.item_id for r in active] == ["same"]
    queued = list(store.items_in_states([Q], queue="q", fields=["queue", "item_id", "state"]))
    assert [r.item_id for r in queued] == ["b"]
    assert set(queued[0].stored) == {"queue", "item_id", "state"}  # a projection, not the doc
    assert queued[0].priority == 0  # unread fields keep their defaults
    # A projection that leaves out the identity still gives whole records (the dashboard's
    # queues page asked for two fields and answered 500 while any item waited).
    [partial] = store.items_in_states([Q], queue="q", fields=["enqueued_at", "reason"])
    assert (partial.queue, partial.item_id, partial.state) == ("q", "b", Q)
    assert set(partial.stored) == {"queue", "item_id", "state", "enqueued_at"}


def test_items_enqueued_since_is_projected(store: Store, clock: Clock) -> None:
    _create(store, clock, "old")
    since = clock.now + timedelta(seconds=1)
    _create(store, clock, "new")
    _create(store, clock, "elsewhere", queue="other")
    found = store.items_enqueued_since("q", since, ["item_id", "state", "history"])
    assert [d["item_id"] for d in found] == ["new"]
    assert set(found[0]) == {"item_id", "state", "history"}


# -- queues, budget and backoff ----------------------------------------------------------------


def test_queues_and_pause(store: Store, clock: Clock) -> None:
    store.put_queue("b", {"config": {}}, -1)
    store.put_queue("a", {"config": {"k": 1}}, 3)
    assert [q["name"] for q in store.list_queues()] == ["a", "b"]
    store.set_paused("a", True)
    assert (store.get_queue("a") or {})["paused"] is True
    assert store.get_queue("missing") is None
    with pytest.raises(ValueError, match="max_jobs above"):
        store.put_queue("c", {}, 10_001)


def test_backoff_is_a_compare_and_swap(store: Store, clock: Clock) -> None:
    assert store.update_backoff("missing", lambda _b: QueueBackoff(T0, 1, "m", "r")) is None
    store.put_queue("q", {}, -1)
    first = store.update_backoff("q", lambda _b: QueueBackoff(T0, 1, "gpus", "us-central1"))
    assert first == QueueBackoff(T0, 1, "gpus", "us-central1")

    def bump(current: QueueBackoff | None) -> QueueBackoff:
        assert current is not None
        # Somebody else writes the queue between our read and our write.
        store.set_paused("q", False)
        return QueueBackoff(current.until, current.refusals + 1, current.metric, current.region)

    assert store.update_backoff("q", bump) is None  # lost the race: the other write stands
    assert (store.get_queue("q") or {})["capacity_backoff"]["refusals"] == 1
    store.clear_backoff("q")
    assert "capacity_backoff" not in (store.get_queue("q") or {})
    store.clear_backoff("missing")  # nothing to clear, no error


# -- builds and leases -------------------------------------------------------------------------


def test_builds_claim_join_leave_and_restart(store: Store, clock: Clock) -> None:
    assert store.create_build("k", {"state": "CLAIMED", "waiting": ["q/a"], "detail": "x"})
    assert not store.create_build("k", {"state": "CLAIMED", "waiting": ["q/b"]})
    store.join_build("k", "q/b")
    store.join_build("k", "q/b")
    store.update_build("k", {"state": "FAILED", "status": "FAILURE"})
    stale = store.get_build("k")
    assert stale is not None
    assert stale.data["waiting"] == ["q/a", "q/b"]
    assert stale.data["state"] == "FAILED"
    store.leave_build("k", "q/a")
    assert not store.restart_build("k", {"state": "CLAIMED"}, ["status"], "q/c", {}, stale.version)
    current = store.get_build("k")
    assert current is not None
    summary = {"attempt": 1, "status": "FAILURE"}
    restarted = store.restart_build(
        "k",
        {"state": "CLAIMED", "attempt": 2},
        ["status", "detail"],
        "q/c",
        summary,
        current.version,
    )
    assert restarted
    data = (store.get_build("k") or current).data
    assert data["state"] == "CLAIMED"
    assert data["attempt"] == 2
    assert "status" not in data
    assert "detail" not in data
    assert data["waiting"] == ["q/b", "q/c"]
    assert data["failed_attempts"] == [summary]
    assert store.get_build("none") is None


def test_leases(store: Store, clock: Clock) -> None:
    assert store.take_leadership("sweep", "one", 30)
    assert store.take_leadership("sweep", "one", 30)  # its own lease: renewed
    assert not store.take_leadership("sweep", "two", 30)
    clock.tick(31)
    assert store.take_leadership("sweep", "two", 30)  # the first one's ran out
    store.give_up_leadership("sweep", "one")  # not its lease any more: nothing happens
    assert not store.take_leadership("sweep", "one", 30)
    store.give_up_leadership("sweep", "two")
    assert store.take_leadership("sweep", "one", 30)


def test_racing_creates_make_one_item(store: Store, clock: Clock) -> None:
    barrier = threading.Barrier(8)
    made: list[bool] = []

    def run() -> None:
        barrier.wait()
        made.append(store.create_item("q", "a", Q, FIELDS, "enqueued") is not None)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(made) == [False] * 7 + [True]


# -- sweeps: children recorded with their parent's count, in one write ---------------------------


def _parent(store: Store, clock: Clock, item_id: str = "p") -> Any:
    clock.tick()
    fields = {**FIELDS, "sweep": {"kind": "array", "count": 4}, "expanded": 0}
    record = store.create_item("q", item_id, ItemState.SWEEP, fields, "accepted")
    assert record is not None
    return record


def _kids(numbers: range, state: ItemState = Q) -> list[NewItem]:
    return [
        NewItem("q", f"p~{n:05d}", {**FIELDS, "sweep_of": "p"}, f"child {n}", state)
        for n in numbers
    ]


def test_expand_creates_children_and_the_count_together_under_the_parents_version(
    store: Store, clock: Clock
) -> None:
    parent = _parent(store, clock)
    after = store.expand(parent, _kids(range(1, 3)), 2)
    assert after.expanded == 2
    assert store.get_item("q", "p").expanded == 2  # type: ignore[union-attr]
    # The parent as first read is stale: nothing of this batch is written.
    with pytest.raises(Conflict):
        store.expand(parent, _kids(range(3, 5)), 4)
    assert store.get_item("q", "p~00003") is None
    # A child that exists fails the whole batch, count included.
    with pytest.raises(Conflict):
        store.expand(after, _kids(range(2, 4)), 3)
    assert store.get_item("q", "p~00003") is None
    assert store.get_item("q", "p").expanded == 2  # type: ignore[union-attr]
    done = store.expand(after, _kids(range(3, 5), ItemState.HELD), 4)
    assert done.expanded == 4
    child = store.get_item("q", "p~00004")
    assert child is not None
    assert (child.state, child.sweep_of) == (ItemState.HELD, "p")


def test_children_are_listed_in_child_order_paged_and_counted_by_state(
    store: Store, clock: Clock
) -> None:
    parent = _parent(store, clock)
    store.expand(parent, _kids(range(1, 5)), 4)
    _create(store, clock, "other", sweep_of="another")  # another sweep's child
    ids = [c.item_id for c in store.children_of("q", "p")]
    assert ids == ["p~00001", "p~00002", "p~00003", "p~00004"]
    assert [c.item_id for c in store.children_of("q", "p", limit=2, after="p~00002")] == [
        "p~00003",
        "p~00004",
    ]
    first = store.get_item("q", "p~00001")
    assert first is not None
    store.transition(first, Transition(ItemState.CANCELLED, "cancelled"))
    assert store.count_children("q", "p", [Q]) == 3
    assert store.count_children("q", "p", [ItemState.CANCELLED, ItemState.HELD]) == 1
    assert [c.item_id for c in store.children_of("q", "p", [ItemState.CANCELLED])] == ["p~00001"]


# -- notifications: claimed once, taken over only when the sender's lease ran out ---------------


def test_a_notice_is_claimed_once_retried_taken_over_and_never_claimed_when_ended(
    store: Store, clock: Clock
) -> None:
    key = "q~a~hook~FAILED"
    first = store.claim_notice(key, {"queue": "q", "item_id": "a"})
    assert first is not None
    assert (first.state, first.attempts) == (NoticeState.SENDING, 1)
    assert store.claim_notice(key, {}) is None  # leased
    retrying = store.finish_notice(first, {"state": "RETRYING", "lease_until": None})
    second = store.claim_notice(key, {})
    assert second is not None
    assert (second.state, second.attempts) == (NoticeState.SENDING, 2)
    with pytest.raises(Conflict):
        store.finish_notice(retrying, {"state": "SENT"})  # stale: the claim moved it on
    clock.tick(LEASE_SECONDS + 1)  # the second sender died holding it
    third = store.claim_notice(key, {})
    assert third is not None
    assert third.attempts == 3
    store.finish_notice(third, {"state": "SENT"})
    assert store.claim_notice(key, {}) is None
    got = store.get_notice(key)
    assert got is not None
    assert (got.state, got.attempts, got.document["queue"]) == (NoticeState.SENT, 3, "q")


def test_transition_many_is_all_or_nothing_and_only_for_waiting_items(
    store: Store, clock: Clock
) -> None:
    items = [_create(store, clock, f"w{n}") for n in range(3)]
    cancel = Transition(ItemState.CANCELLED, "cancelled by user")
    moved = store.transition(items[1], Transition(ItemState.SUBMITTING, "claimed"))
    with pytest.raises(Conflict):
        store.transition_many(items, cancel, {"reason": None})  # the second changed
    assert [store.get_item("q", f"w{n}").state for n in range(3)] == [  # type: ignore[union-attr]
        Q,
        ItemState.SUBMITTING,
        Q,
    ]
    with pytest.raises(ValueError, match="on its own"):
        store.transition_many([moved], cancel)
    done = store.transition_many([items[0], items[2]], cancel, {"reason": None})
    assert [d.state for d in done] == [ItemState.CANCELLED, ItemState.CANCELLED]
    document = store.item_document("q", "w2")
    assert document is not None
    assert [h["to"] for h in document["history"]] == ["QUEUED", "CANCELLED"]
    assert done[1].version is not None
    store.touch(done[1], {"reason": None})  # its version is the write's: the next CAS works
