"""The dispatch Cloud Function as deployed: functions-framework, both event shapes, real push."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent
from functions_framework import create_app
from google.cloud import firestore, pubsub_v1

from launchq import functions
from launchq.gcp.events import EVENT_TYPE
from launchq.store.firestore import FirestoreStore
from launchq_local.emulators import EmulatorStack
from launchq_local.standin import StandinServer
from tests.fixtures.dispatch import Harness, item, queue_config
from tests.support import answers, free_port, wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SOURCE = str(ROOT / "functions" / "dispatch" / "main.py")


@pytest.fixture
def function_env(
    monkeypatch: pytest.MonkeyPatch, gcp_project: str, standin: StandinServer
) -> Iterator[dict[str, str]]:
    env = {
        "LAUNCHQ_PROJECT": gcp_project,
        "LAUNCHQ_VERTEX_ENDPOINT": standin.url,
        "LAUNCHQ_EVENTS_TOPIC": "",
        "LAUNCHQ_QUEUE_CACHE_SECONDS": "0",
        # Delivery is under test here, not the creation budget (tests/integration/test_capacity.py).
        "LAUNCHQ_CREATE_RATE_PER_MINUTE": "0",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    standin.admin.set_delays(queued=None)  # recorded states stay deterministic
    functions.reset()
    yield env
    functions.reset()


def _b64(payload: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(payload).encode()).decode()


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_eventarc_cloudevents_are_dispatched(
    firestore_db: firestore.Client, function_env: dict[str, str], mode: str
) -> None:
    Harness(firestore_db, function_env["LAUNCHQ_PROJECT"], "").apply("q1", queue_config())
    client = create_app("dispatch", SOURCE, "cloudevent").test_client()
    event = CloudEvent(
        {
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": "//pubsub.googleapis.com/projects/p/topics/launchq-q-q1",
        },
        {
            "message": {"data": _b64(item("q1", f"ev-{mode}")), "messageId": "42"},
            "subscription": "projects/p/subscriptions/eventarc-sub",
        },
    )
    headers, body = (to_structured if mode == "structured" else to_binary)(event)
    response = client.post("/", headers=headers, data=body)
    assert response.status_code == 200
    document = FirestoreStore(firestore_db).item_document("q1", f"ev-{mode}")
    assert (document or {})["state"] == "SUBMITTED"


def test_the_emulators_raw_push_envelope_is_dispatched(
    firestore_db: firestore.Client, function_env: dict[str, str]
) -> None:
    Harness(firestore_db, function_env["LAUNCHQ_PROJECT"], "").apply("q1", queue_config())
    client = create_app("dispatch", SOURCE, "cloudevent").test_client()
    response = client.post(
        "/projects/p/topics/launchq-q-q1",
        json={
            "subscription": "projects/p/subscriptions/push",
            "message": {
                "data": _b64({"image_uri": "gcr.io/p/t:1"}),
                "attributes": {"queue": "q1", "item_id": "raw-push"},
                "messageId": "43",
            },
        },
    )
    assert response.status_code == 200
    document = FirestoreStore(firestore_db).item_document("q1", "raw-push")
    assert (document or {})["state"] == "SUBMITTED"


def test_a_bad_message_is_acknowledged_not_retried(
    firestore_db: firestore.Client, function_env: dict[str, str]
) -> None:
    client = create_app("dispatch", SOURCE, "cloudevent").test_client()
    response = client.post(
        "/projects/p/topics/t",
        json={"subscription": "s", "message": {"data": _b64({"no": "queue"}), "messageId": "9"}},
    )
    assert response.status_code == 200  # a 2xx is an ack: Pub/Sub will not loop on it
    document = FirestoreStore(firestore_db).item_document("_unroutable", "_message-9")
    assert (document or {})["state"] == "REJECTED"


@pytest.mark.parametrize(
    ("envelope", "record_id", "reason_text"),
    [
        ({"message": {"data": "%%%not base64", "messageId": "b64"}}, "b64", "not base64"),
        (
            {"message": {"data": _b64({"a": 1}), "attributes": ["q"], "messageId": "attrs"}},
            "attrs",
            "message.attributes must be a map",
        ),
        ({"message": {"data": 5, "messageId": "int"}}, "int", "must be a base64 string"),
    ],
)
def test_a_malformed_envelope_is_recorded_and_acknowledged(
    firestore_db: firestore.Client,
    function_env: dict[str, str],
    envelope: dict[str, Any],
    record_id: str,
    reason_text: str,
) -> None:
    client = create_app("dispatch", SOURCE, "cloudevent").test_client()
    # `subscription` marks a raw push; functions-framework turns it into the CloudEvent.
    response = client.post(
        "/projects/p/topics/launchq-q-q1", json={"subscription": "s", **envelope}
    )
    assert response.status_code == 200  # recorded and acked, not a redelivery loop
    document = (
        FirestoreStore(firestore_db).item_document("_unroutable", f"_message-{record_id}") or {}
    )
    assert document["state"] == "REJECTED"
    assert document["error"]["reason"] == "undecodable"
    assert reason_text in document["error"]["message"]


def test_an_eventarc_event_without_a_message_is_recorded_under_its_hash(
    firestore_db: firestore.Client, function_env: dict[str, str]
) -> None:
    client = create_app("dispatch", SOURCE, "cloudevent").test_client()
    event = CloudEvent(
        {
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": "//pubsub.googleapis.com/projects/p/topics/launchq-q-q1",
        },
        ["not", "an", "envelope"],
    )
    headers, body = to_structured(event)
    assert client.post("/", headers=headers, data=body).status_code == 200
    # No message id to key it by: the record is keyed by the (empty) body's hash.
    key = "_message-sha256-" + hashlib.sha256(b"").hexdigest()[:32]
    document = FirestoreStore(firestore_db).item_document("_unroutable", key) or {}
    assert document["state"] == "REJECTED"
    assert "event data must be a JSON object, got list" in document["error"]["message"]


def test_a_transient_failure_is_a_5xx_so_pubsub_redelivers(
    firestore_db: firestore.Client, function_env: dict[str, str], standin: StandinServer
) -> None:
    Harness(firestore_db, function_env["LAUNCHQ_PROJECT"], "").apply("q1", queue_config())
    standin.admin.add_fault(["CreateCustomJob"], http_status=503, count=None)
    client = create_app("dispatch", SOURCE, "cloudevent").test_client()
    envelope = {
        "subscription": "s",
        "message": {"data": _b64(item("q1", "flaky")), "messageId": "10"},
    }
    assert client.post("/projects/p/topics/launchq-q-q1", json=envelope).status_code == 500
    standin.admin.clear_faults()
    assert client.post("/projects/p/topics/launchq-q-q1", json=envelope).status_code == 200
    assert len(standin.admin.jobs()) == 1


@pytest.fixture
def served_dispatcher(
    emulator_stack: EmulatorStack, gcp_project: str, standin: StandinServer, tmp_path: Path
) -> Iterator[str]:
    """The dispatch function under functions-framework in its own process, as in `make dev`."""
    port = free_port()
    env = {
        **os.environ,
        "LAUNCHQ_PROJECT": gcp_project,
        "LAUNCHQ_VERTEX_ENDPOINT": standin.url,
        "LAUNCHQ_EVENTS_TOPIC": "launchq-events",
        "LAUNCHQ_CREATE_RATE_PER_MINUTE": "0",  # no sweep here to admit rate-limited items
    }
    log_path = tmp_path / "dispatch.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "functions-framework"),
                f"--source={SOURCE}",
                "--target=dispatch",
                "--signature-type=cloudevent",
                "--host=127.0.0.1",
                f"--port={port}",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(url), 30, "functions-framework to listen")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        print(log_path.read_text()[-4000:])


def test_published_items_reach_vertex_through_a_real_push_subscription(
    firestore_db: firestore.Client,
    gcp_project: str,
    standin: StandinServer,
    served_dispatcher: str,
    pubsub_publisher: pubsub_v1.PublisherClient,
    pubsub_subscriber: pubsub_v1.SubscriberClient,
) -> None:
    standin.admin.set_delays(queued=None)
    Harness(firestore_db, gcp_project, standin.url).apply("e2e", queue_config())
    topic = pubsub_publisher.topic_path(gcp_project, "launchq-q-e2e")
    events = pubsub_publisher.topic_path(gcp_project, "launchq-events")
    for path in (topic, events):
        pubsub_publisher.create_topic(name=path)
    events_sub = pubsub_subscriber.subscription_path(gcp_project, "events-reader")
    pubsub_subscriber.create_subscription(name=events_sub, topic=events)
    pubsub_subscriber.create_subscription(
        name=pubsub_subscriber.subscription_path(gcp_project, "dispatch-push"),
        topic=topic,
        push_config=pubsub_v1.types.PushConfig(
            push_endpoint=f"{served_dispatcher}/projects/{gcp_project}/topics/launchq-q-e2e"
        ),
    )
    ids = [f"pushed-{n}" for n in range(5)]
    for item_id in ids:
        pubsub_publisher.publish(
            topic, json.dumps(item("e2e", item_id)).encode(), item_id=item_id
        ).result(10)
    store = FirestoreStore(firestore_db)

    def all_submitted() -> bool:
        return all((store.item_document("e2e", i) or {}).get("state") == "SUBMITTED" for i in ids)

    wait_until(all_submitted, 30, "the pushed items to be submitted")
    assert len(standin.admin.jobs()) == 5
    received: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(received) < 15 and time.monotonic() < deadline:
        response = pubsub_subscriber.pull(subscription=events_sub, max_messages=50, timeout=5)
        for msg in response.received_messages:
            received.append(json.loads(msg.message.data))
        if response.received_messages:
            pubsub_subscriber.acknowledge(
                subscription=events_sub, ack_ids=[m.ack_id for m in response.received_messages]
            )
    # Per item: QUEUED (accepted), SUBMITTING (admitted), SUBMITTED.
    assert len(received) == 15
    assert {e["type"] for e in received} == {EVENT_TYPE}
    assert {e["subject"] for e in received} == set(ids)
    assert sorted(e["data"]["to"] for e in received if e["subject"] == "pushed-0") == [
        "QUEUED",
        "SUBMITTED",
        "SUBMITTING",
    ]


# -- a topic per queue: the queue comes from the topic ------------------------------------------


def _push(client: Any, path: str, payload: Any, message_id: str, **attributes: str) -> int:
    envelope = {
        "subscription": "projects/p/subscriptions/push",
        "message": {"data": _b64(payload), "attributes": attributes, "messageId": message_id},
    }
    return int(client.post(path, json=envelope).status_code)


def test_an_item_naming_another_queue_is_rejected_on_its_topic(
    firestore_db: firestore.Client, function_env: dict[str, str], standin: StandinServer
) -> None:
    """Publishing rights on queue A's topic are no right to queue B."""
    harness = Harness(firestore_db, function_env["LAUNCHQ_PROJECT"], "")
    harness.apply("team-a", queue_config())
    harness.apply("team-b", queue_config())
    client = create_app("dispatch", SOURCE, "cloudevent").test_client()
    sneaky = item("team-b", "sneaky")
    assert _push(client, "/projects/p/topics/launchq-q-team-a", sneaky, "m-1") == 200
    data = FirestoreStore(firestore_db).item_document("team-a", "sneaky") or {}
    assert data["state"] == "REJECTED"
    assert data["error"]["reason"] == "queue_mismatch"
    assert data["topic"] == "launchq-q-team-a"
    assert FirestoreStore(firestore_db).item_document("team-b", "sneaky") is None
    # The attribute is no way round it either.
    bare = {"image_uri": "gcr.io/p/t:1", "item_id": "sneaky-2"}
    assert _push(client, "/projects/p/topics/launchq-q-team-a", bare, "m-2", queue="team-b") == 200
    assert (FirestoreStore(firestore_db).item_document("team-a", "sneaky-2") or {})["error"][
        "reason"
    ] == ("queue_mismatch")
    # Naming the topic's own queue (or none) is fine.
    own = {"image_uri": "gcr.io/p/t:1", "item_id": "fine"}
    assert _push(client, "/projects/p/topics/launchq-q-team-a", own, "m-3") == 200
    assert (FirestoreStore(firestore_db).item_document("team-a", "fine") or {})[
        "state"
    ] == "SUBMITTED"
    assert len(standin.admin.jobs()) == 1


@pytest.mark.parametrize("path", ["/", "/projects/p/topics/somebody-elses-topic"])
def test_a_push_from_no_queue_topic_is_rejected(
    firestore_db: firestore.Client, function_env: dict[str, str], standin: StandinServer, path: str
) -> None:
    Harness(firestore_db, function_env["LAUNCHQ_PROJECT"], "").apply("q1", queue_config())
    client = create_app("dispatch", SOURCE, "cloudevent").test_client()
    assert _push(client, path, item("q1", "lost"), "m-9") == 200  # acknowledged
    data = FirestoreStore(firestore_db).item_document("_unroutable", "_message-m-9") or {}
    assert data["state"] == "REJECTED"
    assert data["error"]["reason"] == "unknown_topic"
    assert FirestoreStore(firestore_db).item_document("q1", "lost") is None
    assert standin.admin.jobs() == []


def test_the_shared_topic_works_only_when_opted_in(
    firestore_db: firestore.Client,
    function_env: dict[str, str],
    standin: StandinServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    Harness(firestore_db, function_env["LAUNCHQ_PROJECT"], "").apply("q1", queue_config())
    client = create_app("dispatch", SOURCE, "cloudevent").test_client()
    shared = "/projects/p/topics/launchq-items"
    assert _push(client, shared, item("q1", "off"), "m-off") == 200
    assert (FirestoreStore(firestore_db).item_document("_unroutable", "_message-m-off") or {})[
        "error"
    ]["reason"] == "unknown_topic"
    monkeypatch.setenv("LAUNCHQ_QUEUE_TOPIC", "launchq-items")
    functions.reset()
    client = create_app("dispatch", SOURCE, "cloudevent").test_client()
    assert _push(client, shared, item("q1", "on"), "m-on") == 200
    assert (FirestoreStore(firestore_db).item_document("q1", "on") or {})["state"] == "SUBMITTED"
