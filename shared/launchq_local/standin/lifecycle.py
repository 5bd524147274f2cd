"""Job states over time: the scripted timeline as a list of planned transitions.

A job keeps a `history` (transitions that happened) and a `plan` (transitions due at known
times). Reading a job first moves every due planned transition into the history, so the scripted
mode needs no thread or timer per job: QUEUED → PENDING → RUNNING → outcome is just four
timestamps computed at create time. Cancel, the admin API and execute mode edit the plan or
append to the history directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.cloud.aiplatform_v1 import types

QUEUED = "JOB_STATE_QUEUED"
PENDING = "JOB_STATE_PENDING"
RUNNING = "JOB_STATE_RUNNING"
SUCCEEDED = "JOB_STATE_SUCCEEDED"
FAILED = "JOB_STATE_FAILED"
CANCELLING = "JOB_STATE_CANCELLING"
CANCELLED = "JOB_STATE_CANCELLED"
EXPIRED = "JOB_STATE_EXPIRED"
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED, EXPIRED, "JOB_STATE_PARTIALLY_SUCCEEDED"})
_JOB_STATE: Any = types.JobState  # proto-plus enums are not typed as iterable
STATE_NAMES: frozenset[str] = frozenset(s.name for s in _JOB_STATE)
STATE_VALUES: dict[str, int] = {s.name: int(s) for s in _JOB_STATE}
_ORDER = {QUEUED: 0, PENDING: 1, RUNNING: 2}

CANCELLED_ERROR = (1, "CANCELLED")
DEFAULT_FAILED_ERROR = (13, "The job failed (set through the stand-in's admin API).")


def state_name(value: str | int) -> str:
    """Accept `JOB_STATE_RUNNING`, `RUNNING`, `running` or the enum's integer."""
    if isinstance(value, int):
        return str(_JOB_STATE(value).name)
    upper = value.strip().upper()
    name = upper if upper.startswith("JOB_STATE_") else f"JOB_STATE_{upper}"
    if name not in STATE_NAMES:
        raise ValueError(f"{value!r} is not a JobState")
    return name


@dataclass
class Delays:
    """Seconds spent in each state in scripted mode; None means "stay until told otherwise"."""

    queued: float | None = 1.0
    pending: float | None = 1.0
    running: float | None = 5.0
    cancelling: float = 0.5

    def to_json(self) -> dict[str, float | None]:
        return {
            "queued": self.queued,
            "pending": self.pending,
            "running": self.running,
            "cancelling": self.cancelling,
        }


@dataclass(frozen=True)
class Outcome:
    """How a scripted job ends: a terminal state, its error, and the state it follows."""

    state: str = SUCCEEDED
    error: tuple[int, str] | None = None
    after: str = RUNNING

    def __post_init__(self) -> None:
        if self.state not in TERMINAL:
            raise ValueError(f"an outcome must be a terminal state, not {self.state}")
        if self.after not in _ORDER:
            raise ValueError(f"'after' must be QUEUED, PENDING or RUNNING, not {self.after}")

    @property
    def effective_error(self) -> tuple[int, str] | None:
        if self.error is not None:
            return self.error
        if self.state == FAILED:
            return DEFAULT_FAILED_ERROR
        if self.state == CANCELLED:
            return CANCELLED_ERROR
        return None


@dataclass(frozen=True)
class ScheduledState:
    """One step of a stand-in job's scripted timeline: the state it enters, and when."""

    state: str
    at: float  # seconds since the epoch
    error: tuple[int, str] | None = None


def schedule(created: float, delays: Delays, outcome: Outcome) -> list[ScheduledState]:
    """The full scripted timeline from creation; it stops at the first open-ended delay."""
    steps = [(QUEUED, delays.queued), (PENDING, delays.pending), (RUNNING, delays.running)]
    out: list[ScheduledState] = []
    at = created
    for state, delay in steps:
        out.append(ScheduledState(state, at))
        if delay is None:
            return out
        at += delay
        if state == outcome.after:
            out.append(ScheduledState(outcome.state, at, outcome.effective_error))
            return out
    return out


def remaining(timeline: list[ScheduledState], current: str, now: float) -> list[ScheduledState]:
    """The part of `timeline` still ahead of a job in `current` (QUEUED/PENDING/RUNNING).

    Transitions that were due in the past (the outcome changed late) happen `now` instead.
    """
    position = _ORDER[current]
    return [
        ScheduledState(t.state, max(t.at, now), t.error)
        for t in timeline
        if _ORDER.get(t.state, len(_ORDER)) > position
    ]


def is_active(state: str) -> bool:
    """QUEUED, PENDING or RUNNING: states whose scripted future can still be changed."""
    return state in _ORDER
