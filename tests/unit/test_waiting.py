"""`launchq.model.waiting.current_wait`: why a waiting item waits now, whatever reason was
stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from launchq.model.reasons import FailureClass, WaitReason, quota_reason, retry_reason
from launchq.model.records import ItemRecord, QueueBackoff
from launchq.model.states import ItemState
from launchq.model.waiting import QueueState, Waiting, current_wait

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
A100 = "custom_model_training_nvidia_a100_gpus"
BACKOFF = QueueBackoff(NOW + timedelta(seconds=30), 1, A100, "us-central1")
QUOTA = quota_reason(A100, "us-central1")
SLOT, PAUSED = WaitReason.FREE_SLOT, WaitReason.PAUSED


def waiting(reason: str | None = SLOT.value, **fields: object) -> ItemRecord:
    return ItemRecord("q", "i", ItemState.QUEUED, reason=reason, **fields)  # type: ignore[arg-type]


def queue(
    paused: bool = False, running: int = 35, max_jobs: int = 35, backoff: QueueBackoff | None = None
) -> QueueState:
    return QueueState(paused, max_jobs, running, backoff)


def test_a_paused_queue_with_free_slots_reads_paused_not_a_free_slot() -> None:
    """The defect: 35 free slots, paused, and the items read `waiting for a free slot`."""
    assert current_wait(waiting(SLOT.value), queue(paused=True, running=0), NOW) == Waiting(
        PAUSED, "queue paused"
    )


def test_after_a_resume_items_recorded_while_paused_read_what_they_wait_for_now() -> None:
    recorded_paused = waiting(PAUSED.value)
    assert current_wait(recorded_paused, queue(running=35), NOW) == Waiting(SLOT, SLOT.value)
    backing_off = current_wait(recorded_paused, queue(running=0, backoff=BACKOFF), NOW)
    assert backing_off == Waiting(WaitReason.QUOTA, QUOTA, BACKOFF.until)
    free = current_wait(recorded_paused, queue(running=3), NOW)
    assert free == Waiting(WaitReason.ADMITTING, WaitReason.ADMITTING.text)


def test_a_quota_backoff_ends_on_its_own() -> None:
    stored_quota = waiting(QUOTA)
    during = current_wait(stored_quota, queue(running=0, backoff=BACKOFF), NOW)
    assert during is not None
    assert during.reason is WaitReason.QUOTA
    later = BACKOFF.until + timedelta(seconds=1)
    assert current_wait(stored_quota, queue(running=0, backoff=BACKOFF), later) == Waiting(
        WaitReason.ADMITTING, WaitReason.ADMITTING.text
    )
    full = current_wait(stored_quota, queue(running=35, backoff=BACKOFF), later)
    assert full == Waiting(SLOT, SLOT.value)


def test_the_pause_wins_over_every_other_wait() -> None:
    retrying = waiting(retry_reason(FailureClass.PREEMPTED), not_before=NOW + timedelta(minutes=1))
    for item in (waiting(QUOTA), waiting(WaitReason.RATE_LIMITED.value), retrying):
        paused = current_wait(item, queue(paused=True, running=0, backoff=BACKOFF), NOW)
        assert paused is not None
        assert paused.reason is PAUSED


def test_an_item_retry_backoff_comes_before_the_queue() -> None:
    until = NOW + timedelta(minutes=2)
    item = waiting(retry_reason(FailureClass.NO_CAPACITY), not_before=until)
    expected = Waiting(WaitReason.RETRY, "retrying after no_capacity", until)
    assert current_wait(item, queue(running=35, backoff=BACKOFF), NOW) == expected
    # Its backoff over, it waits like any other item.
    assert current_wait(item, queue(running=35), until) == Waiting(SLOT, SLOT.value)


def test_the_creation_budget_shows_only_while_a_slot_is_free() -> None:
    limited = waiting(WaitReason.RATE_LIMITED.value)
    budget = current_wait(limited, queue(running=1), NOW)
    assert budget == Waiting(WaitReason.RATE_LIMITED, "rate_limited")
    assert current_wait(limited, queue(running=35), NOW) == Waiting(SLOT, SLOT.value)


def test_an_unlimited_queue_is_never_full() -> None:
    unlimited = queue(running=500, max_jobs=-1)
    assert current_wait(waiting(), unlimited, NOW) == Waiting(
        WaitReason.ADMITTING, WaitReason.ADMITTING.text
    )


def test_a_building_item_waits_for_its_image_and_others_do_not_wait() -> None:
    building = ItemRecord("q", "i", ItemState.BUILDING)
    assert current_wait(building, queue(paused=True), NOW) == Waiting(
        WaitReason.BUILDING, WaitReason.BUILDING.text
    )
    for state in (ItemState.SUBMITTING, ItemState.RUNNING, ItemState.SUCCEEDED):
        assert current_wait(ItemRecord("q", "i", state), queue(), NOW) is None


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (SLOT.value, Waiting(SLOT, SLOT.value)),
        (PAUSED.value, Waiting(PAUSED, PAUSED.value)),
        (QUOTA, Waiting(WaitReason.QUOTA, QUOTA)),
        (None, Waiting(SLOT, SLOT.value)),
        ("an older text", Waiting(SLOT, "an older text")),
    ],
)
def test_without_its_queue_an_item_reads_as_stored(stored: str | None, expected: Waiting) -> None:
    assert current_wait(waiting(stored), None, NOW) == expected
