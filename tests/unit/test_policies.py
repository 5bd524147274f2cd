"""The pure policies of the core, without emulators: failure classes, retry delays, admission
order, claim expiry, payload identity, state meanings, and which errors are transient."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from google.api_core import exceptions as gexc

from launchq.errors import Conflict, InfrastructureError, NotFound, is_infrastructure
from launchq.gcp.vertex import VertexError
from launchq.model.failures import FailureClass, failure_class, retry_delay
from launchq.model.records import Claim, ItemRecord, admission_order
from launchq.model.states import SLOT_STATES, STATES, TERMINAL_STATES, ItemState
from launchq.spec.config import RetryPolicy
from launchq.spec.fields import canonical_hash
from launchq.spec.item import parse_item, payload_hash
from launchq.spec.validation import ItemError
from launchq.submission import label_filter, with_attempt

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


# -- failure classes and retries ----------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "error", "cancel_reason", "expected"),
    [
        (ItemState.FAILED, {"code": 3, "message": "exit status 1"}, None, "user_error"),
        (ItemState.FAILED, {"code": 8, "message": "Quota exceeded for gpus"}, None, "quota"),
        (ItemState.FAILED, {"code": 8, "message": "out of it"}, None, "no_capacity"),
        (
            ItemState.FAILED,
            {"message": "Resources are insufficient in region"},
            None,
            "no_capacity",
        ),
        (ItemState.FAILED, {"code": 14, "message": "unavailable"}, None, "infrastructure"),
        (ItemState.FAILED, {"code": 13}, None, "infrastructure"),
        (ItemState.FAILED, {"code": 3, "message": "VM was preempted"}, None, "preempted"),
        (ItemState.FAILED, None, None, "user_error"),
        (ItemState.CANCELLED, None, "start_timeout", "start_timeout"),
        (ItemState.CANCELLED, None, "user", "cancelled"),
        (ItemState.CANCELLED, None, None, "cancelled"),
        (ItemState.EXPIRED, None, None, "no_capacity"),
    ],
)
def test_failure_class(
    state: ItemState, error: dict[str, Any] | None, cancel_reason: str | None, expected: str
) -> None:
    assert failure_class(state, error, cancel_reason) is FailureClass(expected)


def policy(**overrides: Any) -> RetryPolicy:
    base: dict[str, Any] = {
        "max_attempts": 4,
        "reasons": ["no_capacity", "preempted"],
        "backoff_initial_seconds": 60,
        "backoff_max_seconds": 200,
    }
    return RetryPolicy.model_validate({**base, **overrides})


def test_retry_delay_doubles_up_to_the_cap_and_stops_at_max_attempts() -> None:
    delays = [retry_delay(policy(), FailureClass.NO_CAPACITY, n) for n in (1, 2, 3, 4)]
    assert delays == [60.0, 120.0, 200.0, None]


def test_retry_delay_only_for_the_listed_classes() -> None:
    assert retry_delay(policy(), FailureClass.PREEMPTED, 1) == 60.0
    assert retry_delay(policy(), FailureClass.QUOTA, 1) is None
    assert retry_delay(policy(), FailureClass.USER_ERROR, 1) is None
    assert retry_delay(policy(user_errors=True), FailureClass.USER_ERROR, 1) == 60.0


def test_a_users_cancel_is_never_retried() -> None:
    everything = policy(reasons=["no_capacity", "start_timeout"], user_errors=True)
    assert retry_delay(everything, FailureClass.CANCELLED_BY_USER, 1) is None
    assert retry_delay(everything, FailureClass.START_TIMEOUT, 1) == 60.0


# -- admission order and claims ------------------------------------------------------------


def record(item_id: str, priority: int, age_s: int, **extra: Any) -> ItemRecord:
    return ItemRecord(
        queue="q",
        item_id=item_id,
        state=extra.pop("state", ItemState.QUEUED),
        priority=priority,
        enqueued_at=NOW - timedelta(seconds=age_s),
        **extra,
    )


def test_admission_order_is_priority_then_age_and_skips_backing_off_items() -> None:
    items = [
        record("low-old", 3, 100),
        record("high-new", 1, 1),
        record("med-new", 2, 5),
        record("med-old", 2, 50),
        record("backing-off", 0, 500, not_before=NOW + timedelta(seconds=30)),
        record("retry-due", 2, 10, not_before=NOW - timedelta(seconds=1)),
        record("running", 0, 900, state=ItemState.RUNNING),
    ]
    order = [i.item_id for i in admission_order(items, NOW)]
    assert order == ["high-new", "med-old", "retry-due", "med-new", "low-old"]


def test_a_claim_is_a_lease_that_expires() -> None:
    claim = Claim.new(NOW, 600, "c1")
    assert claim.until == NOW + timedelta(seconds=600)
    assert not claim.expired(NOW + timedelta(seconds=599))
    assert claim.expired(NOW + timedelta(seconds=600))
    ended = claim.ended_at(NOW)
    assert ended.id == "c1"
    assert ended.expired(NOW)
    assert record("a", 0, 0, claim=claim).lease_expired(NOW) is False
    assert record("a", 0, 0).lease_expired(NOW) is True  # nobody holds it


# -- payload identity -----------------------------------------------------------------------


def test_the_payload_hash_ignores_key_order_and_spelling_of_equal_values() -> None:
    a = {"queue": "q", "item_id": "x", "image_uri": "img", "env": {"A": "1", "B": "2"}}
    b = {"env": {"B": "2", "A": "1"}, "image_uri": "img", "item_id": "x", "queue": "q"}
    assert payload_hash(parse_item(a)) == payload_hash(parse_item(b))
    # "high" is rank 1: the validated item is the same item.
    assert payload_hash(parse_item({**a, "priority": "high"})) == payload_hash(
        parse_item({**a, "priority": 1})
    )
    assert payload_hash(parse_item({**a, "image_uri": "other"})) != payload_hash(parse_item(a))


def test_the_canonical_hash_takes_what_cannot_be_validated() -> None:
    weird = {"\ud800": [1, {"": None}], "n": 10**30}
    assert canonical_hash(weird) == canonical_hash(dict(reversed(list(weird.items()))))
    assert len(canonical_hash(weird)) == 64
    with pytest.raises(ItemError):
        parse_item(weird)


# -- states ---------------------------------------------------------------------------------


def test_state_properties_read_the_one_table() -> None:
    for state in ItemState:
        assert state.is_terminal is STATES[state].terminal
        assert state.holds_slot is STATES[state].holds_slot
        assert state.info is STATES[state]
    assert {s for s in ItemState if s.is_terminal} == TERMINAL_STATES
    assert {s for s in ItemState if s.holds_slot} == SLOT_STATES
    assert ItemState.SUBMITTING.holds_slot
    assert not ItemState.SUBMITTING.has_job


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (gexc.ServiceUnavailable("down"), True),
        (gexc.DeadlineExceeded("slow"), True),
        (gexc.TooManyRequests("busy"), True),
        (requests.ConnectionError("refused"), True),
        (InfrastructureError("x"), True),
        (VertexError(503, "UNAVAILABLE", "x", "CreateCustomJob"), True),
        (VertexError(0, "", "no answer", "CreateCustomJob"), True),
        (VertexError(400, "INVALID_ARGUMENT", "x", "CreateCustomJob"), False),
        (gexc.InvalidArgument("bad"), False),
        (Conflict("lost"), False),
        (NotFound("nope"), False),
        (ValueError("bad input"), False),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates"), False),
    ],
)
def test_is_infrastructure(exc: BaseException, transient: bool) -> None:
    assert is_infrastructure(exc) is transient


def test_not_found_is_a_key_error_with_a_plain_message() -> None:
    with pytest.raises(KeyError):
        raise NotFound("no item 'a'")
    assert str(NotFound("no item 'a'")) == "no item 'a'"


# -- one attempt's job ----------------------------------------------------------------------


def test_an_attempt_is_labelled_and_found_by_exactly_its_labels() -> None:
    body = {"displayName": "x", "labels": {"launchq-queue": "q", "launchq-item": "a", "team": "v"}}
    sent = with_attempt(body, 3)
    assert sent["labels"]["launchq-attempt"] == "3"
    assert body["labels"].get("launchq-attempt") is None  # the stored body is not changed
    assert label_filter(sent) == (
        'labels.launchq-attempt="3" AND labels.launchq-item="a" AND labels.launchq-queue="q"'
    )
