"""The notify function: one message to a person per final outcome of an item, exactly once.

It is subscribed to the events topic (`launchq.gcp.events`: every state change, and the sweep's
"waited too long" notices). For an event it:

1. keeps only final outcomes (FAILED, SUCCEEDED, CANCELLED, EXPIRED) and WAITING notices;
2. reads the item: an outcome is final only if the item is still in it (an attempt that failed
   and was retried is QUEUED again by the time anyone reads it: nothing is sent until the item
   ends), a WAITING notice only if the item still waits; a sweep's child is never notified
   about, its parent sends one summary when the last child ends;
3. for each of the queue's rules that wants the outcome for the item's submitter, claims the
   notification's record (`notices/{queue}~{item}~{rule}~{outcome}`,
   launchq.model.notices): a redelivered or duplicate event finds it claimed or SENT and sends
   nothing;
4. sends it with a timeout; on failure records RETRYING and raises, so Pub/Sub redelivers the
   event with the subscription's backoff; past `MAX_ATTEMPTS` the notification is UNDELIVERED
   and so recorded on the item (`notify.{rule}`), and the event is acknowledged.

A receiver that is down or hangs costs notify invocations only: the dispatcher and the sweep
never wait for it. Exactly once is the record's: the one window it cannot close is a sender
dying after its receiver took a message and before the record says SENT; the message is then
sent again with the same `X-Launchq-Delivery` id, which a webhook receiver can drop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import requests

from launchq.errors import Conflict
from launchq.gcp import joblogs
from launchq.gcp.events import EVENT_TYPE, WAITING_EVENT_TYPE
from launchq.gcp.rest import session_for
from launchq.gcp.secrets import SecretError, SecretReader
from launchq.gcp.senders import DeliveryError, publish, send_slack, send_webhook
from launchq.log import get_logger
from launchq.model.notices import MAX_ATTEMPTS, Notice, NoticeState, notice_key
from launchq.model.records import ItemRecord
from launchq.model.states import ItemState
from launchq.notices import LOG_LINES, NoticeMessage, message_for
from launchq.queues import QueueSource
from launchq.recorder import Recorder
from launchq.spec.notify import OUTCOMES, WAITING, NotifyRule
from launchq.store import Store

log = get_logger(__name__)
WAITING_STATES = (ItemState.QUEUED, ItemState.HELD, ItemState.BUILDING)


class NotifyOutcome(StrEnum):
    """What became of one rule's notification for one event."""

    SENT = "sent"
    SKIPPED = "skipped"  # sent already, or another sender holds it
    RETRYING = "retrying"  # the receiver failed: the event is redelivered
    UNDELIVERED = "undelivered"  # past MAX_ATTEMPTS: recorded on the item


class DeliveryPending(Exception):
    """A receiver failed and may take it later: the function answers 500, Pub/Sub redelivers."""


@dataclass(frozen=True)
class NotifyResult:
    """One event's handling: why nothing was sent, or each rule's outcome."""

    item_id: str | None
    outcome: str | None
    skipped: str = ""
    rules: Mapping[str, NotifyOutcome] | None = None


class Notifier:
    """Turns events into notifications (the notify function's unit)."""

    def __init__(
        self,
        store: Store,
        queues: QueueSource,
        recorder: Recorder,
        secrets: SecretReader,
        pubsub_base: str,
        logging_base: str,
        dashboard_url: str | None,
        session_for_url: Callable[[str], requests.Session] = session_for,
    ) -> None:
        self.store = store
        self.queues = queues
        self.recorder = recorder
        self.secrets = secrets
        self.pubsub_base = pubsub_base.rstrip("/")
        self.logging_base = logging_base.rstrip("/")
        self.dashboard_url = dashboard_url
        self._session_for = session_for_url
        self._sessions: dict[str, requests.Session] = {}
        self._lock = threading.Lock()

    def handle(self, event: Mapping[str, Any]) -> NotifyResult:
        """One CloudEvent from the events topic. Raises DeliveryPending when a receiver failed
        and should be tried again."""
        data = event.get("data") if isinstance(event.get("data"), Mapping) else {}
        assert isinstance(data, Mapping)
        item_id, queue = event.get("subject"), data.get("queue")
        if not isinstance(item_id, str) or not isinstance(queue, str):
            return NotifyResult(None, None, "not an item's event")
        if event.get("type") == WAITING_EVENT_TYPE:
            outcome = WAITING
        elif event.get("type") == EVENT_TYPE and data.get("to") in OUTCOMES:
            outcome = str(data["to"])
        else:
            return NotifyResult(item_id, None, "not an outcome")
        item = self.store.get_item(queue, item_id)
        why = self._not_notified(item, outcome)
        if why is not None or item is None:
            return NotifyResult(item_id, outcome, why or "no such item")
        runtime = self.queues.get(queue)
        rules = [
            rule
            for rule in (runtime.config.notify if runtime is not None else [])
            if rule.wants(outcome, item.submitter) and self._waited(rule, item, outcome)
        ]
        if not rules:
            return NotifyResult(item_id, outcome, "no rule wants it")
        results = {rule.name: self._deliver(item, rule, outcome) for rule in rules}
        if NotifyOutcome.RETRYING in results.values():
            failed = [name for name, got in results.items() if got is NotifyOutcome.RETRYING]
            raise DeliveryPending(f"{queue}/{item_id}: {', '.join(failed)} will be tried again")
        return NotifyResult(item_id, outcome, rules=results)

    def _not_notified(self, item: ItemRecord | None, outcome: str) -> str | None:
        if item is None:
            return "no such item"
        if item.sweep_of is not None:
            return "a sweep's child: its parent sends the summary"
        if outcome == WAITING:
            return None if item.state in WAITING_STATES else f"no longer waits ({item.state})"
        if item.state.value != outcome:
            return f"not final: the item is {item.state} now"
        return None

    def _waited(self, rule: NotifyRule, item: ItemRecord, outcome: str) -> bool:
        if outcome != WAITING:
            return True
        threshold = rule.waiting_longer_than_seconds
        enqueued = item.enqueued_at
        now = self.store.clock()
        return (
            threshold is not None
            and enqueued is not None
            and ((now - enqueued).total_seconds() >= threshold)
        )

    # -- one rule ---------------------------------------------------------------------------

    def _deliver(self, item: ItemRecord, rule: NotifyRule, outcome: str) -> NotifyOutcome:
        key = notice_key(item.queue, item.item_id, rule.name, outcome)
        record = {
            "queue": item.queue,
            "item_id": item.item_id,
            "rule": rule.name,
            "outcome": outcome,
            "target": rule.kind,
        }
        notice = self.store.claim_notice(key, record)
        if notice is None:
            return NotifyOutcome.SKIPPED
        try:
            message = self._message(item, outcome)
            self._send(rule, message, key)
        except (DeliveryError, SecretError) as exc:
            return self._failed(item, rule, notice, str(exc), getattr(exc, "transient", True))
        self._finish(notice, {"state": NoticeState.SENT.value, "sent_at": self.store.clock()})
        log.info(
            "notification sent",
            item_id=item.item_id,
            queue=item.queue,
            rule=rule.name,
            outcome=outcome,
            target=rule.kind,
            attempt=notice.attempts,
        )
        return NotifyOutcome.SENT

    def _failed(
        self, item: ItemRecord, rule: NotifyRule, notice: Notice, why: str, transient: bool
    ) -> NotifyOutcome:
        fields = {"error": why, "lease_until": None}
        context = {
            "item_id": item.item_id,
            "queue": item.queue,
            "rule": rule.name,
            "attempts": notice.attempts,
            "error": why,
        }
        if transient and notice.attempts < MAX_ATTEMPTS:
            self._finish(notice, {**fields, "state": NoticeState.RETRYING.value})
            log.warning("notification not delivered; it will be tried again", **context)
            return NotifyOutcome.RETRYING
        self._finish(notice, {**fields, "state": NoticeState.UNDELIVERED.value})
        self._record_undelivered(item, rule, notice, why)
        log.error("notification undelivered", **context)
        return NotifyOutcome.UNDELIVERED

    def _finish(self, notice: Notice, changes: Mapping[str, Any]) -> None:
        try:
            self.store.finish_notice(notice, changes)
        except Conflict:
            # Our lease ran out and a redelivery took the notification over: it decides now.
            log.warning("notification taken over by another sender", key=notice.key)

    def _record_undelivered(
        self, item: ItemRecord, rule: NotifyRule, notice: Notice, why: str
    ) -> None:
        """On the item, where its owner looks (`notify.{rule}`), under its version."""
        entry = {
            "state": NoticeState.UNDELIVERED.value,
            "attempts": notice.attempts,
            "error": why,
            "at": self.store.clock(),
        }
        for _ in range(3):
            current = self.store.get_item(item.queue, item.item_id)
            if current is None:
                return
            notify = dict(current.stored.get("notify") or {})
            notify[rule.name] = entry
            try:
                self.recorder.touch(current, {"notify": notify})
                return
            except Conflict:
                continue

    def _message(self, item: ItemRecord, outcome: str) -> NoticeMessage:
        lines: list[str] = []
        if outcome in ("FAILED", "EXPIRED") and item.job is not None:
            lines = self._log_tail(item)
        return message_for(item.stored, outcome, self.store.clock(), self.dashboard_url, lines)

    def _log_tail(self, item: ItemRecord) -> list[str]:
        """The job's last lines; none (never an error) when Cloud Logging cannot say."""
        assert item.job is not None
        created = _parse_time(item.job.create_time)
        try:
            return joblogs.last_lines(
                self._google(self.logging_base),
                self.logging_base,
                str(item.project),
                item.job.job_id,
                created,
                LOG_LINES,
            )
        except (requests.RequestException, ValueError) as exc:
            log.warning("job log unavailable", item_id=item.item_id, error=str(exc))
            return []

    def _send(self, rule: NotifyRule, message: NoticeMessage, key: str) -> None:
        if rule.slack is not None:
            send_slack(self.secrets.value(rule.slack.webhook_secret), message.text(),
                       message.blocks())  # fmt: skip
        elif rule.webhook is not None:
            url = self.secrets.value(rule.webhook.url_secret)
            signing_key = self.secrets.value(rule.webhook.signing_key_secret)
            send_webhook(self._plain(url), url, signing_key, message.body(), key)
        elif rule.pubsub is not None:
            session = self._google(self.pubsub_base)
            publish(session, self.pubsub_base, rule.pubsub.topic, message.body(), key)

    def _google(self, base: str) -> requests.Session:
        """A session with the function's Google credentials, for Google's APIs only."""
        with self._lock:
            if base not in self._sessions:
                self._sessions[base] = self._session_for(base)
            return self._sessions[base]

    def _plain(self, url: str) -> requests.Session:
        """A session without credentials, per scheme and host, for a receiver: a Google token
        must never reach a third party's endpoint."""
        origin = "plain:" + "/".join(url.split("/", 3)[:3])
        with self._lock:
            if origin not in self._sessions:
                self._sessions[origin] = requests.Session()
            return self._sessions[origin]


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
