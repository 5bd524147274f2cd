import pytest
from google.cloud.aiplatform_v1.types import JobState

from launchq.model.states import (
    POLLED_STATES,
    SLOT_STATES,
    STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    VERTEX_STATES,
    InvalidTransition,
    ItemState,
    check_transition,
    item_state_for_vertex,
    vertex_state_name,
)


def test_every_item_state_is_in_both_tables() -> None:
    assert set(STATES) == set(ItemState)
    assert set(TRANSITIONS) == set(ItemState)


def test_vertex_table_matches_the_installed_proto_enum() -> None:
    # If Google adds a JobState, this fails and tells us to map it.
    assert {(v.number, v.name) for v in VERTEX_STATES} == {(s.value, s.name) for s in JobState}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (JobState.JOB_STATE_QUEUED, ItemState.SUBMITTED),
        (2, ItemState.PENDING),
        ("3", ItemState.RUNNING),
        ("JOB_STATE_UPDATING", ItemState.RUNNING),
        ("SUCCEEDED", ItemState.SUCCEEDED),
        (JobState.JOB_STATE_FAILED, ItemState.FAILED),
        (6, ItemState.CANCELLING),
        ("JOB_STATE_CANCELLED", ItemState.CANCELLED),
        (8, ItemState.PAUSED),
        (9, ItemState.EXPIRED),
        (11, ItemState.PARTIALLY_SUCCEEDED),
        (0, ItemState.UNKNOWN),
        (42, ItemState.UNKNOWN),
        ("JOB_STATE_TELEPORTING", ItemState.UNKNOWN),
        (None, ItemState.UNKNOWN),
        (True, ItemState.UNKNOWN),
    ],
)
def test_vertex_states_map_by_name_or_number(raw: object, expected: ItemState) -> None:
    assert item_state_for_vertex(raw) is expected


def test_str_of_the_proto_enum_is_not_what_we_map_by() -> None:
    # The W&B defect: on Python 3.11+ str() of the enum is its number.
    assert str(JobState.JOB_STATE_SUCCEEDED) == "4"
    assert item_state_for_vertex(str(JobState.JOB_STATE_SUCCEEDED)) is ItemState.SUCCEEDED


def test_unknown_values_are_named_for_the_record() -> None:
    assert vertex_state_name(4) == "JOB_STATE_SUCCEEDED"
    assert vertex_state_name(42) == "UNRECOGNIZED(42)"


def test_cancelled_and_expired_free_their_slot_paused_and_unknown_do_not() -> None:
    for state in (ItemState.CANCELLED, ItemState.EXPIRED, ItemState.SUCCEEDED, ItemState.FAILED):
        assert state in TERMINAL_STATES
        assert state not in SLOT_STATES
    for state in (ItemState.PAUSED, ItemState.UNKNOWN, ItemState.SUBMITTING, ItemState.CANCELLING):
        assert state in SLOT_STATES
        assert state not in TERMINAL_STATES
    assert ItemState.SUBMITTING not in POLLED_STATES
    assert ItemState.QUEUED not in SLOT_STATES


def test_transitions() -> None:
    check_transition(ItemState.QUEUED, ItemState.SUBMITTING)
    check_transition(ItemState.SUBMITTING, ItemState.RUNNING)
    check_transition(ItemState.RUNNING, ItemState.SUCCEEDED)
    check_transition(ItemState.FAILED, ItemState.QUEUED)  # a retry: new attempt
    with pytest.raises(InvalidTransition, match="SUCCEEDED to QUEUED"):
        check_transition(ItemState.SUCCEEDED, ItemState.QUEUED)
    with pytest.raises(InvalidTransition, match="REJECTED to QUEUED"):
        check_transition(ItemState.REJECTED, ItemState.QUEUED)
    with pytest.raises(InvalidTransition):
        check_transition(ItemState.QUEUED, ItemState.RUNNING)
    with pytest.raises(InvalidTransition):
        check_transition(ItemState.REJECTED, ItemState.SUBMITTING)
    # Terminal states lead nowhere except a retry into QUEUED.
    for state in TERMINAL_STATES:
        assert TRANSITIONS[state] <= {ItemState.QUEUED}
