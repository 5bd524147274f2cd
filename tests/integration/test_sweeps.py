"""Sweeps and arrays on the emulators: `launchq enqueue --sweep/--array` publishes one item (or
refuses an invalid child before publishing), the real dispatcher expands it on Firestore, and
`status PARENT`, `ls --sweep PARENT` and `cancel PARENT` treat the group as a unit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore, pubsub_v1

from launchq.model.states import ItemState
from launchq.spec.family import child_id
from launchq_local.standin import StandinServer
from tests.fixtures.dispatch import Harness, message
from tests.integration.test_cli import TRAINER, cli_env, pulled, run, run_json

pytestmark = pytest.mark.integration
__all__ = ["cli_env"]  # the fixture, imported for this module's tests

SWEEP = {
    "method": "grid",
    "parameters_to": "template_variables",
    "parameters": {
        "learning_rate": {"values": [0.1, 0.01, 0.001]},
        "epochs": {"values": [1, 2, 3, 4]},
    },
}


def _sweep_file(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def test_enqueue_sweep_publishes_one_item_and_refuses_an_invalid_child(
    cli_env: str,
    pubsub_subscriber: pubsub_v1.SubscriberClient,
    tmp_path: Path,
) -> None:
    run("queue", "apply", str(TRAINER))
    path = _sweep_file(tmp_path, SWEEP)
    code, out, err = run(
        "enqueue", "-q", "trainer", "--image", "gcr.io/p/t:1", "--item-id", "lr-grid",
        "--sweep", str(path), "--max-parallel", "2",
    )  # fmt: skip
    assert code == 0, err
    assert out == "lr-grid\n"
    [published] = pulled(pubsub_subscriber, cli_env)
    payload = json.loads(published.data)
    assert payload["sweep"] == {**SWEEP, "max_parallel": 2}
    # epochs 0 is below the queue's minimum 1: child 1 is invalid, nothing is published.
    bad = {**SWEEP, "parameters": {**SWEEP["parameters"], "epochs": {"values": [0, 1]}}}
    code, _, err = run(
        "enqueue", "-q", "trainer", "--image", "gcr.io/p/t:1", "--sweep",
        str(_sweep_file(tmp_path, bad)),
    )  # fmt: skip
    assert code == 2
    assert "sweep.parameters.epochs: child 1 of 6: 0 is below the minimum 1" in err
    assert "(3 of 6 children are invalid)" in err
    code, _, err = run("enqueue", "-q", "trainer", "--image", "i", "--max-parallel", "2")
    assert code == 2
    assert "--max-parallel only goes with --array or --sweep" in err
    code, _, _ = run("enqueue", "-q", "trainer", "--image", "gcr.io/p/t:1", "--array", "3")
    assert code == 0
    [array] = pulled(pubsub_subscriber, cli_env)
    assert json.loads(array.data)["array"] == {"count": 3}


def test_a_sweep_on_firestore_is_one_parent_its_progress_its_children_and_one_cancel(
    cli_env: str, firestore_db: firestore.Client, gcp_project: str, standin: StandinServer
) -> None:
    harness = Harness(firestore_db, gcp_project, standin.url)
    run("queue", "apply", str(TRAINER))  # max_jobs 2
    payload = {
        "queue": "trainer", "item_id": "grid", "image_uri": "gcr.io/p/t:1",
        "sweep": {**SWEEP, "max_parallel": 3},
    }  # fmt: skip
    result = harness.dispatcher().handle(message(payload))
    assert result.detail == "12 of 12 children recorded"
    assert harness.dispatcher().handle(message(payload)).outcome == "recorded"  # redelivery
    children = harness.store.children_of("trainer", "grid")
    assert [c.item_id for c in children] == [child_id("grid", n) for n in range(1, 13)]
    # max_jobs 2 and max_parallel 3: two submitted, one waits for a slot, nine are HELD.
    states = [c.state for c in children]
    assert states.count(ItemState.SUBMITTED) == 2
    assert states.count(ItemState.QUEUED) == 1
    assert states.count(ItemState.HELD) == 9

    detail = run_json("status", "grid")
    assert detail["state"] == "SWEEP"
    assert detail["sweep"] == {
        "kind": "sweep", "method": "grid", "count": 12, "max_parallel": 3, "expanded": 12,
        "held": 9, "waiting": 1, "running": 2, "succeeded": 0, "failed": 0, "cancelled": 0,
        "done": 0, "cancel_requested": False,
    }  # fmt: skip
    code, out, _ = run("status", "grid")
    assert code == 0
    assert "grid sweep of 12, max_parallel 3" in out
    assert "0/12 done" in out
    rows = run_json("ls", "--sweep", "grid", "--limit", "5")
    assert [r["item_id"] for r in rows] == [child_id("grid", n) for n in range(1, 6)]
    assert rows[4]["reason"].startswith("its sweep has max_parallel children")
    assert {r["sweep_of"] for r in rows} == {"grid"}
    held = run_json("ls", "--sweep", "grid", "--state", "held")
    assert len(held) == 9
    code, _, err = run("ls", "--sweep", child_id("grid", 1))
    assert code == 2
    assert "is not a sweep or array" in err

    harness.app().canceller.request("trainer", "grid")
    detail = run_json("status", "grid")
    assert detail["sweep"]["cancelled"] == 10
    assert detail["sweep"]["cancel_requested"] is True
    assert detail["sweep"]["running"] == 2  # their cancels are on Vertex's side
