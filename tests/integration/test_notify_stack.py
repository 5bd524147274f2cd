"""The notify function on the whole local stack (`launchq dev`'s, free ports): the events topic's
push subscription -> functions/notify under functions-framework -> Secret Manager stand-in ->
the stack's webhook receiver, with the Pub/Sub emulator's own redelivery.

- an item that fails is one delivery, signed, even when its FAILED event comes twice more (the
  same event published again to the events topic, as an at-least-once redelivery would);
- a receiver that answers 500 first gets the notification again from Pub/Sub's redelivery, and
  takes it once: one successful delivery, the record SENT after 2 attempts;
- a Slack rule posts through slack_sdk's WebhookClient: unsigned, and taken.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from launchq.model.notices import Notice, notice_key
from launchq.store.firestore import connect
from launchq_cli import main
from launchq_local.devstack import NOTIFY_SECRETS, DevStack
from launchq_local.webhook_receiver import Delivery
from tests.support import wait_until

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TRAINER = EXAMPLES / "queues" / "trainer.yaml"
FAIL_ITEM = EXAMPLES / "items" / "train-fail.json"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def trainer(stack: DevStack) -> str:
    code, _, err = run("queue", "apply", str(TRAINER))
    assert code == 0, err
    return "trainer"


def of(stack: DevStack, item_id: str) -> list[Delivery]:
    assert stack.receiver is not None
    return [d for d in stack.receiver.deliveries() if d.item_id == item_id]


def wait_taken(stack: DevStack, item_id: str, timeout: float = 30.0) -> list[Delivery]:
    assert stack.receiver is not None
    stack.receiver.wait_for(lambda got: any(d.accepted and d.item_id == item_id for d in got),
                            timeout)  # fmt: skip
    return of(stack, item_id)


def handled(stack: DevStack, item_id: str) -> list[dict[str, Any]]:
    """The notify function's "event handled" log lines about `item_id`."""
    lines = []
    for line in (stack.log_dir / "notify.log").read_text(errors="replace").splitlines():
        if line.startswith("{") and '"event handled"' in line:
            entry = json.loads(line)
            if entry.get("item_id") == item_id:
                lines.append(entry)
    return lines


def sent(stack: DevStack, delivery: Delivery) -> Notice:
    """The notification's record once the sender has recorded it SENT (just after the receiver
    answered)."""
    store = connect(stack.project)
    wait_until(
        lambda: getattr(store.get_notice(delivery.delivery_key or ""), "state", None) == "SENT",
        10,
        f"{delivery.delivery_key} to be recorded SENT",
    )
    notice = store.get_notice(delivery.delivery_key or "")
    assert notice is not None
    return notice


def failed_event(stack: DevStack, item_id: str) -> bytes:
    """The FAILED event's bytes, as the sweep published them (read from the pull subscription
    that `launchq dev` prints from)."""
    from google.cloud.pubsub_v1 import SubscriberClient

    subscriber = SubscriberClient()
    found: list[bytes] = []
    try:

        def look() -> bool:
            response = subscriber.pull(
                subscription=stack.events_subscription_path, max_messages=100, timeout=5.0
            )
            for received in response.received_messages:
                event = json.loads(received.message.data)
                if event.get("subject") == item_id and event["data"].get("to") == "FAILED":
                    found.append(received.message.data)
            if response.received_messages:
                subscriber.acknowledge(
                    subscription=stack.events_subscription_path,
                    ack_ids=[m.ack_id for m in response.received_messages],
                )
            return bool(found)

        wait_until(look, 20, f"{item_id}'s FAILED event")
    finally:
        subscriber.close()
    return found[0]


def test_a_failure_is_one_delivery_even_when_its_event_comes_three_times(
    stack: DevStack, trainer: str
) -> None:
    code, _, _ = run("enqueue", "--from-file", str(FAIL_ITEM), "--item-id", "twice", "--wait")
    assert code == 1
    [first] = wait_taken(stack, "twice")
    assert first.verified
    assert first.status == 200
    assert (first.outcome, first.rule, first.kind) == ("FAILED", "team-hook", "webhook")
    assert first.delivery_key == notice_key(trainer, "twice", "team-hook", "FAILED")
    assert first.detail.startswith("The replica workerpool0-0 exited with a non-zero status of 3")
    # The job's last lines, read from the Cloud Logging stand-in: the trainer's own reason.
    tail = first.body["log_tail"]
    assert 0 < len(tail) <= 10
    assert any("loss diverged at epoch 20 (--fail was given)" in line for line in tail), tail

    from google.cloud.pubsub_v1 import PublisherClient

    data = failed_event(stack, "twice")
    publisher = PublisherClient()
    topic = publisher.topic_path(stack.project, stack.events_topic)
    for _ in range(2):  # the same event, twice more
        publisher.publish(topic, data).result(timeout=10)

    def both_skipped() -> bool:
        skipped = [e for e in handled(stack, "twice") if e.get("rules") == {"team-hook": "skipped"}]
        return len(skipped) >= 2

    wait_until(both_skipped, 20, "the notify function to handle both copies")
    assert of(stack, "twice") == [first]
    assert sent(stack, first).attempts == 1


def test_a_receiver_that_fails_first_gets_it_once_from_the_redelivery(
    stack: DevStack, trainer: str
) -> None:
    assert stack.receiver is not None
    stack.receiver.fail_next(1, 500)
    code, _, _ = run("enqueue", "--from-file", str(FAIL_ITEM), "--item-id", "retried", "--wait")
    assert code == 1
    got = wait_taken(stack, "retried")
    assert [d.status for d in got] == [500, 200], [d.summary() for d in got]
    assert all(d.verified for d in got)
    assert got[0].delivery_key == got[1].delivery_key  # the same notification, sent again
    assert not got[1].repeat  # the 500 one was not taken
    assert "answered 500" in got[0].summary()
    assert (sent(stack, got[1]).state, sent(stack, got[1]).attempts) == ("SENT", 2)


def test_a_slack_rule_posts_unsigned_through_slack_sdk(stack: DevStack, tmp_path: Path) -> None:
    config = yaml.safe_load(TRAINER.read_text())
    config["name"] = "slacked"
    config["notify"] = [
        {"name": "team-slack", "slack": {"webhook_secret": NOTIFY_SECRETS["slack_url"]},
         "outcomes": ["SUCCEEDED"]},
    ]  # fmt: skip
    path = tmp_path / "slacked.yaml"
    path.write_text(yaml.safe_dump(config))
    assert run("queue", "apply", str(path))[0] == 0
    code, _, err = run(
        *("enqueue", "-q", "slacked", "--item-id", "slack-ok", "--image", "python:3.11-slim"),
        *("--set-var", "epochs=20", "--wait"),
    )
    assert code == 0, err
    [posted] = wait_taken(stack, "slack-ok")
    assert (posted.kind, posted.signature, posted.status) == ("slack", "unsigned", 200)
    assert (posted.queue, posted.outcome, posted.rule) == ("slacked", "SUCCEEDED", None)
    assert posted.body["blocks"][0]["type"] == "header"
    assert "slack-ok" in posted.summary()
    assert "unsigned" in posted.summary()
