"""The mapping table: complete against the installed protos, and every row exercised."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from google.cloud import aiplatform_v1
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from launchq.spec.mapping import table, vocabulary
from launchq.spec.mapping.body import BodyContext, output_dir, to_body
from launchq.spec.mapping.checks import check_inputs
from launchq.spec.mapping.models import RunInput, SpecInput
from launchq.spec.mapping.table import OUTPUT_ONLY, ROWS, Kind
from tests.unit.test_render_corpus import QUEUES, render_corpus

CUSTOM_JOB = aiplatform_v1.CustomJob.pb(aiplatform_v1.CustomJob()).DESCRIPTOR
_LEAF_MESSAGES = ("google.protobuf.Duration",)


def proto_paths(descriptor: Descriptor, prefix: str = "") -> Iterator[tuple[str, FieldDescriptor]]:
    """Every settable field path under CustomJob, in JSON names (`[]` for repeated messages)."""
    for field in descriptor.fields:
        if not prefix and field.json_name in OUTPUT_ONLY:
            continue
        path = f"{prefix}.{field.json_name}" if prefix else field.json_name
        message = field.message_type
        is_map = message is not None and message.GetOptions().map_entry
        if message is None or is_map or message.full_name in _LEAF_MESSAGES:
            yield path, field
            continue
        repeated = field.is_repeated
        yield (f"{path}[]" if repeated else path), field
        yield from proto_paths(message, f"{path}[]" if repeated else path)


def row_target(row: table.Row) -> str | None:
    if row.target is None:
        return None
    return f"{row.target}[]" if row.kind is Kind.MESSAGE_LIST else row.target


def test_every_custom_job_field_is_reachable() -> None:
    """A field a newer aiplatform adds fails here until the table maps it."""
    targets = {row_target(row) for row in ROWS}
    targets.add("displayName")  # from spec.display_name or the item
    # Messages whose fields are all mapped (the SDK flattens them into keyword arguments).
    containers = {"jobSpec", "jobSpec.baseOutputDirectory", "encryptionSpec", "jobSpec.scheduling"}
    missing = [
        path
        for path, _ in proto_paths(CUSTOM_JOB)
        if path not in targets and path not in containers
    ]
    assert missing == []


def test_every_row_target_is_a_proto_field() -> None:
    paths = {path for path, _ in proto_paths(CUSTOM_JOB)}
    bad = [row for row in ROWS if row.target is not None and row_target(row) not in paths]
    assert bad == []


def test_row_kinds_match_proto_types() -> None:
    fields = dict(proto_paths(CUSTOM_JOB))
    expected = {
        FieldDescriptor.TYPE_INT64: Kind.INT64,
        FieldDescriptor.TYPE_INT32: Kind.INT32,
        FieldDescriptor.TYPE_BOOL: Kind.BOOL,
        FieldDescriptor.TYPE_ENUM: Kind.ENUM,
    }
    for row in ROWS:
        target = row_target(row)
        if target is None or target not in fields:
            continue
        field = fields[target]
        if field.type in expected:
            assert row.kind is expected[field.type], row
        if field.message_type is not None and field.message_type.full_name in _LEAF_MESSAGES:
            assert row.kind is Kind.DURATION, row


def test_rows_and_models_agree() -> None:
    """Every key the models accept has a row, and every row's key is accepted."""
    sources = {row.source for row in ROWS}
    for section, model in (("spec", SpecInput), ("run", RunInput)):
        for key in model.model_fields:
            assert f"{section}.{key}" in sources, key
    for row in ROWS:
        assert row.source.startswith(("spec.", "run.")), row


@pytest.mark.parametrize(
    ("enum_names", "proto_enum"),
    [
        (vocabulary.ACCELERATOR_TYPES, aiplatform_v1.AcceleratorType),
        (vocabulary.SCHEDULING_STRATEGIES, aiplatform_v1.Scheduling.Strategy),
        (vocabulary.RESERVATION_AFFINITY_TYPES, aiplatform_v1.ReservationAffinity.Type),
    ],
)
def test_enum_names_match_the_library(enum_names: tuple[str, ...], proto_enum: Any) -> None:
    assert set(enum_names) == {member.name for member in proto_enum}
    assert enum_names[0] == proto_enum(0).name  # the zero value, omitted on the wire


def _corpus_sources(tree: Any, prefix: str) -> Iterator[str]:
    if isinstance(tree, dict):
        for key, value in tree.items():
            path = f"{prefix}.{key}"
            yield path
            yield from _corpus_sources(value, path)
    elif isinstance(tree, list):
        for value in tree:
            yield from _corpus_sources(value, f"{prefix}[]")


def _has_path(node: Any, parts: list[str]) -> bool:
    if not parts:
        return True
    name, is_list = parts[0].removesuffix("[]"), parts[0].endswith("[]")
    if not isinstance(node, dict) or name not in node:
        return False
    child = node[name]
    if is_list:
        return any(_has_path(element, parts[1:]) for element in child)
    return _has_path(child, parts[1:])


def _rendered_corpus() -> list[tuple[set[str], dict[str, Any]]]:
    out = []
    for queue_file in QUEUES:
        config, job = render_corpus(queue_file)
        used = set(_corpus_sources(config.spec, "spec")) | set(_corpus_sources(config.run, "run"))
        out.append((used, job.body))
    return out


@pytest.mark.parametrize("row", ROWS, ids=[row.source for row in ROWS])
def test_every_row_is_exercised_by_the_corpus(row: table.Row) -> None:
    """Some corpus queue sets the row's key, and its rendered body has the row's target."""
    corpus = _rendered_corpus_cached()
    users = [body for used, body in corpus if row.source in used]
    assert users, f"no corpus queue sets {row.source}"
    if row.target is not None:
        assert any(_has_path(body, row_target(row).split(".")) for body in users)  # type: ignore[union-attr]


_CACHE: list[tuple[set[str], dict[str, Any]]] = []


def _rendered_corpus_cached() -> list[tuple[set[str], dict[str, Any]]]:
    if not _CACHE:
        _CACHE.extend(_rendered_corpus())
    return _CACHE


# ---------------------------------------------------------------------------------------------
# Conversions row by row


CTX = BodyContext(datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=UTC), "p", "us-central1")
POOL = {
    "machine_spec": {"machine_type": "n1-standard-4"},
    "replica_count": 1,
    "container_spec": {"image_uri": "img"},
}


def body_for(
    spec: dict[str, Any] | None = None, run: dict[str, Any] | None = None
) -> dict[str, Any]:
    full_spec = {"worker_pool_specs": [POOL], "staging_bucket": "gs://bkt", **(spec or {})}
    inputs, issues = check_inputs(full_spec, run or {})
    assert inputs is not None, [str(issue) for issue in issues]
    return to_body(inputs, CTX)


def test_int64_is_a_string_and_int32_a_number() -> None:
    pool = {
        **POOL,
        "replica_count": 3,
        "machine_spec": {"machine_type": "x", "accelerator_count": 2},
    }
    body = body_for({"worker_pool_specs": [pool]})
    assert body["jobSpec"]["workerPoolSpecs"][0]["replicaCount"] == "3"
    assert body["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]["acceleratorCount"] == 2


@pytest.mark.parametrize(
    ("value", "wire"),
    [(3600, "3600s"), ("3600s", "3600s"), ("90m", "5400s"), ("1h30m", "5400s"), ("2d", "172800s")],
)
def test_durations(value: object, wire: str) -> None:
    assert body_for(run={"timeout": value})["jobSpec"]["scheduling"]["timeout"] == wire


A100_POOL = {
    **POOL,
    "machine_spec": {
        "machine_type": "a2-highgpu-2g",
        "accelerator_type": "NVIDIA_TESLA_A100",
        "accelerator_count": 2,
    },
}
FLEX = {"scheduling_strategy": "FLEX_START"}


def test_max_wait_duration_zero_is_kept() -> None:
    """0 means 'wait indefinitely' for FLEX_START, so it is sent (as the SDK does)."""
    body = body_for({"worker_pool_specs": [A100_POOL]}, {**FLEX, "max_wait_duration": 0})
    assert body["jobSpec"]["scheduling"] == {"strategy": "FLEX_START", "maxWaitDuration": "0s"}


def flex_issues(pools: list[dict[str, Any]], run: dict[str, Any] | None = None) -> list[str]:
    spec = {"worker_pool_specs": pools, "staging_bucket": "gs://bkt"}
    return [str(issue) for issue in check_inputs(spec, {**FLEX, **(run or {})})[1]]


@pytest.mark.parametrize("accelerator", vocabulary.FLEX_START_ACCELERATORS)
def test_flex_start_takes_the_dws_gpus(accelerator: str) -> None:
    pool = {
        **A100_POOL,
        "machine_spec": {**A100_POOL["machine_spec"], "accelerator_type": accelerator},
    }
    assert flex_issues([pool, pool]) == []


@pytest.mark.parametrize("accelerator", ["NVIDIA_TESLA_T4", "NVIDIA_TESLA_V100", "TPU_V3"])
def test_flex_start_refuses_other_accelerators(accelerator: str) -> None:
    pool = {
        **A100_POOL,
        "machine_spec": {**A100_POOL["machine_spec"], "accelerator_type": accelerator},
    }
    issues = flex_issues([pool])
    assert len(issues) == 1
    assert issues[0].startswith(
        "spec.worker_pool_specs[0].machine_spec.accelerator_type: FLEX_START"
    )
    assert flex_issues([POOL])[0].endswith("got ACCELERATOR_TYPE_UNSPECIFIED")  # CPU only


def test_flex_start_needs_one_machine_configuration() -> None:
    other = {**A100_POOL, "machine_spec": {**A100_POOL["machine_spec"], "accelerator_count": 4}}
    issues = flex_issues([A100_POOL, A100_POOL, other])
    assert len(issues) == 1
    assert issues[0].startswith("spec.worker_pool_specs[2].machine_spec: ")
    assert "same machine configuration" in issues[0]
    assert flex_issues([A100_POOL, {}, A100_POOL]) == []  # an empty pool is no configuration


def test_flex_start_runs_at_most_seven_days() -> None:
    assert flex_issues([A100_POOL], {"timeout": "7d"}) == []
    assert flex_issues([A100_POOL], {"timeout": "7d1s"}) == [
        "run.timeout: FLEX_START jobs may run at most 7 days (604800s)"
    ]


@pytest.mark.parametrize(("old", "new"), [("ON_DEMAND", "STANDARD"), ("LOW_COST", "SPOT")])
def test_deprecated_strategies_are_refused_with_their_replacement(old: str, new: str) -> None:
    _inputs, issues = check_inputs(
        {"worker_pool_specs": [POOL], "staging_bucket": "gs://bkt"}, {"scheduling_strategy": old}
    )
    assert [str(i) for i in issues] == [
        f"run.scheduling_strategy: {old} is deprecated in the Vertex AI API; use {new}"
    ]


def test_defaults_are_omitted() -> None:
    body = body_for(run={"restart_job_on_worker_restart": False, "enable_web_access": False})
    assert "scheduling" not in body["jobSpec"]
    assert "enableWebAccess" not in body["jobSpec"]


def test_unspecified_enums_are_omitted() -> None:
    pool = {
        **POOL,
        "machine_spec": {"machine_type": "x", "accelerator_type": "ACCELERATOR_TYPE_UNSPECIFIED"},
    }
    body = body_for({"worker_pool_specs": [pool]})
    assert body["jobSpec"]["workerPoolSpecs"][0]["machineSpec"] == {"machineType": "x"}


def test_base_output_dir_wins_over_staging_bucket() -> None:
    body = body_for({"base_output_dir": "gs://other/out"})
    assert body["jobSpec"]["baseOutputDirectory"] == {"outputUriPrefix": "gs://other/out"}


@pytest.mark.parametrize(
    ("bucket", "expected"),
    [
        ("gs://bkt", "gs://bkt/aiplatform-custom-job-2024-01-02-03:04:05.006"),
        ("gs://bkt/", "gs://bkt/aiplatform-custom-job-2024-01-02-03:04:05.006"),
        ("bkt", "gs://bkt/aiplatform-custom-job-2024-01-02-03:04:05.006"),
        ("gs://bkt/sub", "gs://bkt/sub/aiplatform-custom-job-2024-01-02-03:04:05.006"),
    ],
)
def test_output_dir_matches_sdk_format(bucket: str, expected: str) -> None:
    assert output_dir(bucket, CTX.now) == expected


def test_output_dir_is_utc() -> None:
    from datetime import timedelta, timezone

    local = datetime(2024, 1, 2, 5, 4, 5, 6000, tzinfo=timezone(timedelta(hours=2)))
    assert output_dir("gs://b", local).endswith("2024-01-02-03:04:05.006")


def test_output_dir_matches_the_installed_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same string as `google.cloud.aiplatform.utils._timestamped_gcs_dir` at the same instant."""
    import datetime as dt

    from google.cloud.aiplatform import utils

    fixed = dt.datetime(2024, 1, 2, 3, 4, 5, 6000)

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Frozen:  # type: ignore[override]
            return cls.fromtimestamp(fixed.timestamp())

    monkeypatch.setattr(utils.datetime, "datetime", Frozen)
    assert utils._timestamped_gcs_dir("gs://bkt", "aiplatform-custom-job") == output_dir(
        "gs://bkt", fixed
    )


def test_experiment_short_names_are_expanded_like_the_sdk() -> None:
    body = body_for(run={"experiment": "exp", "experiment_run": "r1"})
    prefix = "projects/p/locations/us-central1/metadataStores/default/contexts/"
    assert body["jobSpec"]["experiment"] == prefix + "exp"
    assert body["jobSpec"]["experimentRun"] == prefix + "exp-r1"


def test_full_experiment_names_are_kept() -> None:
    name = "projects/q/locations/europe-west4/metadataStores/default/contexts/e"
    assert body_for(run={"experiment": name})["jobSpec"]["experiment"] == name


def test_client_and_noop_rows_do_not_reach_the_body() -> None:
    assert body_for(run={"create_request_timeout": 30.0, "sync": True}) == body_for()


def test_spec_and_run_service_account_are_both_accepted() -> None:
    sa = "sa@p.iam.gserviceaccount.com"
    assert body_for({"service_account": sa})["jobSpec"]["serviceAccount"] == sa
    assert body_for(run={"service_account": sa})["jobSpec"]["serviceAccount"] == sa
    assert (
        body_for({"service_account": sa}, {"service_account": sa})["jobSpec"]["serviceAccount"]
        == sa
    )


def test_empty_pool_keeps_its_position() -> None:
    body = body_for({"worker_pool_specs": [POOL, {}, POOL]})
    assert body["jobSpec"]["workerPoolSpecs"][1] == {}
    assert len(body["jobSpec"]["workerPoolSpecs"]) == 3


def test_queue_file_paths_exist() -> None:
    assert all(isinstance(path, Path) and path.exists() for path in QUEUES)
