"""Templates: parsing, typed substitution, single pass; and property tests over random queues."""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launchq.spec.checks import parse_queue_config
from launchq.spec.item import QueueItem
from launchq.spec.mapping.vocabulary import (
    ACCELERATOR_TYPES,
    DEPRECATED_STRATEGIES,
    SCHEDULING_STRATEGIES,
)
from launchq.spec.render import RenderContext, render, target_pools
from launchq.spec.templates import (
    Macro,
    TemplateVariable,
    Var,
    coerce_cli_value,
    parse,
    references,
    substitute,
)
from launchq_client.configs import to_custom_job


def test_parse_segments() -> None:
    assert parse("a ${image_uri} b {{ gpus }} $${x} {{y}}") == (
        "a ",
        Macro("image_uri"),
        " b ",
        Var("gpus"),
        " ${x} ",
        Var("y"),
    )


def test_non_word_macro_is_literal_like_wandb() -> None:
    assert parse("${MY-VAR} $(VERTEX_ENV) {x}") == ("${MY-VAR} $(VERTEX_ENV) {x}",)


def test_whole_variable_takes_the_typed_value() -> None:
    tree = {"count": "{{n}}", "flag": "{{ on }}", "text": "n={{n}} on={{on}} r={{r}}"}
    assert substitute(tree, {}, {"n": 2, "on": True, "r": 0.5}) == {
        "count": 2,
        "flag": True,
        "text": "n=2 on=true r=0.5",
    }


def test_substitution_is_single_pass() -> None:
    """A value that itself looks like a template is never expanded again."""
    out = substitute(["${a}", "{{b}}", "${a}{{b}}"], {"a": "{{b}}"}, {"b": "${a}"})
    assert out == ["{{b}}", "${a}", "{{b}}${a}"]


def test_whole_variable_in_a_string_field_gives_its_text() -> None:
    """`args: ["{{epochs}}"]` is a string position: the integer is written as text."""
    assert substitute(
        {"args": ["{{n}}"], "count": "{{n}}"}, {}, {"n": 20}, lambda loc: loc[0] == "args"
    ) == {"args": ["20"], "count": 20}


def test_keys_are_never_substituted() -> None:
    assert substitute({"${a}": "{{b}}"}, {"a": "x"}, {"b": "y"}) == {"${a}": "y"}


def test_references_have_paths() -> None:
    tree = {"spec": {"pools": [{"args": ["x", "${queue}"]}], "n": "{{gpus}}"}}
    assert list(references(tree, "")) == [
        ("spec.pools[0].args[1]", Macro("queue")),
        ("spec.n", Var("gpus")),
    ]


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [
        ("integer", "3", 3),
        ("number", "0.5", 0.5),
        ("number", "2", 2),
        ("boolean", "true", True),
        ("boolean", "no", False),
        ("string", "007", "007"),
    ],
)
def test_cli_values_follow_the_declared_type(kind: Any, text: str, value: object) -> None:
    decl = TemplateVariable(type=kind, default=value)
    assert coerce_cli_value(decl, text) == value


@pytest.mark.parametrize(
    ("kind", "text"),
    [("integer", "x"), ("integer", "1.5"), ("boolean", "maybe"), ("number", "abc")],
)
def test_cli_values_of_the_wrong_type(kind: Any, text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - message comes from int()/float()
        coerce_cli_value(TemplateVariable(type=kind, required=True), text)


# ---------------------------------------------------------------------------------------------
# Property tests: any valid queue + valid item -> a body Vertex parses, item text kept literally

LOWER = string.ascii_lowercase
label_keys = (
    st.text(LOWER, min_size=1, max_size=1)
    .flatmap(
        lambda head: st.text(LOWER + string.digits + "_-", max_size=20).map(
            lambda tail: head + tail
        )
    )
    .filter(lambda key: not key.startswith("launchq-"))
)
label_values = st.text(LOWER + string.digits + "_-", max_size=63)
free_text = st.text(max_size=40)  # any Unicode (hypothesis leaves out lone surrogates)
env_names = st.from_regex(r"[A-Z][A-Z0-9_]{0,15}", fullmatch=True).filter(
    lambda name: (
        not name.startswith(("AIP_", "CLOUD_ML_")) and name not in ("TF_CONFIG", "CLUSTER_SPEC")
    )
)


@st.composite
def pools(draw: st.DrawFn) -> dict[str, Any]:
    machine: dict[str, Any] = {"machine_type": draw(st.sampled_from(["n1-standard-4", "g2-x"]))}
    if draw(st.booleans()):
        machine["accelerator_type"] = draw(st.sampled_from(ACCELERATOR_TYPES))
        machine["accelerator_count"] = draw(st.sampled_from([0, 1, 2, "{{gpus}}"]))
    pool: dict[str, Any] = {"machine_spec": machine, "replica_count": draw(st.integers(1, 10))}
    if draw(st.booleans()):
        pool["disk_spec"] = {
            "boot_disk_type": "pd-ssd",
            "boot_disk_size_gb": draw(st.integers(0, 2000)),
        }
    if draw(st.integers(0, 3)) == 0:
        pool["python_package_spec"] = {
            "executor_image_uri": "us-docker.pkg.dev/vertex-ai/training/x:latest",
            "package_uris": ["gs://b/p.tar.gz"],
            "python_module": "m",
            "args": ["--gpus={{gpus}}", "$${literal}"],
        }
    else:
        image = draw(st.sampled_from(["${image_uri}", "gcr.io/fixed/image:1"]))
        pool["container_spec"] = {
            "image_uri": image,
            "args": draw(
                st.lists(st.sampled_from(["--q=${queue}", "{{flag}}", "x", "$${HOME}"]), max_size=3)
            ),
            "env": [{"name": "Q", "value": "${region}"}],
        }
    return pool


PLAIN_STRATEGIES = [
    s for s in SCHEDULING_STRATEGIES if s not in DEPRECATED_STRATEGIES and s != "FLEX_START"
]


@st.composite
def queues(draw: st.DrawFn) -> dict[str, Any]:
    run: dict[str, Any] = {}
    if draw(st.booleans()):
        # FLEX_START needs GPU pools and the deprecated names are refused (test_mapping.py).
        run["scheduling_strategy"] = draw(st.sampled_from(PLAIN_STRATEGIES))
    if draw(st.booleans()):
        run["timeout"] = draw(st.sampled_from([60, "1h", "2d", "90m30s"]))
    if draw(st.booleans()):
        run["max_wait_duration"] = draw(st.integers(0, 10**6))
    for key in ("restart_job_on_worker_restart", "disable_retries", "enable_web_access"):
        if draw(st.booleans()):
            run[key] = draw(st.booleans())
    spec: dict[str, Any] = {
        "worker_pool_specs": draw(st.lists(pools(), min_size=1, max_size=3)),
        "staging_bucket": "gs://bucket/path",
        "labels": draw(st.dictionaries(label_keys, label_values, max_size=5)),
    }
    return {
        "project": "my-project",
        "region": "us-central1",
        "template_variables": {
            "gpus": {"type": "integer", "default": 1, "minimum": 0, "maximum": 16},
            "flag": {"type": "boolean", "default": False},
        },
        "spec": spec,
        "run": run,
    }


@st.composite
def items(draw: st.DrawFn, queue: dict[str, Any]) -> QueueItem:
    """Items valid for `queue`: no clashing labels, no command for a python package pool."""
    queue_labels = set(queue["spec"]["labels"])
    keys = label_keys.filter(lambda key: key not in queue_labels)
    pools = queue["spec"]["worker_pool_specs"]
    has_command = all("container_spec" in pools[index] for index in target_pools(queue["spec"]))
    return QueueItem(
        image_uri=draw(st.from_regex(r"[a-z0-9./:_-]{1,40}", fullmatch=True)),
        display_name=draw(st.text(min_size=1, max_size=128)),
        command=draw(st.none() | st.lists(free_text, max_size=3)) if has_command else None,
        args=draw(st.none() | st.lists(free_text, max_size=3)),
        env=draw(
            st.dictionaries(env_names.filter(lambda name: name != "Q"), free_text, max_size=4)
        ),
        labels=draw(st.dictionaries(keys, label_values, max_size=4)),
        template_variables=draw(
            st.fixed_dictionaries({}, optional={"gpus": st.integers(0, 16), "flag": st.booleans()})
        ),
    )


times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(data=st.data(), queue=queues(), now=times)
def test_any_valid_queue_and_item_render_to_a_strictly_parsing_body(
    data: st.DataObject, queue: dict[str, Any], now: datetime
) -> None:
    config = parse_queue_config(queue, name="q")
    item = data.draw(items(queue))
    job = render(config, item, RenderContext(now, "item-1", "q"))
    message = to_custom_job(job.body)
    assert json_format.MessageToDict(type(message).pb(message)) == job.body
    # Deterministic: same inputs, same body and hash.
    assert render(config, item, RenderContext(now, "item-1", "q")) == job


@SETTINGS
@given(data=st.data(), queue=queues())
def test_item_text_comes_out_literally(data: st.DataObject, queue: dict[str, Any]) -> None:
    config = parse_queue_config(queue, name="q")
    item = data.draw(items(queue))
    job = render(config, item, RenderContext(datetime(2024, 1, 1, tzinfo=UTC), "item-1", "q"))
    for index in target_pools(queue["spec"]):
        pool = job.body["jobSpec"]["workerPoolSpecs"][index]
        task = pool["containerSpec"] if "containerSpec" in pool else pool["pythonPackageSpec"]
        if item.command is not None:
            assert task.get("command", []) == item.command
        if item.args is not None:
            assert task.get("args", []) == item.args
        env = {entry["name"]: entry.get("value", "") for entry in task.get("env", [])}
        for name, value in item.env.items():
            assert env[name] == value
    for key, value in item.labels.items():
        assert job.body["labels"][key] == value
    assert job.body["displayName"] == item.display_name


@SETTINGS
@given(queue=queues(), now=times, delta=st.integers(1, 10**6))
def test_only_the_context_time_moves_the_output_directory(
    queue: dict[str, Any], now: datetime, delta: int
) -> None:
    config = parse_queue_config(queue, name="q")
    item = QueueItem(image_uri="img")
    first = render(config, item, RenderContext(now, "i", "q"))
    later = render(config, item, RenderContext(now + timedelta(milliseconds=delta), "i", "q"))
    assert first.body_hash != later.body_hash
    strip = json.dumps(
        {**first.body, "jobSpec": {**first.body["jobSpec"], "baseOutputDirectory": None}}
    )
    assert strip == json.dumps(
        {**later.body, "jobSpec": {**later.body["jobSpec"], "baseOutputDirectory": None}}
    )
