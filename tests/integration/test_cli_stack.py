"""The CLI against the whole local stack (`launchq_local.devstack`, free ports): the real loop.

Pub/Sub pushes to the dispatch function, the stand-in executes examples/trainer/train.py, the
sweep function (called every second) records the outcome; `enqueue --wait`, `sweep` and `watch`
see it through Firestore.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from launchq.gcp import vertex
from launchq_cli import main
from launchq_local.devstack import DevStack

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


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


def test_enqueue_source_runs_the_code_and_its_model_is_in_storage(stack: DevStack) -> None:
    """Pack + upload -> dispatcher checks the archive in the GCS emulator -> python package job
    -> the stand-in installs and runs it -> SUCCEEDED; the model is read back with the storage
    client from the job's output directory."""
    assert run("queue", "apply", str(EXAMPLES / "queues" / "source.yaml"))[0] == 0
    argv = ("enqueue", "-q", "source", "--source", str(EXAMPLES / "source-trainer"))
    code, out, err = run(
        *argv, "--module", "trainer.task", "--args", "--epochs 4", "--wait", "--timeout", "90"
    )
    assert code == 0, err
    item_id = out.strip()
    assert f"{item_id}: SUCCEEDED" in err
    detail = json.loads(run("status", item_id, "-q", "source", "--json")[1])
    job = vertex.client_for(stack.standin_url).get_custom_job(detail["job"]["name"])
    pool = job["jobSpec"]["workerPoolSpecs"][0]
    assert pool["pythonPackageSpec"]["pythonModule"] == "trainer.task"
    prefix = job["jobSpec"]["baseOutputDirectory"]["outputUriPrefix"]
    bucket_name, _, path = prefix.removeprefix("gs://").partition("/")
    assert stack.gcs is not None
    bucket = stack.gcs.client(stack.project).bucket(bucket_name)
    model = json.loads(bucket.blob(f"{path}/model/model.json").download_as_bytes())
    assert model["epochs"] == 4
    assert 0 < model["w"] < 3.0
