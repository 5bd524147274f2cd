"""Notifications (launchq.notify) on the in-memory store, against a real local HTTP receiver:
one message per final outcome, never for a retried attempt or a sweep's child, never twice for
a redelivered event or a crash, retried while the receiver fails and recorded undelivered past
the limit, signed, and never holding a secret."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from launchq.gcp import senders
from launchq.gcp.events import EVENT_TYPE, WAITING_EVENT_TYPE
from launchq.gcp.secrets import SecretReader
from launchq.model.notices import MAX_ATTEMPTS, NoticeState, notice_key
from launchq.notify import DeliveryPending, Notifier, NotifyOutcome
from launchq.spec.family import child_id
from launchq.spec.labels import label_value
from launchq.spec.topics import SUBMITTED_BY_ATTRIBUTE
from tests.unit.fakes import SimulatedCrash, World, item, message, queue_config

URL_SECRET = "projects/p/secrets/hook-url/versions/1"
KEY_SECRET = "projects/p/secrets/hook-key/versions/1"
SLACK_SECRET = "projects/p/secrets/slack/versions/latest"
SIGNING_KEY = "signing-key-" + "s3cr3t" * 4


@dataclass
class Receiver:
    """A local HTTP endpoint that records what it is sent and answers `status` after
    `delay` seconds."""

    status: int = 200
    delay: float = 0.0
    got: list[dict[str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T0KEN-in-the-path"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(receiver.delay)
                receiver.got.append({"headers": dict(self.headers), "body": body})
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b"ok" if receiver.status == 200 else b"no")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver()
    got.start()
    yield got
    assert got.server is not None
    got.server.shutdown()


class Secrets(SecretReader):
    def __init__(self, values: dict[str, str]) -> None:
        super().__init__("http://127.0.0.1:9")
        self.values = values

    def value(self, name: str) -> str:
        return self.values[name]


def _world(receiver: Receiver, **rule: Any) -> tuple[World, Notifier]:
    world = World()
    hook = {"webhook": {"url_secret": URL_SECRET, "signing_key_secret": KEY_SECRET}}
    rules = [{"name": "hook", **hook, **rule}]
    world.apply("q1", queue_config(max_jobs=-1, notify=rules))
    app = world.app()
    secrets = Secrets({URL_SECRET: receiver.url, KEY_SECRET: SIGNING_KEY})
    notifier = Notifier(
        world.store, app.queues, app.recorder, secrets, "http://127.0.0.1:9",
        "http://127.0.0.1:9", "https://launchq.example.com",
    )  # fmt: skip
    return world, notifier


def _ended(world: World, item_id: str, state: str, **extra: Any) -> None:
    [job] = world.vertex.job_of(label_value(item_id))
    world.vertex.set_state(job["name"], state, **extra)
    world.app().sweeper.run()


def _outcome_events(world: World, item_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in world.events.sent
        if e["subject"] == item_id and e["type"] in (EVENT_TYPE, WAITING_EVENT_TYPE)
    ]


def _deliver_all(notifier: Notifier, events: list[dict[str, Any]]) -> list[Any]:
    return [notifier.handle(event) for event in events]


def test_a_failure_is_one_signed_message_and_a_redelivered_event_sends_nothing(
    receiver: Receiver,
) -> None:
    world, notifier = _world(receiver)
    world.deliver(item("q1", "boom", display_name="resnet lr=0.1"))
    _ended(world, "boom", "JOB_STATE_FAILED", error={"code": 3, "message": "exit 3\nTraceback"})
    events = _outcome_events(world, "boom")
    assert len(events) >= 3  # QUEUED, SUBMITTING, SUBMITTED, FAILED: only FAILED is an outcome
    results = _deliver_all(notifier, events) + _deliver_all(notifier, events)  # redelivered
    assert [r.rules for r in results if r.rules] == [
        {"hook": NotifyOutcome.SENT},
        {"hook": NotifyOutcome.SKIPPED},
    ]
    [got] = receiver.got
    body = got["body"]
    assert senders.verify(SIGNING_KEY, body, got["headers"][senders.SIGNATURE_HEADER], time.time())
    assert not senders.verify("another key", body, got["headers"][senders.SIGNATURE_HEADER],
                              time.time())  # fmt: skip
    assert got["headers"][senders.DELIVERY_HEADER] == notice_key("q1", "boom", "hook", "FAILED")
    message = json.loads(body)
    assert message["outcome"] == "FAILED"
    assert message["display_name"] == "resnet lr=0.1"
    assert message["error"][0].startswith("exit 3")
    assert message["links"]["Dashboard"] == "https://launchq.example.com/queues/q1/items/boom"
    assert message["attempts"] == 1
    # Nothing secret in the message, the item or the delivery record.
    stored = json.dumps(world.data("q1", "boom"), default=str)
    notice = world.store.get_notice(notice_key("q1", "boom", "hook", "FAILED"))
    assert notice is not None
    assert notice.state is NoticeState.SENT
    for text in (body.decode(), stored, json.dumps(notice.document, default=str)):
        assert SIGNING_KEY not in text
        assert "T0KEN" not in text


def test_a_failed_attempt_that_is_retried_sends_nothing_until_the_item_ends(
    receiver: Receiver,
) -> None:
    world, notifier = _world(receiver)
    world.apply(
        "q1",
        queue_config(
            max_jobs=-1,
            retry={"max_attempts": 2, "reasons": ["infrastructure"], "backoff_initial_seconds": 1},
            notify=[{"name": "hook", "webhook": {"url_secret": URL_SECRET,
                                                 "signing_key_secret": KEY_SECRET}}],
        ),
    )  # fmt: skip
    world.deliver(item("q1", "flaky"))
    _ended(world, "flaky", "JOB_STATE_FAILED", error={"code": 13, "message": "internal"})
    assert world.data("q1", "flaky")["state"] == "QUEUED"  # retried
    results = _deliver_all(notifier, _outcome_events(world, "flaky"))
    assert receiver.got == []
    assert any(r.skipped.startswith("not final") for r in results)


def test_a_receiver_that_fails_is_retried_then_recorded_undelivered(receiver: Receiver) -> None:
    world, notifier = _world(receiver)
    world.deliver(item("q1", "x"))
    _ended(world, "x", "JOB_STATE_FAILED", error={"code": 3, "message": "bad"})
    [failed] = [e for e in _outcome_events(world, "x") if e["data"].get("to") == "FAILED"]
    receiver.status = 500
    for attempt in range(1, MAX_ATTEMPTS):
        with pytest.raises(DeliveryPending):
            notifier.handle(failed)
        notice = world.store.get_notice(notice_key("q1", "x", "hook", "FAILED"))
        assert notice is not None
        assert (notice.state, notice.attempts) == (NoticeState.RETRYING, attempt)
    result = notifier.handle(failed)  # the last attempt: recorded, and acknowledged
    assert result.rules == {"hook": NotifyOutcome.UNDELIVERED}
    undelivered = world.data("q1", "x")["notify"]["hook"]
    assert undelivered["state"] == "UNDELIVERED"
    assert undelivered["attempts"] == MAX_ATTEMPTS
    assert undelivered["error"] == "webhook: HTTP 500"
    receiver.status = 200
    assert notifier.handle(failed).rules == {"hook": NotifyOutcome.SKIPPED}  # never again
    assert len(receiver.got) == MAX_ATTEMPTS


def test_a_receiver_that_hangs_costs_one_timeout_and_is_tried_again(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(senders, "SEND_TIMEOUT_SECONDS", 0.3)
    world, notifier = _world(receiver)
    world.deliver(item("q1", "h"))
    _ended(world, "h", "JOB_STATE_FAILED", error={"code": 3, "message": "bad"})
    [failed] = [e for e in _outcome_events(world, "h") if e["data"].get("to") == "FAILED"]
    receiver.delay = 2.0
    started = time.monotonic()
    with pytest.raises(DeliveryPending):
        notifier.handle(failed)
    assert time.monotonic() - started < 1.5
    receiver.delay = 0.0
    assert notifier.handle(failed).rules == {"hook": NotifyOutcome.SENT}


def test_a_crash_after_every_write_of_a_notification_still_sends_once(receiver: Receiver) -> None:
    """The sender dies after the claim, or after the SENT record: a redelivery once the lease
    is over sends it (again, only if it died before SENT was written)."""
    for crash_after in (1, 2):
        receiver.got.clear()
        world, notifier = _world(receiver)
        world.deliver(item("q1", "c"))
        _ended(world, "c", "JOB_STATE_FAILED", error={"code": 3, "message": "bad"})
        [failed] = [e for e in _outcome_events(world, "c") if e["data"].get("to") == "FAILED"]
        world.store.crash_after(crash_after)
        with pytest.raises(SimulatedCrash):
            notifier.handle(failed)
        world.store.crash_after(None)
        assert notifier.handle(failed).rules == {"hook": NotifyOutcome.SKIPPED}  # leased
        world.clock.advance(61)
        again = notifier.handle(failed).rules
        sent_before = crash_after == 2
        assert again == {"hook": NotifyOutcome.SKIPPED if sent_before else NotifyOutcome.SENT}
        assert len(receiver.got) == 1, crash_after


def test_rules_filter_by_outcome_and_submitter(receiver: Receiver) -> None:
    world, notifier = _world(receiver, outcomes=["SUCCEEDED"], submitters=["ada", "intern-*"])

    def deliver(item_id: str, who: str | None) -> None:
        sent = message(item("q1", item_id))
        attributes = {SUBMITTED_BY_ATTRIBUTE: who} if who else {}
        world.app().dispatcher.handle(replace(sent, attributes=attributes))

    deliver("nobody", None)  # submitter "(none)": no pattern matches
    deliver("bob", "bob")
    deliver("intern", "intern-bo")
    deliver("intern-failed", "intern-bo")
    for item_id in ("nobody", "bob", "intern"):
        _ended(world, item_id, "JOB_STATE_SUCCEEDED")
    _ended(world, "intern-failed", "JOB_STATE_FAILED", error={"code": 3, "message": "bad"})
    for item_id in ("nobody", "bob", "intern", "intern-failed"):
        _deliver_all(notifier, _outcome_events(world, item_id))
    assert [json.loads(got["body"])["item_id"] for got in receiver.got] == ["intern"]
    assert json.loads(receiver.got[0]["body"])["submitter"] == "intern-bo"


def test_a_sweep_sends_one_summary_not_one_message_per_child(receiver: Receiver) -> None:
    world, notifier = _world(receiver, outcomes=["FAILED", "SUCCEEDED"])
    world.deliver(item("q1", "grid", array={"count": 3}))
    for n, state in (
        (1, "JOB_STATE_SUCCEEDED"),
        (2, "JOB_STATE_FAILED"),
        (3, "JOB_STATE_SUCCEEDED"),
    ):
        [job] = world.vertex.job_of(label_value(child_id("grid", n)))
        world.vertex.set_state(job["name"], state, error={"code": 3, "message": "bad"})
    world.app().sweeper.run()
    assert world.data("q1", "grid")["state"] == "FAILED"
    _deliver_all(notifier, list(world.events.sent))
    [got] = receiver.got
    message = json.loads(got["body"])
    assert message["item_id"] == "grid"
    assert message["children"] == {"FAILED": 1, "SUCCEEDED": 2}
    assert message["cause"] == "1 of 3 children did not succeed"


def test_an_item_that_waits_too_long_is_told_once(receiver: Receiver) -> None:
    world, notifier = _world(receiver, waiting_longer_than_seconds=600)
    world.app().store.set_paused("q1", True)
    world.deliver(item("q1", "stuck"))
    world.app().sweeper.run()
    assert _outcome_events(world, "stuck") == [] or all(
        e["type"] != WAITING_EVENT_TYPE for e in _outcome_events(world, "stuck")
    )
    world.clock.advance(601)
    world.app().sweeper.run()
    world.app().sweeper.run()  # noticed once, not once a pass
    waiting = [e for e in _outcome_events(world, "stuck") if e["type"] == WAITING_EVENT_TYPE]
    assert len(waiting) == 1
    assert notifier.handle(waiting[0]).rules == {"hook": NotifyOutcome.SENT}
    assert notifier.handle(waiting[0]).rules == {"hook": NotifyOutcome.SKIPPED}
    message = json.loads(receiver.got[0]["body"])
    assert message["outcome"] == "WAITING"
    assert message["waited_seconds"] >= 601


def test_slack_gets_block_kit_through_the_sdk(receiver: Receiver) -> None:
    world = World()
    world.apply("q1", queue_config(max_jobs=-1, notify=[
        {"name": "team", "slack": {"webhook_secret": SLACK_SECRET}}
    ]))  # fmt: skip
    app = world.app()
    notifier = Notifier(world.store, app.queues, app.recorder,
                        Secrets({SLACK_SECRET: receiver.url}), "http://127.0.0.1:9",
                        "http://127.0.0.1:9", None)  # fmt: skip
    world.deliver(item("q1", "s", display_name="<b>bold</b> & co"))
    _ended(world, "s", "JOB_STATE_FAILED", error={"code": 3, "message": "it broke"})
    _deliver_all(notifier, _outcome_events(world, "s"))
    [got] = receiver.got
    message = json.loads(got["body"])
    assert message["text"].startswith("launchq: <b>bold</b> & co FAILED (q1/s)")
    kinds = [block["type"] for block in message["blocks"]]
    assert kinds[:2] == ["header", "section"]
    assert "```it broke```" in json.dumps(message["blocks"])
    fields = json.dumps(message["blocks"][1]["fields"])
    assert "Attempts" in fields
    assert "&lt;b&gt;" not in message["blocks"][0]["text"]["text"]  # plain text header


def test_notify_rules_are_checked_with_their_paths() -> None:
    from launchq.spec.checks import parse_queue_config
    from launchq.spec.validation import ConfigError

    hook = {"url_secret": URL_SECRET, "signing_key_secret": KEY_SECRET}
    topic = {"topic": "projects/p-123/topics/t1"}
    url = {"webhook_secret": "https://hooks.slack.com/x"}
    cases = {
        "two targets": [{"name": "a", "webhook": hook, "pubsub": topic}],
        "no target": [{"name": "a"}],
        "a url, not a secret": [{"name": "a", "slack": url}],
        "an unknown outcome": [{"name": "a", "webhook": hook, "outcomes": ["RUNNING"]}],
        "a name twice": [{"name": "a", "webhook": hook}, {"name": "a", "webhook": hook}],
        "too short a wait": [{"name": "a", "webhook": hook, "waiting_longer_than_seconds": 5}],
    }  # fmt: skip
    for case, rules in cases.items():
        with pytest.raises(ConfigError) as raised:
            parse_queue_config(queue_config(notify=rules))
        assert all(issue.path.startswith("notify") for issue in raised.value.issues), case
    config = parse_queue_config(queue_config(notify=[{"name": "a", "webhook": hook}]))
    assert config.notify[0].outcomes == ["FAILED"]
    assert config.notify[0].wants("FAILED", None)
    assert not config.notify[0].wants("SUCCEEDED", None)


def test_the_sweep_writes_each_queues_signals_as_cloud_logging_would_read_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One `queue signals` line a queue a pass, as the JSON Cloud Logging parses (its fields
    land in jsonPayload, which the log-based metrics extract), and one `attempt failed` line
    per failed attempt with its class."""
    from launchq.log import JsonFormatter
    from launchq.sweep import ATTEMPT_FAILED, QUEUE_SIGNALS

    world = World()
    world.apply("q1", queue_config(max_jobs=1))
    for item_id in ("a", "b", "c"):
        world.deliver(item("q1", item_id))
    world.clock.advance(90)
    _ended(world, "a", "JOB_STATE_FAILED", error={"code": 3, "message": "bad"})
    caplog.clear()
    with caplog.at_level("INFO"):
        world.app().sweeper.run()
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records]
    [signals] = [line for line in lines if line["message"] == QUEUE_SIGNALS]
    assert signals["queue"] == "q1"
    assert signals["severity"] == "INFO"
    # "a" failed; "b" took its slot in this pass; "c" has waited since before the 90 s.
    assert (signals["waiting"], signals["running"]) == (1, 1)
    assert signals["oldest_wait_s"] >= 90
    assert (signals["paused"], signals["backing_off"]) == (False, False)
    world.vertex.set_state(world.vertex.job_of("b")[0]["name"], "JOB_STATE_FAILED",
                           error={"code": 3, "message": "bad"})  # fmt: skip
    caplog.clear()
    with caplog.at_level("INFO"):
        world.app().sweeper.run()
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records]
    [failed] = [line for line in lines if line["message"] == ATTEMPT_FAILED]
    assert (failed["queue"], failed["item_id"]) == ("q1", "b")
    assert failed["failure_class"] == "user_error"
