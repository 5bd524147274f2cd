"""The emulator harness against the real gcloud emulators and the real Google client libraries.

Besides proving the fixtures work, these tests pin down emulator behaviour later tests rely on:
the push envelope's shape, transactions, per-project reset, and that no JVM outlives a stack,
also when the process that started it is interrupted.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore, pubsub_v1

from launchq_local.emulators import EmulatorStack, start_stack

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def _survivors(pgids: set[int], ports: set[int]) -> list[str]:
    """`ps` rows still alive in the emulators' process groups or mentioning their ports.

    Zombies (state Z) are excluded: an orphaned JVM that has exited shows as `[java] <defunct>`
    until init reaps it, but it holds no memory or port.
    """
    out = subprocess.run(
        ["ps", "-eo", "pid=,pgid=,stat=,args="], capture_output=True, text=True, check=True
    ).stdout
    rows = []
    for line in out.splitlines():
        pid, pgid, state, args = line.split(None, 3)
        if state.startswith("Z") or int(pid) == os.getpid():
            continue
        if int(pgid) in pgids or any(f"--port={port}" in args for port in ports):
            rows.append(line)
    return rows


def _stack_processes(stack: EmulatorStack) -> tuple[set[int], set[int]]:
    return {e.pgid for e in stack.emulators}, {e.port for e in stack.emulators}


# --------------------------------------------------------------------------- start-up and env


def test_both_emulators_answer_on_loopback(emulator_stack: EmulatorStack, gcp_project: str) -> None:
    assert emulator_stack.pubsub.answers()
    assert emulator_stack.firestore.answers()
    assert emulator_stack.pubsub.host == emulator_stack.firestore.host == "127.0.0.1"
    assert gcp_project.startswith("launchq-test-")
    assert os.environ["PUBSUB_EMULATOR_HOST"] == emulator_stack.pubsub.host_port
    assert os.environ["FIRESTORE_EMULATOR_HOST"] == emulator_stack.firestore.host_port
    assert os.environ["GOOGLE_CLOUD_PROJECT"] == gcp_project


def test_java_runs_under_the_emulators(emulator_stack: EmulatorStack) -> None:
    """The stop logic kills process groups because the JVM is not always the direct child."""
    pgids, ports = _stack_processes(emulator_stack)
    rows = _survivors(pgids, ports)
    assert sum("java" in row for row in rows) == 2, rows


# --------------------------------------------------------------------------- Pub/Sub


def test_publish_and_pull_round_trip(
    pubsub_publisher: pubsub_v1.PublisherClient,
    pubsub_subscriber: pubsub_v1.SubscriberClient,
    pubsub_topic: str,
    gcp_project: str,
    unique_id: Callable[[str], str],
) -> None:
    subscription = pubsub_subscriber.subscription_path(gcp_project, unique_id("pull"))
    pubsub_subscriber.create_subscription(name=subscription, topic=pubsub_topic)
    message_id = pubsub_publisher.publish(pubsub_topic, b'{"run": 1}', queue="gpu").result(10)

    received: list[Any] = []

    def pulled() -> bool:
        response = pubsub_subscriber.pull(subscription=subscription, max_messages=10, timeout=5)
        received.extend(response.received_messages)
        return bool(received)

    _wait_for(pulled, 15, "the pulled message")
    message = received[0].message
    assert message.message_id == message_id
    assert message.data == b'{"run": 1}'
    assert dict(message.attributes) == {"queue": "gpu"}
    pubsub_subscriber.acknowledge(subscription=subscription, ack_ids=[received[0].ack_id])
    pubsub_subscriber.delete_subscription(subscription=subscription)


@dataclass
class PushReceiver:
    """A local HTTP endpoint recording what the Pub/Sub emulator pushes to it."""

    url: str
    requests: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    fail_first: int = 0


@pytest.fixture
def push_receiver() -> Iterator[PushReceiver]:
    receiver = PushReceiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            receiver.requests.append((self.path, dict(self.headers), json.loads(body)))
            failing = len(receiver.requests) <= receiver.fail_first
            self.send_response(500 if failing else 204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Keep pytest output clean."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()


def _push_subscription(
    subscriber: pubsub_v1.SubscriberClient, name: str, topic: str, endpoint: str
) -> None:
    subscriber.create_subscription(
        request={
            "name": name,
            "topic": topic,
            "push_config": {"push_endpoint": endpoint},
            "retry_policy": {"minimum_backoff": {"seconds": 1}, "maximum_backoff": {"seconds": 2}},
        }
    )


def test_push_subscription_posts_the_wrapped_envelope(
    pubsub_publisher: pubsub_v1.PublisherClient,
    pubsub_subscriber: pubsub_v1.SubscriberClient,
    pubsub_topic: str,
    gcp_project: str,
    unique_id: Callable[[str], str],
    push_receiver: PushReceiver,
) -> None:
    subscription = pubsub_subscriber.subscription_path(gcp_project, unique_id("push"))
    endpoint = f"{push_receiver.url}/{pubsub_topic}"  # topic path in the URL, for CloudEvents
    _push_subscription(pubsub_subscriber, subscription, pubsub_topic, endpoint)
    message_id = pubsub_publisher.publish(pubsub_topic, b'{"run": 2}', queue="cpu").result(10)

    _wait_for(lambda: bool(push_receiver.requests), 15, "the push request")
    path, headers, envelope = push_receiver.requests[0]
    assert path == f"/{pubsub_topic}"
    assert headers["Content-Type"] == "application/json"
    assert "Authorization" not in headers  # the emulator sends no OIDC token
    assert envelope["subscription"] == subscription
    message = envelope["message"]
    assert base64.b64decode(message["data"]) == b'{"run": 2}'
    assert message["attributes"] == {"queue": "cpu"}
    # Both spellings are present, as from real Pub/Sub push.
    assert message["messageId"] == message["message_id"] == message_id
    assert message["publishTime"] == message["publish_time"]
    assert message["publishTime"].endswith("Z")
    pubsub_subscriber.delete_subscription(subscription=subscription)


def test_push_is_redelivered_after_an_error_response(
    pubsub_publisher: pubsub_v1.PublisherClient,
    pubsub_subscriber: pubsub_v1.SubscriberClient,
    pubsub_topic: str,
    gcp_project: str,
    unique_id: Callable[[str], str],
    push_receiver: PushReceiver,
) -> None:
    """A non-2xx answer nacks: the dispatcher's retries depend on this."""
    push_receiver.fail_first = 1
    subscription = pubsub_subscriber.subscription_path(gcp_project, unique_id("push"))
    _push_subscription(pubsub_subscriber, subscription, pubsub_topic, push_receiver.url + "/push")
    pubsub_publisher.publish(pubsub_topic, b"again").result(10)

    _wait_for(lambda: len(push_receiver.requests) >= 2, 30, "the redelivered push")
    first, second = (envelope["message"] for _, _, envelope in push_receiver.requests[:2])
    assert first["messageId"] == second["messageId"]
    pubsub_subscriber.delete_subscription(subscription=subscription)


# --------------------------------------------------------------------------- Firestore


def test_firestore_transaction_reads_and_writes_atomically(firestore_db: firestore.Client) -> None:
    counter = firestore_db.collection("counters").document("slots")

    @firestore.transactional
    def take_slot(transaction: firestore.Transaction, limit: int) -> bool:
        snapshot = counter.get(transaction=transaction)
        used = snapshot.get("used") if snapshot.exists else 0
        if used >= limit:
            return False
        transaction.set(counter, {"used": used + 1})
        return True

    results = [take_slot(firestore_db.transaction(), 2) for _ in range(3)]
    assert results == [True, True, False]
    snapshot = counter.get()
    assert snapshot.to_dict() == {"used": 2}


def test_reset_isolation_first_test_writes(firestore_db: firestore.Client) -> None:
    firestore_db.collection("isolation").document("left-over").set({"by": "first test"})
    assert firestore_db.collection("isolation").document("left-over").get().exists


def test_reset_isolation_next_test_starts_empty(firestore_db: firestore.Client) -> None:
    """Runs after the test above (file order): firestore_db wiped its document."""
    assert list(firestore_db.collection("isolation").stream()) == []


def test_reset_wipes_only_the_stack_project(
    emulator_stack: EmulatorStack, firestore_db: firestore.Client
) -> None:
    other = firestore.Client(project=emulator_stack.project + "-other")
    try:
        firestore_db.collection("c").document("mine").set({"n": 1})
        other.collection("c").document("theirs").set({"n": 2})
        emulator_stack.reset_firestore()
        assert not firestore_db.collection("c").document("mine").get().exists
        assert other.collection("c").document("theirs").get().exists
    finally:
        other.close()


# --------------------------------------------------------------------------- clean shutdown


def test_stopping_a_stack_leaves_no_process() -> None:
    stack = start_stack()
    pgids, ports = _stack_processes(stack)
    assert _survivors(pgids, ports)  # sanity: the check does see running emulators
    stack.stop()
    assert _survivors(pgids, ports) == []


_LIBRARY_SCRIPT = textwrap.dedent(
    """\
    import json, sys, time
    from launchq_local.emulators import start_stack
    stack = start_stack()
    print(json.dumps({"pgids": [e.pgid for e in stack.emulators],
                      "ports": [e.port for e in stack.emulators]}), flush=True)
    time.sleep(300)
    """
)


@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name
)
def test_signalled_process_leaves_no_emulator_behind(signum: signal.Signals) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", _LIBRARY_SCRIPT], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    assert process.stdout is not None
    started = json.loads(process.stdout.readline())
    pgids, ports = set(started["pgids"]), set(started["ports"])
    assert _survivors(pgids, ports)
    process.send_signal(signum)
    process.wait(timeout=30)
    assert _survivors(pgids, ports) == []


_PYTEST_RUN = textwrap.dedent(
    """\
    import json, os, time

    def test_hold_the_stack(emulator_stack):
        info = {"pgids": [e.pgid for e in emulator_stack.emulators],
                "ports": [e.port for e in emulator_stack.emulators]}
        with open(os.environ["STACK_INFO"], "w") as f:
            json.dump(info, f)
        time.sleep(300)
    """
)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_interrupted_test_session_leaves_no_emulator_behind(
    tmp_path: Path, signum: signal.Signals
) -> None:
    (tmp_path / "test_hold.py").write_text(_PYTEST_RUN)
    info = tmp_path / "stack.json"
    env = {**os.environ, "STACK_INFO": str(info), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "pytest", "-p", "tests.fixtures.emulators", "-q"]
    command += ["-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)]
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL)
    try:
        _wait_for(lambda: info.exists() and info.stat().st_size > 0, 60, "the inner session")
        started = json.loads(info.read_text())
        pgids, ports = set(started["pgids"]), set(started["ports"])
        assert _survivors(pgids, ports)
        process.send_signal(signum)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert _survivors(pgids, ports) == []
