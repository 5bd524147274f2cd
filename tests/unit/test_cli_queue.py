"""`launchq queue validate` and `launchq queue render`, through Click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from launchq_cli import main

DATA = Path(__file__).resolve().parents[1] / "data"
SEED = DATA / "queues" / "seed_default.yaml"


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_validate_ok() -> None:
    code, out, _ = invoke("queue", "validate", str(SEED))
    assert code == 0
    assert out == f"{SEED}: valid queue 'seed_default' (max_jobs 1)\n"


def test_validate_lists_every_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "max_jobs: 0\n"
        "spec:\n"
        "  worker_pool_specs:\n"
        "    - machine_spec: {machineType: n1-standard-4}\n"
        "      replica_count: 1\n"
        "      container_spec: {image_url: '${image_uri}'}\n"
        "  staging_bucket: gs://bucket\n"
    )
    code, out, err = invoke("queue", "validate", str(bad))
    assert code == 2  # a validation error, like `queue apply` and click's usage errors
    assert out == ""
    assert err == (
        "error: invalid queue config (3 errors):\n"
        "  - max_jobs: 0 is not allowed: set paused: true to stop launching, -1 = unlimited\n"
        "  - spec.worker_pool_specs[0].container_spec: unknown key 'image_url'; "
        "did you mean 'image_uri'?\n"
        "  - spec.worker_pool_specs[0].machine_spec: unknown key 'machineType'; "
        "use 'machine_type' (keys are snake_case)\n"
    )


def test_validate_invalid_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec: [\n")
    code, _, err = invoke("queue", "validate", str(bad))
    assert code == 2
    assert "is not valid YAML/JSON" in err


def test_validate_missing_file() -> None:
    code, _, err = invoke("queue", "validate", "/nonexistent.yaml")
    assert code == 2
    assert "does not exist" in err


def test_render_prints_the_rest_body() -> None:
    code, out, err = invoke(
        "queue",
        "render",
        str(SEED),
        "--item",
        str(DATA / "items" / "default.json"),
        "--project",
        "p-123456",
        "--region",
        "us-central1",
        "--now",
        "2025-03-04T05:06:07.890",
    )
    assert code == 0, err
    body = json.loads(out)
    assert body["displayName"] == "baseline"
    assert body["jobSpec"]["workerPoolSpecs"][0]["replicaCount"] == "1"
    assert body["jobSpec"]["baseOutputDirectory"]["outputUriPrefix"].endswith(
        "aiplatform-custom-job-2025-03-04-05:06:07.890"
    )
    assert body["labels"] == {"launchq-queue": "seed_default", "launchq-item": "item-0001"}
    assert err == (
        "# POST https://us-central1-aiplatform.googleapis.com/v1/projects/p-123456/locations/"
        "us-central1/customJobs\n"
    )


def test_render_matches_the_corpus_body() -> None:
    queue = DATA / "queues" / "spot.yaml"
    code, out, _ = invoke(
        "queue",
        "render",
        str(queue),
        "--item",
        str(DATA / "items" / "spot.json"),
        "--now",
        "2025-03-04T05:06:07.890",
    )
    assert code == 0
    assert json.loads(out) == json.loads(queue.with_suffix(".expected.json").read_text())


def test_render_set_var(tmp_path: Path) -> None:
    item = tmp_path / "item.json"
    item.write_text(json.dumps({"image_uri": "img"}))
    code, out, err = invoke(
        "queue",
        "render",
        str(DATA / "queues" / "spot.yaml"),
        "--item",
        str(item),
        "--set-var",
        "gpus=4",
    )
    assert code == 0, err
    pool = json.loads(out)["jobSpec"]["workerPoolSpecs"][0]
    assert pool["machineSpec"]["acceleratorCount"] == 4


def test_render_set_var_errors(tmp_path: Path) -> None:
    item = tmp_path / "item.json"
    item.write_text(json.dumps({"image_uri": "img"}))
    queue = str(DATA / "queues" / "spot.yaml")
    code, _, err = invoke(
        "queue",
        "render",
        queue,
        "--item",
        str(item),
        "--set-var",
        "gpus=two",
        "--set-var",
        "cpus=2",
    )
    assert code == 2
    assert err == (
        "error: invalid queue item (2 errors):\n"
        "  - --set-var gpus: value must be of type integer\n"
        "  - --set-var cpus: queue does not declare it (declared: gpus, machine_size)\n"
    )
    code, _, err = invoke("queue", "render", queue, "--item", str(item), "--set-var", "gpus")
    assert code == 2
    assert "expected NAME=VALUE" in err
    code, _, err = invoke("queue", "render", queue, "--item", str(item), "--set-var", "gpus=3")
    assert code == 2
    assert "template_variables.gpus: 3 is not one of the allowed values: 1, 2, 4" in err


def test_render_item_errors(tmp_path: Path) -> None:
    item = tmp_path / "item.json"
    item.write_text(json.dumps({"env": {"AIP_MODEL_DIR": "x"}}))
    code, out, err = invoke(
        "queue",
        "render",
        str(SEED),
        "--item",
        str(item),
        "--project",
        "p-123456",
        "--region",
        "us-central1",
    )
    assert code == 2
    assert out == ""
    assert "image_uri: required: the queue uses ${image_uri}" in err
    assert "env.AIP_MODEL_DIR: reserved" in err


def test_queue_group_help_lists_commands() -> None:
    code, out, _ = invoke("queue", "--help")
    assert code == 0
    assert "validate" in out
    assert "render" in out


def test_render_shows_a_source_item_as_a_python_package() -> None:
    """`queue render --item` with a source: the corpus body for a source queue, and a queue
    without a source block refuses the item with the path."""
    queue = DATA / "queues" / "source_package.yaml"
    item = str(DATA / "items" / "source_package.json")
    code, out, err = invoke("queue", "render", str(queue), "--item", item,
                            "--now", "2025-03-04T05:06:07.890")  # fmt: skip
    assert code == 0, err
    body = json.loads(out)
    assert body == json.loads(queue.with_suffix(".expected.json").read_text())
    assert "pythonPackageSpec" in body["jobSpec"]["workerPoolSpecs"][0]
    code, _, err = invoke("queue", "render", str(SEED), "--item", item, "--project", "p-123456",
                          "--region", "us-central1")  # fmt: skip
    assert code == 2
    assert "  - source: queue 'seed_default' does not run source items" in err
