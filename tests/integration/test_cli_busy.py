"""The CLI's tables against a *busy* local stack, at 80 and 200 columns.

The stack (`launchq_local.devstack`, free ports, a sweep every second) holds what users meet:
items running, items queued behind a full queue, items waiting on a paused queue, one FAILED with
Vertex's long error, one CANCELLED. `ls`, `watch` (one frame), `queue pending` and `status` are
read at `COLUMNS=80` and `COLUMNS=200` and checked for structure: which headers appear whole,
that display names, submitters and images are visible, that no header collapsed to `…`, and that
every table line fits the width.
"""

from __future__ import annotations

import getpass
import json
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from rich.cells import cell_len

from launchq_cli import main
from launchq_local.devstack import DevStack

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TRAINER = "$(LAUNCHQ_PYTHON) $(LAUNCHQ_EXAMPLES)/trainer/train.py"
IMAGE = "us-docker.pkg.dev/research-team/trainers/pytorch-trainer:2026.12.1"
ALL_ITEM_HEADERS = (
    "name", "item", "state", "queue", "priority", "submitter", "ran", "age", "duration",
    "attempts", "job id",
)  # fmt: skip


def run(*args: str, columns: int = 200) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env={"COLUMNS": str(columns)})
    return result.exit_code, result.stdout, result.stderr


def enqueue(queue: str, item_id: str, name: str, args: str, priority: str = "medium") -> None:
    code, _, err = run(
        "enqueue", "-q", queue, "--item-id", item_id, "--display-name", name, "--image", IMAGE,
        "--priority", priority, "--command", TRAINER, "--args", args,
    )  # fmt: skip
    assert code == 0, err


def state_of(item_id: str) -> str:
    code, out, err = run("status", item_id, "--json")
    if code == 1 and "no item" in err:
        return "unrecorded"  # published; the dispatcher has not recorded it yet
    assert code == 0, err
    return str(json.loads(out)["state"])


def wait_for(item_id: str, states: set[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while (state := state_of(item_id)) not in states:
        assert time.monotonic() < deadline, f"{item_id} is {state}, not {states}"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def busy(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> DevStack:
    """The shared stack, busy: queues with items running, waiting, failed, cancelled, held."""
    configs = tmp_path_factory.mktemp("queues")
    seed = yaml.safe_load((EXAMPLES / "queues" / "default.yaml").read_text())
    for name, max_jobs in (("train", 2), ("held", 1)):
        path = configs / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**seed, "name": name, "max_jobs": max_jobs}))
        assert run("queue", "apply", str(path))[0] == 0
    enqueue("train", "fit-fails", "fit that fails half-way", "--epochs 40 --fail")
    wait_for("fit-fails", {"FAILED"})
    slow = "--epochs 100000 --epoch-seconds 0.05"
    enqueue("train", "resnet-a", "resnet50 lr=0.1 warmup sweep", slow, "high")
    enqueue("train", "resnet-b", "resnet50 lr=0.3 warmup sweep", slow, "high")
    wait_for("resnet-a", {"RUNNING"})
    wait_for("resnet-b", {"RUNNING"})
    enqueue("train", "waits-low", "ablation without dropout", "--epochs 5", "low")
    enqueue("train", "waits-crit", "hotfix eval before the deadline", "--epochs 5", "critical")
    enqueue("train", "gone", "a run nobody wants", "--epochs 5", "low")
    wait_for("gone", {"QUEUED"})
    assert run("cancel", "gone")[0] == 0
    wait_for("gone", {"CANCELLED"})
    assert run("queue", "pause", "held")[0] == 0
    enqueue("held", "held-1", "bert finetune on the held queue", "--epochs 5")
    wait_for("held-1", {"QUEUED"})
    return stack


def table_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.strip()]


def header_cells(out: str) -> list[str]:
    """The header row's cells (the first row between the box's vertical bars)."""
    for line in out.splitlines():
        if line.startswith("┃"):
            return [cell.strip() for cell in line.strip("┃").split("┃")]
    raise AssertionError(f"no table header in:\n{out}")


def assert_fits(out: str, columns: int) -> None:
    wide = [line for line in table_lines(out) if cell_len(line) > columns]
    assert not wide, f"lines wider than {columns}:\n" + "\n".join(wide)


def assert_no_collapsed_header(headers: list[str]) -> None:
    assert all(header and "…" not in header for header in headers), headers


@pytest.mark.parametrize("columns", [80, 200])
def test_ls_on_a_busy_stack_fits_and_shows_names(busy: DevStack, columns: int) -> None:
    code, out, err = run("ls", columns=columns)
    assert code == 0, err
    headers = header_cells(out)
    assert_no_collapsed_header(headers)
    assert_fits(out, columns)
    assert headers[:3] == ["name", "item", "state"]
    for item_id in ("fit-fails", "resnet-a", "resnet-b", "waits-low", "waits-crit", "gone"):
        assert item_id in out  # whole: it is what `launchq status` takes
    for state in ("FAILED", "RUNNING", "QUEUED", "CANCELLED"):
        assert state in out
    if columns == 200:
        assert tuple(headers) == ALL_ITEM_HEADERS
        for name in ("resnet50 lr=0.1 warmup sweep", "hotfix eval before the deadline"):
            assert name in out
        assert IMAGE[:40] in out  # what ran: the longest cells, the first to be cut
        assert getpass.getuser() in out
        for priority in ("high", "low", "critical", "medium"):
            assert priority in out  # the names people typed, not ranks 0-3
    else:
        # The low-value columns gave way, in the documented order; a 19-digit job id first.
        assert "job id" not in headers
        assert "attempts" not in headers
        # The display name keeps room enough to tell two runs apart.
        assert "resnet50 lr=0.1 warmup" in out
        assert "resnet50 lr=0.3 warmup" in out


@pytest.mark.parametrize("columns", [80, 200])
def test_watch_one_frame_on_a_busy_stack(busy: DevStack, columns: int) -> None:
    code, out, err = run("watch", "--queue", "train", "--once", columns=columns)
    assert code == 0, err
    assert out.splitlines()[0].startswith("train: 2/2 running, 2 waiting")
    headers = header_cells(out)
    assert_no_collapsed_header(headers)
    assert_fits(out, columns)
    assert {"name", "item", "state"} <= set(headers)
    assert "resnet-a" in out
    assert "waits-crit" in out
    if columns == 200:
        assert tuple(headers) == ALL_ITEM_HEADERS
        assert "ablation without dropout" in out


@pytest.mark.parametrize("columns", [80, 200])
def test_queue_pending_on_a_busy_stack(busy: DevStack, columns: int) -> None:
    code, out, err = run("queue", "pending", "train", columns=columns)
    assert code == 0, err
    headers = header_cells(out)
    assert_no_collapsed_header(headers)
    assert_fits(out, columns)
    assert {"position", "name", "item", "reason"} <= set(headers)
    rows = [line for line in out.splitlines() if "waits-" in line]
    assert ["waits-crit" in rows[0], "waits-low" in rows[1]] == [True, True]  # admission order
    assert "critical" in rows[0] or columns == 80
    if columns == 200:
        assert {"priority", "submitter", "ran", "waiting", "attempts"} <= set(headers)
        assert "hotfix eval before the deadline" in out
        assert IMAGE in out
    code, out, err = run("queue", "pending", "held", columns=columns)
    assert code == 0, err
    assert "held-1" in out
    assert_fits(out, columns)


@pytest.mark.parametrize("columns", [80, 200])
def test_status_of_a_failed_item_with_a_long_error(busy: DevStack, columns: int) -> None:
    code, out, err = run("status", "fit-fails", columns=columns)
    assert code == 0, err
    assert "FAILED" in out
    assert "name       fit that fails half-way" in out
    assert f"submitter  {getpass.getuser()}" in out
    assert f"ran        {IMAGE}" in out
    assert "non-zero status of 3" in out
    assert "loss diverged at epoch 20" in out
    # Only links and the job's name may run past the width (never broken: they stay usable).
    wide = [
        line
        for line in out.splitlines()
        if cell_len(line) > columns and "https://" not in line and "customJobs/" not in line
    ]
    assert not wide, wide


def test_status_json_shows_the_submitter_claim_the_record_keeps(busy: DevStack) -> None:
    code, out, err = run("status", "resnet-a", "--json")
    assert code == 0, err
    detail = json.loads(out)
    assert detail["submitted_by"] == {"value": getpass.getuser(), "verified": False}
    assert detail["display_name"] == "resnet50 lr=0.1 warmup sweep"
    assert (detail["priority"], detail["priority_name"]) == (1, "high")
    assert detail["ran"] == IMAGE
    rows = {row["item_id"]: row for row in json.loads(run("ls", "--json")[1])}
    assert rows["waits-crit"]["submitted_by"]["value"] == getpass.getuser()


def test_cancel_wait_says_the_outcome_once_and_again_is_harmless(busy: DevStack) -> None:
    enqueue("held", "held-2", "cancelled while the queue is paused", "--epochs 5")
    wait_for("held-2", {"QUEUED"})
    code, out, err = run("cancel", "held-2", "--wait", "--timeout", "30")
    assert code == 0, err
    assert (out + err).count("CANCELLED") == 1, (out, err)
    assert out == "held-2: CANCELLED\n"
    code, out, err = run("cancel", "held-2")
    assert (code, out, err) == (0, "held-2: already CANCELLED (nothing published)\n", "")
    code, _, err = run("cancel", "fit-fails")
    assert (code, err) == (1, "error: fit-fails was not cancelled: it had already ended FAILED\n")
