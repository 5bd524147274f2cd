"""A local webhook receiver: where the local stack's notify function sends its notifications.

    with WebhookReceiver(signing_key="k", token="t0k3n") as hooks:   # a free loopback port
        hooks.hook_url           # http://127.0.0.1:PORT/hooks/t0k3n: a signed launchq webhook
        hooks.slack_url          # http://127.0.0.1:PORT/slack/t0k3n: a Slack incoming webhook
        hooks.deliveries()       # what came, oldest first; GET /deliveries answers the same
        hooks.fail_next(1, 500)  # the next POST is answered 500 (the sender tries again)

It takes what a team's endpoint would:

- `POST /hooks/{token}`: launchq's signed JSON webhook (launchq.gcp.senders). A request with an
  `X-Launchq-Signature` header is checked with the signing key (`launchq.gcp.senders.verify`:
  the HMAC and a timestamp at most 5 minutes old): a good one is `verified`, a bad one is
  answered 401 and recorded `invalid`;
- `POST /slack/{token}`: what slack_sdk's `WebhookClient` posts to a Slack incoming webhook
  (`{"text", "blocks"}`, unsigned: Slack's URL is the credential); answered `ok`, as Slack does,
  and recorded `unsigned`.

The token in the path stands for the secret part of a real webhook URL: a POST elsewhere is a
404 and not recorded, and a recorded path shows `…` in its place. Every recorded delivery has
its time, path, signature check, the status answered, the `X-Launchq-Delivery` key (a repeat of
one already taken is marked `repeat`) and the JSON body; `summary()` is the one line `launchq
dev` prints for it. HTTP, besides the two hooks:

    GET  /deliveries[?since=N]            {"deliveries": [...]}: all, or from the N-th on
    POST /fail-next?count=N&status=S      answer the next N hook POSTs with S (default 1, 500)

Werkzeug on a background thread, as the stand-ins (`launchq_local.httpserver`).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from launchq.gcp.senders import DELIVERY_HEADER, SIGNATURE_HEADER, verify
from launchq.log import get_logger
from launchq_local.httpserver import BackgroundServer

log = get_logger(__name__)

VERIFIED = "verified"
UNSIGNED = "unsigned"
INVALID = "invalid"
_SLACK_TEXT = re.compile(r"^launchq: (?P<title>.*) \((?P<queue>[^/\s()]+)/(?P<item>[^\s()]+)\): ")


@dataclass(frozen=True)
class Delivery:
    """One POST the receiver recorded."""

    number: int  # 0-based, in arrival order
    at: datetime
    path: str  # the token shown as `…`
    kind: str  # "webhook" or "slack"
    signature: str  # VERIFIED, UNSIGNED or INVALID
    status: int  # what the receiver answered
    delivery_key: str | None  # X-Launchq-Delivery: `{queue}~{item}~{rule}~{outcome}`
    repeat: bool  # a key this receiver already took
    body: Mapping[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300

    @property
    def verified(self) -> bool:
        return self.signature == VERIFIED

    @property
    def queue(self) -> str | None:
        return self._field("queue")

    @property
    def item_id(self) -> str | None:
        return self._field("item")

    @property
    def outcome(self) -> str | None:
        if "outcome" in self.body:
            return str(self.body["outcome"])
        title = self._slack_match("title")
        if title is None:
            return None
        last = title.rsplit(" ", 1)[-1]
        return "WAITING" if last == "waits" else last

    @property
    def rule(self) -> str | None:
        """The rule's name, from the delivery key (a Slack post carries none)."""
        parts = (self.delivery_key or "").split("~")
        return parts[2] if len(parts) == 4 else None

    @property
    def detail(self) -> str:
        """The error's first line (a failure), else the cause."""
        error = self.body.get("error")
        if isinstance(error, list) and error:
            return str(error[0])
        if "cause" in self.body:
            return str(self.body["cause"])
        text = str(self.body.get("text") or "")
        return text.split("): ", 1)[1] if "): " in text else text

    def summary(self) -> str:
        """`01:12:09.104  trainer/demo-fail  notified FAILED → webhook team-hook (signature
        verified)  The replica workerpool0-0 exited …`: the line `launchq dev` prints."""
        at = self.at.strftime("%H:%M:%S.%f")[:12]
        target = self.kind + (f" {self.rule}" if self.rule else "")
        notes = [f"signature {self.signature}" if self.signature != UNSIGNED else "unsigned"]
        if self.repeat:
            notes.append("a repeat of a delivery already taken")
        if not self.accepted:
            notes.append(f"answered {self.status}")
        return (
            f"{at}  {self.queue or '?'}/{self.item_id or '?'}  notified {self.outcome or '?'} → "
            f"{target} ({', '.join(notes)})  {self.detail}"
        ).rstrip()

    def as_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "at": self.at.isoformat(),
            "path": self.path,
            "kind": self.kind,
            "signature": self.signature,
            "status": self.status,
            "accepted": self.accepted,
            "delivery_key": self.delivery_key,
            "repeat": self.repeat,
            "queue": self.queue,
            "item_id": self.item_id,
            "outcome": self.outcome,
            "rule": self.rule,
            "body": dict(self.body),
        }

    def _field(self, name: str) -> str | None:
        key = {"item": "item_id"}.get(name, name)
        if key in self.body:
            return str(self.body[key])
        return self._slack_match(name)

    def _slack_match(self, group: str) -> str | None:
        match = _SLACK_TEXT.match(str(self.body.get("text") or ""))
        return match.group(group) if match else None


class ReceiverApp:
    """The WSGI application: the two hooks, the deliveries, the failure knob."""

    def __init__(
        self,
        signing_key: str,
        token: str,
        on_delivery: Callable[[Delivery], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.signing_key = signing_key
        self.token = token
        self.on_delivery = on_delivery
        self.clock = clock
        self._deliveries: list[Delivery] = []
        self._taken: set[str] = set()
        self._failures: list[int] = []  # statuses to answer the next hook POSTs with
        self._changed = threading.Condition()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        path = request.path
        if request.method == "GET" and path == "/deliveries":
            since = request.args.get("since", "0")
            if not since.isdigit():
                return _json({"error": "since: a number"}, 400)
            listed = self.deliveries(int(since))
            return _json({"deliveries": [d.as_json() for d in listed]})
        if request.method == "POST" and path == "/fail-next":
            count, status = request.args.get("count", "1"), request.args.get("status", "500")
            if not (count.isdigit() and status.isdigit() and 100 <= int(status) <= 599):
                return _json({"error": "count: a number; status: an HTTP status"}, 400)
            self.fail_next(int(count), int(status))
            return _json({"failing": int(count), "status": int(status)})
        kind = {f"/hooks/{self.token}": "webhook", f"/slack/{self.token}": "slack"}.get(path)
        if kind is None or request.method != "POST":
            log.warning("webhook receiver: nothing here", method=request.method, path=path)
            return _json({"error": "not found"}, 404)
        return self._receive(request, kind)

    def _receive(self, request: Request, kind: str) -> Response:
        raw = request.get_data()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        header = request.headers.get(SIGNATURE_HEADER)
        if header is None:
            signature = UNSIGNED
        else:
            good = verify(self.signing_key, raw, header, self.clock())
            signature = VERIFIED if good else INVALID
        key = request.headers.get(DELIVERY_HEADER)
        with self._changed:
            if not isinstance(body, dict):
                status = 400
            elif signature == INVALID:
                status = 401
            elif self._failures:
                status = self._failures.pop(0)
            else:
                status = 200
            repeat = key is not None and key in self._taken
            if key is not None and 200 <= status < 300:
                self._taken.add(key)
            delivery = Delivery(
                number=len(self._deliveries),
                at=datetime.fromtimestamp(self.clock(), UTC),
                path=request.path.replace(self.token, "…"),
                kind=kind,
                signature=signature,
                status=status,
                delivery_key=key,
                repeat=repeat,
                body=body
                if isinstance(body, dict)
                else {"unparsed": raw[:2000].decode(errors="replace")},
            )
            self._deliveries.append(delivery)
            self._changed.notify_all()
        if self.on_delivery is not None:
            try:
                self.on_delivery(delivery)
            except Exception:
                log.exception("webhook receiver: on_delivery failed")
        if status == 200:
            return Response("ok", status=200, content_type="text/plain; charset=utf-8")
        return _json({"error": f"refused ({signature})" if status in (400, 401) else "failing"},
                     status)  # fmt: skip

    # -- for the stack, tests and the demo ------------------------------------------------------

    def deliveries(self, since: int = 0) -> list[Delivery]:
        with self._changed:
            return self._deliveries[since:]

    def fail_next(self, count: int = 1, status: int = 500) -> None:
        """Answer the next `count` hook POSTs (signed or not) with `status`."""
        with self._changed:
            self._failures.extend([status] * count)

    def wait_for(self, ready: Callable[[list[Delivery]], bool], timeout: float) -> list[Delivery]:
        """Block until `ready(deliveries)` holds or `timeout` passes; the deliveries either way."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not ready(list(self._deliveries)):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return list(self._deliveries)


def _json(body: Mapping[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


class WebhookReceiver(BackgroundServer):
    """The receiver on a loopback port, in a background thread (see the module docstring)."""

    title = "webhook receiver"

    def __init__(
        self,
        signing_key: str,
        token: str,
        host: str = "127.0.0.1",
        port: int = 0,
        on_delivery: Callable[[Delivery], None] | None = None,
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]{8,}", token):
            raise ValueError("token: at least 8 characters of [A-Za-z0-9_-]")
        self.app = ReceiverApp(signing_key, token, on_delivery)
        super().__init__(self.app, host, port)

    @property
    def hook_url(self) -> str:
        """What a signed webhook rule's `url_secret` holds."""
        return f"{self.url}/hooks/{self.app.token}"

    @property
    def slack_url(self) -> str:
        """What a Slack rule's `webhook_secret` holds."""
        return f"{self.url}/slack/{self.app.token}"

    def deliveries(self, since: int = 0) -> list[Delivery]:
        return self.app.deliveries(since)

    def fail_next(self, count: int = 1, status: int = 500) -> None:
        self.app.fail_next(count, status)

    def wait_for(self, ready: Callable[[list[Delivery]], bool], timeout: float) -> list[Delivery]:
        return self.app.wait_for(ready, timeout)
