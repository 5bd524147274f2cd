"""`launchq enqueue --source`: the directory is packed, uploaded once to the GCS emulator, and
the published item carries `source: {uri, sha256, module}`.

`--no-check` publishes without the queue-side check: accepting and rendering `source` is the
item model's and the renderer's job, tested with them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.cloud import pubsub_v1

from launchq_local.gcs import GcsEmulator
from tests.integration.test_cli import EXAMPLES, TRAINER, cli_env, pulled, run

pytestmark = pytest.mark.integration
SOURCE = EXAMPLES / "source-trainer"
__all__ = ["cli_env"]  # the fixture, imported for this module's tests


def test_enqueue_source_uploads_once_and_publishes_the_source_block(
    cli_env: str,
    pubsub_subscriber: pubsub_v1.SubscriberClient,
    gcs_emulator: GcsEmulator,
    gcs_bucket: Any,
) -> None:
    run("queue", "apply", str(TRAINER))
    argv = ("enqueue", "-q", "trainer", "--source", str(SOURCE), "--module", "trainer.task")
    flags = ("--source-bucket", f"gs://{gcs_bucket.name}", "--args", "--epochs 3", "--no-check")
    code, out, err = run(*argv, *flags, "--item-id", "src-1")
    assert (code, out) == (0, "src-1\n"), err
    assert "bytes sent" in err
    [published] = pulled(pubsub_subscriber, cli_env)
    payload = json.loads(published.data)
    source = payload["source"]
    assert source["module"] == "trainer.task"
    assert source["uri"] == f"gs://{gcs_bucket.name}/launchq/sources/{source['sha256']}.tar.gz"
    assert payload["args"] == ["--epochs", "3"]
    blob = gcs_bucket.get_blob(f"launchq/sources/{source['sha256']}.tar.gz")
    assert blob.metadata == {"sha256": source["sha256"]}

    code, out, err = run(*argv, *flags, "--item-id", "src-2")
    assert code == 0, err
    assert "already uploaded" in err
    [again] = pulled(pubsub_subscriber, cli_env)
    assert json.loads(again.data)["source"] == source
    assert gcs_bucket.get_blob(blob.name).generation == blob.generation


def test_enqueue_source_needs_a_module(cli_env: str) -> None:
    run("queue", "apply", str(TRAINER))
    code, _, err = run("enqueue", "-q", "trainer", "--source", str(SOURCE), "--no-check")
    assert code == 2
    assert "--source needs --module" in err
