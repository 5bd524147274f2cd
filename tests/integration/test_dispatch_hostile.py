"""Every message ends recorded: the hostile corpus, on the real emulators and the stand-in.

Each of these used to raise out of `Dispatcher.handle` (a 500: redelivered, then dead-lettered
with no record). Now each ends in exactly one record and a normal return; only infrastructure
trouble raises.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from launchq.dispatch import DispatchResult
from launchq.errors import InfrastructureError
from launchq.model.states import ItemState
from launchq.spec import sanitize
from launchq_local.standin import StandinServer
from tests.fixtures.dispatch import Harness, item, message, queue_config

pytestmark = pytest.mark.integration


@pytest.fixture
def harness(harness: Harness) -> Harness:
    """The shared harness with queue `q1` applied."""
    harness.apply("q1", queue_config())
    return harness


def nest(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = {"a": value}
    return value


def rejected(harness: Harness, queue: str, item_id: str) -> dict[str, Any]:
    data = harness.item_data(queue, item_id)
    assert data["state"] == ItemState.REJECTED.value
    return data


# (id, the item's extra fields, the path reported, the sanitised `payload` key to find)
UNSTORABLE: list[tuple[str, dict[str, Any], str]] = [
    ("reserved top-level field", {"__x__": 1}, "__x__"),
    ("reserved metadata key", {"metadata": {"__x__": 1}}, "metadata.__x__"),
    ("reserved template variable", {"template_variables": {"__v__": 1}}, "template_variables"),
    ("empty env name", {"env": {"": "v"}}, "env"),
    ("empty top-level name", {"": 1}, '""'),
    ("30-digit priority", {"priority": 10**30}, "priority"),
    ("30-digit metadata", {"metadata": {"n": 10**30}}, "metadata.n"),
    ("30-digit template variable", {"template_variables": {"gpus": 10**30}}, "template_variables"),
    ("surrogate display_name", {"display_name": "\ud800"}, "display_name"),
    ("surrogate metadata", {"metadata": {"s": "a\udfff"}}, "metadata.s"),
    ("array of arrays", {"command": [["a"]]}, "command[0]"),
    ("metadata 25 levels deep", {"metadata": nest(25)}, "metadata.a"),
    # Quoted in the error message: the error is cut, and stays a map (found by the fuzz test).
    ("200 KB string for a list", {"command": "x" * 200_000}, "command"),
]


@pytest.mark.parametrize(
    ("extra", "path"), [c[1:] for c in UNSTORABLE], ids=[c[0] for c in UNSTORABLE]
)
def test_a_payload_firestore_cannot_store_is_rejected_and_recorded(
    harness: Harness, standin: StandinServer, extra: dict[str, Any], path: str
) -> None:
    result = harness.dispatcher().handle(message(item("q1", "hostile", **extra)))
    assert result.outcome == "rejected"
    data = rejected(harness, "q1", "hostile")
    assert data["error"]["reason"] == "invalid_item"
    paths = [e["path"] for e in data["error"]["errors"]]
    assert any(p.startswith(path) for p in paths), paths
    assert data["payload"]["item_id"] == "hostile"
    # What was stored is the sanitised payload, and the record says what changed.
    assert data["payload"] == sanitize.clean(item("q1", "hostile", **extra)).value
    assert data["sanitized"]
    assert standin.admin.jobs() == []
    # A redelivery finds the record and changes nothing.
    assert harness.dispatcher().handle(message(item("q1", "hostile", **extra))).outcome == (
        "duplicate"
    )


def test_reserved_and_surrogate_attributes_are_stored_sanitised(harness: Harness) -> None:
    msg = message({"image_uri": "x"}, message_id="attr-1", **{"__x__": "v", "k": "\ud800"})
    assert harness.dispatcher().handle(msg).outcome == "rejected"  # no queue anywhere
    data = rejected(harness, "_unroutable", "_message-attr-1")
    assert data["attributes"] == {"~__x__": "v", "k": "\ufffd"}
    assert {c["code"] for c in data["sanitized"]} == {"reserved_name", "surrogate"}
    assert data["error"]["reason"] == "no_queue"


def test_json_too_deep_for_the_decoder_is_recorded_unroutable(harness: Harness) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    result = harness.dispatcher().handle(message(deep, message_id="deep-1"))
    assert result.outcome == "rejected"
    data = rejected(harness, "_unroutable", "_message-deep-1")
    assert "nested too deeply" in data["error"]["message"]
    assert data["received_raw"] == "[" * 4096


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"queue": "q1", "x": NaN}', "NaN is not a JSON value"),
        (b'{"queue": "q1", "n": ' + b"1" * 5000 + b"}", "not JSON"),
        (b'\xff\xfe{"queue": "q1"}', "not UTF-8"),
        (b'{"queue": "q1", "s": "\\ud800"}', ""),  # valid JSON: parsed, then checked
    ],
)
def test_whatever_the_decoder_can_do_ends_in_a_record(
    harness: Harness, body: bytes, problem: str
) -> None:
    result = harness.dispatcher().handle(message(body, message_id="odd-1"))
    assert result.outcome == "rejected"
    if problem:
        assert problem in rejected(harness, "_unroutable", "_message-odd-1")["error"]["message"]
    else:
        assert result.item_id == "odd-1"
        assert rejected(harness, "q1", "odd-1")["payload"]["s"] == "\ufffd"


def four_pool_queue() -> dict[str, Any]:
    config = queue_config()
    pool = config["spec"]["worker_pool_specs"][0]
    config["spec"]["worker_pool_specs"] = [pool] + [{**pool, "replica_count": 2}] * 3
    return config


def test_an_item_too_big_once_rendered_is_rejected_with_a_clear_reason(
    harness: Harness, standin: StandinServer
) -> None:
    harness.apply("wide", four_pool_queue())
    image = "gcr.io/p/" + "i" * (240 * 1024)
    payload = item("wide", "big", image_uri=image)
    assert len(json.dumps(payload)) < 256 * 1024  # under the message limit
    result = harness.dispatcher().handle(message(payload))
    assert result.outcome == "rejected"
    data = rejected(harness, "wide", "big")
    assert data["error"]["reason"] == "record_too_large"
    assert f"the limit is {sanitize.RECORD_BYTES}" in data["error"]["message"]
    assert data["payload"]["image_uri"] == image  # the payload alone fits, and is kept
    assert standin.admin.jobs() == []
    # The same item on a one-pool queue is stored and runs.
    result = harness.dispatcher().handle(message(item("q1", "big", image_uri=image)))
    assert result.submitted == ["big"]


def test_an_item_whose_record_would_hold_too_many_fields_is_rejected(
    harness: Harness, standin: StandinServer
) -> None:
    # 10,000 metadata names: a 100 KiB message, stored twice in the record (payload, metadata).
    metadata = {f"m{n}": 0 for n in range(10_000)}
    payload = item("q1", "wide-meta", metadata=metadata)
    assert len(json.dumps(payload)) < 256 * 1024
    result = harness.dispatcher().handle(message(payload))
    assert result.outcome == "rejected"
    data = rejected(harness, "q1", "wide-meta")
    assert data["error"]["reason"] == "record_too_large"
    assert f"leaves {sanitize.RECORD_FIELDS} for it" in data["error"]["message"]
    assert data["payload"]["metadata"] == metadata  # the payload alone fits, and is kept
    assert sanitize.field_count(data) < sanitize.MAX_FIELDS
    assert standin.admin.jobs() == []
    # Twice as many names: even the REJECTED record cannot keep the payload as a map.
    wider = item("q1", "wider-meta", metadata={f"m{n}": 0 for n in range(20_000)})
    assert len(json.dumps(wider)) < 256 * 1024
    harness.dispatcher().handle(message(wider))
    data = rejected(harness, "q1", "wider-meta")
    assert data["error"]["reason"] == "record_too_large"
    assert isinstance(data["payload"], str)
    assert {c["code"] for c in data["sanitized"]} == {sanitize.TOO_MANY_FIELDS}
    assert sanitize.field_count(data) < sanitize.MAX_FIELDS


@pytest.mark.parametrize(
    ("payload", "attributes", "reason", "path"),
    [
        ({"queue": "q1", "item_id": 123}, {}, "invalid_item_id", "item_id"),
        ({"queue": "q1", "item_id": ""}, {}, "invalid_item_id", "item_id"),
        ({"queue": "q1", "item_id": ["x"]}, {}, "invalid_item_id", "item_id"),
        ({"queue": "q1"}, {"item_id": ""}, "invalid_item_id", "attributes.item_id"),
        ({"queue": 123, "item_id": "a"}, {"queue": "q1"}, "invalid_queue", "queue"),
        ({"queue": "", "item_id": "a"}, {"queue": "q1"}, "invalid_queue", "queue"),
        ({"item_id": "a"}, {"queue": ""}, "invalid_queue", "attributes.queue"),
    ],
)
def test_a_wrong_type_of_id_or_queue_is_rejected_never_coerced(
    harness: Harness,
    standin: StandinServer,
    payload: dict[str, Any],
    attributes: dict[str, str],
    reason: str,
    path: str,
) -> None:
    body = {**payload, "image_uri": "gcr.io/p/t:1"}
    for delivery in ("m-1", "m-2"):  # published twice: neither runs
        result = harness.dispatcher().handle(message(body, message_id=delivery, **attributes))
        assert result.outcome == "rejected"
        data = rejected(harness, "_unroutable", f"_message-{delivery}")
        assert data["error"]["reason"] == reason
        assert data["error"]["path"] == path
        assert "expected a non-empty string" in data["error"]["message"]
    assert standin.admin.jobs() == []


def test_the_documented_label_maximum_reaches_vertex(
    harness: Harness, standin: StandinServer
) -> None:
    """64 labels per job, three of them launchq's: 61 from the item run, 62 are rejected."""
    most = {f"l{n}": "v" for n in range(61)}
    result = harness.dispatcher().handle(message(item("q1", "labels-61", labels=most)))
    assert result.submitted == ["labels-61"]
    [job] = standin.admin.jobs()
    assert len(job["labels"]) == 64
    too_many = {f"l{n}": "v" for n in range(62)}
    result = harness.dispatcher().handle(message(item("q1", "labels-62", labels=too_many)))
    assert result.outcome == "rejected"
    data = rejected(harness, "q1", "labels-62")
    assert "3 from launchq" in data["error"]["message"]
    assert len(standin.admin.jobs()) == 1


def test_an_unexpected_content_error_is_recorded_as_internal_error(harness: Harness) -> None:
    # A queue document edited by hand into something that is not a queue config.
    harness.store.queue_ref("broken").set({"name": "broken", "config": {"spec": 7}})
    result = harness.dispatcher().handle(message(item("broken", "a")))
    assert result.outcome == "rejected"
    data = rejected(harness, "broken", "a")
    assert data["error"]["reason"] == "internal_error"
    assert "ConfigError" in data["error"]["message"]


def test_an_internal_error_before_the_item_id_is_known_is_recorded_unroutable(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from launchq import dispatch

    def broken(_data: bytes) -> Any:
        raise KeyError("a bug")

    monkeypatch.setattr(dispatch, "_decode", broken)
    result = harness.dispatcher().handle(message(item("q1", "a"), message_id="bug-1"))
    assert result.outcome == "rejected"
    data = rejected(harness, "_unroutable", "_message-bug-1")
    assert data["error"]["reason"] == "internal_error"


def test_an_error_after_the_item_is_recorded_leaves_the_record(harness: Harness) -> None:
    failing = harness.dispatcher(crash_at="recorded", crash_with=ValueError("after the record"))
    result = failing.handle(message(item("q1", "a")))
    assert result == DispatchResult("duplicate", "a", "q1", detail=result.detail)
    # An item that can start at once is recorded already claimed (one write): it stays visibly
    # SUBMITTING until its lease ends, then a redelivery or the sweep repairs it (one job).
    assert harness.item_data("q1", "a")["state"] == ItemState.SUBMITTING.value


@pytest.mark.parametrize(
    "exc", [gexc.ServiceUnavailable("down"), gexc.DeadlineExceeded("slow"), gexc.Aborted("busy")]
)
def test_infrastructure_trouble_still_asks_for_a_redelivery(
    harness: Harness, exc: Exception
) -> None:
    harness.lease_seconds = 0.0  # the failed invocation's claim is over at once
    with pytest.raises(InfrastructureError):
        harness.dispatcher(crash_at="recorded", crash_with=exc).handle(message(item("q1", "a")))
    # The item was recorded already claimed: the redelivery repairs it into exactly one job.
    assert harness.dispatcher().handle(message(item("q1", "a"))).outcome == "repaired"
    assert harness.item_data("q1", "a")["state"] == ItemState.SUBMITTED.value


@pytest.mark.parametrize(
    ("payload", "attributes", "reason", "path"),
    [
        ({"queue": "q1\n", "item_id": "a"}, {}, "invalid_queue", "queue"),
        ({"item_id": "a"}, {"queue": "a/b"}, "invalid_queue", "attributes.queue"),
        ({"queue": "q1", "item_id": "a\n"}, {}, "invalid_item_id", "item_id"),
        ({"queue": "q1"}, {"item_id": "../x"}, "invalid_item_id", "attributes.item_id"),
    ],
)
def test_an_invalid_name_is_reported_where_it_came_from(
    harness: Harness,
    payload: dict[str, Any],
    attributes: dict[str, str],
    reason: str,
    path: str,
) -> None:
    harness.dispatcher().handle(message(payload, message_id="named-1", **attributes))
    error = rejected(harness, "_unroutable", "_message-named-1")["error"]
    assert (error["reason"], error["path"]) == (reason, path)
