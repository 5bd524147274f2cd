"""Source items: the item's `source` block, the queue's `source` block, both renders (python
package and the container fallback, with hostile args run through a real shell), the
dispatcher's pure checks and the Cloud Storage metadata client's error mapping."""

from __future__ import annotations

import copy
import hashlib
import json
import shlex
import shutil
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from launchq.builds.sources import (
    SourceChecker,
    bucket_problem,
    object_problem,
)
from launchq.errors import InfrastructureError
from launchq.gcp.gcs import GcsClient, endpoint
from launchq.model.reasons import RejectReason
from launchq.spec.checks import parse_queue_config
from launchq.spec.item import ItemSource, parse_item, payload_hash
from launchq.spec.render import (
    RenderContext,
    RenderedJob,
    render,
    source_command,
    staging_bucket_of,
)
from launchq.spec.validation import ConfigError, ItemError
from launchq_client.configs import to_custom_job, validate_queue_config

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
SHA = hashlib.sha256(b"archive").hexdigest()
URI = f"gs://bucket/launchq/sources/{SHA}.tar.gz"
SOURCE = {"uri": URI, "sha256": SHA, "module": "trainer.task"}
EXECUTOR = "us-docker.pkg.dev/vertex-ai/training/pytorch-gpu.2-4.py310:latest"
POOL: dict[str, Any] = {
    "machine_spec": {"machine_type": "n1-standard-4"},
    "replica_count": 1,
    "container_spec": {
        "image_uri": "${image_uri}",
        "command": ["python", "train.py"],
        "args": ["--queue-arg"],
        "env": [{"name": "QUEUE_ENV", "value": "1"}],
    },
}
QUEUE: dict[str, Any] = {
    "project": "my-project",
    "region": "us-central1",
    "source": {"executor_image_uri": EXECUTOR},
    "spec": {"worker_pool_specs": [POOL], "staging_bucket": "gs://bucket"},
}
HOSTILE = ["'; rm -rf /'", "two words", 'say "hi"', "$(whoami)", "`id`", "line\nbreak", "", "*"]


LAUNCHQ_ENV = [
    {"name": "LAUNCHQ_ATTEMPT", "value": "1"},
    {"name": "LAUNCHQ_CHECKPOINT_DIR", "value": "gs://bucket/launchq/checkpoints/q/i-1/"},
]


def queue(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(QUEUE)
    data.update(changes)
    return data


def container_queue(**source: Any) -> dict[str, Any]:
    data = queue(source={"run_as": "container", **source})
    data["spec"]["worker_pool_specs"][0]["container_spec"]["image_uri"] = "my/py311:1"
    return data


def go(item: dict[str, Any], config: dict[str, Any] | None = None) -> RenderedJob:
    parsed = parse_item(json.dumps(item))
    context = RenderContext(now=NOW, item_id="i-1", queue="q")
    return render(parse_queue_config(config or QUEUE, name="q"), parsed, context)


def item_issues(item: dict[str, Any], config: dict[str, Any] | None = None) -> list[str]:
    with pytest.raises(ItemError) as info:
        go(item, config)
    return [str(issue) for issue in info.value.issues]


def config_issues(config: dict[str, Any], strict: bool = False) -> list[str]:
    check = validate_queue_config if strict else parse_queue_config
    with pytest.raises(ConfigError) as info:
        check(config, name="q")
    return [str(issue) for issue in info.value.issues]


# -- the item's source block ------------------------------------------------------------------


def test_a_valid_source_and_where_it_lives() -> None:
    source = parse_item({"source": SOURCE}).source
    assert source is not None
    assert (source.bucket, source.object_name) == ("bucket", f"launchq/sources/{SHA}.tar.gz")


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"module": "trainer.class"}, "source.module"),  # a keyword
        ({"module": "None"}, "source.module"),
        ({"module": "trainer..task"}, "source.module"),
        ({"module": ".task"}, "source.module"),
        ({"module": "2fast"}, "source.module"),
        ({"module": "my-trainer.task"}, "source.module"),
        ({"module": "trainer.task; rm -rf /"}, "source.module"),
        ({"sha256": SHA.upper()}, "source.sha256"),
        ({"sha256": SHA[:-1]}, "source.sha256"),
        ({"sha256": hashlib.sha256(b"other").hexdigest()}, "source.sha256"),  # not the uri's
        ({"uri": f"gs://bucket/elsewhere/{SHA}.tar.gz"}, "source.uri"),
        ({"uri": f"https://bucket/launchq/sources/{SHA}.tar.gz"}, "source.uri"),
        ({"uri": f"gs://Bucket/launchq/sources/{SHA}.tar.gz"}, "source.uri"),
        ({"extra": 1}, "source.extra"),
    ],
)
def test_invalid_sources_name_the_field(change: dict[str, Any], path: str) -> None:
    with pytest.raises(ItemError) as info:
        parse_item({"source": {**SOURCE, **change}})
    assert [issue.path for issue in info.value.issues] == [path]


def test_module_parts_may_be_any_identifier_that_is_not_a_keyword() -> None:
    for module in ("task", "_private.task", "trainer.v2.task_3", "match"):  # soft keyword ok
        assert parse_item({"source": {**SOURCE, "module": module}}).source is not None


def test_payload_hash_of_an_image_item_does_not_see_the_new_field() -> None:
    item = parse_item({"image_uri": "img:1", "args": ["a"]})
    dumped = item.model_dump(mode="json")
    for later in ("source", "sweep", "array"):  # fields an older item could not carry
        assert later in dumped
        dumped.pop(later)
    from launchq.spec.fields import canonical_hash

    assert payload_hash(item) == canonical_hash(dumped)
    with_source = parse_item({"source": SOURCE, "args": ["a"]})
    assert payload_hash(with_source) != payload_hash(parse_item({"args": ["a"]}))


# -- the queue's source block -----------------------------------------------------------------


def test_python_package_needs_an_executor_image() -> None:
    assert config_issues(queue(source={})) == [
        "source.executor_image_uri: required when run_as is python_package (e.g. "
        "us-docker.pkg.dev/vertex-ai/training/pytorch-gpu.2-4.py310:latest)"
    ]


def test_source_pools_must_exist_and_fit_the_mode() -> None:
    data = queue(source={"executor_image_uri": EXECUTOR, "pools": [0, 3, 0]})
    assert config_issues(data) == [
        "source.pools: lists a pool twice",
        "source.pools[1]: spec.worker_pool_specs has no pool 3 to run the source in",
    ]
    package_pool = {k: v for k, v in POOL.items() if k != "container_spec"}
    package_pool["python_package_spec"] = {
        "executor_image_uri": EXECUTOR, "package_uris": ["gs://b/p.tar.gz"],
        "python_module": "m",
    }  # fmt: skip
    data = container_queue()
    data["spec"]["worker_pool_specs"] = [package_pool]
    assert config_issues(data) == [
        "source.pools[0]: run_as: container needs a container_spec in pool 0"
    ]


def test_unknown_source_keys_and_modes_are_rejected() -> None:
    [unknown] = config_issues(queue(source={"executor_image_uri": EXECUTOR, "image": "x"}))
    assert unknown.startswith("source: unknown key 'image'")
    [mode] = config_issues(queue(source={"run_as": "docker"}))
    assert mode.startswith("source.run_as: ")


def test_builder_is_a_validated_block() -> None:
    dest = "us-central1-docker.pkg.dev/my-project/launchq/trainer"
    parsed = parse_queue_config(queue(builder={"destination": dest}), name="q")
    assert parsed.builder is not None
    assert parsed.builder.dockerfile == "Dockerfile"
    [tagged] = config_issues(queue(builder={"destination": f"{dest}:v1"}))
    assert tagged.startswith("builder.destination: ")
    [other] = config_issues(queue(builder={"destination": "gcr.io/my-project/trainer"}))
    assert other.startswith("builder.destination: ")
    [outside] = config_issues(queue(builder={"destination": dest, "dockerfile": "../Dockerfile"}))
    assert outside.startswith("builder.dockerfile: ")
    [unknown] = config_issues(queue(builder={"destination": dest, "type": "docker"}))
    assert unknown.startswith("builder: unknown key 'type'")


def test_apply_time_validation_parses_both_renders_strictly() -> None:
    assert validate_queue_config(QUEUE, name="q").source is not None
    assert validate_queue_config(container_queue(), name="q").source is not None


# -- render: python package -------------------------------------------------------------------


def test_python_package_render() -> None:
    job = go({"source": SOURCE, "args": ["--epochs", "3"], "env": {"SEED": "7"}})
    [pool] = job.body["jobSpec"]["workerPoolSpecs"]
    assert "containerSpec" not in pool
    assert pool["pythonPackageSpec"] == {
        "executorImageUri": EXECUTOR,
        "packageUris": [URI],
        "pythonModule": "trainer.task",
        "args": ["--epochs", "3"],  # the queue's container args are not the module's
        "env": [{"name": "QUEUE_ENV", "value": "1"}, {"name": "SEED", "value": "7"}, *LAUNCHQ_ENV],
    }
    to_custom_job(job.body)  # strict parse


def test_image_items_on_a_source_queue_are_unchanged() -> None:
    job = go({"image_uri": "img:1", "args": ["x"]})
    container = job.body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]
    assert container["imageUri"] == "img:1"
    assert container["command"] == ["python", "train.py"]
    assert container["args"] == ["x"]


def test_only_the_source_pools_change() -> None:
    data = queue(source={"executor_image_uri": EXECUTOR, "pools": [1]})
    sidecar = copy.deepcopy(POOL)
    sidecar["container_spec"]["image_uri"] = "sidecar:1"
    data["spec"]["worker_pool_specs"] = [sidecar, copy.deepcopy(POOL)]
    pools = go({"source": SOURCE}, data).body["jobSpec"]["workerPoolSpecs"]
    assert pools[0]["containerSpec"]["imageUri"] == "sidecar:1"
    assert pools[1]["pythonPackageSpec"]["pythonModule"] == "trainer.task"


@pytest.mark.parametrize(
    ("item", "path", "text"),
    [
        ({"source": SOURCE, "image_uri": "img:1"}, "image_uri", "not both"),
        ({"source": SOURCE, "command": ["python"]}, "command", "pass the module's arguments"),
        ({"source": SOURCE, "env": {"QUEUE_ENV": "2"}}, "env.QUEUE_ENV", "the queue sets"),
    ],
)
def test_what_a_source_item_may_not_do(item: dict[str, Any], path: str, text: str) -> None:
    [issue] = item_issues(item)
    assert issue.startswith(f"{path}: ")
    assert text in issue


def test_a_queue_without_a_source_block_says_so_once() -> None:
    data = queue()
    del data["source"]
    assert item_issues({"source": SOURCE}, data) == [
        "source: queue 'q' does not run source items (its config has no source block); publish "
        "an image_uri, or use a queue with a source block"
    ]


# -- render: the container fallback, with hostile args ----------------------------------------


def test_container_render_runs_the_sdk_fallback() -> None:
    job = go({"source": SOURCE, "args": ["--epochs", "3"], "env": {"SEED": "7"}}, container_queue())
    container = job.body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]
    assert container["imageUri"] == "my/py311:1"
    assert container["command"] == [
        "sh",
        "-c",
        f"pip install /gcs/bucket/launchq/sources/{SHA}.tar.gz && "
        "python -m trainer.task --epochs 3",
    ]
    assert "args" not in container  # the queue's args are dropped, the item's are in the script
    assert container["env"] == [
        {"name": "QUEUE_ENV", "value": "1"},
        {"name": "SEED", "value": "7"},
        *LAUNCHQ_ENV,
    ]
    to_custom_job(job.body)


def test_container_mode_fills_image_uri_with_the_executor_image() -> None:
    data = queue(source={"run_as": "container", "executor_image_uri": "my/py:2"})
    container = go({"source": SOURCE}, data).body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]
    assert container["imageUri"] == "my/py:2"


def test_hostile_args_are_single_shell_words() -> None:
    script = source_command(ItemSource.model_validate(SOURCE), HOSTILE)
    install, _, run = script.partition(" && ")
    assert shlex.split(install) == ["pip", "install", f"/gcs/bucket/launchq/sources/{SHA}.tar.gz"]
    assert shlex.split(run) == ["python", "-m", "trainer.task", *HOSTILE]


def test_hostile_args_reach_the_module_verbatim_through_a_real_shell(tmp_path: Path) -> None:
    """Run the rendered script with `sh`, `pip` and `python` replaced by functions that record
    what they were given: every argument arrives as one word, and nothing else runs."""
    sh = shutil.which("sh")
    assert sh is not None, "no sh on PATH: install dash or bash (apt-get install dash)"
    canary = tmp_path / "pwned"
    args = [*HOSTILE, f"; touch {canary}", f"$(touch {canary})", f"`touch {canary}`"]
    job = go({"source": SOURCE, "args": args}, container_queue())
    command = job.body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["command"]
    assert command[:2] == ["sh", "-c"]
    fakes = "pip() { printf 'pip:%s\\0' \"$@\"; }; python() { printf 'py:%s\\0' \"$@\"; }; "
    done = subprocess.run(
        [sh, "-c", fakes + command[2]], capture_output=True, check=True, cwd=tmp_path
    )
    words = done.stdout.decode().split("\0")[:-1]
    assert words == [
        "pip:install",
        f"pip:/gcs/bucket/launchq/sources/{SHA}.tar.gz",
        "py:-m",
        "py:trainer.task",
        *(f"py:{arg}" for arg in args),
    ]
    assert not canary.exists()


# -- the dispatcher's checks (pure parts) -----------------------------------------------------


def body_in(bucket: str) -> dict[str, Any]:
    return {"jobSpec": {"baseOutputDirectory": {"outputUriPrefix": f"gs://{bucket}/out/x"}}}


def test_bucket_check_uses_the_jobs_output_bucket() -> None:
    source = ItemSource.model_validate(SOURCE)
    assert bucket_problem(source, body_in("bucket")) is None
    problem = bucket_problem(source, body_in("other"))
    assert problem is not None
    assert (problem.reason, problem.path) == (RejectReason.SOURCE_OUTSIDE_BUCKET, "source.uri")
    # base_output_dir wins over staging_bucket, as in the job body
    data = queue()
    data["spec"]["base_output_dir"] = "gs://runs-bucket/out"
    assert bucket_problem(source, go({"source": SOURCE}, data).body) is not None


@pytest.mark.parametrize(
    ("resource", "reason"),
    [
        (None, RejectReason.SOURCE_MISSING),
        ({"size": "10", "metadata": {"sha256": SHA}}, None),
        ({"size": "10"}, RejectReason.SOURCE_MISMATCH),
        ({"size": "10", "metadata": {"sha256": "0" * 64}}, RejectReason.SOURCE_MISMATCH),
        ({"size": "0", "metadata": {"sha256": SHA}}, RejectReason.SOURCE_MISMATCH),
    ],
)
def test_object_check(resource: dict[str, Any] | None, reason: str | None) -> None:
    problem = object_problem(ItemSource.model_validate(SOURCE), resource)
    assert (problem.reason if problem else None) == reason


def test_checker_reads_the_named_object_once() -> None:
    calls: list[tuple[str, str]] = []

    class Reader:
        def get_object(self, bucket: str, name: str) -> dict[str, Any] | None:
            calls.append((bucket, name))
            return {"size": "5", "metadata": {"sha256": SHA}}

    checker = SourceChecker(Reader)
    assert checker.check(ItemSource.model_validate(SOURCE), body_in("bucket")) is None
    assert calls == [("bucket", f"launchq/sources/{SHA}.tar.gz")]
    assert checker.check(ItemSource.model_validate(SOURCE), body_in("other")) is not None
    assert len(calls) == 1  # outside the bucket: no GET at all


# -- the Cloud Storage client -----------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    status = 200
    seen: list[str] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        body = json.dumps({"name": "x", "size": "3", "metadata": {"sha256": SHA}}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def storage() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {"status": 200, "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_client_gets_the_object_resource_with_the_name_encoded(
    storage: tuple[str, type[_Handler]],
) -> None:
    url, handler = storage
    resource = GcsClient(url).get_object("bkt", "launchq/sources/a b.tar.gz")
    assert resource is not None
    assert resource["metadata"] == {"sha256": SHA}
    assert handler.seen == ["/storage/v1/b/bkt/o/launchq%2Fsources%2Fa%20b.tar.gz"]


@pytest.mark.parametrize(("status", "missing"), [(404, True), (403, False), (503, False)])
def test_client_maps_statuses(
    storage: tuple[str, type[_Handler]], status: int, missing: bool
) -> None:
    url, handler = storage
    handler.status = status
    client = GcsClient(url)
    if missing:
        assert client.get_object("bkt", "o") is None
    else:
        with pytest.raises(InfrastructureError, match=str(status)):
            client.get_object("bkt", "o")


def test_endpoint_forms() -> None:
    assert endpoint(None) == "https://storage.googleapis.com"
    assert endpoint("127.0.0.1:4443") == "http://127.0.0.1:4443"
    assert endpoint("http://127.0.0.1:4443/") == "http://127.0.0.1:4443"


@pytest.mark.parametrize(
    ("spec", "bucket"),
    [
        ({"staging_bucket": "gs://stage"}, "stage"),
        ({"staging_bucket": "stage"}, "stage"),
        ({"staging_bucket": "gs://stage", "base_output_dir": "gs://runs/x/${item_id}"}, "runs"),
        ({"base_output_dir": "gs://{{bucket}}/x"}, None),
        ({"staging_bucket": "gs://{{bucket}}"}, None),
    ],
)
def test_staging_bucket_of_a_config(spec: dict[str, Any], bucket: str | None) -> None:
    """Where enqueue --source uploads by default: the bucket the dispatcher will expect."""
    data = queue(template_variables={"bucket": {"type": "string", "default": "x-bucket"}})
    data["spec"] = {"worker_pool_specs": [POOL], **spec}
    assert staging_bucket_of(parse_queue_config(data, name="q")) == bucket


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://github.com/acme/models.git", None),
        ("git@github.com:acme/models.git", None),
        ("ssh://git@github.com/acme/models.git", None),
        ("git://127.0.0.1:9418/models.git", None),
        ("https://me:ghp_x@github.com/acme/models.git", "holds credentials"),
        ("https://token@github.com/acme/models.git", "holds credentials"),
        ("ftp://example.com/models.git", "is not a git URL"),
        ("models", "is not a git URL"),
    ],
)
def test_a_git_url_an_item_would_store_holds_no_credentials(url: str, problem: str | None) -> None:
    from launchq_client.git import url_problem

    found = url_problem(url)
    assert (found is None) if problem is None else (problem in str(found))
    if found is not None:
        assert "ghp_x" not in found
