"""The corpus: every queue in tests/data/queues rendered and compared with its expected body.

Each `<name>.yaml` is rendered with `tests/data/items/<name>.json` (or `default.json`) at a fixed
time; the result must equal `<name>.expected.json` and parse strictly as `aiplatform_v1.CustomJob`.
After an intended change, regenerate and *review the diff*:

    LAUNCHQ_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_render_corpus.py
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from launchq.spec.config import QueueConfig
from launchq.spec.item import QueueItem, parse_item
from launchq.spec.render import RenderContext, RenderedJob, render
from launchq_client.configs import load_queue_file, to_custom_job

DATA = Path(__file__).resolve().parents[1] / "data"
QUEUES = sorted((DATA / "queues").glob("*.yaml"))
NOW = datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)


def corpus_item(queue_file: Path) -> QueueItem:
    specific = DATA / "items" / f"{queue_file.stem}.json"
    path = specific if specific.exists() else DATA / "items" / "default.json"
    return parse_item(path.read_bytes())


def render_corpus(queue_file: Path) -> tuple[QueueConfig, RenderedJob]:
    config = load_queue_file(queue_file)
    item = corpus_item(queue_file)
    context = RenderContext(
        now=NOW,
        item_id=item.item_id or "item-0001",
        queue=config.name or queue_file.stem,
        project="ctx-project",
        region="us-east1",
    )
    return config, render(config, item, context)


def canonical(body: dict[str, Any]) -> dict[str, Any]:
    """What protobuf itself prints for the parsed body: our body must already be in this form."""
    message = to_custom_job(body)
    result: dict[str, Any] = json_format.MessageToDict(type(message).pb(message))
    return result


@pytest.mark.parametrize("queue_file", QUEUES, ids=[path.stem for path in QUEUES])
def test_corpus_renders_to_expected_body(queue_file: Path) -> None:
    _, job = render_corpus(queue_file)
    expected_file = queue_file.with_suffix(".expected.json")
    if os.environ.get("LAUNCHQ_UPDATE_GOLDEN"):
        expected_file.write_text(job.to_json() + "\n", encoding="utf-8")
    assert expected_file.exists(), f"missing {expected_file.name}; see this module's docstring"
    assert job.body == json.loads(expected_file.read_text(encoding="utf-8"))


@pytest.mark.parametrize("queue_file", QUEUES, ids=[path.stem for path in QUEUES])
def test_corpus_body_is_canonical_proto3_json(queue_file: Path) -> None:
    """Strict parse succeeds, and protobuf's own JSON of the parsed message is our body."""
    _, job = render_corpus(queue_file)
    assert canonical(job.body) == job.body


@pytest.mark.parametrize("queue_file", QUEUES, ids=[path.stem for path in QUEUES])
def test_corpus_render_is_deterministic(queue_file: Path) -> None:
    _, first = render_corpus(queue_file)
    _, second = render_corpus(queue_file)
    assert first == second
    assert first.body_hash == second.body_hash


def test_corpus_covers_the_issue_list() -> None:
    names = {path.stem for path in QUEUES}
    assert {
        "seed_default",
        "wandb_gpu_wrapped",
        "spot",
        "flex_start",
        "distributed_multipool",
        "tpu",
        "python_package",
        "persistent_resource",
        "cmek",
        "psc",
        "everything",
    } <= names


def test_seed_default_follows_the_sdk() -> None:
    """staging_bucket gives `{bucket}/aiplatform-custom-job-{isoformat ms}`, like the SDK."""
    _, job = render_corpus(DATA / "queues" / "seed_default.yaml")
    spec = job.body["jobSpec"]
    assert spec["baseOutputDirectory"] == {
        "outputUriPrefix": "gs://my-staging-bucket/aiplatform-custom-job-2025-03-04-05:06:07.890"
    }
    assert spec["workerPoolSpecs"][0]["replicaCount"] == "1"
    assert "scheduling" not in spec  # restart false = default: omitted, as the SDK does
    assert job.parent == "projects/ctx-project/locations/us-east1"


def test_multipool_item_overrides_only_pools_running_the_item_image() -> None:
    _, job = render_corpus(DATA / "queues" / "distributed_multipool.yaml")
    pools = job.body["jobSpec"]["workerPoolSpecs"]
    for pool in pools[:2]:
        container = pool["containerSpec"]
        assert container["command"] == ["torchrun", "--nproc_per_node=1", "train.py"]
        assert container["args"][-1] == "${not_a_macro} {{not_a_var}}"  # item text stays literal
        assert [env["name"] for env in container["env"]] == [
            "NCCL_DEBUG",
            "WANDB_PROJECT",
            "WANDB_RUN_GROUP",
            "LAUNCHQ_ATTEMPT",  # launchq's, in every pool running the item's code
            "LAUNCHQ_CHECKPOINT_DIR",
        ]
    reduction = pools[2]["containerSpec"]
    assert "command" not in reduction
    assert "env" not in reduction
    assert job.body["displayName"] == "dist-ddp-bert"


def test_typed_template_variables_render_as_numbers() -> None:
    _, job = render_corpus(DATA / "queues" / "spot.yaml")
    machine = job.body["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]
    assert machine == {
        "machineType": "g2-standard-24",
        "acceleratorType": "NVIDIA_L4",
        "acceleratorCount": 2,
    }
    assert job.body["jobSpec"]["scheduling"] == {"timeout": "43200s", "strategy": "SPOT"}


def test_unlabelable_item_id_is_hashed_in_labels() -> None:
    _, job = render_corpus(DATA / "queues" / "wandb_gpu_wrapped.yaml")
    value = job.body["labels"]["launchq-item"]
    assert value.startswith("run-42-retry-")
    assert len(value) <= 63
