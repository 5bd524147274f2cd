"""The CloudEvent envelope is parsed without raising: a malformed one carries its problem."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from launchq.functions import message_from_event_data

SOURCE = "//pubsub.googleapis.com/projects/p/topics/launchq-q-q1"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_a_well_formed_envelope_has_no_problem() -> None:
    message = message_from_event_data(
        {
            "message": {
                "data": _b64('{"a": 1}'),
                "attributes": {"queue": "q1"},
                "messageId": "7",
                "publishTime": "2026-12-02T00:00:00Z",
            }
        },
        SOURCE,
    )
    assert message.problem is None
    assert message.data == b'{"a": 1}'
    assert message.attributes == {"queue": "q1"}
    assert (message.message_id, message.topic) == ("7", "launchq-q-q1")
    assert message.publish_time == "2026-12-02T00:00:00Z"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("not an object", "event data must be a JSON object, got str"),
        (["a"], "event data must be a JSON object, got list"),
        ({"message": "x"}, "message must be a JSON object, got str"),
        ({"message": {"data": "@@@"}}, "message.data is not base64"),
        ({"message": {"data": "abc"}}, "message.data is not base64"),  # bad padding
        ({"message": {"data": "é"}}, "message.data is not base64"),  # not ASCII
        ({"message": {"data": 12}}, "message.data must be a base64 string, got int"),
        ({"message": {"attributes": ["queue"]}}, "message.attributes must be a map"),
        ({"message": {"attributes": {"queue": 1, "ok": "x"}}}, "values must be strings: queue"),
    ],
)
def test_a_malformed_envelope_carries_its_problem(data: Any, expected: str) -> None:
    message = message_from_event_data(data, SOURCE)
    assert message.problem is not None
    assert expected in message.problem


def test_odd_ids_and_times_are_kept_as_text_or_dropped() -> None:
    message = message_from_event_data({"message": {"messageId": 5, "publishTime": 3}}, None)
    assert (message.message_id, message.publish_time, message.topic) == ("5", None, None)
    assert message.problem is None  # an empty body is the dispatcher's to reject
