"""The CLI against the whole local stack (`launchq_local.devstack`, free ports): the real loop.

Pub/Sub pushes to the dispatch function, the stand-in executes examples/trainer/train.py, the
sweep function (called every second) records the outcome; `enqueue --wait`, `sweep` and `watch`
see it through Firestore.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from launchq_cli import main
from launchq_local.devstack import DevStack, Ports
from launchq_local.emulators import new_project_id

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def stack() -> Iterator[DevStack]:
    dev = DevStack(new_project_id("launchq-cli"), Ports.free(), sweep_interval=1.0)
    dev.start()
    try:
        yield dev
    finally:
        dev.stop()
        assert dev.leftovers() == []
        dev.remove_files()


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_enqueue_wait_follows_items_to_their_end(stack: DevStack) -> None:
    assert run("queue", "apply", str(EXAMPLES / "queues" / "trainer.yaml"))[0] == 0
    code, out, err = run(
        "enqueue", "--from-file", str(EXAMPLES / "items" / "train.json"), "--wait",
        "--timeout", "60",
    )  # fmt: skip
    assert code == 0, err
    item_id = out.strip()
    assert f"{item_id}: SUCCEEDED" in err
    code, out, err = run(
        "enqueue", "--from-file", str(EXAMPLES / "items" / "train-fail.json"), "--wait",
        "--timeout", "60",
    )  # fmt: skip
    assert code == 1
    assert "FAILED" in err
    assert "non-zero status of 3" in err
    detail = json.loads(run("status", out.strip(), "--json")[1])
    assert detail["error_detail"]["message"].startswith("The replica workerpool0-0 exited")
    assert detail["time_to_submit_s"] is not None


def test_sweep_and_watch(stack: DevStack) -> None:
    code, out, err = run("sweep", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert {"items_seen", "transitions", "admitted", "errors", "duration_s"} <= set(summary)
    code, out, _ = run("sweep")
    assert code == 0
    assert out.startswith(("sweep: ", "sweep skipped: "))
    code, out, _ = run("watch", "--queue", "trainer", "--until-done", "--json", "--interval", "0.2")
    assert code == 0
    snapshot = json.loads(out.splitlines()[-1])
    assert snapshot["queues"][0]["name"] == "trainer"
    assert all(i["state"] in ("SUCCEEDED", "FAILED") for i in snapshot["items"])
    code, out, _ = run("watch", "--queue", "trainer", "--until-done", "--interval", "0.2")
    assert code == 0
    assert "trainer: 0/2 running" in out
