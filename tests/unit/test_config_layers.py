"""Every layer of queue config validation reports, whatever an earlier layer found.

The layers: the queue-level schema, template declarations and references, the typed parse of
`spec`/`run` (unknown keys, types, enum values) and the cross-field rules (a pool without a
container, a bucket that is not one, ...). A config with problems in several layers lists them
all, each with its path, and one mistake gives one message.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from launchq.spec.checks import parse_queue_config
from launchq.spec.validation import ConfigError
from launchq_cli import main
from launchq_client.configs import load_document, validate_queue_config

BASE = """
spec:
  worker_pool_specs:
    - machine_spec: {machine_type: n1-standard-4}
      replica_count: 1
      container_spec: {image_uri: '${image_uri}', command: [python, train.py]}
    - machine_spec: {machine_type: n1-standard-4}
      replica_count: 2
      container_spec: {image_uri: '${image_uri}'}
  staging_bucket: gs://my-bucket
run:
  service_account: trainer@my-project.iam.gserviceaccount.com
"""

NO_CONTAINER = (
    "spec.worker_pool_specs[1]: every worker pool needs a container_spec or a python_package_spec"
)


def base() -> dict[str, Any]:
    data = load_document(BASE)
    assert isinstance(data, dict)
    parse_queue_config(copy.deepcopy(data))  # the starting point is valid
    return data


def pool(data: dict[str, Any], index: int) -> dict[str, Any]:
    result: dict[str, Any] = data["spec"]["worker_pool_specs"][index]
    return result


def errors(data: object, *, strict: bool = False) -> list[str]:
    check = validate_queue_config if strict else parse_queue_config
    with pytest.raises(ConfigError) as info:
        check(data)
    return [str(issue) for issue in info.value.issues]


def without_container(data: dict[str, Any]) -> dict[str, Any]:
    del pool(data, 1)["container_spec"]
    return data


def test_top_level_typo_and_a_pool_without_a_container() -> None:
    data = without_container(base())
    data["max_jbos"] = 2
    assert errors(data) == ["unknown key 'max_jbos'; did you mean 'max_jobs'?", NO_CONTAINER]


def test_spec_typo_and_a_pool_without_a_container() -> None:
    data = without_container(base())
    pool(data, 0)["container_spec"]["comand"] = pool(data, 0)["container_spec"].pop("command")
    assert errors(data) == [
        "spec.worker_pool_specs[0].container_spec: unknown key 'comand'; did you mean 'command'?",
        NO_CONTAINER,
    ]


def test_typos_in_spec_and_run_with_a_missing_container_strictly_too() -> None:
    data = without_container(base())
    pool(data, 0)["machine_spec"]["machine_tpye"] = "x"
    data["run"]["sevice_account"] = data["run"].pop("service_account")
    expected = [
        "spec.worker_pool_specs[0].machine_spec: unknown key 'machine_tpye'; "
        "did you mean 'machine_type'?",
        "run: unknown key 'sevice_account'; did you mean 'service_account'?",
        NO_CONTAINER,
    ]
    assert errors(data) == expected
    assert errors(data, strict=True) == expected


def test_typo_and_undeclared_template_variable_and_missing_container() -> None:
    data = without_container(base())
    pool(data, 0)["container_spec"]["args"] = ["--epochs", "{{epochs}}"]
    pool(data, 0)["machine_spec"]["accelerator_count"] = "{{gpus}}"
    pool(data, 0)["replica_cnt"] = pool(data, 0).pop("replica_count")
    assert errors(data) == [
        "spec.worker_pool_specs[0].machine_spec.accelerator_count: template variable '{{gpus}}' "
        "is not declared; declare it in template_variables",
        "spec.worker_pool_specs[0].container_spec.args[1]: template variable '{{epochs}}' is "
        "not declared; declare it in template_variables",
        "spec.worker_pool_specs[0]: unknown key 'replica_cnt'; did you mean 'replica_count'?",
        NO_CONTAINER,
    ]


def test_unknown_macro_and_bad_declaration_do_not_hide_the_spec() -> None:
    data = base()
    data["template_variables"] = {"lr": {"type": "string", "default": "x", "minimum": 1}}
    pool(data, 0)["container_spec"]["args"] = ["--lr={{lr}}", "--run=${run_idd}"]
    data["run"]["experiment_run"] = "run-1"  # needs run.experiment: a cross-field rule
    data["spec"]["staging_bukcet"] = data["spec"].pop("staging_bucket")
    assert errors(data) == [
        "template_variables.lr: minimum/maximum only apply to integer and number variables",
        "spec.worker_pool_specs[0].container_spec.args[1]: unknown macro '${run_idd}'; "
        "did you mean '${run_id}'?",
        "spec: unknown key 'staging_bukcet'; did you mean 'staging_bucket'?",
        "run.experiment_run: requires run.experiment",
    ]


def test_bad_max_jobs_invalid_machine_spec_and_bad_bucket() -> None:
    data = base()
    data["max_jobs"] = 0
    pool(data, 0)["machine_spec"].update(accelerator_type="NVIDIA_TESLA_V99", accelerator_count=1)
    pool(data, 1)["machine_spec"] = {"accelerator_count": 1}  # no machine_type
    data["spec"]["staging_bucket"] = "my bucket"
    problems = errors(data)
    assert problems[0] == (
        "max_jobs: 0 is not allowed: set paused: true to stop launching, -1 = unlimited"
    )
    assert problems[1].startswith(
        "spec.worker_pool_specs[0].machine_spec.accelerator_type: invalid value "
        "'NVIDIA_TESLA_V99'; valid values: ACCELERATOR_TYPE_UNSPECIFIED, "
    )
    assert problems[1].endswith("did you mean 'NVIDIA_TESLA_V100'?")
    assert problems[2:] == [
        "spec.worker_pool_specs[1].machine_spec.machine_type: required (e.g. n1-standard-4)",
        "spec.staging_bucket: not a GCS bucket: 'my bucket'; expected gs://BUCKET",
    ]


def test_wrong_type_and_a_conflict_in_run() -> None:
    data = base()
    pool(data, 1)["replica_count"] = "two"
    data["spec"]["service_account"] = "other@my-project.iam.gserviceaccount.com"
    assert errors(data) == [
        "spec.worker_pool_specs[1].replica_count: expected an integer, got string 'two'",
        "run.service_account: conflicts with spec.service_account "
        "('other@my-project.iam.gserviceaccount.com' vs "
        "'trainer@my-project.iam.gserviceaccount.com'); set it in one place",
    ]


def test_one_mistake_one_message() -> None:
    """A misspelt key is read as the key it meant, so the key does not also count as missing,
    and what that key's value says still counts (pool 0 has an image, it is pool 1 that lacks
    a container)."""
    data = without_container(base())
    container = pool(data, 0)["container_spec"]
    container["image_url"] = container.pop("image_uri")
    machine = pool(data, 0)["machine_spec"]
    machine["machineType"] = machine.pop("machine_type")
    assert errors(data) == [
        "spec.worker_pool_specs[0].container_spec: unknown key 'image_url'; "
        "did you mean 'image_uri'?",
        "spec.worker_pool_specs[0].machine_spec: unknown key 'machineType'; "
        "use 'machine_type' (keys are snake_case)",
        NO_CONTAINER,
    ]


def test_keys_that_belong_elsewhere_are_dropped_and_the_rest_still_checked() -> None:
    data = without_container(base())
    data["spec"]["location"] = "us-central1"  # hint: 'region', at the top level
    data["spec"]["timeout"] = 3600  # hint: goes under 'run'
    data["run"]["base_output_dir"] = "gs://my-bucket/out"  # hint: goes under 'spec'
    assert errors(data) == [
        "spec: unknown key 'location'; set 'region' at the top level of the queue config, "
        "beside 'spec'",
        "spec: unknown key 'timeout'; 'timeout' goes under 'run' (it is a CustomJob.submit() "
        "argument)",
        "run: unknown key 'base_output_dir'; 'base_output_dir' goes under 'spec' (it is a "
        "CustomJob constructor argument)",
        NO_CONTAINER,
    ]


def test_a_key_with_no_suggestion_is_dropped_and_the_rest_still_checked() -> None:
    data = without_container(base())
    pool(data, 0)["container_spec"]["zzz"] = 1
    assert errors(data) == [
        "spec.worker_pool_specs[0].container_spec: unknown key 'zzz'",
        NO_CONTAINER,
    ]


def test_wrapped_config_with_problems_in_every_layer() -> None:
    data = without_container(base())
    data["priority"] = "urgent"
    pool(data, 0)["container_spec"]["env"] = [{"name": "A", "valeu": "1"}]
    wrapped = {key: value for key, value in data.items() if key not in ("spec", "run")}
    wrapped["vertex"] = {"spec": data["spec"], "run": data["run"]}
    assert errors(wrapped) == [
        "priority: invalid priority 'urgent'; use critical, high, medium, low or an integer >= 0 "
        "(0 is the most urgent)",
        "spec.worker_pool_specs[0].container_spec.env[0]: unknown key 'valeu'; "
        "did you mean 'value'?",
        NO_CONTAINER,
    ]


def test_checking_does_not_change_the_document() -> None:
    data = without_container(base())
    pool(data, 0)["container_spec"]["image_url"] = pool(data, 0)["container_spec"].pop("image_uri")
    pool(data, 0)["container_spec"]["args"] = ["{{nope}}"]
    before = copy.deepcopy(data)
    errors(data)
    assert data == before


def test_cli_validate_lists_every_layer(tmp_path: Path) -> None:
    config = tmp_path / "q.yaml"
    config.write_text(
        BASE.replace("command: [python", "comand: [python").replace(
            "      container_spec: {image_uri: '${image_uri}'}\n", ""
        )
    )
    result = CliRunner().invoke(main, ["queue", "validate", str(config)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "error: invalid queue config (2 errors):\n"
        "  - spec.worker_pool_specs[0].container_spec: unknown key 'comand'; "
        "did you mean 'command'?\n"
        f"  - {NO_CONTAINER}\n"
    )
