"""Source items through the dispatcher, on the Firestore emulator, the GCS emulator and the
Vertex stand-in: accepted when the archive is in the queue's staging bucket and is the one the
item names; otherwise REJECTED with a reason, acknowledged, and nothing sent to Vertex."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore

from launchq.dispatch import DispatchOutcome
from launchq.errors import InfrastructureError
from launchq.model.reasons import RejectReason
from launchq.model.states import ItemState
from launchq_client.source import SourceUploader, pack
from launchq_local.standin import StandinServer
from tests.fixtures.dispatch import Harness, message, queue_config

pytestmark = [pytest.mark.integration, pytest.mark.storage]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "source-trainer"
EXECUTOR = "us-docker.pkg.dev/vertex-ai/training/pytorch-gpu.2-4.py310:latest"


def source_queue(bucket: str, **extra: Any) -> dict[str, Any]:
    config = queue_config(source={"executor_image_uri": EXECUTOR}, **extra)
    config["spec"]["staging_bucket"] = f"gs://{bucket}"
    return config


@pytest.fixture
def uploaded(tmp_path: Path, gcs_client: Any, gcs_bucket: Any) -> dict[str, str]:
    packed = pack(EXAMPLE, tmp_path / "packed")
    result = SourceUploader(gcs_client, gcs_bucket.name).upload(packed)
    return {"uri": result.uri, "sha256": result.sha256, "module": "trainer.task"}


def source_item(queue: str, item_id: str, source: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"queue": queue, "item_id": item_id, "source": source, **extra}


def test_a_source_item_becomes_a_python_package_job(
    harness: Harness, standin: StandinServer, gcs_bucket: Any, uploaded: dict[str, str]
) -> None:
    harness.apply("src", source_queue(gcs_bucket.name))
    payload = source_item("src", "s-1", uploaded, args=["--epochs", "2"])
    result = harness.dispatcher().handle(message(payload))
    assert result.outcome == DispatchOutcome.RECORDED, result.detail
    data = harness.item_data("src", "s-1")
    assert data["state"] == ItemState.SUBMITTED.value
    assert len(standin.admin.jobs()) == 1
    job = harness.vertex.get_custom_job(data["job"]["name"])  # as Vertex returns it
    spec = job["jobSpec"]["workerPoolSpecs"][0]["pythonPackageSpec"]
    assert spec == {
        "executorImageUri": EXECUTOR,
        "packageUris": [uploaded["uri"]],
        "pythonModule": "trainer.task",
        "args": ["--epochs", "2"],
        "env": [
            {"name": "LAUNCHQ_ATTEMPT", "value": "1"},
            {
                "name": "LAUNCHQ_CHECKPOINT_DIR",
                "value": f"gs://{gcs_bucket.name}/launchq/checkpoints/src/s-1/",
            },
        ],
    }
    assert "containerSpec" not in job["jobSpec"]["workerPoolSpecs"][0]


def rejected(harness: Harness, queue: str, item_id: str, payload: dict[str, Any]) -> Any:
    result = harness.dispatcher().handle(message(payload))
    assert result.outcome == DispatchOutcome.REJECTED, result
    data = harness.item_data(queue, item_id)
    assert data["state"] == ItemState.REJECTED.value
    return data["error"]


def test_a_source_outside_the_staging_bucket_is_rejected(
    harness: Harness,
    standin: StandinServer,
    gcs_client: Any,
    gcs_bucket: Any,
    uploaded: dict[str, str],
) -> None:
    other = gcs_client.create_bucket(gcs_bucket.name + "-x")
    harness.apply("src", source_queue(other.name))
    error = rejected(harness, "src", "s-out", source_item("src", "s-out", uploaded))
    assert error["reason"] == RejectReason.SOURCE_OUTSIDE_BUCKET
    assert error["path"] == "source.uri"
    assert f"gs://{other.name}" in error["message"]
    assert standin.admin.jobs() == []


def test_a_missing_source_is_rejected(
    harness: Harness, standin: StandinServer, gcs_bucket: Any
) -> None:
    harness.apply("src", source_queue(gcs_bucket.name))
    sha = hashlib.sha256(b"never uploaded").hexdigest()
    uri = f"gs://{gcs_bucket.name}/launchq/sources/{sha}.tar.gz"
    source = {"uri": uri, "sha256": sha, "module": "trainer.task"}
    error = rejected(harness, "src", "s-miss", source_item("src", "s-miss", source))
    assert error["reason"] == RejectReason.SOURCE_MISSING
    assert uri in error["message"]
    assert standin.admin.jobs() == []


def test_an_object_without_the_items_sha256_is_rejected(
    harness: Harness, standin: StandinServer, gcs_bucket: Any
) -> None:
    """Another tool put bytes at the name (no sha256 metadata), or other bytes with a wrong
    sha256: either way the object is not known to be the archive the item names."""
    harness.apply("src", source_queue(gcs_bucket.name))
    sha = hashlib.sha256(b"the real archive").hexdigest()
    name = f"launchq/sources/{sha}.tar.gz"
    source = {"uri": f"gs://{gcs_bucket.name}/{name}", "sha256": sha, "module": "trainer.task"}
    gcs_bucket.blob(name).upload_from_string(b"something else")
    error = rejected(harness, "src", "s-bare", source_item("src", "s-bare", source))
    assert error["reason"] == RejectReason.SOURCE_MISMATCH
    assert "no sha256 metadata" in error["message"]

    blob = gcs_bucket.blob(name)
    blob.metadata = {"sha256": "f" * 64}
    blob.upload_from_string(b"something else")
    error = rejected(harness, "src", "s-wrong", source_item("src", "s-wrong", source))
    assert error["reason"] == RejectReason.SOURCE_MISMATCH
    assert "f" * 64 in error["message"]
    assert standin.admin.jobs() == []


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"module": "trainer.class"}, "source.module"),
        ({"module": "trainer..task"}, "source.module"),
        ({"module": "2fast.task"}, "source.module"),
    ],
)
def test_an_invalid_module_is_rejected_as_an_invalid_item(
    harness: Harness, gcs_bucket: Any, uploaded: dict[str, str], change: dict[str, str], path: str
) -> None:
    harness.apply("src", source_queue(gcs_bucket.name))
    payload = source_item("src", "s-mod", {**uploaded, **change})
    error = rejected(harness, "src", "s-mod", payload)
    assert error["reason"] == "invalid_item"
    assert error["path"] == path


def test_image_and_source_together_are_rejected(
    harness: Harness, gcs_bucket: Any, uploaded: dict[str, str]
) -> None:
    harness.apply("src", source_queue(gcs_bucket.name))
    payload = source_item("src", "s-both", uploaded, image_uri="gcr.io/p/trainer:1")
    error = rejected(harness, "src", "s-both", payload)
    assert error["reason"] == "invalid_item"
    assert error["path"] == "image_uri"
    assert "not both" in error["message"]


def test_unreachable_storage_is_infrastructure_and_records_nothing(
    firestore_db: firestore.Client,
    gcp_project: str,
    standin: StandinServer,
    gcs_bucket: Any,
    uploaded: dict[str, str],
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    harness = Harness(
        firestore_db, gcp_project, standin.url, storage_endpoint=f"http://127.0.0.1:{port}"
    )
    harness.apply("src", source_queue(gcs_bucket.name))
    with pytest.raises(InfrastructureError, match="Cloud Storage"):
        harness.dispatcher().handle(message(source_item("src", "s-down", uploaded)))
    assert harness.store.item_document("src", "s-down") is None  # the redelivery decides
