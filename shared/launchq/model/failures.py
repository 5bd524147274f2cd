"""Why an attempt ended badly, and whether the queue's retry policy runs it again.

Pure policy, no I/O: the sweep calls it with what Vertex reported. Vertex reports a job's failure
as a google.rpc.Status; the class decides whether the queue's retry policy applies
(SkyPilot-style: capacity and infrastructure failures are not the user's fault, a non-zero exit
is).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from launchq.model.reasons import CancelReason, FailureClass
from launchq.model.states import ItemState
from launchq.spec.config import RetryPolicy

# The classes are declared with the other reasons (`launchq.model.reasons`), their text beside them.
__all__ = ["FailureClass", "failure_class", "retry_delay"]

_INFRA_CODES = frozenset({4, 10, 13, 14})  # DEADLINE_EXCEEDED, ABORTED, INTERNAL, UNAVAILABLE
_CAPACITY_WORDS = ("stockout", "resources are insufficient", "not enough resources", "capacity")


def failure_class(
    state: ItemState, error: Mapping[str, Any] | None, cancel_reason: str | None
) -> FailureClass:
    """Why an attempt ended badly, from Vertex's error and what launchq itself did."""
    if state is ItemState.CANCELLED:
        if cancel_reason == CancelReason.START_TIMEOUT:
            return FailureClass.START_TIMEOUT
        return FailureClass.CANCELLED_BY_USER
    if state is ItemState.EXPIRED:
        return FailureClass.NO_CAPACITY  # FLEX_START waited max_wait_duration without capacity
    code = int((error or {}).get("code") or 0)
    message = str((error or {}).get("message") or "").lower()
    if "preempt" in message:
        return FailureClass.PREEMPTED
    if code == 8 or any(word in message for word in _CAPACITY_WORDS):
        return FailureClass.QUOTA if "quota" in message else FailureClass.NO_CAPACITY
    if code in _INFRA_CODES:
        return FailureClass.INFRASTRUCTURE
    return FailureClass.USER_ERROR


def retry_delay(policy: RetryPolicy, klass: FailureClass, attempt: int) -> float | None:
    """Seconds until the next attempt, or None when the policy does not retry this failure."""
    if klass is FailureClass.CANCELLED_BY_USER or attempt >= policy.max_attempts:
        return None
    allowed = klass.value in policy.reasons or (klass.users_fault and policy.user_errors)
    if not allowed:
        return None
    delay = policy.backoff_initial_seconds * 2 ** max(attempt - 1, 0)
    return float(min(delay, policy.backoff_max_seconds))
