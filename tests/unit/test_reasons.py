"""Every recorded reason comes from `launchq.model.reasons`, keeps its stored value, has its text,
and is listed in docs/data-model.md as generated from the enums.

`python -m tests.unit.test_reasons` rewrites the generated block of docs/data-model.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import get_args

import pytest

from launchq.model.failures import FailureClass as FailureClassOfFailures
from launchq.model.reasons import (
    CancelReason,
    ErrorRecord,
    FailureClass,
    FailureReason,
    RejectReason,
    WaitReason,
    budget_reason,
    quota_reason,
    retry_reason,
)
from launchq.spec.config import RetryReason

DATA_MODEL = Path(__file__).resolve().parents[2] / "docs" / "data-model.md"
BEGIN = (
    "<!-- reasons: generated from launchq.model.reasons by `python -m tests.unit.test_reasons` -->"
)
END = "<!-- reasons: end -->"
Reason = RejectReason | FailureClass | FailureReason | WaitReason | CancelReason
ENUMS: list[tuple[str, type[Reason]]] = [
    ("`error.reason` of a REJECTED item (`RejectReason`)", RejectReason),
    ("`error.reason` of an attempt that ended badly on Vertex (`FailureClass`)", FailureClass),
    ("`error.reason` of an item that failed otherwise (`FailureReason`)", FailureReason),
    ("`reason` of a waiting item (`WaitReason`)", WaitReason),
    ("`cancel_reason`: who asked for a cancel (`CancelReason`)", CancelReason),
]

# The values records already hold: renaming one would orphan them (and the docs and scripts).
STORED = {
    RejectReason: {
        "too_large", "undecodable", "no_queue", "invalid_queue", "invalid_item_id",
        "unknown_topic", "queue_mismatch", "control_refused", "unknown_queue", "invalid_item",
        "record_too_large", "source_outside_bucket", "source_missing", "source_mismatch",
        "dockerfile_missing", "build_destination_refused", "internal_error",
    },
    FailureClass: {
        "no_capacity", "quota", "infrastructure", "preempted", "start_timeout", "user_error",
        "cancelled",
    },
    FailureReason: {"vertex_rejected", "vertex", "build_failed", "over_budget"},
    CancelReason: {"user", "start_timeout"},
}  # fmt: skip


def reasons_markdown() -> str:
    """The docs block: one table per enum, code and meaning."""
    parts = []
    for title, enum in ENUMS:
        rows = [f"| `{_stored(m)}` | {m.text} |" for m in enum]
        parts.append("\n".join([f"{title}:", "", "| code | meaning |", "|---|---|", *rows]))
    return "\n\n".join(parts)


def _stored(member: Reason) -> str:
    if member is WaitReason.QUOTA:
        return quota_reason("<metric>", "<region>")
    if member is WaitReason.RETRY:
        return "retrying after <failure class>"
    if member is WaitReason.BUDGET:
        return budget_reason("<which budget, what is left>")
    return member.value


def generated_block(text: str) -> str:
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[start:end].strip()


def test_stored_values_stay_what_records_hold() -> None:
    for enum, values in STORED.items():
        assert {m.value for m in enum} == values, enum.__name__
    stored_waits = {WaitReason.FREE_SLOT, WaitReason.PAUSED, WaitReason.RATE_LIMITED}
    assert {m.value for m in stored_waits} == {
        "waiting for a free slot",
        "queue paused",
        "rate_limited",
    }


def test_every_reason_has_its_text() -> None:
    for _title, enum in ENUMS:
        for member in enum:
            assert member.text, member
            assert member.text != member.value, member


def test_the_failure_classes_are_the_ones_retry_policies_name() -> None:
    assert FailureClassOfFailures is FailureClass
    assert CancelReason.START_TIMEOUT == FailureClass.START_TIMEOUT
    never_by_name = {FailureClass.USER_ERROR, FailureClass.CANCELLED_BY_USER}  # user_errors: true
    assert set(get_args(RetryReason)) == {c.value for c in FailureClass} - never_by_name


@pytest.mark.parametrize(
    ("stored", "reason"),
    [
        ("waiting for a free slot", WaitReason.FREE_SLOT),
        ("queue paused", WaitReason.PAUSED),
        ("rate_limited", WaitReason.RATE_LIMITED),
        (quota_reason("custom_model_training_nvidia_a100_gpus", "us-central1"), WaitReason.QUOTA),
        (retry_reason(FailureClass.NO_CAPACITY), WaitReason.RETRY),
        ("retrying after no_capacity", WaitReason.RETRY),
        (budget_reason("queue budget: 8.0 accelerator-hours needed"), WaitReason.BUDGET),
        (None, None),
        ("", None),
        ("something else", None),
    ],
)
def test_a_stored_wait_reason_reads_back(stored: str | None, reason: WaitReason | None) -> None:
    assert WaitReason.of(stored) is reason


def test_an_error_record_keeps_the_stored_shape() -> None:
    error = ErrorRecord(
        FailureReason.VERTEX_REJECTED,
        "bad machine type",
        details={"status": "INVALID_ARGUMENT", "http_status": 400},
    )
    document = error.document()
    assert document == {
        "reason": "vertex_rejected",
        "message": "bad machine type",
        "path": None,
        "errors": [],
        "status": "INVALID_ARGUMENT",
        "http_status": 400,
    }
    assert type(document["reason"]) is str  # stored as a plain string, never the enum


def test_the_docs_list_every_reason_as_generated() -> None:
    assert generated_block(DATA_MODEL.read_text()) == reasons_markdown(), (
        "docs/data-model.md's reasons are stale: run `python -m tests.unit.test_reasons`"
    )


if __name__ == "__main__":
    text = DATA_MODEL.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    DATA_MODEL.write_text(text[:start] + "\n\n" + reasons_markdown() + "\n\n" + text[end:])
    sys.stdout.write(f"wrote {DATA_MODEL}\n")
