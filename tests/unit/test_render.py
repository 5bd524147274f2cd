"""What an item may and may not do on a queue, with exact messages; labels; render context."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from launchq.spec.checks import parse_queue_config
from launchq.spec.item import QueueItem, parse_item
from launchq.spec.labels import (
    ITEM_LABEL,
    QUEUE_LABEL,
    item_filter,
    job_labels,
    label_value,
    queue_filter,
)
from launchq.spec.render import RenderContext, RenderedJob, render, target_pools
from launchq.spec.validation import ConfigError, ItemError
from launchq_client.configs import to_custom_job

NOW = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
POOL: dict[str, Any] = {
    "machine_spec": {"machine_type": "n1-standard-4"},
    "replica_count": 1,
    "container_spec": {"image_uri": "${image_uri}", "env": [{"name": "QUEUE_ENV", "value": "1"}]},
}
BASE: dict[str, Any] = {
    "project": "my-project",
    "region": "us-central1",
    "template_variables": {
        "gpus": {"type": "integer", "default": 0, "minimum": 0, "maximum": 8},
        "tier": {"type": "string", "default": "basic", "enum": ["basic", "premium"]},
    },
    "spec": {
        "worker_pool_specs": [POOL],
        "staging_bucket": "gs://bucket",
        "labels": {"team": "ml"},
    },
}


def go(item: dict[str, Any], config: dict[str, Any] | None = None, **ctx: Any) -> RenderedJob:
    queue = parse_queue_config(config or BASE, name="q")
    parsed = parse_item(json.dumps(item))
    context = RenderContext(now=NOW, item_id=parsed.item_id or "i-1", queue="q", **ctx)
    return render(queue, parsed, context)


def item_errors(item: dict[str, Any], config: dict[str, Any] | None = None) -> list[str]:
    with pytest.raises(ItemError) as info:
        go(item, config)
    return [str(issue) for issue in info.value.issues]


def test_minimal_item() -> None:
    job = go({"image_uri": "img:1"})
    assert job.body["displayName"] == "q-i-1"
    assert job.body["labels"] == {"team": "ml", QUEUE_LABEL: "q", ITEM_LABEL: "i-1"}
    assert job.parent == "projects/my-project/locations/us-central1"
    to_custom_job(job.body)


def test_missing_image_uri() -> None:
    assert item_errors({}) == [
        "image_uri: required: the queue uses ${image_uri} "
        "(at spec.worker_pool_specs[0].container_spec.image_uri)"
    ]


def test_missing_wandb_metadata_macro() -> None:
    config = json.loads(json.dumps(BASE))
    config["spec"]["worker_pool_specs"][0]["container_spec"]["args"] = ["${author}"]
    assert item_errors({"image_uri": "i"}, config) == [
        "metadata.author: required: the queue uses ${author} "
        "(at spec.worker_pool_specs[0].container_spec.args[0])"
    ]


def test_reserved_env_names() -> None:
    assert item_errors(
        {
            "image_uri": "i",
            "env": {"AIP_MODEL_DIR": "x", "cloud_ml_x": "y", "TF_CONFIG": "{}", "1BAD": "z"},
        }
    ) == [
        "env.AIP_MODEL_DIR: reserved: Vertex AI sets AIP_*, CLOUD_ML_*, TF_CONFIG and "
        "CLUSTER_SPEC itself",
        "env.cloud_ml_x: reserved: Vertex AI sets AIP_*, CLOUD_ML_*, TF_CONFIG and "
        "CLUSTER_SPEC itself",
        "env.TF_CONFIG: reserved: Vertex AI sets AIP_*, CLOUD_ML_*, TF_CONFIG and "
        "CLUSTER_SPEC itself",
        "env.1BAD: environment variable names are letters, digits and '_', not starting with a "
        "digit",
    ]


def test_item_cannot_override_queue_env() -> None:
    assert item_errors({"image_uri": "i", "env": {"QUEUE_ENV": "2"}}) == [
        "env.QUEUE_ENV: the queue sets this variable; items may only add new ones"
    ]


def test_env_limit() -> None:
    env = {f"V{index}": "x" for index in range(100)}
    assert item_errors({"image_uri": "i", "env": env}) == [
        "env: 1 variables from the queue plus 100 from the item and 5 from launchq; "
        "Vertex allows 100"
    ]
    # launchq's five count (three for any item, two more for a sweep's child): 94 from the
    # item is the most that fits beside one from the queue, as a single item or as a child
    fits = {f"V{index}": "x" for index in range(94)}
    go({"image_uri": "i", "env": fits})
    assert item_errors({"image_uri": "i", "env": {**fits, "V94": "x"}}) != []


def test_env_is_appended_after_queue_env() -> None:
    job = go({"image_uri": "i", "env": {"B": "2", "A": "1"}})
    env = job.body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["env"]
    assert env[:3] == [
        {"name": "QUEUE_ENV", "value": "1"},
        {"name": "B", "value": "2"},
        {"name": "A", "value": "1"},
    ]
    assert [e["name"] for e in env[3:]] == ["LAUNCHQ_ATTEMPT", "LAUNCHQ_CHECKPOINT_DIR"]


def test_too_many_labels() -> None:
    labels = {f"k{index}": "v" for index in range(61)}
    assert item_errors({"image_uri": "i", "labels": labels}) == [
        "labels: 1 labels from the queue, 61 from the item and 3 from launchq; a job can carry "
        "at most 64"
    ]


def test_the_label_maximum_counts_the_attempt_label_added_at_submit() -> None:
    """1 from the queue + 60 from the item + 3 of launchq's = 64: what Vertex receives."""
    from launchq.spec.labels import ATTEMPT_LABEL, LAUNCHQ_LABELS

    labels = {f"k{index}": "v" for index in range(60)}
    job = go({"image_uri": "i", "labels": labels})
    assert ATTEMPT_LABEL in LAUNCHQ_LABELS
    assert ATTEMPT_LABEL not in job.body["labels"]  # the dispatcher adds it per attempt
    assert len({**job.body["labels"], ATTEMPT_LABEL: "1"}) == 64


def test_the_dispatcher_adds_the_attempt_label_that_validation_counts() -> None:
    from launchq import submission
    from launchq.spec import labels

    assert submission.ATTEMPT_LABEL == labels.ATTEMPT_LABEL


def test_label_value_too_long() -> None:
    assert item_errors({"image_uri": "i", "labels": {"note": "x" * 70}}) == [
        "labels.note: value is 70 characters; label values are at most 63"
    ]


def test_item_labels_cannot_override_queue_or_launchq() -> None:
    assert item_errors({"image_uri": "i", "labels": {"team": "other", ITEM_LABEL: "x"}}) == [
        "labels.launchq-item: label keys starting with 'launchq-' are reserved for launchq",
        "labels.team: the queue sets this label; items may only add new ones",
    ]


def test_undeclared_and_bad_template_variables() -> None:
    assert item_errors(
        {"image_uri": "i", "template_variables": {"gpu": 1, "gpus": 9, "tier": "gold"}}
    ) == [
        "template_variables.gpu: the queue declares no template variable 'gpu'; "
        "did you mean 'gpus'?",
        "template_variables.gpus: 9 is above the maximum 8",
        'template_variables.tier: "gold" is not one of the allowed values: "basic", "premium"',
    ]


def test_template_variable_type_is_strict() -> None:
    assert item_errors({"image_uri": "i", "template_variables": {"gpus": "2"}}) == [
        'template_variables.gpus: must be an integer, got "2"'
    ]


def test_required_template_variable() -> None:
    config = json.loads(json.dumps(BASE))
    config["template_variables"]["dataset"] = {"type": "string", "required": True}
    assert item_errors({"image_uri": "i"}, config) == [
        "template_variables.dataset: required template variable is not set"
    ]


def test_item_for_another_queue() -> None:
    assert item_errors({"image_uri": "i", "queue": "other"}) == [
        "queue: the item is for queue 'other', not 'q'"
    ]


def test_item_unknown_field() -> None:
    with pytest.raises(ItemError) as info:
        parse_item(json.dumps({"image_uri": "i", "service_account": "x", "imageUri": "y"}))
    assert [str(issue) for issue in info.value.issues] == [
        "unknown key 'service_account'",
        "unknown key 'imageUri'; use 'image_uri' (keys are snake_case)",
    ]


def test_item_invalid_json() -> None:
    with pytest.raises(ItemError, match="not valid JSON"):
        parse_item(b"{")


def test_item_bad_id_and_priority() -> None:
    with pytest.raises(ItemError) as info:
        parse_item(json.dumps({"item_id": "a/b", "priority": "asap"}))
    assert [str(issue) for issue in info.value.issues] == [
        "item_id: string should match pattern '^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$'",
        "priority: invalid priority 'asap'; use critical, high, medium, low or an integer >= 0 "
        "(0 is the most urgent)",
    ]


def test_item_priority_names() -> None:
    assert parse_item('{"priority": "critical"}').priority == 0
    assert parse_item('{"priority": 5}').priority == 5
    assert parse_item("{}").priority is None


def test_command_on_python_package_pool() -> None:
    config = json.loads(json.dumps(BASE))
    config["spec"]["worker_pool_specs"][0] = {
        "machine_spec": {"machine_type": "n1-standard-4"},
        "replica_count": 1,
        "python_package_spec": {
            "executor_image_uri": "e",
            "package_uris": ["gs://b/p.tgz"],
            "python_module": "m",
        },
    }
    assert item_errors({"command": ["x"]}, config) == [
        "command: pool 0 runs a python_package_spec, which has no command; set args instead"
    ]


def test_item_cannot_reach_queue_only_fields() -> None:
    for key in ("project", "region", "service_account", "network", "spec", "staging_bucket"):
        with pytest.raises(ItemError, match=f"unknown key '{key}'"):
            parse_item(json.dumps({key: "x"}))


def test_command_and_args_go_to_image_pools_else_chief() -> None:
    pinned = {**POOL, "container_spec": {"image_uri": "fixed:1"}}
    assert target_pools({"worker_pool_specs": [POOL, POOL, pinned]}) == [0, 1]
    assert target_pools({"worker_pool_specs": [pinned, pinned]}) == [0]


def test_project_and_region_from_context_when_queue_has_none() -> None:
    config = {key: value for key, value in BASE.items() if key not in ("project", "region")}
    job = go({"image_uri": "i"}, config, project="ctx-proj", region="europe-west4")
    assert job.parent == "projects/ctx-proj/locations/europe-west4"
    with pytest.raises(ConfigError) as info:
        go({"image_uri": "i"}, config)
    assert [str(issue) for issue in info.value.issues] == [
        "project: not set in the queue config, and the deployment gives no default",
        "region: not set in the queue config, and the deployment gives no default",
    ]


def test_queue_project_wins_over_context() -> None:
    job = go({"image_uri": "i"}, project="ctx-proj", region="europe-west4")
    assert (job.project, job.region) == ("my-project", "us-central1")


def test_context_must_match_item_id() -> None:
    queue = parse_queue_config(BASE, name="q")
    with pytest.raises(ValueError, match="item_id"):
        render(queue, QueueItem(image_uri="i", item_id="a"), RenderContext(NOW, "b", "q"))


def test_hash_changes_with_content() -> None:
    assert go({"image_uri": "a"}).body_hash != go({"image_uri": "b"}).body_hash


def test_render_does_not_mutate_config() -> None:
    queue = parse_queue_config(BASE, name="q")
    before = json.dumps(queue.spec, sort_keys=True)
    render(
        queue,
        QueueItem(image_uri="i", env={"X": "1"}, args=["a"], command=["c"]),
        RenderContext(NOW, "i-1", "q"),
    )
    assert json.dumps(queue.spec, sort_keys=True) == before


def test_environment_variables_never_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    """W&B merges os.environ into macros; launchq never reads the environment."""
    monkeypatch.setenv("image_uri", "attacker/image")
    monkeypatch.setenv("SECRET", "s3cr3t")
    config = json.loads(json.dumps(BASE))
    config["spec"]["worker_pool_specs"][0]["container_spec"]["args"] = ["$${SECRET}"]
    job = go({"image_uri": "good/image"}, config)
    text = job.to_json()
    assert "attacker" not in text
    assert "s3cr3t" not in text
    assert "${SECRET}" in text
    config["spec"]["worker_pool_specs"][0]["container_spec"]["args"] = ["${SECRET}"]
    with pytest.raises(ConfigError, match="unknown macro"):
        parse_queue_config(config)


# ---------------------------------------------------------------------------------------------
# Labels


@pytest.mark.parametrize("raw", ["abc", "item-0001", "a_b-c", "x" * 63, ""])
def test_valid_ids_are_kept(raw: str) -> None:
    assert label_value(raw) == raw


@pytest.mark.parametrize("raw", ["Run-1", "run.1", "a" * 64, "ünï", "UPPER:case@x"])
def test_other_ids_are_sanitised_and_hashed(raw: str) -> None:
    value = label_value(raw)
    assert len(value) <= 63
    assert value == label_value(raw)
    assert all(
        char.isascii() and (char.islower() or char.isdigit() or char in "-_") for char in value
    )


def test_hashing_keeps_ids_distinct() -> None:
    assert label_value("Run-1") != label_value("run-1")
    assert label_value("a" * 64) != label_value("a" * 65)


def test_job_labels_and_filters() -> None:
    assert job_labels("q", "Run-1") == {QUEUE_LABEL: "q", ITEM_LABEL: label_value("Run-1")}
    assert item_filter("i-1") == 'labels.launchq-item="i-1"'
    assert queue_filter("q") == 'labels.launchq-queue="q"'


def test_config_name_must_match_the_queue_it_is_used_as() -> None:
    queue = parse_queue_config(BASE, name="q")
    with pytest.raises(ConfigError, match="used as queue 'other'"):
        render(queue, QueueItem(image_uri="i"), RenderContext(NOW, "i", "other"))


def test_item_priority_rank_falls_back_to_the_queue() -> None:
    queue = parse_queue_config({**BASE, "priority": "high"}, name="q")
    assert QueueItem().priority_rank(queue) == 1
    assert QueueItem(priority=0).priority_rank(queue) == 0
