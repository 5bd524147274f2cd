"""Delivering a notification: a Slack incoming webhook (through the official `slack_sdk`'s
`WebhookClient`, whose Block Kit models also check the message), a signed JSON webhook, or a
Pub/Sub topic. Every send has a timeout, so a receiver that hangs holds one notify invocation
for at most that long and never anything of the queue.

The signed webhook, as Stripe and Slack sign theirs: header `X-Launchq-Signature:
t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the signing key>`, and
`X-Launchq-Delivery: <notification key>` for receivers that drop a repeat (a sender that died
after its receiver took a message, before recording it, sends it again; docs/notifications.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import requests

SEND_TIMEOUT_SECONDS = 10
SIGNATURE_HEADER = "X-Launchq-Signature"
DELIVERY_HEADER = "X-Launchq-Delivery"


class DeliveryError(Exception):
    """The receiver did not take the message (its status, or why no answer came)."""


def signature(key: str, body: bytes, at: int) -> str:
    digest = hmac.new(key.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def verify(key: str, body: bytes, header: str, now: float, tolerance: float = 300.0) -> bool:
    """What a receiver checks: the signature matches and is at most `tolerance` seconds old."""
    try:
        parts = dict(part.split("=", 1) for part in header.split(","))
        at = int(parts["t"])
    except (ValueError, KeyError):
        return False
    expected = signature(key, body, at)
    return hmac.compare_digest(expected, header) and abs(now - at) <= tolerance


def send_slack(url: str, text: str, blocks: Sequence[Mapping[str, Any]]) -> None:
    from slack_sdk.webhook import WebhookClient

    client = WebhookClient(url, timeout=SEND_TIMEOUT_SECONDS)
    try:
        response = client.send(text=text, blocks=[dict(block) for block in blocks])
    except Exception as exc:  # urllib's URLError, a timeout, a refused connection
        raise DeliveryError(f"slack: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise DeliveryError(f"slack: HTTP {response.status_code} {response.body[:200]!r}")


def send_webhook(
    session: requests.Session, url: str, key: str, body: Mapping[str, Any], delivery: str
) -> None:
    data = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(key, data, int(time.time())),
        DELIVERY_HEADER: delivery,
    }
    try:
        response = session.post(url, data=data, headers=headers, timeout=SEND_TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        raise DeliveryError(f"webhook: {type(exc).__name__}") from None
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"webhook: HTTP {response.status_code}")


def publish(
    session: requests.Session, base_url: str, topic: str, body: Mapping[str, Any], delivery: str
) -> None:
    import base64

    data = base64.b64encode(json.dumps(body, separators=(",", ":")).encode()).decode()
    message = {"data": data, "attributes": {"launchq-delivery": delivery}}
    try:
        response = session.post(
            f"{base_url}/v1/{topic}:publish",
            json={"messages": [message]},
            timeout=SEND_TIMEOUT_SECONDS,
        )
    except requests.RequestException as exc:
        raise DeliveryError(f"pubsub: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise DeliveryError(f"pubsub: HTTP {response.status_code}")
