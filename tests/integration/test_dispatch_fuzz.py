"""Fuzz: hostile messages through the dispatch function as deployed, on the real emulators.

Messages are hostile in their body, their attributes, their topic and, now and then, in the
envelope itself (data that is not base64, attributes that are not strings). Property, for every
generated message: the function answers 2xx (never a 5xx: a 5xx is a
redelivery, and content never gets better by redelivering), exactly one record carries the
message's id, and a job exists exactly when that record is not REJECTED.

The normal suite runs a seeded, bounded number of cases (`derandomize=True`: the same cases on
every run, so a failure reproduces). `make fuzz` runs more, with a fresh seed each time:
`LAUNCHQ_FUZZ_EXAMPLES=2000 LAUNCHQ_FUZZ_RANDOM=1 pytest tests/integration/test_dispatch_fuzz.py`.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from functions_framework import create_app
from google.cloud import firestore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launchq import functions
from launchq.model.states import ItemState
from launchq.spec.labels import ITEM_LABEL, label_value
from launchq_local.standin import StandinServer
from tests.fixtures.dispatch import Harness, queue_config

pytestmark = pytest.mark.integration
SOURCE = str(Path(__file__).resolve().parents[2] / "functions" / "dispatch" / "main.py")
EXAMPLES = int(os.environ.get("LAUNCHQ_FUZZ_EXAMPLES", "300"))
RANDOM = os.environ.get("LAUNCHQ_FUZZ_RANDOM", "") not in ("", "0")
QUEUE = "fz"

# -- hostile JSON ---------------------------------------------------------------------------

names = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["", "__x__", "____", "__", "~", "\ud800", "a.b", "`", "k" * 1600]),
)
texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["\ud800", "a\udfffb", "${image_uri}", "{{x}}", "\x00", "é" * 70]),
    st.integers(1, 3).map(lambda n: "x" * (n * 100_000)),  # oversized
)
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63, -(2**63) - 1, 10**30, 0, -1]),
    st.floats(allow_nan=False, allow_infinity=False),
)
leaves = st.one_of(st.none(), st.booleans(), numbers, texts)


def nest(value: Any, levels: int, as_list: bool) -> Any:
    for _ in range(levels):
        value = [value] if as_list else {"a": value}
    return value


values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(names, inner, max_size=4),
        st.tuples(inner, st.integers(15, 30), st.booleans()).map(lambda t: nest(*t)),
    ),
    max_leaves=12,
)


def unique_id() -> str:
    return f"fz-{uuid.uuid4().hex[:12]}"


# Never a valid id (so never a duplicate of another case's): empty, the wrong type, or text
# with a character the id pattern excludes.
bad_ids = st.one_of(
    st.just(""),
    st.integers(),
    st.lists(st.text(max_size=3), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.booleans(),
    st.text(max_size=10).map(lambda t: f"/{t}"),
    st.just("x" * 200),
)
utf8_text = st.text(st.characters(codec="utf-8"), max_size=5)
not_reserved = utf8_text.filter(lambda k: k and not (k[:2] == k[-2:] == "__" and len(k) >= 4))
valid_fields: dict[str, st.SearchStrategy[Any]] = {
    "image_uri": st.just("gcr.io/p/trainer:1"),
    "display_name": st.text(st.characters(codec="utf-8"), min_size=1, max_size=20),
    "command": st.lists(st.text(max_size=5), max_size=3),
    "args": st.lists(st.text(max_size=5), max_size=3),
    "env": st.dictionaries(
        st.from_regex(r"[A-Z][A-Z0-9_]{0,6}", fullmatch=True), st.text(max_size=5), max_size=3
    ).filter(lambda env: not any(k.startswith(("AIP_", "CLOUD_ML_")) for k in env)),
    "labels": st.dictionaries(
        st.from_regex(r"[a-k][a-z0-9_]{0,8}", fullmatch=True),
        st.from_regex(r"[a-z0-9]{0,8}", fullmatch=True),
        max_size=4,
    ),
    "priority": st.one_of(
        st.sampled_from(["critical", "high", "medium", "low"]), st.integers(0, 10)
    ),
    "metadata": st.dictionaries(
        not_reserved, utf8_text | st.integers(-(2**63), 2**63 - 1), max_size=3
    ),
}
ITEM_FIELDS = [*valid_fields, "template_variables", "queue", "item_id"]


@st.composite
def valid_items(draw: st.DrawFn) -> dict[str, Any]:
    chosen = draw(st.sets(st.sampled_from(sorted(valid_fields))))
    body: dict[str, Any] = {"queue": QUEUE, "item_id": unique_id()}
    body.update({name: draw(valid_fields[name]) for name in sorted(chosen | {"image_uri"})})
    return body


@st.composite
def one_hostile_field(draw: st.DrawFn) -> dict[str, Any]:
    body = draw(valid_items())
    name = draw(st.sampled_from([*ITEM_FIELDS, "unknown"]))
    if name == "item_id":
        body[name] = draw(bad_ids)
    elif name == "unknown":
        body[draw(names)] = draw(values)
    else:
        body[name] = draw(values)
    return body


@st.composite
def random_items(draw: st.DrawFn) -> dict[str, Any]:
    body = draw(st.dictionaries(st.sampled_from(ITEM_FIELDS) | names, values, max_size=6))
    if draw(st.booleans()):
        body["queue"] = QUEUE
    if "item_id" in body or draw(st.booleans()):
        body["item_id"] = draw(st.one_of(bad_ids, st.builds(unique_id)))
    return body


bodies = st.one_of(
    valid_items().map(lambda b: json.dumps(b).encode()),
    one_hostile_field().map(lambda b: json.dumps(b).encode()),
    one_hostile_field().map(lambda b: json.dumps(b).encode()),
    random_items().map(lambda b: json.dumps(b).encode()),
    st.binary(max_size=64),
    st.integers(900, 200_000).map(lambda n: b"[" * n + b"]" * n),
    st.sampled_from([b"NaN", b'{"queue": "fz", "x": Infinity}', b"{" * 50, b"[]", b'"s"']),
)
attributes = st.dictionaries(
    st.one_of(
        st.text(min_size=1, max_size=8).filter(lambda k: k not in ("queue", "item_id")),
        st.sampled_from(["__x__", "\ud800", "goog"]),
    ),
    st.text(max_size=8) | st.sampled_from(["\udc00", "x" * 2000]),
    max_size=4,
).flatmap(
    lambda attrs: st.fixed_dictionaries(
        {},
        optional={
            "queue": st.sampled_from([QUEUE, "", "nope", "a/b"]),
            "item_id": st.one_of(st.builds(unique_id), st.sampled_from(["", "/x"])),
        },
    ).map(lambda ids: {**attrs, **ids})
)

# Mostly what Pub/Sub sends (base64 data, string attributes); sometimes what only a hand-made
# POST to the function's URL would: data that is not base64 or not a string, attributes that
# are not a map of strings (launchq.functions records these `undecodable`).
PUBSUB_SHAPE = "pubsub"


def rarely(odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`PUBSUB_SHAPE` seven times in eight, else one of `odd`."""
    return st.sampled_from(range(8)).flatmap(lambda n: odd if n == 7 else st.just(PUBSUB_SHAPE))


data_fields = rarely(st.sampled_from(["@@@", "abc", "é", 12, None, ["x"]]))
attribute_fields = rarely(st.sampled_from([["queue"], "queue=fz", {"queue": 1}, {"item_id": None}]))

# The queue's own topic, the opted-in shared one, somebody else's, and none at all.
topics = st.sampled_from(
    [f"/projects/p/topics/launchq-q-{QUEUE}", "/projects/p/topics/launchq-items",
     "/projects/p/topics/other", "/"]
)  # fmt: skip

# -- the property ---------------------------------------------------------------------------


@pytest.fixture
def dispatch_client(
    monkeypatch: pytest.MonkeyPatch,
    firestore_db: firestore.Client,
    gcp_project: str,
    standin: StandinServer,
) -> Iterator[Any]:
    for key, value in {
        "LAUNCHQ_PROJECT": gcp_project,
        "LAUNCHQ_VERTEX_ENDPOINT": standin.url,
        "LAUNCHQ_EVENTS_TOPIC": "",
        "LAUNCHQ_QUEUE_CACHE_SECONDS": "60",
        # The opted-in shared topic too: items there name their queue, the richer routing.
        "LAUNCHQ_QUEUE_TOPIC": "launchq-items",
        # No creation budget: valid items must become jobs at once (the budget has its tests).
        "LAUNCHQ_CREATE_RATE_PER_MINUTE": "0",
    }.items():
        monkeypatch.setenv(key, value)
    standin.admin.set_delays(queued=None)
    Harness(firestore_db, gcp_project, standin.url).apply(QUEUE, queue_config())
    functions.reset()
    yield create_app("dispatch", SOURCE, "cloudevent").test_client()
    functions.reset()


def test_every_hostile_message_ends_in_one_record_and_a_2xx(
    dispatch_client: Any, firestore_db: firestore.Client, standin: StandinServer
) -> None:
    cases: list[str] = []
    odd_envelopes: list[str] = []  # data or attributes not as Pub/Sub sends them
    outcomes: dict[str, int] = {}
    jobs_before = len(standin.admin.jobs())

    @settings(
        max_examples=EXAMPLES,
        derandomize=not RANDOM,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        body=bodies, attrs=attributes, topic=topics, data=data_fields, odd_attrs=attribute_fields
    )
    def one_message(
        body: bytes, attrs: dict[str, str], topic: str, data: Any, odd_attrs: Any
    ) -> None:
        nonlocal jobs_before
        message_id = uuid.uuid4().hex
        cases.append(message_id)
        if data != PUBSUB_SHAPE or odd_attrs != PUBSUB_SHAPE:
            odd_envelopes.append(message_id)
        envelope = {
            "subscription": "projects/p/subscriptions/push",
            "message": {
                "data": base64.b64encode(body).decode() if data == PUBSUB_SHAPE else data,
                "attributes": attrs if odd_attrs == PUBSUB_SHAPE else odd_attrs,
                "messageId": message_id,
            },
        }
        response = dispatch_client.post(topic, json=envelope)
        assert 200 <= response.status_code < 300, response.get_data(as_text=True)[-2000:]
        records = list(
            firestore_db.collection("items")
            .where(filter=firestore.FieldFilter("message_id", "==", message_id))
            .stream()
        )
        assert len(records) == 1, f"{len(records)} records for one message"
        record = records[0].to_dict() or {}
        jobs = standin.admin.jobs()
        outcomes[record["state"]] = outcomes.get(record["state"], 0) + 1
        if record["state"] == ItemState.SUBMITTED.value:
            assert len(jobs) == jobs_before + 1
            label = label_value(record["item_id"])
            assert [j for j in jobs if j["labels"][ITEM_LABEL] == label]
        else:
            # REJECTED by launchq, or FAILED: Vertex refused the job (recorded with its error).
            assert record["state"] in (ItemState.REJECTED.value, ItemState.FAILED.value)
            assert record["error"]["reason"]
            assert len(jobs) == jobs_before
        jobs_before = len(jobs)

    one_message()
    print(
        f"fuzz: {len(cases)} messages dispatched ({len(odd_envelopes)} with a malformed "
        f"envelope), records by state: {outcomes}"
    )
    assert len(cases) >= min(EXAMPLES, 50)
