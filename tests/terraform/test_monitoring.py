"""Queue signals in Cloud Monitoring (terraform/monitoring.tf) against what the code logs.

The log-based metrics only work if their filters name the messages the code writes and their
extractors name fields those lines carry. Both sides are read here, not repeated: the messages
come from the code (`launchq.sweep.QUEUE_SIGNALS`, `ATTEMPT_FAILED`, `launchq.submission.
ADMITTED`, the "create deferred" line of launchq/submission.py); the filters and extractors are
evaluated by the real `terraform` binary (the locals they are built from read only variables,
so they are copied into a provider-free configuration, as in test_queues.py); and the lines are
the ones the dispatcher and the sweep really print, captured from the in-memory world of
tests/unit/fakes.py. Renaming a message or a field on either side fails here.

What cannot run offline is Cloud Logging's and Cloud Monitoring's acceptance of the filter and
aggregation syntax; the aggregations are at least checked against the aligner and reducer
validity the Monitoring API documents (google/monitoring/v3/common.proto).
"""

from __future__ import annotations

import ast
import io
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from launchq.gcp.vertex import VertexError
from launchq.log import configure
from launchq.model.reasons import WaitReason
from launchq.model.states import ItemState
from launchq.spec.labels import label_value
from launchq.submission import ADMITTED
from launchq.sweep import ATTEMPT_FAILED, QUEUE_SIGNALS
from tests.terraform.test_module import (
    MODULE,
    ROOT,
    block,
    locals_,
    parse_dir,
    refers_to,
    resource,
    resources,
    variables,
)
from tests.terraform.test_queues import _local_source, _run, _terraform
from tests.unit.fakes import World, item, queue_config

SUBMISSION = ROOT / "shared" / "launchq" / "submission.py"
DOC = ROOT / "docs" / "monitoring.md"
QUOTA_MESSAGE = (
    "The following quota metrics exceed quota limits: "
    "aiplatform.googleapis.com/custom_model_training_nvidia_a100_gpus"
)
RATE_MESSAGE = (
    "Quota exceeded for quota metric 'Job or LRO submission requests' and limit 'Job or LRO "
    "submission requests per minute per region' of service 'aiplatform.googleapis.com'."
)

# The message each metric counts or reads, from the code.
CREATE_DEFERRED = "create deferred"  # launchq/submission.py; _logged_messages proves it is there
EXPECTED_MESSAGE = {
    "queue_waiting": QUEUE_SIGNALS,
    "queue_running": QUEUE_SIGNALS,
    "queue_oldest_wait_seconds": QUEUE_SIGNALS,
    "attempt_failures": ATTEMPT_FAILED,
    "quota_refusals": CREATE_DEFERRED,
    "admissions": ADMITTED,
}
# Which functions write each message: the metric's filter must read exactly their logs.
WRITERS = {
    QUEUE_SIGNALS: {"sweep"},
    ATTEMPT_FAILED: {"sweep"},
    CREATE_DEFERRED: {"dispatch", "sweep"},
    ADMITTED: {"dispatch", "sweep"},
}

# Aligners and reducers the Monitoring API documents as valid, by the metric's value type
# (google/monitoring/v3/common.proto; all the metrics here are DELTA).
VALID_ALIGNERS = {
    "DISTRIBUTION": {
        "ALIGN_DELTA",
        "ALIGN_SUM",
        "ALIGN_PERCENTILE_99",
        "ALIGN_PERCENTILE_95",
        "ALIGN_PERCENTILE_50",
        "ALIGN_PERCENTILE_05",
    },
    "INT64": {"ALIGN_DELTA", "ALIGN_RATE", "ALIGN_MIN", "ALIGN_MAX", "ALIGN_MEAN", "ALIGN_SUM"},
}
VALID_REDUCERS = {  # on the aligned value (ALIGN_DELTA and ALIGN_SUM keep the value type)
    "DISTRIBUTION": {"REDUCE_MEAN", "REDUCE_SUM", "REDUCE_STDDEV", "REDUCE_COUNT"}
    | {f"REDUCE_PERCENTILE_{p}" for p in ("99", "95", "50", "05")},
    "INT64": {"REDUCE_MEAN", "REDUCE_MIN", "REDUCE_MAX", "REDUCE_SUM", "REDUCE_STDDEV"},
}

_PAYLOAD_CLAUSE = re.compile(r'(?<!NOT )jsonPayload\.(\w+)="([^"]*)"')
_NEGATED_CLAUSE = re.compile(r'NOT jsonPayload\.(\w+)="([^"]*)"')
_SERVICE_CLAUSE = re.compile(r'resource\.labels\.service_name="([^"]*)"')
_EXTRACT = re.compile(r"EXTRACT\(jsonPayload\.(\w+)\)")


@pytest.fixture(scope="module")
def tf() -> dict[str, Any]:
    return parse_dir(MODULE)


# -- what the code logs -----------------------------------------------------------------------


def _logged_messages(source: Path) -> set[str]:
    """The literal first arguments of `log.<level>(...)` calls in a module."""
    tree = ast.parse(source.read_text())
    found = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "log"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return found


def test_the_deferral_message_is_the_one_submission_logs() -> None:
    assert CREATE_DEFERRED in _logged_messages(SUBMISSION)


class _Capture:
    """The JSON lines launchq's formatter prints, tagged with the function that printed them."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []
        self._stream = io.StringIO()

    def run(self, function: str, work: Any) -> Any:
        start = len(self._stream.getvalue())
        result = work()
        for line in self._stream.getvalue()[start:].splitlines():
            self.lines.append((function, json.loads(line)))
        return result

    def raw(self, message: str) -> list[str]:
        return [
            line
            for line in self._stream.getvalue().splitlines()
            if json.loads(line)["message"] == message
        ]


@pytest.fixture(scope="module")
def logged() -> _Capture:
    """A small day of two queues: admissions and quota refusals by the dispatcher and by the
    sweep, a create deferred for the request rate, a failed attempt, a waiting item, and the
    sweep's passes."""
    capture = _Capture()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure(logging.INFO, capture._stream)
    try:
        world = World()
        world.apply("team-vision-a100", queue_config(max_jobs=1))
        world.apply("team-nlp", queue_config(max_jobs=-1))
        for item_id in ("a1", "a2"):  # a1 takes the one slot, a2 waits
            capture.run("dispatch", lambda i=item_id: world.deliver(item("team-vision-a100", i)))
        world.vertex.refuse = [
            VertexError(429, "RESOURCE_EXHAUSTED", QUOTA_MESSAGE, "CreateCustomJob")
        ]
        capture.run("dispatch", lambda: world.deliver(item("team-nlp", "n1")))
        # Vertex's request rate, past the create's own retries: deferred as "rate_limited".
        world.vertex.refuse = [
            VertexError(429, "RESOURCE_EXHAUSTED", RATE_MESSAGE, "CreateCustomJob")
        ] * 4
        world.apply("team-burst", queue_config(max_jobs=-1))
        capture.run("dispatch", lambda: world.deliver(item("team-burst", "b1")))
        assert not world.vertex.refuse
        [job] = world.vertex.job_of(label_value("a1"))
        world.vertex.set_state(job["name"], "JOB_STATE_FAILED", error={"code": 3, "message": "x"})
        world.clock.advance(30)
        world.vertex.refuse = [
            VertexError(429, "RESOURCE_EXHAUSTED", QUOTA_MESSAGE, "CreateCustomJob")
        ]
        # a1 fails; the sweep's first create (a2 or n1) is refused, the other admitted.
        capture.run("sweep", world.app().sweeper.run)
        capture.run("dispatch", lambda: world.deliver(item("team-vision-a100", "a3")))
        world.clock.advance(45)
        capture.run("sweep", world.app().sweeper.run)  # a3 has waited 45 s or more
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return capture


# -- the module's metrics, evaluated ----------------------------------------------------------

HARNESS_LOCALS = (
    "function_names",
    "sweep_logs",
    "submitter_logs",
    "log_metrics",
    "metric_label_descriptions",
    "metric_types",
    "dead_letter_filter",
    "alert_channels",
    "per_queue_mean",
    "per_minute_count",
    "dashboard_charts",
    "dashboard_intro",
    "dashboard_tiles",
)
# What the locals read of resources, known only after apply, and the values they will have.
STAND_INS = {
    'try("logging.googleapis.com/user/${google_logging_metric.queue[key].name}", "")': (
        '"logging.googleapis.com/user/${var.name_prefix}/${key}"'
    ),
    "google_pubsub_subscription.dead_letter.name": '"${var.name_prefix}-dead-letter-sub"',
}


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert shutil.which("terraform"), "terraform is not on PATH (any 1.5+ binary)"
    directory = tmp_path_factory.mktemp("monitoring-harness")
    (directory / "variables.tf").write_text((MODULE / "variables.tf").read_text())
    body = "\n".join(_local_source(name) for name in HARNESS_LOCALS)
    for expression, stand_in in STAND_INS.items():
        assert expression in body, f"the monitoring locals no longer read {expression}"
        body = body.replace(expression, stand_in)
    assert not re.search(r"\bgoogle_\w+\.\w+", body), "a local reads a resource: add a stand-in"
    (directory / "locals.tf").write_text(f"locals {{\n{body}\n}}\n")
    _terraform(directory, "init", "-input=false", "-backend=false")
    return directory


def _evaluate(directory: Path, expression: str, **variables_: Any) -> Any:
    tfvars = directory / "test.tfvars.json"
    tfvars.write_text(json.dumps({"project_id": "my-ml-project", **variables_}))
    out = _terraform(directory, "console", f"-var-file={tfvars}", stdin=f"jsonencode({expression})")
    return json.loads(json.loads(out.strip()))


@pytest.fixture(scope="module")
def metrics(harness: Path) -> dict[str, Any]:
    result: dict[str, Any] = _evaluate(harness, "local.log_metrics")
    return result


def test_the_stand_ins_are_what_the_resources_will_be(tf: dict[str, Any]) -> None:
    metric = resource(tf, "google_logging_metric", "queue")
    assert metric["name"] == "${var.name_prefix}/${each.key}"
    sub = resource(tf, "google_pubsub_subscription", "dead_letter")
    assert sub["name"] == "${var.name_prefix}-dead-letter-sub"


def test_every_metric_reads_the_message_the_code_writes(metrics: dict[str, Any]) -> None:
    assert set(metrics) == set(EXPECTED_MESSAGE)
    for name, metric in metrics.items():
        clauses = dict(_PAYLOAD_CLAUSE.findall(metric["filter"]))
        assert clauses.get("message") == EXPECTED_MESSAGE[name], (name, metric["filter"])
    admissions = dict(_PAYLOAD_CLAUSE.findall(metrics["admissions"]["filter"]))
    assert admissions["state"] == ItemState.SUBMITTING.value
    # Deferred for the request rate is pacing, not a quota refusal.
    refusals = dict(_NEGATED_CLAUSE.findall(metrics["quota_refusals"]["filter"]))
    assert refusals == {"reason": WaitReason.RATE_LIMITED.value}
    for name, metric in metrics.items():
        if name != "quota_refusals":
            assert not _NEGATED_CLAUSE.findall(metric["filter"]), name


def _matching(metric: dict[str, Any], lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The lines a metric's jsonPayload clauses select."""
    wanted = _PAYLOAD_CLAUSE.findall(metric["filter"])
    unwanted = _NEGATED_CLAUSE.findall(metric["filter"])
    return [
        line
        for line in lines
        if all(str(line.get(field)) == value for field, value in wanted)
        and not any(str(line.get(field)) == value for field, value in unwanted)
    ]


def test_quota_refusals_count_quota_deferrals_only(
    metrics: dict[str, Any], logged: _Capture
) -> None:
    deferred = [line for _, line in logged.lines if line["message"] == CREATE_DEFERRED]
    counted = _matching(metrics["quota_refusals"], deferred)
    assert [line["reason"] for line in deferred if line not in counted] == ["rate_limited"]
    assert counted
    assert all("quota" in line["reason"] for line in counted)


def test_every_metric_reads_the_logs_of_the_functions_that_write_it(
    metrics: dict[str, Any], logged: _Capture
) -> None:
    names = {"dispatch": "launchq-dispatch", "sweep": "launchq-sweep", "notify": "launchq-notify"}
    for name, metric in metrics.items():
        message = EXPECTED_MESSAGE[name]
        assert 'resource.type="cloud_run_revision"' in metric["filter"]
        services = set(_SERVICE_CLAUSE.findall(metric["filter"]))
        assert services == {names[f] for f in WRITERS[message]}, name
        # And the scenario saw each writer write it: the filter leaves none of them out.
        writers = {function for function, line in logged.lines if line["message"] == message}
        assert writers == WRITERS[message], (message, writers)


def test_every_extractor_names_a_field_of_the_lines_it_reads(
    metrics: dict[str, Any], logged: _Capture
) -> None:
    for name, metric in metrics.items():
        matching = _matching(metric, [line for _, line in logged.lines])
        assert matching, f"{name}: no line the code wrote matches {metric['filter']}"
        if metric["value_extractor"] is not None:
            [field] = _EXTRACT.findall(metric["value_extractor"])
            for line in matching:
                value = line[field]
                assert isinstance(value, int | float), (name, line)
                assert not isinstance(value, bool), (name, line)
        assert metric["label_extractors"], name
        for label, extractor in metric["label_extractors"].items():
            assert _EXTRACT.findall(extractor) == [label], (name, extractor)
            for line in matching:
                assert isinstance(line[label], str), (name, label, line)
                assert line[label], (name, label, line)


def test_the_signals_carry_what_the_charts_and_the_alert_show(logged: _Capture) -> None:
    signals = [line for _, line in logged.lines if line["message"] == QUEUE_SIGNALS]
    last = {line["queue"]: line for line in signals}
    assert set(last) == {"team-vision-a100", "team-nlp", "team-burst"}  # one a queue a pass
    assert last["team-vision-a100"]["waiting"] == 1
    assert last["team-vision-a100"]["running"] == 1
    assert last["team-vision-a100"]["oldest_wait_s"] >= 45  # a3 (or a2, refused), 45 s or more
    assert last["team-nlp"]["waiting"] == 0
    assert last["team-nlp"]["oldest_wait_s"] == 0
    failed = [line for _, line in logged.lines if line["message"] == ATTEMPT_FAILED]
    assert [line["queue"] for line in failed] == ["team-vision-a100"]
    assert failed[0]["failure_class"]


def test_a_signals_line_is_about_the_size_docs_monitoring_counts(logged: _Capture) -> None:
    """docs/monitoring.md costs the signals at ~250 bytes a line (10 queues, a pass every 10 s):
    the real line for a 16-character queue name, as printed."""
    sizes = [len(line.encode()) for line in logged.raw(QUEUE_SIGNALS)]
    assert sizes
    assert max(sizes) <= 260, sizes
    lines_per_month = 10 * 6 * 60 * 24 * 30  # 10 queues, 6 passes a minute, 30 days
    gib = lines_per_month * 250 / 2**30
    assert f"{gib:.2f} GiB" in DOC.read_text(), f"docs/monitoring.md should say {gib:.2f} GiB"


def test_metric_resources_are_built_from_these_definitions(tf: dict[str, Any]) -> None:
    metric = resource(tf, "google_logging_metric", "queue")
    assert metric["for_each"] == (
        "${{for key, metric in local.log_metrics : key => metric if var.enable_monitoring}}"
    )
    assert metric["filter"] == "${each.value.filter}"
    assert metric["value_extractor"] == "${each.value.value_extractor}"
    assert metric["label_extractors"] == "${each.value.label_extractors}"
    descriptor = block(metric, "metric_descriptor")
    assert descriptor["metric_kind"] == "DELTA"
    assert descriptor["value_type"] == (
        '${each.value.value_extractor == null ? "INT64" : "DISTRIBUTION"}'
    )
    # One label descriptor per extractor, and a description for each label.
    [labels] = descriptor["dynamic"]
    assert labels["labels"]["for_each"] == "${each.value.label_extractors}"
    described = set(locals_(tf)["metric_label_descriptions"])
    for definition in locals_(tf)["log_metrics"].values():
        assert set(definition["label_extractors"]) <= described


def _value_type(metric: dict[str, Any]) -> str:
    return "INT64" if metric["value_extractor"] is None else "DISTRIBUTION"


def _chart_filters(tiles: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for tile in tiles:
        chart = tile["widget"].get("xyChart")
        for data_set in (chart or {}).get("dataSets", []):
            query = data_set["timeSeriesQuery"]["timeSeriesFilter"]
            found.append((query["filter"], query["aggregation"]))
    return found


def _metric_of(filter_: str) -> str:
    match = re.search(r'metric\.type="([^"]+)"', filter_)
    assert match, filter_
    return match.group(1)


def test_the_dashboard_charts_every_metric_per_queue(
    harness: Path, metrics: dict[str, Any]
) -> None:
    tiles = _evaluate(harness, "local.dashboard_tiles", oldest_wait_alert_seconds=1800)
    charts = _chart_filters(tiles)
    types = {_metric_of(f): aggregation for f, aggregation in charts}
    user = {f"logging.googleapis.com/user/launchq/{name}": name for name in metrics}
    assert set(user) <= set(types), "a metric has no chart"
    assert "pubsub.googleapis.com/subscription/num_undelivered_messages" in types
    for metric_type, name in user.items():
        aggregation = types[metric_type]
        assert "metric.label.queue" in aggregation["groupByFields"], name
        kind = _value_type(metrics[name])
        assert aggregation["perSeriesAligner"] in VALID_ALIGNERS[kind], name
        assert aggregation["crossSeriesReducer"] in VALID_REDUCERS[kind], name
        assert aggregation["alignmentPeriod"] == "60s"
    # The oldest-wait chart draws the alert's threshold.
    [oldest] = [
        tile["widget"]["xyChart"]
        for tile in tiles
        if "xyChart" in tile["widget"]
        and "queue_oldest_wait_seconds" in json.dumps(tile["widget"]["xyChart"]["dataSets"])
    ]
    assert [t["value"] for t in oldest["thresholds"]] == [1800]
    # Tiles stay inside the 12 columns and never overlap.
    cells = set()
    for tile in tiles:
        x, y = tile.get("xPos", 0), tile.get("yPos", 0)
        assert x + tile["width"] <= 12
        for cx in range(x, x + tile["width"]):
            for cy in range(y, y + tile["height"]):
                assert (cx, cy) not in cells, tile["widget"]["title"]
                cells.add((cx, cy))


def test_the_dashboard_is_the_evaluated_tiles(tf: dict[str, Any]) -> None:
    dashboard = resource(tf, "google_monitoring_dashboard", "queues")
    assert dashboard["count"] == "${var.enable_monitoring ? 1 : 0}"
    assert "local.dashboard_tiles" in dashboard["dashboard_json"]
    assert dashboard["dashboard_json"].startswith("${jsonencode(")


# -- alerts -----------------------------------------------------------------------------------


def test_the_oldest_wait_alert_reads_the_oldest_wait_metric_per_queue(
    tf: dict[str, Any], metrics: dict[str, Any]
) -> None:
    declared = variables(tf)
    assert declared["oldest_wait_alert_seconds"]["default"] == 3600
    assert declared["enable_monitoring"]["default"] is True
    policy = resource(tf, "google_monitoring_alert_policy", "oldest_wait")
    assert policy["count"] == "${var.enable_monitoring ? 1 : 0}"
    assert policy["notification_channels"] == "${local.alert_channels}"
    condition = block(block(policy, "conditions"), "condition_threshold")
    assert 'local.metric_types["queue_oldest_wait_seconds"]' in condition["filter"]
    assert condition["threshold_value"] == "${var.oldest_wait_alert_seconds}"
    assert condition["comparison"] == "COMPARISON_GT"
    assert condition["duration"] == "${var.oldest_wait_alert_duration_seconds}s"
    aggregation = block(condition, "aggregations")
    assert aggregation["group_by_fields"] == ["metric.label.queue"]  # one incident per queue
    kind = _value_type(metrics["queue_oldest_wait_seconds"])
    assert aggregation["per_series_aligner"] in VALID_ALIGNERS[kind]
    assert aggregation["cross_series_reducer"] in VALID_REDUCERS[kind]
    # The metric is seconds, as the line's field is.
    assert metrics["queue_oldest_wait_seconds"]["unit"] == "s"
    assert metrics["queue_oldest_wait_seconds"]["value_extractor"].endswith("oldest_wait_s)")


def test_the_dead_letter_alert_watches_the_dead_letter_subscription(
    tf: dict[str, Any], harness: Path
) -> None:
    policy = resource(tf, "google_monitoring_alert_policy", "dead_letters")
    assert policy["count"] == "${var.enable_monitoring ? 1 : 0}"
    assert policy["notification_channels"] == "${local.alert_channels}"
    condition = block(block(policy, "conditions"), "condition_threshold")
    assert condition["filter"] == "${local.dead_letter_filter}"
    assert condition["comparison"] == "COMPARISON_GT"
    assert condition["threshold_value"] == 0
    assert block(condition, "aggregations")["per_series_aligner"] == "ALIGN_MAX"
    assert refers_to(locals_(tf)["dead_letter_filter"], "google_pubsub_subscription.dead_letter")
    evaluated = _evaluate(harness, "local.dead_letter_filter", name_prefix="lq-prod")
    assert 'resource.type="pubsub_subscription"' in evaluated
    assert 'resource.labels.subscription_id="lq-prod-dead-letter-sub"' in evaluated
    assert 'metric.type="pubsub.googleapis.com/subscription/num_undelivered_messages"' in evaluated


def test_alert_channels_take_ids_or_names(harness: Path, tf: dict[str, Any]) -> None:
    assert variables(tf)["alert_notification_channels"]["default"] == []
    assert _evaluate(harness, "local.alert_channels") == []
    channels = ["123", "projects/ops-project/notificationChannels/456"]
    assert _evaluate(harness, "local.alert_channels", alert_notification_channels=channels) == [
        "projects/my-ml-project/notificationChannels/123",
        "projects/ops-project/notificationChannels/456",
    ]


@pytest.mark.parametrize(
    ("variables_", "message"),
    [
        ({"alert_notification_channels": ["email:ops@example.com"]}, "notification channel ids"),
        ({"oldest_wait_alert_duration_seconds": 90}, "multiple of 60"),
        ({"oldest_wait_alert_seconds": 0}, "must be positive"),
    ],
    ids=["channel", "duration", "threshold"],
)
def test_bad_monitoring_settings_fail_at_plan_time(
    harness: Path, variables_: dict[str, Any], message: str
) -> None:
    tfvars = harness / "bad.tfvars.json"
    tfvars.write_text(json.dumps({"project_id": "my-ml-project", **variables_}))
    result = _run(harness, "plan", "-input=false", "-no-color", f"-var-file={tfvars}")
    assert result.returncode != 0
    assert message in " ".join(result.stderr.split())


def test_monitoring_is_all_opt_out(tf: dict[str, Any]) -> None:
    """enable_monitoring = false leaves no metric, dashboard, alert or API behind."""
    gated = {
        "google_monitoring_dashboard": "${var.enable_monitoring ? 1 : 0}",
        "google_monitoring_alert_policy": "${var.enable_monitoring ? 1 : 0}",
    }
    for rtype, count in gated.items():
        for name, body in resources(tf, rtype).items():
            assert body["count"] == count, f"{rtype}.{name}"
    assert "if var.enable_monitoring" in resource(tf, "google_logging_metric", "queue")["for_each"]
    api = resource(tf, "google_project_service", "monitoring")
    assert api["count"] == "${var.enable_apis && var.enable_monitoring ? 1 : 0}"
    assert api["service"] == "monitoring.googleapis.com"
