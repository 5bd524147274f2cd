"""W&B runs on the whole local stack: the real `wandb` SDK (offline) in a job the Vertex stand-in
executes, its API key read at start from the Secret Manager stand-in by launchq's bootstrap.

- the run's id, project, entity, name and config are the ones launchq set, and the job had the key;
- a failed first attempt is retried and the second resumes the same run (WANDB_RESUME=allow);
- the key is nowhere but in the secret and the job's own process: not in any rendered job, item
  record, event, function log or job log line;
- a secret version that does not exist fails the item with a message that names it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import pubsub_v1, secretmanager_v1

from launchq.spec.wandb import run_id
from launchq.store.firestore import connect
from launchq_cli import main
from launchq_local.devstack import DevStack

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SECRET = "projects/launchq-demo/secrets/wandb-api-key"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def key(stack: DevStack) -> str:
    """A W&B API key in the Secret Manager stand-in, put there with the unmodified client."""
    client = secretmanager_v1.SecretManagerServiceClient(
        transport="rest",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=stack.secretmanager_url),
    )
    automatic = secretmanager_v1.Replication(automatic=secretmanager_v1.Replication.Automatic())
    client.create_secret(
        parent="projects/launchq-demo",
        secret_id="wandb-api-key",
        secret=secretmanager_v1.Secret(replication=automatic),
    )
    value = "local-" + secrets.token_hex(20)  # the shape of a W&B key: 40 hex characters
    payload = secretmanager_v1.SecretPayload(data=value.encode())
    client.add_secret_version(parent=SECRET, payload=payload)
    assert run("queue", "apply", str(EXAMPLES / "queues" / "wandb-demo.yaml"))[0] == 0
    return value


def _wait(stack: DevStack, item_id: str, seconds: float = 90) -> dict[str, Any]:
    store = connect(stack.project)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        data = store.item_document("wandb-demo", item_id) or {}
        if data.get("state") in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return data
        time.sleep(0.3)
    raise AssertionError(f"{item_id} did not end: {store.item_document('wandb-demo', item_id)}")


def _reports(stack: DevStack, run: str) -> list[dict[str, Any]]:
    """What train.py printed for `run`, attempt by attempt."""
    found = []
    for path in stack.work_dir.rglob("stdout.log"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{") and f'"run_id": "{run}"' in line:
                found.append(json.loads(line))
    return sorted(found, key=lambda r: int(r["attempt"]))


def test_a_job_is_the_run_launchq_named_and_a_retry_resumes_it(stack: DevStack, key: str) -> None:
    item = {
        "queue": "wandb-demo",
        "item_id": "resnet-1",
        "image_uri": "python:3.11-slim",
        "args": ["--fail-first-attempt"],
        "wandb": {"name": "resnet baseline", "run_config": {"lr": 0.1, "epochs": 3}},
    }
    path = stack.work_dir.parent / "resnet-1.json"
    path.write_text(json.dumps(item))
    code, _, err = run("enqueue", "--from-file", str(path))
    assert code == 0, err
    data = _wait(stack, "resnet-1")
    expected = run_id("wandb-demo", "resnet-1")
    assert data["state"] == "SUCCEEDED", data.get("error")
    assert data["wandb_run"] == {
        "id": expected, "entity": "launchq-demo", "project": "demo-runs",
        "name": "resnet baseline",
        "url": f"https://wandb.ai/launchq-demo/demo-runs/runs/{expected}",
    }  # fmt: skip
    first, second = _reports(stack, expected)
    for report in (first, second):
        assert report["project"] == "demo-runs"
        assert report["entity"] == "launchq-demo"
        assert report["name"] == "resnet baseline"
        assert report["config"] == {"lr": 0.1, "epochs": 3}
        assert report["has_key"] is True
        assert report["secret_name_left_in_env"] is False
        assert report["key_sha256"] == hashlib.sha256(key.encode()).hexdigest()
    assert (first["attempt"], second["attempt"]) == (1, 2)
    assert first["resume"] in (None, "")  # a first attempt starts the run
    assert second["resume"] == "allow"  # the retry continues it, under the same id
    assert Path(second["offline_dir"]).exists()
    detail = json.loads(run("status", "resnet-1", "--json")[1])
    assert detail["wandb_url"] == data["wandb_run"]["url"]
    code, out, _ = run("status", "resnet-1")
    assert code == 0
    assert data["wandb_run"]["url"] in " ".join(out.split())


def test_the_key_is_in_no_job_record_event_or_log(stack: DevStack, key: str) -> None:
    """Runs after the first test in this module: every job, record, event and log line the stack
    holds by now, the key's jobs included."""
    assert stack.standin is not None
    jobs = json.dumps(stack.standin.admin.jobs())
    assert "LAUNCHQ_WANDB_API_KEY_SECRET" in jobs  # the jobs name the secret version...
    assert key not in jobs  # ...and hold no key
    store = connect(stack.project)
    records = [store.item_document("wandb-demo", i) for i in ("resnet-1",)]
    assert records[0] is not None
    assert key not in json.dumps(records, default=str)
    for path in stack.log_dir.rglob("*"):
        if path.is_file():
            assert key not in path.read_text(errors="replace"), path
    for path in stack.work_dir.rglob("*.log"):  # what jobs printed: the Logging stand-in's lines
        assert key not in path.read_text(errors="replace"), path
    subscriber = pubsub_v1.SubscriberClient()
    pulled = subscriber.pull(subscription=stack.events_subscription_path, max_messages=1000)
    assert pulled.received_messages, "the events subscription got the run's state changes"
    assert all(key not in m.message.data.decode() for m in pulled.received_messages)


def test_a_secret_version_that_does_not_exist_fails_the_item_saying_which(
    stack: DevStack, key: str, tmp_path: Path
) -> None:
    config = (EXAMPLES / "queues" / "wandb-demo.yaml").read_text()
    config = config.replace("wandb-api-key/versions/latest", "wandb-api-kee/versions/latest")
    config = config.replace("name: wandb-demo", "name: wandb-typo")
    queue = tmp_path / "wandb-typo.yaml"
    queue.write_text(config)
    # `queue apply` checks the version's metadata and refuses the typo, naming it...
    code, _, err = run("queue", "apply", str(queue))
    assert code == 2
    assert "projects/launchq-demo/secrets/wandb-api-kee/versions/latest does not exist" in err
    # ...and a queue applied without the check (or whose secret went away since) fails its
    # item at the job's start, with the same name in the item's error.
    assert run("queue", "apply", str(queue), "--skip-secret-check")[0] == 0
    code, out, err = run("enqueue", "-q", "wandb-typo", "--image", "python:3.11-slim",
                         "--wait", "--timeout", "90")  # fmt: skip
    assert code == 1, err
    detail = json.loads(run("status", out.strip(), "--json")[1])
    message = detail["error_detail"]["message"]
    assert "projects/launchq-demo/secrets/wandb-api-kee/versions/latest" in message
    assert "404" in message
