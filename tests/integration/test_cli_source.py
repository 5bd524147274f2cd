"""`launchq enqueue --source`: the directory is packed, uploaded once to the GCS emulator, and
the published item carries `source: {uri, sha256, module}`, checked against the queue first.

The run itself (dispatcher -> stand-in -> SUCCEEDED, model read back) is in test_cli_stack.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.cloud import pubsub_v1

from launchq_local.gcs import GcsEmulator
from tests.integration.test_cli import EXAMPLES, TRAINER, cli_env, pulled, run

pytestmark = pytest.mark.integration
SOURCE = EXAMPLES / "source-trainer"
SOURCE_QUEUE = EXAMPLES / "queues" / "source.yaml"
__all__ = ["cli_env"]  # the fixture, imported for this module's tests


def source_queue_file(tmp_path: Path, bucket: str) -> Path:
    """examples/queues/source.yaml with the test's bucket as its staging bucket."""
    config = yaml.safe_load(SOURCE_QUEUE.read_text())
    config["spec"]["staging_bucket"] = f"gs://{bucket}"
    path = tmp_path / "source.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_enqueue_source_uploads_once_and_publishes_the_source_block(
    cli_env: str,
    tmp_path: Path,
    pubsub_subscriber: pubsub_v1.SubscriberClient,
    gcs_emulator: GcsEmulator,
    gcs_bucket: Any,
) -> None:
    assert run("queue", "apply", str(source_queue_file(tmp_path, gcs_bucket.name)))[0] == 0
    argv = ("enqueue", "-q", "source", "--source", str(SOURCE), "--module", "trainer.task")
    code, out, err = run(*argv, "--args", "--epochs 3", "--item-id", "src-1")
    assert (code, out) == (0, "src-1\n"), err
    assert "bytes sent" in err
    [published] = pulled(pubsub_subscriber, cli_env)
    payload = json.loads(published.data)
    source = payload["source"]
    assert source["module"] == "trainer.task"
    # No --source-bucket: the queue's staging bucket, where the dispatcher expects it.
    assert source["uri"] == f"gs://{gcs_bucket.name}/launchq/sources/{source['sha256']}.tar.gz"
    assert payload["args"] == ["--epochs", "3"]
    blob = gcs_bucket.get_blob(f"launchq/sources/{source['sha256']}.tar.gz")
    assert blob.metadata["sha256"] == source["sha256"]
    assert blob.metadata["dockerfiles"] == "Dockerfile"  # the listing the builder checks

    code, out, err = run(*argv, "--item-id", "src-2")
    assert code == 0, err
    assert "already uploaded" in err
    [again] = pulled(pubsub_subscriber, cli_env)
    assert json.loads(again.data)["source"] == source
    assert gcs_bucket.get_blob(blob.name).generation == blob.generation


def test_enqueue_source_outside_the_staging_bucket_is_refused(
    cli_env: str,
    tmp_path: Path,
    pubsub_subscriber: pubsub_v1.SubscriberClient,
    gcs_client: Any,
    gcs_bucket: Any,
) -> None:
    other = gcs_client.create_bucket(gcs_bucket.name + "-other")
    assert run("queue", "apply", str(source_queue_file(tmp_path, gcs_bucket.name)))[0] == 0
    code, _, err = run(
        "enqueue", "-q", "source", "--source", str(SOURCE), "--module", "trainer.task",
        "--source-bucket", f"gs://{other.name}",
    )  # fmt: skip
    assert code == 2
    assert f"not in the queue's staging bucket gs://{gcs_bucket.name}" in err
    assert list(other.list_blobs()) == []  # refused before the upload
    response = pubsub_subscriber.pull(subscription=cli_env, max_messages=1, timeout=2)
    assert list(response.received_messages) == []


def test_enqueue_source_on_a_queue_without_a_source_block_is_refused(
    cli_env: str, gcs_emulator: GcsEmulator, gcs_bucket: Any
) -> None:
    run("queue", "apply", str(TRAINER))
    code, _, err = run(
        "enqueue", "-q", "trainer", "--source", str(SOURCE), "--module", "trainer.task",
        "--source-bucket", f"gs://{gcs_bucket.name}",
    )  # fmt: skip
    assert code == 2
    assert "does not run source items" in err
    assert "nothing was uploaded" in err
    assert list(gcs_bucket.list_blobs()) == []  # refused before the upload, not after


def _uploaded(bucket: Any) -> list[str]:
    return [blob.name for blob in bucket.list_blobs()]


def test_a_misspelled_module_is_refused_with_the_closest_before_anything_is_uploaded(
    cli_env: str,
    tmp_path: Path,
    pubsub_subscriber: pubsub_v1.SubscriberClient,
    gcs_emulator: GcsEmulator,
    gcs_bucket: Any,
) -> None:
    assert run("queue", "apply", str(source_queue_file(tmp_path, gcs_bucket.name)))[0] == 0
    argv = ("enqueue", "-q", "source", "--source", str(SOURCE), "--module", "trainer.tsak")
    code, out, err = run(*argv)
    assert (code, out) == (2, "")
    assert "did you mean 'trainer.task'" in err
    assert "nothing was uploaded" in err
    assert _uploaded(gcs_bucket) == []
    response = pubsub_subscriber.pull(subscription=cli_env, max_messages=1, timeout=2)
    assert list(response.received_messages) == []
    # `source push --module` checks it the same way.
    code, _, err = run(
        "source", "push", str(SOURCE), "--bucket", f"gs://{gcs_bucket.name}",
        "--module", "trainer.tsak",
    )  # fmt: skip
    assert code == 2
    assert "did you mean 'trainer.task'" in err
    assert _uploaded(gcs_bucket) == []
    # --no-check lets a module the archive does not hold through (one from a dependency).
    code, _, err = run(*argv, "--no-check")
    assert code == 0, err
    assert len(_uploaded(gcs_bucket)) == 1


def test_enqueue_source_onto_a_builder_queue_needs_its_dockerfile_in_the_source(
    cli_env: str,
    tmp_path: Path,
    pubsub_subscriber: pubsub_v1.SubscriberClient,
    gcs_emulator: GcsEmulator,
    gcs_bucket: Any,
) -> None:
    config = yaml.safe_load((EXAMPLES / "queues" / "built.yaml").read_text())
    config["spec"]["staging_bucket"] = f"gs://{gcs_bucket.name}"
    config["builder"]["dockerfile"] = "ci/trainer.build"
    path = tmp_path / "built.yaml"
    path.write_text(yaml.safe_dump(config))
    assert run("queue", "apply", str(path))[0] == 0
    argv = ("enqueue", "-q", "built", "--source", str(SOURCE), "--module", "trainer.task")
    code, _, err = run(*argv)
    assert code == 2
    assert "builds from ci/trainer.build, which is not in the packed source" in err
    assert _uploaded(gcs_bucket) == []
    project = tmp_path / "proj"
    shutil.copytree(SOURCE, project)
    (project / "ci").mkdir()
    (project / "Dockerfile").rename(project / "ci" / "trainer.build")
    code, _, err = run(*argv[:4], str(project), *argv[5:])
    assert code == 0, err
    [published] = pulled(pubsub_subscriber, cli_env)
    assert json.loads(published.data)["source"]["module"] == "trainer.task"


def test_enqueue_source_needs_a_module(cli_env: str) -> None:
    run("queue", "apply", str(TRAINER))
    code, _, err = run("enqueue", "-q", "trainer", "--source", str(SOURCE), "--no-check")
    assert code == 2
    assert "--source needs --module" in err
