"""Queue config validation: what is accepted, and the exact messages for what is not."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from launchq.spec.checks import parse_queue_config
from launchq.spec.config import QueueConfig
from launchq.spec.fields import DEFAULT_PRIORITY, priority_rank
from launchq.spec.item import queue_item_json_schema
from launchq.spec.schemas import queue_config_json_schema, schema_text
from launchq.spec.validation import ConfigError
from launchq_client.configs import load_document, validate_queue_config

ROOT = Path(__file__).resolve().parents[2]

SEED = """
spec:
  worker_pool_specs:
    - machine_spec:
        machine_type: n1-standard-4
        accelerator_type: ACCELERATOR_TYPE_UNSPECIFIED
        accelerator_count: 0
      replica_count: 1
      container_spec:
        image_uri: ${image_uri}
  staging_bucket: <REQUIRED>
run:
  restart_job_on_worker_restart: false
"""


def seed(bucket: str = "gs://my-bucket") -> dict[str, Any]:
    data = load_document(SEED.replace("<REQUIRED>", bucket))
    assert isinstance(data, dict)
    return data


def errors(data: object, *, strict: bool = False) -> list[str]:
    check = validate_queue_config if strict else parse_queue_config
    with pytest.raises(ConfigError) as info:
        check(data)
    return [str(issue) for issue in info.value.issues]


def pool(data: dict[str, Any], index: int = 0) -> dict[str, Any]:
    result: dict[str, Any] = data["spec"]["worker_pool_specs"][index]
    return result


# ---------------------------------------------------------------------------------------------
# Accepted


def test_seed_default_with_a_bucket_is_valid_strictly() -> None:
    config = validate_queue_config(seed(), name="seed")
    assert config.name == "seed"
    assert config.max_jobs == 1
    assert config.priority == DEFAULT_PRIORITY
    assert config.retry.max_attempts == 3
    assert config.retry.reasons == ["no_capacity", "infrastructure"]
    assert config.start_timeout_seconds == 1800
    assert not config.paused


@pytest.mark.parametrize("wrapper", ["vertex", "gcp-vertex"])
def test_wandb_wrappers_are_accepted(wrapper: str) -> None:
    data = seed()
    config = parse_queue_config({wrapper: data, "max_jobs": 3})
    assert config.spec == data["spec"]
    assert config.run == data["run"]
    assert config.max_jobs == 3


def test_json_is_accepted_too() -> None:
    assert parse_queue_config(load_document(json.dumps(seed()))).spec == seed()["spec"]


def test_run_is_optional() -> None:
    data = seed()
    del data["run"]
    assert parse_queue_config(data).run == {}


def test_the_model_checks_its_shape_and_the_checks_module_renders() -> None:
    """The model no longer validates itself by rendering (that made config and render import
    each other): `QueueConfig.model_validate` checks the document's shape, `parse_queue_config`
    everything."""
    data = seed()
    pool(data)["machine_spec"]["machineType"] = "x"  # only a render finds this one
    QueueConfig.model_validate(data)
    with pytest.raises(ConfigError):
        parse_queue_config(data)
    with pytest.raises(ValidationError):
        QueueConfig.model_validate({**seed(), "max_jobs": 0})


@pytest.mark.parametrize(
    ("value", "rank"),
    [
        ("critical", 0),
        ("high", 1),
        ("medium", 2),
        ("low", 3),
        ("HIGH", 1),
        (0, 0),
        (17, 17),
        (None, DEFAULT_PRIORITY),
    ],
)
def test_priority_rank_lower_is_more_urgent(value: int | str | None, rank: int) -> None:
    assert priority_rank(value) == rank


@pytest.mark.parametrize("value", ["urgent", -1, True])
def test_priority_rank_rejects(value: Any) -> None:
    with pytest.raises(ValueError, match="priority"):
        priority_rank(value)


def test_priority_is_stored_as_its_rank() -> None:
    assert parse_queue_config({**seed(), "priority": "critical"}).priority == 0


@pytest.mark.parametrize("max_jobs", [-1, 1, 50])
def test_max_jobs_accepted(max_jobs: int) -> None:
    assert parse_queue_config({**seed(), "max_jobs": max_jobs}).max_jobs == max_jobs


def test_every_corpus_config_is_valid() -> None:
    from launchq_client.configs import load_queue_file

    for path in sorted((ROOT / "tests/data/queues").glob("*.yaml")):
        load_queue_file(path)


# ---------------------------------------------------------------------------------------------
# Rejected, with exact messages


def test_missing_pools() -> None:
    assert errors({"spec": {"staging_bucket": "gs://bkt"}}) == [
        "spec.worker_pool_specs: a non-empty list of worker pool specs is required"
    ]
    assert errors({"spec": {"staging_bucket": "gs://bkt", "worker_pool_specs": []}}) == [
        "spec.worker_pool_specs: a non-empty list of worker pool specs is required"
    ]


def test_missing_spec() -> None:
    assert errors({"run": {}}) == ["missing required key 'spec'"]


def test_missing_bucket() -> None:
    data = seed()
    del data["spec"]["staging_bucket"]
    assert errors(data) == [
        "spec.staging_bucket: required unless spec.base_output_dir is set "
        "(Vertex writes the job's outputs there)"
    ]


def test_unfilled_wandb_placeholder_bucket() -> None:
    assert errors(seed("<REQUIRED>")) == [
        "spec.staging_bucket: not a GCS bucket: '<REQUIRED>'; expected gs://BUCKET"
    ]


def test_camel_case_key_names_the_snake_case_key() -> None:
    data = seed()
    machine = pool(data)["machine_spec"]
    machine["machineType"] = machine.pop("machine_type")
    assert errors(data) == [
        "spec.worker_pool_specs[0].machine_spec: unknown key 'machineType'; "
        "use 'machine_type' (keys are snake_case)"
    ]


def test_camel_case_top_level_key() -> None:
    data = seed()
    data["spec"]["workerPoolSpecs"] = data["spec"].pop("worker_pool_specs")
    assert errors(data) == [
        "spec: unknown key 'workerPoolSpecs'; use 'worker_pool_specs' (keys are snake_case)"
    ]


def test_unknown_key_with_suggestion() -> None:
    data = seed()
    container = pool(data)["container_spec"]
    container["image_url"] = container.pop("image_uri")
    assert errors(data) == [
        "spec.worker_pool_specs[0].container_spec: unknown key 'image_url'; "
        "did you mean 'image_uri'?"
    ]


def test_key_in_the_wrong_section() -> None:
    data = seed()
    data["spec"]["timeout"] = 3600
    data["run"]["staging_bucket"] = "gs://x"
    assert errors(data) == [
        "spec: unknown key 'timeout'; 'timeout' goes under 'run' (it is a CustomJob.submit() "
        "argument)",
        "run: unknown key 'staging_bucket'; 'staging_bucket' goes under 'spec' (it is a "
        "CustomJob constructor argument)",
    ]


def test_project_in_spec_points_to_top_level() -> None:
    data = seed()
    data["spec"]["project"] = "p"
    assert errors(data) == [
        "spec: unknown key 'project'; set 'project' at the top level of the queue config, "
        "beside 'spec'"
    ]


def test_bad_enum_lists_valid_values() -> None:
    data = seed()
    data["run"]["scheduling_strategy"] = "spot"
    assert errors(data) == [
        "run.scheduling_strategy: invalid value 'spot'; valid values: STRATEGY_UNSPECIFIED, "
        "ON_DEMAND, LOW_COST, STANDARD, SPOT, FLEX_START; did you mean 'SPOT'?"
    ]


def test_wrong_type() -> None:
    data = seed()
    pool(data)["replica_count"] = "2"
    data["run"]["restart_job_on_worker_restart"] = "false"
    assert errors(data) == [
        "spec.worker_pool_specs[0].replica_count: expected an integer, got string '2'",
        "run.restart_job_on_worker_restart: expected a boolean (true or false), got string 'false'",
    ]


def test_pool_without_task_or_machine() -> None:
    data = seed()
    data["spec"]["worker_pool_specs"].append({"replica_count": 2})
    assert errors(data) == [
        "spec.worker_pool_specs[1]: every worker pool needs a container_spec or a "
        "python_package_spec",
        "spec.worker_pool_specs[1].machine_spec.machine_type: required (e.g. n1-standard-4)",
    ]


def test_chief_pool_cannot_be_empty() -> None:
    data = seed()
    data["spec"]["worker_pool_specs"].insert(0, {})
    assert errors(data) == ["spec.worker_pool_specs[0]: the first pool (the chief) cannot be empty"]


def test_service_account_conflict() -> None:
    data = seed()
    data["spec"]["service_account"] = "a@p.iam.gserviceaccount.com"
    data["run"]["service_account"] = "b@p.iam.gserviceaccount.com"
    assert errors(data) == [
        "run.service_account: conflicts with spec.service_account "
        "('a@p.iam.gserviceaccount.com' vs 'b@p.iam.gserviceaccount.com'); set it in one place"
    ]


def test_experiment_and_tensorboard_conflict() -> None:
    data = seed()
    data["run"].update(experiment="e", tensorboard="projects/p/locations/l/tensorboards/1")
    assert errors(data) == [
        "run.tensorboard: cannot be set together with run.experiment (the experiment's backing "
        "TensorBoard is used)"
    ]


def test_unknown_macro() -> None:
    data = seed()
    pool(data)["container_spec"]["args"] = ["${HOME}", "${imageuri}"]
    assert errors(data) == [
        "spec.worker_pool_specs[0].container_spec.args[0]: unknown macro '${HOME}'; macros: "
        "image_uri, item_id, queue, project, region, display_name, run_id, run_name, "
        "project_name, entity_name, author; write $${...} for a literal",
        "spec.worker_pool_specs[0].container_spec.args[1]: unknown macro '${imageuri}'; "
        "did you mean '${image_uri}'?",
    ]


def test_escaped_macro_is_fine() -> None:
    data = seed()
    pool(data)["container_spec"]["args"] = ["$${HOME}"]
    parse_queue_config(data)


def test_undeclared_template_variable() -> None:
    data = seed()
    pool(data)["machine_spec"]["accelerator_count"] = "{{gpus}}"
    assert errors(data) == [
        "spec.worker_pool_specs[0].machine_spec.accelerator_count: template variable "
        "'{{gpus}}' is not declared; declare it in template_variables"
    ]


def test_template_variable_of_the_wrong_type_for_its_field() -> None:
    data = seed()
    data["template_variables"] = {"gpus": {"type": "string", "default": "two"}}
    pool(data)["machine_spec"]["accelerator_count"] = "{{gpus}}"
    assert errors(data) == [
        "spec.worker_pool_specs[0].machine_spec.accelerator_count: expected an integer, "
        "got string 'two'"
    ]


def test_bad_template_variable_declarations() -> None:
    data = seed()
    data["template_variables"] = {
        "a": {"type": "integer"},
        "b": {"type": "integer", "default": 5, "minimum": 10},
        "c": {"type": "string", "default": "x", "enum": ["y", 3]},
        "d": {"type": "boolean", "required": True, "default": True},
        "e": {"type": "float", "default": 1.0},
    }
    assert errors(data) == [
        "template_variables.e.type: invalid value 'float'; valid values: string, integer, "
        "number, boolean",
        "template_variables.a: give the variable a default or mark it required: true",
        "template_variables.b.default: 5 is below the minimum 10",
        "template_variables.c.enum[1]: must be a string",
        'template_variables.c.default: "x" is not one of the allowed values: "y", 3',
        "template_variables.d.default: a required variable cannot have a default",
    ]


def test_max_jobs_zero_and_below() -> None:
    assert errors({**seed(), "max_jobs": 0}) == [
        "max_jobs: 0 is not allowed: set paused: true to stop launching, -1 = unlimited"
    ]
    assert errors({**seed(), "max_jobs": -2}) == ["max_jobs: must be -1 (unlimited) or at least 1"]


def test_queue_level_and_spec_errors_are_reported_together() -> None:
    data = seed()
    pool(data)["machine_spec"]["machineType"] = pool(data)["machine_spec"].pop("machine_type")
    data.update(max_jobs=0, priority="urgent", builder={"type": "docker"})
    assert errors(data) == [
        "max_jobs: 0 is not allowed: set paused: true to stop launching, -1 = unlimited",
        "priority: invalid priority 'urgent'; use critical, high, medium, low or an integer >= 0 "
        "(0 is the most urgent)",
        "builder: missing required key 'destination'",
        "builder: unknown key 'type'",
        "spec.worker_pool_specs[0].machine_spec: unknown key 'machineType'; use 'machine_type' "
        "(keys are snake_case)",
    ]


def test_both_wrappers() -> None:
    assert errors({"vertex": seed(), "gcp-vertex": seed()}) == [
        "use either 'vertex' or 'gcp-vertex', not both"
    ]


def test_wrapper_and_bare_spec() -> None:
    assert errors({"vertex": seed(), "spec": seed()["spec"]}) == [
        "vertex: 'spec' is set both inside 'vertex' and at the top level"
    ]


def test_queue_settings_inside_wrapper() -> None:
    assert errors({"vertex": {**seed(), "max_jobs": 2}}) == [
        "vertex: unknown key 'max_jobs'; only 'spec' and 'run' go inside the wrapper; queue "
        "settings go beside it"
    ]


def test_yaml_boolean_key() -> None:
    data = load_document("retry: {on: [quota]}\n")
    assert isinstance(data, dict)
    assert errors({**seed(), **data}) == [
        "retry: keys must be strings, got boolean true; YAML reads unquoted "
        "on/off/yes/no/true/false as booleans; quote the key"
    ]


def test_reserved_label_in_queue() -> None:
    data = seed()
    data["spec"]["labels"] = {"launchq-item": "x", "Team": "a", "ok": "x" * 64}
    assert errors(data) == [
        "spec.labels.launchq-item: label keys starting with 'launchq-' are reserved for launchq",
        "spec.labels.Team: label keys must start with a lowercase letter",
        "spec.labels.ok: value is 64 characters; label values are at most 63",
    ]


def test_too_many_queue_labels() -> None:
    data = seed()
    data["spec"]["labels"] = {f"l{index}": "v" for index in range(62)}
    assert errors(data) == [
        "labels: 62 labels from the queue, 0 from the item and 3 from launchq; a job can carry "
        "at most 64"
    ]
    data["spec"]["labels"] = {f"l{index}": "v" for index in range(61)}
    assert len(parse_queue_config(data).spec["labels"]) == 61  # 61 + 3 = 64: accepted


def test_not_a_mapping() -> None:
    assert errors(["spec"]) == ["a queue config is a mapping with at least 'spec'"]


def test_invalid_yaml() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_document("spec: [unclosed")


def test_lone_surrogates_are_rejected() -> None:
    """JSON allows "\\ud800"; protobuf (and Vertex) do not, so it must not pass validation."""
    data = seed()
    pool(data)["machine_spec"]["machine_type"] = "\ud800"
    assert errors(data) == ["contains an unpaired surrogate (text is not valid Unicode)"]


def test_strict_validation_reports_what_only_protobuf_knows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If the models ever let through a body protobuf rejects, write-time validation says so."""
    from launchq.spec import render
    from launchq_client import configs

    real = render.render_all_placeholders

    def broken(config: QueueConfig) -> list[render.RenderedJob]:
        return [
            render.RenderedJob(
                {**job.body, "bogus": 1}, job.project, job.region, job.parent, job.body_hash
            )
            for job in real(config)
        ]

    monkeypatch.setattr(configs, "render_all_placeholders", broken)
    parse_queue_config(seed())  # the cheap path has no protobuf
    [issue] = errors(seed(), strict=True)
    assert issue.startswith("spec: the rendered job does not parse as a Vertex CustomJob: ")
    assert "bogus" in issue


def test_errors_do_not_mutate_the_input() -> None:
    data = seed()
    before = copy.deepcopy(data)
    parse_queue_config(data)
    assert data == before


# ---------------------------------------------------------------------------------------------
# Schemas and cold start


@pytest.mark.parametrize(
    ("filename", "generate"),
    [
        ("queue-config.schema.json", queue_config_json_schema),
        ("queue-item.schema.json", queue_item_json_schema),
    ],
)
def test_checked_in_schemas_are_current(filename: str, generate: Any) -> None:
    path = ROOT / "docs" / "schemas" / filename
    assert path.exists(), f"docs/schemas/{filename} is missing"
    assert path.read_text(encoding="utf-8") == schema_text(generate()), (
        f"docs/schemas/{filename} is stale; regenerate it with "
        "`.venv/bin/python -m launchq.spec.schemas --write-schemas`"
    )


def test_importing_the_dispatch_modules_does_not_import_aiplatform() -> None:
    """The dispatch function imports these at cold start; aiplatform costs 1.7-3.9 s."""
    code = (
        "import sys, launchq.spec.render, launchq.spec.config, launchq.spec.item, "
        "launchq.spec.mapping.body, launchq.spec.mapping.checks, "
        "launchq.spec.templates, launchq.spec.labels, launchq.spec.validation\n"
        "from launchq.spec.checks import parse_queue_config\n"
        "bad = sorted(m for m in sys.modules if m.startswith('google.cloud.aiplatform') "
        "or m.startswith('google.protobuf') or m == 'vertexai')\n"
        "print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == ""


def test_parse_and_render_do_not_import_aiplatform() -> None:
    code = (
        "import sys, json, datetime\n"
        "from launchq.spec.checks import parse_queue_config\n"
        "from launchq.spec.item import parse_item\n"
        "from launchq.spec.render import render, RenderContext\n"
        f"config = parse_queue_config({seed()!r}, name='q')\n"
        "item = parse_item(json.dumps({'image_uri': 'img'}))\n"
        "ctx = RenderContext(datetime.datetime(2024, 1, 1), 'i', 'q', 'proj-1', 'us-central1')\n"
        "render(config, item, ctx)\n"
        "print(','.join(m for m in sys.modules if m.startswith('google.cloud.aiplatform')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == ""


def test_reference_page_lists_every_key() -> None:
    """docs/queue-config.md documents every row of the mapping table and every queue setting."""
    from launchq.spec.mapping.table import ROWS

    text = (ROOT / "docs" / "queue-config.md").read_text(encoding="utf-8")
    missing = [row.source for row in ROWS if f"`{row.source}`" not in text]
    missing += [key for key in QueueConfig.model_fields if f"`{key}`" not in text]
    assert missing == []
