"""`make demo`'s output: commands broken between arguments, arrows in one column, and each
step's events under that step's heading (the whole demo runs in test_demo.py)."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from rich.console import Console

from launchq_demo.demo import Demo, Expected, command_lines, transition_line

TRAINER = "$(LAUNCHQ_PYTHON) $(LAUNCHQ_EXAMPLES)/trainer/train.py"
LONG = [
    "launchq", "enqueue", "-q", "default", "--item-id", "demo-urgent", "--priority", "critical",
    "--image", "python:3.11-slim", "--command", TRAINER,
    "--args", "--epochs 10 --epoch-seconds 0.05",
]  # fmt: skip


def test_a_long_command_breaks_between_arguments_and_still_parses() -> None:
    lines = command_lines(LONG, 80)
    assert len(lines) > 1
    assert all(len(line) <= 80 for line in lines)
    assert lines[0].startswith("$ launchq enqueue")
    assert all(line.endswith(" \\") for line in lines[:-1])
    # Every quoted argument, and every option with its value, is whole on one line.
    assert any(f"--command {shlex.quote(TRAINER)}" in line for line in lines)
    assert any("--args '--epochs 10 --epoch-seconds 0.05'" in line for line in lines)
    assert any("--image python:3.11-slim" in line for line in lines)
    # What a user copies back is the very command.
    joined = " ".join(line.removesuffix(" \\").strip() for line in lines)
    assert shlex.split(joined.removeprefix("$ ")) == LONG
    assert command_lines(["launchq", "queue", "ls"], 80) == ["$ launchq queue ls"]


def test_arrows_line_up_for_ids_of_any_length() -> None:
    console = Console(width=200, record=True, color_system=None)
    ids = ["demo-first", "demo-built-again", "x"]
    width = max(len(i) for i in ids)
    for item_id, source in zip(ids, ["QUEUED", None, "SUBMITTING"], strict=True):
        entry = {"from": source, "to": "RUNNING", "cause": "vertex: JOB_STATE_RUNNING"}
        console.print(transition_line(" 1.0s", item_id, width, entry), highlight=False)
    lines = console.export_text().splitlines()
    assert len({line.index("→") for line in lines}) == 1, lines


class _Recorded(Demo):
    """A demo whose items are history lists in memory instead of Firestore documents."""

    histories: dict[str, list[dict[str, Any]]]

    def item(self, queue: str, item_id: str) -> dict[str, Any]:
        return {"history": self.histories.get(item_id, [])}


def test_a_steps_events_print_under_that_step_not_the_next() -> None:
    console = Console(width=120, record=True, color_system=None)
    demo = _Recorded(console, cast(Any, None))
    demo.histories = {}
    demo.expected.append(Expected("demo-train", "trainer", "SUCCEEDED", "trains"))
    demo.step("Enqueue the trainer")
    at = datetime(2026, 12, 6, tzinfo=UTC)
    demo.histories["demo-train"] = [
        {"at": at, "from": None, "to": "QUEUED", "cause": "accepted"},
        {"at": at + timedelta(seconds=1), "from": "QUEUED", "to": "SUBMITTED", "cause": "ok"},
    ]  # happened while the step ran; nobody waited on it yet
    demo.step("The next step")
    text = console.export_text()
    first, _, second = text.partition("The next step")
    assert "QUEUED → SUBMITTED" in first
    assert "→" not in second
