"""A queue's notification rules: where a person hears that an item ended (docs/notifications.md).

    notify:
      - name: team-slack
        slack: {webhook_secret: projects/acme/secrets/ml-slack-webhook/versions/latest}
        outcomes: [FAILED, EXPIRED]         # default [FAILED]
        submitters: [ada, "intern-*"]       # default: everybody's items
      - name: pager
        webhook:
          url_secret: projects/acme/secrets/pager-url/versions/1
          signing_key_secret: projects/acme/secrets/pager-hmac/versions/1
        outcomes: [FAILED]
        waiting_longer_than_seconds: 7200   # also: an item waited two hours and has not started
      - name: audit
        pubsub: {topic: projects/acme/topics/ml-outcomes}
        outcomes: [FAILED, SUCCEEDED, CANCELLED, EXPIRED]

A webhook's URL (Slack's incoming webhook URL is itself the credential) and a signing key are
secrets: the config names Secret Manager versions, never the values, so no config, record, log
line or event holds them; only the notify function's service account may read them.
"""

from __future__ import annotations

import fnmatch
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from launchq.spec.wandb import SECRET_VERSION_PATTERN

Outcome = Literal["FAILED", "SUCCEEDED", "CANCELLED", "EXPIRED"]
OUTCOMES: tuple[Outcome, ...] = ("FAILED", "SUCCEEDED", "CANCELLED", "EXPIRED")
WAITING = "WAITING"  # the outcome name of a "waited longer than X" notification
SecretVersion = Annotated[str, Field(pattern=SECRET_VERSION_PATTERN, max_length=600)]
TOPIC_PATTERN = r"^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/topics/[A-Za-z][A-Za-z0-9._~+%-]{2,254}$"
MAX_RULES = 10


class SlackTarget(BaseModel):
    """A Slack incoming webhook: its URL is the credential, so it lives in Secret Manager."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook_secret: SecretVersion = Field(
        description="Secret Manager version holding the incoming webhook URL."
    )


class WebhookTarget(BaseModel):
    """Any HTTPS endpoint: a JSON POST signed with HMAC-SHA256 over the timestamp and the body
    (docs/notifications.md: `X-Launchq-Signature: t=<unix>,v1=<hex>`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url_secret: SecretVersion = Field(description="Secret Manager version holding the URL.")
    signing_key_secret: SecretVersion = Field(
        description="Secret Manager version holding the HMAC-SHA256 signing key."
    )


class PubsubTarget(BaseModel):
    """A Pub/Sub topic: one JSON message per notification (the notify function publishes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: Annotated[str, Field(pattern=TOPIC_PATTERN)] = Field(
        description="projects/PROJECT/topics/TOPIC"
    )


class NotifyRule(BaseModel):
    """One rule: one target, the outcomes it is told of, whose items."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,39}$")] = Field(
        description="The rule's name, unique in the queue: what a delivery is recorded under."
    )
    slack: SlackTarget | None = None
    webhook: WebhookTarget | None = None
    pubsub: PubsubTarget | None = None
    # Not `on`: YAML 1.1 (PyYAML, and so `launchq queue apply`) reads a bare `on` key as true.
    outcomes: list[Outcome] = Field(
        default=["FAILED"],
        min_length=1,
        description="Final outcomes to notify: FAILED (default), SUCCEEDED, CANCELLED, EXPIRED.",
    )
    waiting_longer_than_seconds: Annotated[int, Field(ge=60)] | None = Field(
        default=None,
        description="Also notify, once, when an item has waited this long without starting.",
    )
    submitters: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None,
        description="Only items whose (claimed) submitter matches one of these shell patterns.",
    )

    @model_validator(mode="after")
    def _one_target(self) -> NotifyRule:
        targets = [t for t in (self.slack, self.webhook, self.pubsub) if t is not None]
        if len(targets) != 1:
            raise ValueError("a rule has exactly one of slack, webhook, pubsub")
        return self

    @property
    def kind(self) -> str:
        return "slack" if self.slack else "webhook" if self.webhook else "pubsub"

    def wants(self, outcome: str, submitter: str | None) -> bool:
        """Does this rule tell of `outcome` (or WAITING) for an item of `submitter`?"""
        if outcome == WAITING:
            wanted = self.waiting_longer_than_seconds is not None
        else:
            wanted = outcome in self.outcomes
        if not wanted:
            return False
        if self.submitters is None:
            return True
        return submitter is not None and any(
            fnmatch.fnmatchcase(submitter, pattern) for pattern in self.submitters
        )


def check_rules(rules: list[NotifyRule]) -> list[str]:
    """Problems across a queue's rules: names are unique, at most MAX_RULES."""
    problems = []
    if len(rules) > MAX_RULES:
        problems.append(f"at most {MAX_RULES} rules")
    names = [rule.name for rule in rules]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"rule name {name!r} is used twice")
    return problems
