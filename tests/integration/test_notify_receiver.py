"""The local webhook receiver (launchq_local.webhook_receiver) against the real senders: launchq's
signed webhook (`launchq.gcp.senders.send_webhook`) and slack_sdk's `WebhookClient`. No
emulator: the receiver alone, on a free port."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from launchq.gcp.senders import DeliveryError, send_slack, send_webhook, signature
from launchq.model.notices import notice_key
from launchq_local.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration
KEY = "whsec_test_" + "k" * 20
TOKEN = "t0ken-in-the-path"
BODY = {
    "type": "launchq.notification",
    "queue": "trainer",
    "item_id": "it-1",
    "outcome": "FAILED",
    "cause": "vertex: JOB_STATE_FAILED",
    "error": ["The replica workerpool0-0 exited with a non-zero status of 3.", "more"],
}
DELIVERY = notice_key("trainer", "it-1", "team-hook", "FAILED")


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(KEY, TOKEN) as hooks:
        yield hooks


def test_a_signed_webhook_is_verified_recorded_and_summarized(receiver: WebhookReceiver) -> None:
    send_webhook(requests.Session(), receiver.hook_url, KEY, BODY, DELIVERY)
    [got] = receiver.deliveries()
    assert (got.kind, got.signature, got.status, got.repeat) == ("webhook", "verified", 200, False)
    assert (got.queue, got.item_id, got.outcome, got.rule) == ("trainer", "it-1", "FAILED",
                                                                "team-hook")  # fmt: skip
    assert got.path == "/hooks/…"  # the URL's secret part is not kept
    assert dict(got.body) == BODY
    assert got.summary().endswith(
        "  trainer/it-1  notified FAILED → webhook team-hook (signature verified)  "
        "The replica workerpool0-0 exited with a non-zero status of 3."
    )
    # The same notification again (a sender that died before recording it): marked a repeat.
    send_webhook(requests.Session(), receiver.hook_url, KEY, BODY, DELIVERY)
    assert receiver.deliveries(1)[0].repeat
    listed = requests.get(f"{receiver.url}/deliveries", timeout=5).json()["deliveries"]
    assert [d["signature"] for d in listed] == ["verified", "verified"]
    assert listed[0]["body"] == BODY
    assert requests.get(f"{receiver.url}/deliveries?since=1", timeout=5).json()["deliveries"] == [
        listed[1]
    ]
    assert TOKEN not in json.dumps(listed)


def test_a_wrong_signature_is_refused_and_an_old_one_too(receiver: WebhookReceiver) -> None:
    with pytest.raises(DeliveryError, match="HTTP 401"):
        send_webhook(requests.Session(), receiver.hook_url, "another key", BODY, DELIVERY)
    data = json.dumps(BODY).encode()
    stale = signature(KEY, data, 1_000_000_000)  # 2001: far outside the 5 minutes
    answer = requests.post(receiver.hook_url, data=data, timeout=5,
                           headers={"X-Launchq-Signature": stale})  # fmt: skip
    assert answer.status_code == 401
    assert [(d.signature, d.status) for d in receiver.deliveries()] == [("invalid", 401)] * 2
    assert "answered 401" in receiver.deliveries()[0].summary()


def test_slack_sdk_posts_are_taken_unsigned(receiver: WebhookReceiver) -> None:
    text = "launchq: linear fit that fails FAILED (trainer/it-1): vertex: JOB_STATE_FAILED"
    send_slack(receiver.slack_url, text, [{"type": "section", "text": {"type": "mrkdwn",
                                                                        "text": "x"}}])  # fmt: skip
    [got] = receiver.deliveries()
    assert (got.kind, got.signature, got.status) == ("slack", "unsigned", 200)
    assert (got.queue, got.item_id, got.outcome, got.rule) == ("trainer", "it-1", "FAILED", None)
    assert got.detail == "vertex: JOB_STATE_FAILED"
    assert "notified FAILED → slack (unsigned)" in got.summary()


def test_failures_on_demand_and_nothing_but_the_token_paths(receiver: WebhookReceiver) -> None:
    receiver.fail_next(1, 503)
    with pytest.raises(DeliveryError, match="HTTP 503"):
        send_webhook(requests.Session(), receiver.hook_url, KEY, BODY, DELIVERY)
    answer = requests.post(f"{receiver.url}/fail-next?count=1&status=500", timeout=5)
    assert answer.json() == {"failing": 1, "status": 500}
    with pytest.raises(DeliveryError, match="HTTP 500"):
        send_webhook(requests.Session(), receiver.hook_url, KEY, BODY, DELIVERY)
    send_webhook(requests.Session(), receiver.hook_url, KEY, BODY, DELIVERY)
    assert [(d.status, d.repeat) for d in receiver.deliveries()] == [
        (503, False), (500, False), (200, False)
    ]  # fmt: skip
    wrong = f"{receiver.url}/hooks/not-the-token"
    assert requests.post(wrong, json=BODY, timeout=5).status_code == 404
    assert requests.post(receiver.hook_url, data=b"{not json", timeout=5).status_code == 400
    assert [d.status for d in receiver.deliveries()][3:] == [400]
    assert receiver.wait_for(lambda got: len(got) == 4, 0.1)[-1].body == {"unparsed": "{not json"}
