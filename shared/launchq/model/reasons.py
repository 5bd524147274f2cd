"""Every reason launchq records, in one place, each with the text a person reads beside it.

Like Kubernetes condition reasons next to their messages: the value is the machine-readable
code a record stores and a script may compare against; `text` says what it means. The values
are the strings launchq has always stored (each enum is a `StrEnum`), so existing records, docs
and scripts stay valid. Nothing else in launchq spells a reason as a bare string, but for the
queue config's `retry.reasons` (a `Literal`, for its JSON Schema), which a test keeps equal to
the failure classes a policy may retry.

- `RejectReason`: `error.reason` of a REJECTED item (the message could not become an item).
- `FailureClass`: `error.reason` of an attempt that ended badly on Vertex; `retry.reasons` in a
  queue config names these (`launchq.model.failures` decides the class and the retry).
- `FailureReason`: `error.reason` of an item that failed before or around its job.
- `WaitReason`: the `reason` of a waiting item. Three are stored as their value; a quota wait, a
  retry and a budget wait are stored with their particulars (`quota_reason`, `retry_reason`,
  `budget_reason`) and read back with `WaitReason.of`. What a waiting item waits for *now* is
  derived from its queue's current state (`launchq.model.waiting.current_wait`): the stored
  reason is only why it waited when written.
- `CancelReason`: an item's `cancel_reason` (who asked for the cancel).

`ErrorRecord` is the one shape of an item's `error`: a code, a message and its details.

A leaf module: it imports nothing of launchq.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Self


class _Described(StrEnum):
    """A reason code whose members are declared as `NAME = value, text`."""

    text: str

    def __new__(cls, value: str, text: str = "") -> Self:
        member = str.__new__(cls, value)
        member._value_ = value
        member.text = text
        return member


class RejectReason(_Described):
    """Why a message was recorded REJECTED (`error.reason`): retrying it cannot help."""

    TOO_LARGE = "too_large", "the message is over the 256 KiB limit"
    UNDECODABLE = "undecodable", "the message is not a JSON object (or its envelope is malformed)"
    NO_QUEUE = "no_queue", "no queue in the item or its attributes"
    INVALID_QUEUE = "invalid_queue", "the queue is not a non-empty string naming a valid queue"
    INVALID_ITEM_ID = "invalid_item_id", "the item_id is not a non-empty string of a valid id"
    UNKNOWN_TOPIC = "unknown_topic", "published to a topic that is no queue's"
    QUEUE_MISMATCH = "queue_mismatch", "published to one queue's topic but names another queue"
    CONTROL_REFUSED = "control_refused", "a control message that could not be carried out"
    UNKNOWN_QUEUE = "unknown_queue", "there is no queue of that name"
    INVALID_ITEM = "invalid_item", "the item is not valid on its queue (every error has its path)"
    RECORD_TOO_LARGE = "record_too_large", "the item and the job it renders into are too large"
    SOURCE_OUTSIDE_BUCKET = (
        "source_outside_bucket",
        "the source archive is not in the queue's staging bucket",
    )
    SOURCE_MISSING = "source_missing", "the source archive does not exist"
    SOURCE_MISMATCH = "source_mismatch", "the source archive is empty or not the one the item names"
    DOCKERFILE_MISSING = (
        "dockerfile_missing",
        "the source has no Dockerfile to build the image from",
    )
    BUILD_DESTINATION_REFUSED = (
        "build_destination_refused",
        "the image would be pushed to a repository the queue may not use",
    )
    INTERNAL_ERROR = "internal_error", "launchq failed on this message (a bug): see the message"


class FailureClass(_Described):
    """Why an attempt ended badly on Vertex; `retry.reasons` in a queue config names these."""

    NO_CAPACITY = "no_capacity", "Vertex had no capacity for the job (stockout, FLEX_START, SPOT)"
    QUOTA = "quota", "the job ran into a Vertex quota"
    INFRASTRUCTURE = "infrastructure", "Vertex failed internally"
    PREEMPTED = "preempted", "the job's SPOT VMs were preempted"
    START_TIMEOUT = "start_timeout", "the job did not start within the queue's start timeout"
    USER_ERROR = "user_error", "the job itself failed (e.g. a non-zero exit)"
    CANCELLED_BY_USER = "cancelled", "cancelled by a user"

    @property
    def users_fault(self) -> bool:
        return self is FailureClass.USER_ERROR


class FailureReason(_Described):
    """Why an item failed other than by its job's run (`error.reason`)."""

    VERTEX_REJECTED = "vertex_rejected", "Vertex refused to create the job (400/403/404)"
    JOB_ERROR = "vertex", "a repair found the job already ended, with Vertex's error"
    BUILD_FAILED = "build_failed", "the image build from the item's source failed"
    OVER_BUDGET = (
        "over_budget",
        "its attempt would not fit in its queue's or cohort's budget (on_exceed: reject)",
    )


class WaitReason(_Described):
    """Why an item waits. FREE_SLOT, PAUSED and RATE_LIMITED are stored as their value; QUOTA
    and RETRY with their particulars; the rest are only ever derived (`launchq.model.waiting`)."""

    FREE_SLOT = "waiting for a free slot", "every slot of the queue is taken"
    PAUSED = "queue paused", "the queue is paused: `launchq queue resume` lets it start"
    RATE_LIMITED = (
        "rate_limited",
        "the region's creation budget (creates per minute) is spent: the next window admits it",
    )
    QUOTA = "quota", "Vertex refused a create for a resource quota: the queue backs off"
    BUDGET = (
        "budget",
        "its attempt would not fit in what is left of its queue's or cohort's monthly budget",
    )
    RETRY = "retry", "a failed attempt is run again after a backoff"
    BUILDING = "building", "its image is being built from its source"
    ADMITTING = "admitting", "a slot is free: the next dispatch or sweep admits it"
    # A queue in a cohort (launchq.cohorts): derived, never stored.
    QUOTA_FULL = (
        "quota_full",
        "every accelerator of the cohort's declared quota is in use: it starts when a job ends",
    )
    SHARE = (
        "share",
        "another member of its cohort goes first: it is below its share, or used less recently",
    )
    SUBMITTER_LIMIT = (
        "submitter_limit",
        "its submitter holds max_jobs_per_submitter jobs of the queue: it starts when one ends",
    )
    BORROWING = (
        "borrowing",
        "its queue holds its share of the cohort's quota and may borrow no more (borrowing_limit)",
    )
    # A child of a sweep or array (launchq.expansion): stored on a HELD child.
    MAX_PARALLEL = (
        "max_parallel",
        "its sweep has max_parallel children waiting or running: it is released when one ends",
    )

    @classmethod
    def of(cls, stored: str | None) -> WaitReason | None:
        """The reason a stored `reason` string stands for; None for none (or one unknown)."""
        if not stored:
            return None
        if stored.startswith(_QUOTA_PREFIX):
            return cls.QUOTA
        if stored.startswith(_RETRY_PREFIX):
            return cls.RETRY
        if stored.startswith(_BUDGET_PREFIX):
            return cls.BUDGET
        try:
            return cls(stored)
        except ValueError:
            return None


_QUOTA_PREFIX = "waiting: Vertex quota "
_RETRY_PREFIX = "retrying after "
_BUDGET_PREFIX = "over budget: "


def budget_reason(message: str) -> str:
    """`WaitReason.BUDGET` as stored and shown: which budget, and what is left of it."""
    return f"{_BUDGET_PREFIX}{message}"


def quota_reason(metric: str, region: str) -> str:
    """`WaitReason.QUOTA` as stored and shown: which quota, where."""
    return f"{_QUOTA_PREFIX}{metric} exhausted in {region}"


def retry_reason(klass: FailureClass) -> str:
    """`WaitReason.RETRY` as stored and shown: after which failure."""
    return f"{_RETRY_PREFIX}{klass.value}"


def every_placement_reason(refusals: Mapping[str, str]) -> str:
    """`WaitReason.RETRY` when every placement of the item's queue has refused it: each
    placement's reason, in the order they refused."""
    parts = "; ".join(f"{name}: {why}" for name, why in refusals.items())
    return f"{_RETRY_PREFIX}every placement refused ({parts})"


class CancelReason(_Described):
    """Who asked for a cancel (`cancel_reason`)."""

    USER = "user", "a user cancelled it (`launchq cancel` or a control message)"
    START_TIMEOUT = FailureClass.START_TIMEOUT.value, FailureClass.START_TIMEOUT.text


ErrorCode = RejectReason | FailureClass | FailureReason


@dataclass(frozen=True)
class ErrorRecord:
    """An item's `error`: the code, the message a person reads, where, every issue, details.

    `details` are stored beside the rest (Vertex's `status` and `http_status`, a build's
    `log_url` ...), so the stored map keeps the keys it always had.
    """

    reason: ErrorCode
    message: str
    path: str | None = None
    errors: tuple[Mapping[str, Any], ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        """The stored map: `{reason, message, path, errors, **details}`."""
        return {
            "reason": self.reason.value,
            "message": self.message,
            "path": self.path,
            "errors": [dict(e) for e in self.errors],
            **self.details,
        }
