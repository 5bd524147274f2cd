"""What a notification says, built once from the item's record and sent in each target's shape:
Slack Block Kit (built with `slack_sdk`'s models, which check Slack's limits as they are
made), or JSON for a signed webhook and a Pub/Sub topic.

It says: the item, its queue and display name, the outcome, who claimed to submit it, the
error's first lines and the job's last log lines for a failure, run time, attempts, the
estimated cost when there is a price, and links (Vertex console, logs, the dashboard's item
page). A sweep's parent says how its children ended instead. Nothing secret is in a record, so
nothing secret can be in a message: the webhook URLs and keys are read at send time, never put
in the message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from launchq.spec.notify import WAITING

ERROR_LINES = 5
LOG_LINES = 10
MAX_LINE = 300
EMOJI = {
    "FAILED": ":x:",
    "EXPIRED": ":hourglass:",
    "CANCELLED": ":no_entry_sign:",
    "SUCCEEDED": ":white_check_mark:",
    WAITING: ":hourglass_flowing_sand:",
}


@dataclass(frozen=True)
class NoticeMessage:
    """One notification's content, independent of where it goes."""

    queue: str
    item_id: str
    display_name: str
    outcome: str
    cause: str
    submitter: str | None
    attempts: int
    run_seconds: float | None
    cost_usd: float | None
    error_lines: tuple[str, ...] = ()
    log_lines: tuple[str, ...] = ()
    links: Mapping[str, str] = field(default_factory=dict)
    children: Mapping[str, int] | None = None
    waited_seconds: float | None = None

    @property
    def title(self) -> str:
        what = "waits" if self.outcome == WAITING else self.outcome
        return f"{self.display_name or self.item_id} {what}"

    def text(self) -> str:
        """The one line a notification shows where blocks are not shown."""
        return f"launchq: {self.title} ({self.queue}/{self.item_id}): {self.cause}"

    def facts(self) -> list[tuple[str, str]]:
        facts = [("Queue", self.queue), ("Item", self.item_id)]
        if self.submitter:
            facts.append(("Submitter", f"{self.submitter} (claimed)"))
        if self.children is not None:
            facts.append(("Children", ", ".join(f"{n} {s}" for s, n in self.children.items())))
        else:
            facts.append(("Attempts", str(self.attempts)))
        if self.run_seconds is not None:
            facts.append(("Run time", _duration(self.run_seconds)))
        if self.waited_seconds is not None:
            facts.append(("Waiting for", _duration(self.waited_seconds)))
        if self.cost_usd is not None:
            facts.append(("Estimated cost", f"${self.cost_usd:,.2f}"))
        return facts

    def blocks(self) -> list[dict[str, Any]]:
        """Slack Block Kit, through slack_sdk's models (a block over Slack's limits raises)."""
        from slack_sdk.models.blocks import (
            ActionsBlock,
            ButtonElement,
            ContextBlock,
            HeaderBlock,
            MarkdownTextObject,
            SectionBlock,
        )

        header = f"{EMOJI.get(self.outcome, '')} {self.title}".strip()
        blocks: list[Any] = [
            HeaderBlock(text=header[:150]),
            SectionBlock(
                text=MarkdownTextObject(text=_mrkdwn(self.cause)[:3000]),
                fields=[MarkdownTextObject(text=f"*{k}*\n{_mrkdwn(v)}") for k, v in self.facts()],
            ),
        ]
        if self.error_lines:
            blocks.append(SectionBlock(text=MarkdownTextObject(text=_code(self.error_lines))))
        if self.log_lines:
            blocks.append(ContextBlock(elements=[MarkdownTextObject(text="last log lines")]))
            blocks.append(SectionBlock(text=MarkdownTextObject(text=_code(self.log_lines))))
        buttons = [
            ButtonElement(text=name, url=url, action_id=f"launchq-{name.lower()}")
            for name, url in self.links.items()
        ]
        if buttons:
            blocks.append(ActionsBlock(elements=buttons[:5]))
        return [block.to_dict() for block in blocks]

    def body(self) -> dict[str, Any]:
        """The JSON a signed webhook or a Pub/Sub topic gets (docs/notifications.md)."""
        return {
            "type": "launchq.notification",
            "queue": self.queue,
            "item_id": self.item_id,
            "display_name": self.display_name,
            "outcome": self.outcome,
            "cause": self.cause,
            "submitter": self.submitter,
            "attempts": self.attempts,
            "run_seconds": self.run_seconds,
            "cost_usd": self.cost_usd,
            "error": list(self.error_lines),
            "log_tail": list(self.log_lines),
            "links": dict(self.links),
            "children": dict(self.children) if self.children is not None else None,
            "waited_seconds": self.waited_seconds,
            "text": self.text(),
        }


def message_for(
    data: Mapping[str, Any],
    outcome: str,
    now: datetime,
    dashboard_url: str | None,
    log_lines: Sequence[str] = (),
) -> NoticeMessage:
    """The message about the item stored as `data` (its Firestore document)."""
    queue, item_id = str(data.get("queue")), str(data.get("item_id"))
    history = [h for h in data.get("history") or [] if isinstance(h, Mapping)]
    attempts = [a for a in data.get("attempts") or [] if isinstance(a, Mapping)]
    job: Mapping[str, Any] = data["job"] if isinstance(data.get("job"), Mapping) else {}
    error: Mapping[str, Any] = data["error"] if isinstance(data.get("error"), Mapping) else {}
    links: dict[str, str] = {}
    for name, key in (("Console", "console_url"), ("Logs", "logs_url")):
        if job.get(key):
            links[name] = str(job[key])
    if dashboard_url:
        base = dashboard_url.rstrip("/")
        links["Dashboard"] = (
            f"{base}/queues/{quote(queue, safe='')}/items/{quote(item_id, safe='')}"
        )
    seconds = [float(a["run_seconds"]) for a in attempts if a.get("run_seconds") is not None]
    priced = [float(a["usd"]) for a in attempts if a.get("usd") is not None]
    submitted = data.get("submitted_by")
    children = data.get("children") if isinstance(data.get("children"), Mapping) else None
    enqueued = data.get("enqueued_at")
    waited = (
        (now - enqueued).total_seconds()
        if outcome == WAITING and isinstance(enqueued, datetime)
        else None
    )
    failing = outcome in ("FAILED", "EXPIRED")
    return NoticeMessage(
        queue=queue,
        item_id=item_id,
        display_name=str(data.get("display_name") or ""),
        outcome=outcome,
        cause=str(history[-1].get("cause") or outcome) if history else outcome,
        submitter=str(submitted.get("value")) if isinstance(submitted, Mapping) else None,
        attempts=len(attempts),
        run_seconds=round(sum(seconds), 1) if seconds else None,
        cost_usd=round(sum(priced), 4) if priced else None,
        error_lines=_lines(str(error.get("message") or ""), ERROR_LINES) if failing else (),
        log_lines=tuple(line[:MAX_LINE] for line in log_lines[-LOG_LINES:]) if failing else (),
        links=links,
        children={str(k): int(v) for k, v in children.items()} if children else None,
        waited_seconds=round(waited) if waited is not None else None,
    )


def _lines(text: str, count: int) -> tuple[str, ...]:
    return tuple(line[:MAX_LINE] for line in text.splitlines()[:count] if line.strip())


def _code(lines: Sequence[str]) -> str:
    body = "\n".join(line.replace("```", "'''") for line in lines)
    return f"```{body[:2990]}```"


def _mrkdwn(text: str) -> str:
    """Text as Slack mrkdwn shows it literally (its three control characters escaped)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{seconds:.1f} s"
