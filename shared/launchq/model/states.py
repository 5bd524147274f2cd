"""The item state machine and the Vertex `JobState` mapping: one table each, in one place.

Both the dispatcher and the sweep import this module; nothing else decides what a state means.

Vertex states are mapped by *name or number*, never by `str()`: proto-plus enums subclass
`IntEnum`, and on Python >= 3.11 `str(JobState.JOB_STATE_SUCCEEDED)` is `"4"` (the defect that
makes W&B Launch see every Vertex job as `unknown`). A value this table does not know (a state
Google adds later) maps to `UNKNOWN`, which keeps its slot and keeps being polled: it never
crashes a sweep and never frees capacity by accident.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from launchq.errors import InvalidTransition


class ItemState(StrEnum):
    """Where a queue item is. Stored in Firestore by value (the upper-case name)."""

    SWEEP = "SWEEP"
    HELD = "HELD"
    BUILDING = "BUILDING"
    QUEUED = "QUEUED"
    SUBMITTING = "SUBMITTING"
    SUBMITTED = "SUBMITTED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    CANCELLING = "CANCELLING"
    UNKNOWN = "UNKNOWN"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    PARTIALLY_SUCCEEDED = "PARTIALLY_SUCCEEDED"
    REJECTED = "REJECTED"

    # What a state means, SkyPilot-style: read from the table below, so there is one truth.
    @property
    def info(self) -> StateInfo:
        return STATES[self]

    @property
    def is_terminal(self) -> bool:
        """The item is over: nothing will change it again (except a retry's new attempt)."""
        return STATES[self].terminal

    @property
    def holds_slot(self) -> bool:
        """The item counts against the queue's `max_jobs`."""
        return STATES[self].holds_slot

    @property
    def has_job(self) -> bool:
        return STATES[self].has_job


@dataclass(frozen=True)
class StateInfo:
    """What a state implies: does it end the item, does it hold one of the queue's slots."""

    terminal: bool
    holds_slot: bool
    has_job: bool
    description: str


# The table. `holds_slot` is what `max_jobs` counts: everything from the moment an item is
# claimed for submission until Vertex reports a terminal state. PAUSED and UNKNOWN keep their
# slot on purpose: releasing capacity for a job that may still run would break the quota the
# queue promises.
STATES: dict[ItemState, StateInfo] = {
    # A sweep or array (launchq.spec.family) is a parent item and its children; the parent runs
    # nothing itself and ends when every child has. A child beyond its sweep's max_parallel is
    # HELD, outside the queue's waiting set (so it cannot block anybody's items), until a place
    # among the sweep's max_parallel is free.
    ItemState.SWEEP: StateInfo(False, False, False, "a sweep or array: its children run"),
    ItemState.HELD: StateInfo(False, False, False, "waits for its sweep's max_parallel"),
    ItemState.BUILDING: StateInfo(False, False, False, "its image is being built from source"),
    ItemState.QUEUED: StateInfo(False, False, False, "accepted, waiting for a slot"),
    ItemState.SUBMITTING: StateInfo(False, True, False, "claimed; CreateCustomJob in progress"),
    ItemState.SUBMITTED: StateInfo(False, True, True, "job created; Vertex has it QUEUED"),
    ItemState.PENDING: StateInfo(False, True, True, "Vertex is provisioning the job"),
    ItemState.RUNNING: StateInfo(False, True, True, "running (or UPDATING) on Vertex"),
    ItemState.PAUSED: StateInfo(False, True, True, "paused on Vertex; can be resumed"),
    ItemState.CANCELLING: StateInfo(False, True, True, "cancel requested; Vertex is stopping"),
    ItemState.UNKNOWN: StateInfo(False, True, True, "Vertex state unknown to launchq"),
    ItemState.SUCCEEDED: StateInfo(True, False, True, "the job succeeded"),
    ItemState.FAILED: StateInfo(True, False, False, "the job (or its submission) failed for good"),
    ItemState.CANCELLED: StateInfo(True, False, False, "cancelled, before or after submission"),
    ItemState.EXPIRED: StateInfo(True, False, True, "Vertex expired the job"),
    ItemState.PARTIALLY_SUCCEEDED: StateInfo(True, False, True, "some workers succeeded"),
    ItemState.REJECTED: StateInfo(True, False, False, "invalid; never submitted"),
}

TERMINAL_STATES = frozenset(s for s, info in STATES.items() if info.terminal)
SLOT_STATES = frozenset(s for s, info in STATES.items() if info.holds_slot)
# States whose job the sweep reads from Vertex (SUBMITTING has no job name yet: the sweep repairs
# it through a label lookup instead).
POLLED_STATES = frozenset(SLOT_STATES - {ItemState.SUBMITTING})

_VERTEX_DRIVEN = frozenset(
    {
        ItemState.SUBMITTED,
        ItemState.PENDING,
        ItemState.RUNNING,
        ItemState.PAUSED,
        ItemState.CANCELLING,
        ItemState.UNKNOWN,
        ItemState.SUCCEEDED,
        ItemState.FAILED,
        ItemState.CANCELLED,
        ItemState.EXPIRED,
        ItemState.PARTIALLY_SUCCEEDED,
    }
)

# Allowed transitions. Vertex is the source of truth once a job exists, so any Vertex-driven
# state may follow any non-terminal Vertex-driven state. QUEUED may follow a job's end only
# through a retry (a new attempt, a new CustomJob, on the same item), recorded in the same write
# as the end itself (launchq.store.Transition.via).
TRANSITIONS: dict[ItemState, frozenset[ItemState]] = {
    # A parent ends when its last child does: SUCCEEDED when all succeeded, CANCELLED when it
    # was cancelled, FAILED otherwise (launchq.expansion).
    ItemState.SWEEP: frozenset({ItemState.SUCCEEDED, ItemState.FAILED, ItemState.CANCELLED}),
    ItemState.HELD: frozenset({ItemState.QUEUED, ItemState.CANCELLED}),
    # An item whose image is built from source is created BUILDING and holds no slot: a build
    # can take many minutes, and capacity is for running jobs. Built -> QUEUED (admitted as
    # usual); the build failed -> FAILED (`build_failed`, never retried: the same source
    # builds the same way); cancelled while building -> CANCELLED.
    ItemState.BUILDING: frozenset({ItemState.QUEUED, ItemState.FAILED, ItemState.CANCELLED}),
    ItemState.QUEUED: frozenset(
        {ItemState.SUBMITTING, ItemState.CANCELLED, ItemState.REJECTED, ItemState.FAILED}
    ),
    ItemState.SUBMITTING: _VERTEX_DRIVEN | {ItemState.QUEUED, ItemState.SUBMITTING},
    **{
        state: (_VERTEX_DRIVEN - {state}) | {ItemState.QUEUED}
        for state in _VERTEX_DRIVEN
        if not STATES[state].terminal
    },
    ItemState.FAILED: frozenset({ItemState.QUEUED}),
    ItemState.EXPIRED: frozenset({ItemState.QUEUED}),
    ItemState.SUCCEEDED: frozenset(),
    # Only a cancel launchq made itself (start timeout) is retried; a user's cancel never is
    # (launchq.model.failures.failure_class decides).
    ItemState.CANCELLED: frozenset({ItemState.QUEUED}),
    ItemState.PARTIALLY_SUCCEEDED: frozenset(),
    ItemState.REJECTED: frozenset(),
}


def check_transition(current: ItemState, new: ItemState) -> None:
    if new not in TRANSITIONS[current]:
        raise InvalidTransition(f"an item cannot go from {current} to {new}")


@dataclass(frozen=True)
class VertexState:
    number: int
    name: str
    item_state: ItemState


# All 12 values of google.cloud.aiplatform.v1.JobState (job_state.proto).
VERTEX_STATES: tuple[VertexState, ...] = (
    VertexState(0, "JOB_STATE_UNSPECIFIED", ItemState.UNKNOWN),
    VertexState(1, "JOB_STATE_QUEUED", ItemState.SUBMITTED),
    VertexState(2, "JOB_STATE_PENDING", ItemState.PENDING),
    VertexState(3, "JOB_STATE_RUNNING", ItemState.RUNNING),
    VertexState(4, "JOB_STATE_SUCCEEDED", ItemState.SUCCEEDED),
    VertexState(5, "JOB_STATE_FAILED", ItemState.FAILED),
    VertexState(6, "JOB_STATE_CANCELLING", ItemState.CANCELLING),
    VertexState(7, "JOB_STATE_CANCELLED", ItemState.CANCELLED),
    VertexState(8, "JOB_STATE_PAUSED", ItemState.PAUSED),
    VertexState(9, "JOB_STATE_EXPIRED", ItemState.EXPIRED),
    VertexState(10, "JOB_STATE_UPDATING", ItemState.RUNNING),
    VertexState(11, "JOB_STATE_PARTIALLY_SUCCEEDED", ItemState.PARTIALLY_SUCCEEDED),
)
_BY_NUMBER = {v.number: v for v in VERTEX_STATES}
_BY_NAME = {v.name: v for v in VERTEX_STATES}


def vertex_state_name(raw: object) -> str:
    """The canonical `JOB_STATE_*` name of a wire value, or `UNRECOGNIZED(<raw>)`."""
    known = _lookup(raw)
    return known.name if known else f"UNRECOGNIZED({raw})"


def item_state_for_vertex(raw: object) -> ItemState:
    """Map a Vertex job state as it arrives on the wire (int, numeric string or name)."""
    known = _lookup(raw)
    return known.item_state if known else ItemState.UNKNOWN


def _lookup(raw: object) -> VertexState | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return _BY_NUMBER.get(raw)
    if isinstance(raw, str):
        if raw.isdigit():
            return _BY_NUMBER.get(int(raw))
        name = raw if raw.startswith("JOB_STATE_") else f"JOB_STATE_{raw}"
        return _BY_NAME.get(name)
    return None
