"""W&B runs in the rendered job: the environment, the stable run id, what an item may set, the
bootstrap that fetches the key, and the key never in a job (tests/integration/test_wandb.py runs
the real SDK and the bootstrap on the local stack)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from launchq.spec import bootstrap
from launchq.spec.item import parse_item
from launchq.spec.render import RenderContext, render, render_placements
from launchq.spec.validation import ConfigError, ItemError
from launchq.spec.wandb import SECRET_ENV, WANDB_ENV, app_url, run_id
from launchq.submission import with_attempt
from launchq_client.configs import validate_queue_config
from tests.unit.fakes import World, item, queue_config

SECRET = "projects/p/secrets/wandb-key/versions/3"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def wandb_queue(**wandb: Any) -> dict[str, Any]:
    config = queue_config(2)
    config["spec"]["worker_pool_specs"][0]["container_spec"]["command"] = ["python", "train.py"]
    config["wandb"] = {"entity": "acme", "project": "pretrain", **wandb}
    return config


def rendered(config: dict[str, Any], payload: dict[str, Any], item_id: str = "i1") -> Any:
    parsed = validate_queue_config(config, name="q")
    return render(parsed, parse_item({"queue": "q", "item_id": item_id, **payload}),
                  RenderContext(NOW, item_id, "q"))  # fmt: skip


def env_of(job: Any, pool: int = 0) -> dict[str, str]:
    spec = job.body["jobSpec"]["workerPoolSpecs"][pool]["containerSpec"]
    return {e["name"]: e["value"] for e in spec.get("env", [])}


def test_the_run_id_is_stable_per_item_and_differs_between_items() -> None:
    assert run_id("q", "i1") == run_id("q", "i1")
    assert len(run_id("q", "i1")) == 12
    assert run_id("q", "i1").isalnum()
    assert len({run_id("q", f"i{n}") for n in range(2000)}) == 2000
    assert run_id("q", "i1") != run_id("r", "i1")
    assert app_url("https://api.wandb.ai") == "https://wandb.ai"
    assert app_url("https://api.acme.wandb.io") == "https://acme.wandb.io"
    assert app_url("http://localhost:8080") == "http://localhost:8080"


def test_a_job_gets_wandb_launchs_variables_and_an_item_its_allowed_fields() -> None:
    job = rendered(wandb_queue(), {"image_uri": "gcr.io/p/t:1", "wandb": {
        "project": "ablations", "name": "lr sweep 1", "run_config": {"lr": 0.1},
        "sweep_id": "abc123"}})  # fmt: skip
    env = env_of(job)
    assert env["WANDB_PROJECT"] == "ablations"
    assert env["WANDB_ENTITY"] == env["WANDB_LAUNCH_QUEUE_ENTITY"] == "acme"
    assert env["WANDB_BASE_URL"] == "https://api.wandb.ai"
    assert env["WANDB_RUN_ID"] == run_id("q", "i1")
    assert env["WANDB_NAME"] == "lr sweep 1"
    assert env["WANDB_LAUNCH"] == "True"
    assert (env["WANDB_LAUNCH_QUEUE_NAME"], env["WANDB_LAUNCH_TRACE_ID"]) == ("q", "i1")
    assert json.loads(env["WANDB_CONFIG"]) == {"lr": 0.1}
    assert env["WANDB_SWEEP_ID"] == "abc123"
    assert "WANDB_RESUME" not in env  # a first attempt starts the run
    assert "WANDB_API_KEY" not in env
    assert set(env) - {"LAUNCHQ_ATTEMPT", "LAUNCHQ_CHECKPOINT_DIR"} <= WANDB_ENV
    # Without W&B fields the queue's project and the job's display name are the run's.
    plain = env_of(rendered(wandb_queue(), {"image_uri": "gcr.io/p/t:1"}))
    assert (plain["WANDB_PROJECT"], plain["WANDB_NAME"]) == ("pretrain", "q-i1")
    assert "WANDB_CONFIG" not in plain


def test_what_an_item_may_not_set_is_refused_with_its_path() -> None:
    env = {"WANDB_RUN_ID": "mine", "WANDB_API_KEY": "k"}
    with pytest.raises(ItemError) as caught:
        rendered(wandb_queue(), {"image_uri": "i", "wandb": {"entity": "other"}, "env": env})
    paths = {issue.path: issue.message for issue in caught.value.issues}
    assert "items set entity" in paths["wandb.entity"]
    assert "launchq sets this variable" in paths["env.WANDB_RUN_ID"]
    assert "Secret Manager" in paths["env.WANDB_API_KEY"]
    with pytest.raises(ItemError, match="no wandb block"):
        rendered(queue_config(2), {"image_uri": "i", "wandb": {"name": "x"}})
    # A queue without W&B may still not put a key in its items' jobs.
    with pytest.raises(ItemError, match="Secret Manager"):
        rendered(queue_config(2), {"image_uri": "i", "env": {"wandb_api_key": "k"}})
    big = {"x": "a" * 40_000}
    with pytest.raises(ItemError, match=r"wandb\.run_config"):
        rendered(wandb_queue(), {"image_uri": "i", "wandb": {"run_config": big}})


def test_a_queue_that_puts_a_key_in_its_jobs_is_refused_at_apply() -> None:
    config = wandb_queue()
    config["spec"]["worker_pool_specs"][0]["container_spec"]["env"] = [
        {"name": "WANDB_API_KEY", "value": "local-0123456789abcdef"}
    ]
    with pytest.raises(ConfigError, match=r"wandb\.api_key_secret instead"):
        validate_queue_config(config, name="q")
    with pytest.raises(ConfigError, match="api_key_secret"):
        validate_queue_config(wandb_queue(api_key_secret="projects/p/secrets/k"), name="q")


def test_with_a_secret_the_command_runs_through_the_bootstrap_and_names_only_the_version() -> None:
    job = rendered(wandb_queue(api_key_secret=SECRET), {"image_uri": "gcr.io/p/t:1"})
    container = job.body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]
    assert container["command"] == bootstrap.wrapped(["python", "train.py"])
    assert env_of(job)[SECRET_ENV] == SECRET
    # An item's own command is wrapped too, once.
    job = rendered(wandb_queue(api_key_secret=SECRET), {"image_uri": "i", "command": ["bash"]})
    command = job.body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["command"]
    assert command == bootstrap.wrapped(["bash"])
    # A queue that leaves the command to the image's ENTRYPOINT is refused at apply.
    config = wandb_queue(api_key_secret=SECRET)
    del config["spec"]["worker_pool_specs"][0]["container_spec"]["command"]
    with pytest.raises(ConfigError, match="cannot read an image's ENTRYPOINT"):
        validate_queue_config(config, name="q")


def test_every_placement_is_the_same_run() -> None:
    config = wandb_queue()
    config["placements"] = [{"region": "us-central1"}, {"region": "us-east4"}]
    parsed = validate_queue_config(config, name="q")
    jobs = render_placements(parsed, parse_item({"queue": "q", "item_id": "i1", "image_uri": "i"}),
                             RenderContext(NOW, "i1", "q"))  # fmt: skip
    assert {env_of(job)["WANDB_RUN_ID"] for _, job in jobs} == {run_id("q", "i1")}


def test_a_retry_resumes_the_run() -> None:
    job = rendered(wandb_queue(), {"image_uri": "i"})
    assert "WANDB_RESUME" not in env_of_body(with_attempt(job.body, 1))
    second = env_of_body(with_attempt(job.body, 2))
    assert second["WANDB_RESUME"] == "allow"
    assert second["LAUNCHQ_ATTEMPT"] == "2"
    third = with_attempt(with_attempt(job.body, 2), 3)
    names = [e["name"] for e in third["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["env"]]
    assert names.count("WANDB_RESUME") == 1
    # A queue without W&B gets no WANDB_RESUME.
    plain = rendered(queue_config(2), {"image_uri": "i"})
    assert "WANDB_RESUME" not in env_of_body(with_attempt(plain.body, 2))


def env_of_body(body: dict[str, Any]) -> dict[str, str]:
    spec = body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]
    return {e["name"]: e["value"] for e in spec.get("env", [])}


def test_the_item_record_carries_the_run_and_its_url() -> None:
    world = World()
    world.apply("q", wandb_queue())
    world.deliver(item("q", "i1", wandb={"name": "first"}))
    run = world.data("q", "i1")["wandb_run"]
    assert run == {"id": run_id("q", "i1"), "entity": "acme", "project": "pretrain",
                   "name": "first",
                   "url": f"https://wandb.ai/acme/pretrain/runs/{run_id('q', 'i1')}"}  # fmt: skip


# -- the bootstrap, run as a job runs it ----------------------------------------------------------


class _SecretManager(BaseHTTPRequestHandler):
    answers: dict[str, tuple[int, dict[str, Any]]] = {}
    seen: list[str] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        status, body = self.answers.get(self.path, (404, {"error": {"code": 404}}))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def secret_manager() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _SecretManager)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _SecretManager.seen.clear()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def run_bootstrap(endpoint: str, secret: str, *command: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "LAUNCHQ_"))}
    env.update({SECRET_ENV: secret, "LAUNCHQ_SECRETMANAGER_ENDPOINT": endpoint})
    args = [sys.executable if part == "python3" else part
            for part in bootstrap.wrapped(list(command))]  # fmt: skip
    return subprocess.run(args, check=False, env=env, capture_output=True, text=True, timeout=60)


def test_the_bootstrap_sets_the_key_and_execs_the_command(secret_manager: str) -> None:
    key = "local-" + "ab" * 20
    _SecretManager.answers = {f"/v1/{SECRET}:access": (200, {
        "name": SECRET, "payload": {"data": base64.b64encode(key.encode()).decode()}})}  # fmt: skip
    probe = ("import os, hashlib; print(hashlib.sha256(os.environ['WANDB_API_KEY'].encode())"
             ".hexdigest(), 'LAUNCHQ_WANDB_API_KEY_SECRET' in os.environ)")  # fmt: skip
    done = run_bootstrap(secret_manager, SECRET, sys.executable, "-c", probe)
    assert done.returncode == 0, done.stderr
    digest, secret_left = done.stdout.split()
    assert digest == hashlib.sha256(key.encode()).hexdigest()
    assert secret_left == "False"
    assert key not in done.stdout + done.stderr
    assert _SecretManager.seen == [f"/v1/{SECRET}:access"]


def test_the_bootstrap_stops_before_the_command_when_the_secret_is_unreadable(
    secret_manager: str,
) -> None:
    _SecretManager.answers = {f"/v1/{SECRET}:access": (403, {"error": {"code": 403}})}
    done = run_bootstrap(secret_manager, SECRET, sys.executable, "-c", "print('ran')")
    assert done.returncode == 1
    assert "ran" not in done.stdout
    assert SECRET in done.stderr
    assert "HTTP 403" in done.stderr
    assert "secretAccessor" in done.stderr


def test_the_dashboards_item_page_links_the_run() -> None:
    from launchq_client.backends import Backends
    from launchq_ui.app import create_app

    world = World()
    world.apply("q", wandb_queue())
    world.deliver(item("q", "i1"))
    client = create_app(Backends(project="launchq-test", store=world.store)).test_client()
    page = client.get("/queues/q/items/i1").get_data(as_text=True)
    url = f"https://wandb.ai/acme/pretrain/runs/{run_id('q', 'i1')}"
    assert f'<a href="{url}" rel="noopener noreferrer" target="_blank">{url}</a>' in page
    row = client.get("/api/queues/q/items/i1").get_json()
    assert row["wandb_url"] == url
