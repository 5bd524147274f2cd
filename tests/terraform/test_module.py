"""Offline checks of the Terraform module (terraform/) and of the function archives it deploys.

The google provider cannot be downloaded here, so nothing runs `terraform init/plan`. Instead:

- `terraform fmt -check -recursive terraform`;
- structural tests on the configuration parsed with python-hcl2: entry points exist in the
  code, the LAUNCHQ_* environment is exactly what `launchq.settings` reads, every IAM role is
  allowlisted and none is primitive, nothing is public, the dead-letter topic has a
  subscription, the dispatcher's trigger retries and dead-letters, the scheduler calls the sweep
  with OIDC and a long enough deadline, every variable and output is described (the notify
  function's trigger and grants are in test_notify.py, the log-based metrics, dashboard and
  alerts in test_monitoring.py);
- checkov with the module's inline skips (each must carry a reason, and be one reviewed here).
  checkov lives in its own venv (`<venv>/tools/checkov`, created on first use): every release
  pins packaging<24, which this project's environment cannot have;
- who may launch onto which queue (per-queue topics, subscriptions and grants, the `queues`
  variable run through `terraform plan/console`) is in test_queues.py; every google resource,
  argument and block name against the provider's schema in test_provider_schema.py;
- the archives `make package` builds are byte-identical across builds, and the packaged
  dispatcher, unpacked into a fresh venv with only its requirements.txt, serves a Pub/Sub push
  under functions-framework against the emulators (integration).
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import hcl2
import pytest
import requests
from hcl2 import SerializationOptions

from tests.support import answers, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "terraform"
EXAMPLE = MODULE / "examples" / "basic"
SETTINGS = ROOT / "shared" / "launchq" / "settings.py"
INDEXES = ROOT / "firestore.indexes.json"
PACKAGER = ROOT / "scripts" / "package_functions.py"

CHECKOV_VERSION = "3.3.30"
# Reviewed checkov skips: check id -> the resources it may be skipped on.
REVIEWED_SKIPS = {
    "CKV_GCP_83": {
        "google_pubsub_topic.queue",
        "google_pubsub_topic.items",
        "google_pubsub_topic.events",
        "google_pubsub_topic.dead_letter",
    },
    "CKV_GCP_62": {"google_storage_bucket.sources"},
}

PRIMITIVE_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
ALLOWED_ROLES = {
    "roles/datastore.user",  # Firestore documents (the three functions)
    "roles/datastore.viewer",  # queue publishers: read-only state, launchq's database only
    # events topic (dispatch, sweep), dead-letter topic (service agent), a queue's topic
    # (publishers), a notify rule's topic (the notify function)
    "roles/pubsub.publisher",
    # dispatch and notify subscriptions (service agent, for dead-lettering)
    "roles/pubsub.subscriber",
    "roles/iam.serviceAccountUser",  # act-as on job service accounts only
    "roles/iam.serviceAccountTokenCreator",  # service agent mints the push OIDC token
    "roles/run.invoker",  # each function's Cloud Run service, one caller each; the dashboard's
    # the dashboard's log tail, the notify function's failed-job log lines (project: entries
    # have no narrower resource)
    "roles/logging.viewer",
    "roles/artifactregistry.writer",  # the image build account, on the build repository only
    "roles/logging.logWriter",  # the image build account's build logs (no narrower resource)
    # a queue's job accounts, on its W&B key's secret only; the notify function, on the
    # secrets the queues' notification rules name only
    "roles/secretmanager.secretAccessor",
}
# Images built from source (terraform/image_builds.tf): create, follow in bulk, cancel (update).
BUILD_PERMISSIONS = {
    "cloudbuild.builds.create",
    "cloudbuild.builds.get",
    "cloudbuild.builds.list",
    "cloudbuild.builds.update",
}
CUSTOM_ROLE_PERMISSIONS = {
    "dispatch": {
        # cancel: cancel messages arrive on the queue topics, handled by the dispatcher.
        "aiplatform.customJobs.cancel",
        "aiplatform.customJobs.create",
        "aiplatform.customJobs.get",
        "aiplatform.customJobs.list",
        *BUILD_PERMISSIONS,
    },
    "sweep": {
        "aiplatform.customJobs.cancel",
        "aiplatform.customJobs.create",
        "aiplatform.customJobs.get",
        "aiplatform.customJobs.list",
        *BUILD_PERMISSIONS,
    },
    # source archives under launchq/sources/ (tests/terraform/test_sources.py)
    "source_reader": {"storage.objects.get"},
    # "is this source already built?": one tag GET, granted on the build repository only
    "tag_reader": {"artifactregistry.tags.get"},
    "sweep_quotas": {"cloudquotas.quotas.get"},  # opt-in: cohorts that read their quotas
}
FUNCTION_SIGNATURES = {"dispatch": "cloud_event", "sweep": "http", "notify": "cloud_event"}


# -- parsing ----------------------------------------------------------------------------------

_OPTIONS = SerializationOptions(
    with_comments=False, explicit_blocks=False, strip_string_quotes=True
)


def _unquote(key: str) -> str:
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == '"' else key


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {_unquote(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def parse_dir(directory: Path) -> dict[str, Any]:
    """All top-level blocks of the .tf files in `directory`, merged per block type."""
    merged: dict[str, list[Any]] = {}
    for path in sorted(directory.glob("*.tf")):
        parsed = _normalise(hcl2.loads(path.read_text(), serialization_options=_OPTIONS))
        for block_type, blocks in parsed.items():
            merged.setdefault(block_type, []).extend(blocks)
    return merged


@pytest.fixture(scope="module")
def tf() -> dict[str, Any]:
    return parse_dir(MODULE)


def resources(tf: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for block in tf.get("resource", []):
        for name, body in block.get(rtype, {}).items():
            found[name] = body
    return found


def resource(tf: dict[str, Any], rtype: str, name: str) -> dict[str, Any]:
    found = resources(tf, rtype)
    assert name in found, f"terraform/ declares no {rtype}.{name}"
    return found[name]


def block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The single nested block `name` (python-hcl2 gives nested blocks as one-element lists)."""
    value = body.get(name)
    assert isinstance(value, list), f"expected a `{name}` block, got {value!r}"
    assert len(value) == 1, f"expected one `{name}` block, got {len(value)}"
    result: dict[str, Any] = value[0]
    return result


def locals_(tf: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for entry in tf.get("locals", []):
        merged.update(entry)
    return merged


def variables(tf: dict[str, Any]) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for entry in tf.get("variable", []):
        merged.update(entry)
    return merged


def strings(value: Any) -> Iterator[str]:
    """Every string anywhere in a parsed structure (keys included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def refers_to(expression: Any, target: str) -> bool:
    return (
        isinstance(expression, str)
        and re.search(rf"\b{re.escape(target)}\b", expression) is not None
    )


# -- formatting -------------------------------------------------------------------------------


def test_terraform_fmt_is_clean() -> None:
    terraform = shutil.which("terraform")
    assert terraform, "terraform is not on PATH (any 1.5+ binary; no provider is needed for fmt)"
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", "terraform"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"run `terraform fmt -recursive terraform`:\n{result.stdout}"


# -- variables and outputs --------------------------------------------------------------------


@pytest.mark.parametrize("directory", [MODULE, EXAMPLE], ids=["module", "example"])
def test_every_variable_has_a_type_and_a_description(directory: Path) -> None:
    declared = variables(parse_dir(directory))
    assert declared
    for name, body in declared.items():
        assert str(body.get("description", "")).strip(), f"variable {name} has no description"
        assert "type" in body, f"variable {name} has no type"


@pytest.mark.parametrize("directory", [MODULE, EXAMPLE], ids=["module", "example"])
def test_every_output_has_a_description(directory: Path) -> None:
    for entry in parse_dir(directory).get("output", []):
        for name, body in entry.items():
            assert str(body.get("description", "")).strip(), f"output {name} has no description"


def test_the_module_outputs_what_users_need(tf: dict[str, Any]) -> None:
    outputs = {name for entry in tf["output"] for name in entry}
    assert {
        "queue_topic",
        "events_topic",
        "dead_letter_topic",
        "dispatch_function_url",
        "sweep_function_url",
        "service_accounts",
        "publish_example",
    } <= outputs


def test_variables_that_bound_platform_limits_are_validated(tf: dict[str, Any]) -> None:
    declared = variables(tf)
    for name in (
        "project_id",
        "region",
        "name_prefix",
        "dispatch_timeout_seconds",
        "dispatch_memory",
        "dispatch_max_delivery_attempts",
        "sweep_timeout_seconds",
        "sweep_schedule",
        "submit_lease_seconds",
        "job_service_accounts",
        "python_runtime",
    ):
        assert declared[name].get("validation"), f"variable {name} has no validation"
    assert declared["dispatch_max_delivery_attempts"]["default"] == 10


def test_default_lease_outlives_both_function_timeouts(tf: dict[str, Any]) -> None:
    declared = variables(tf)
    lease = declared["submit_lease_seconds"]["default"]
    assert lease > declared["dispatch_timeout_seconds"]["default"]
    assert lease > declared["sweep_timeout_seconds"]["default"]
    assert declared["dispatch_timeout_seconds"]["default"] <= 540


def test_the_lease_is_checked_against_each_function_timeout(tf: dict[str, Any]) -> None:
    for name in ("dispatch", "sweep"):
        body = resource(tf, "google_cloudfunctions2_function", name)
        conditions = [p["condition"] for p in block(body, "lifecycle")["precondition"]]
        wanted = f"var.submit_lease_seconds > var.{name}_timeout_seconds"
        assert any(wanted in c for c in conditions), f"{name}: no precondition `{wanted}`"


def test_the_sweep_may_run_a_whole_schedule_period(tf: dict[str, Any]) -> None:
    """One invocation loops until just before the next schedule: its timeout (and the
    scheduler's attempt deadline, the same variable) must exceed the period."""
    declared = variables(tf)
    assert (
        declared["sweep_timeout_seconds"]["default"] > declared["sweep_period_seconds"]["default"]
    )
    assert declared["sweep_period_seconds"]["default"] == 60  # the default "* * * * *" schedule
    interval = declared["sweep_interval_seconds"]["default"]
    assert 0 < interval < declared["sweep_period_seconds"]["default"]
    body = resource(tf, "google_cloudfunctions2_function", "sweep")
    conditions = [p["condition"] for p in block(body, "lifecycle")["precondition"]]
    wanted = "var.sweep_timeout_seconds > var.sweep_period_seconds"
    assert any(wanted in c for c in conditions), f"no precondition `{wanted}`"


def test_budget_tokens_expire(tf: dict[str, Any]) -> None:
    body = resource(tf, "google_firestore_field", "budget_ttl")
    assert (body["collection"], body["field"]) == ("budgets", "expire_at")
    assert "ttl_config" in body


# -- functions and their code -----------------------------------------------------------------


def _decorated_functions(source: Path) -> dict[str, set[str]]:
    """Top-level function name -> names of its decorators (`functions_framework.http` -> http)."""
    tree = ast.parse(source.read_text())
    found: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            names = set()
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if isinstance(target, ast.Attribute):
                    names.add(target.attr)
                elif isinstance(target, ast.Name):
                    names.add(target.id)
            found[node.name] = names
    return found


@pytest.mark.parametrize("name", sorted(FUNCTION_SIGNATURES))
def test_each_function_entry_point_exists_in_its_code(tf: dict[str, Any], name: str) -> None:
    body = resource(tf, "google_cloudfunctions2_function", name)
    entry_point = block(body, "build_config")["entry_point"]
    source = ROOT / "functions" / name / "main.py"
    assert source.is_file(), f"{source} does not exist"
    defined = _decorated_functions(source)
    assert entry_point in defined, f"{source} defines no top-level function {entry_point!r}"
    signature = FUNCTION_SIGNATURES[name]
    assert signature in defined[entry_point], (
        f"{name}: {entry_point} must be decorated with @functions_framework.{signature}"
    )
    # The archive deployed is the one `make package` builds for this function.
    obj = resource(tf, "google_storage_bucket_object", name)
    assert refers_to(obj["source"], f"local.{name}_archive")
    assert locals_(tf)[f"{name}_archive"].endswith(f"/{name}.zip")


def _settings_variables() -> set[str]:
    """The LAUNCHQ_* names `launchq.settings` reads: the one list of them in the code."""
    tree = ast.parse(SETTINGS.read_text())
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and re.fullmatch(r"LAUNCHQ_[A-Z0-9_]+", node.value)
    }


def test_the_environment_is_exactly_what_the_code_reads(tf: dict[str, Any]) -> None:
    read = _settings_variables()
    assert "LAUNCHQ_PROJECT" in read, "could not find the variables in launchq/settings.py"
    environment = locals_(tf)["launchq_environment"]
    assert set(environment) == read, (
        f"module sets {sorted(set(environment) - read)} that the code does not read; "
        f"code reads {sorted(read - set(environment))} that the module does not set"
    )
    for name in ("dispatch", "sweep"):
        service = block(resource(tf, "google_cloudfunctions2_function", name), "service_config")
        assert refers_to(service["environment_variables"], "local.function_environment")
    assert refers_to(locals_(tf)["function_environment"], "local.launchq_environment")
    # The notify function: the same environment, with the dashboard's URL filled in from the
    # dashboard service when there is one (the shared environment cannot read the service:
    # the service's own environment is that one).
    service = block(resource(tf, "google_cloudfunctions2_function", "notify"), "service_config")
    assert refers_to(service["environment_variables"], "local.notify_environment")
    notify = locals_(tf)["notify_environment"]
    assert refers_to(notify, "local.launchq_environment")
    assert set(re.findall(r"LAUNCHQ_[A-Z0-9_]+", notify)) == {"LAUNCHQ_DASHBOARD_URL"}
    assert "if value != null" in notify
    url = locals_(tf)["notify_dashboard_url"]
    assert refers_to(url, "var.dashboard_url")
    assert refers_to(url, "google_cloud_run_v2_service.dashboard")
    assert environment["LAUNCHQ_DASHBOARD_URL"] == "${var.dashboard_url}"
    assert variables(tf)["dashboard_url"]["default"] is None
    for endpoint in ("secretmanager", "logging"):
        name = f"LAUNCHQ_{endpoint.upper()}_ENDPOINT"
        assert environment[name] == f"${{var.{endpoint}_endpoint}}"
        assert variables(tf)[f"{endpoint}_endpoint"]["default"] is None


def test_every_function_is_gen2_python_and_internal_only(tf: dict[str, Any]) -> None:
    assert set(resources(tf, "google_cloudfunctions2_function")) == set(FUNCTION_SIGNATURES)
    for name in FUNCTION_SIGNATURES:
        body = resource(tf, "google_cloudfunctions2_function", name)
        assert refers_to(block(body, "build_config")["runtime"], "var.python_runtime")
        service = block(body, "service_config")
        assert service["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
        assert refers_to(service["timeout_seconds"], f"var.{name}_timeout_seconds")
        assert refers_to(service["available_memory"], f"var.{name}_memory")
        assert refers_to(service["service_account_email"], f"google_service_account.{name}.email")
    runtimes = variables(tf)["python_runtime"]
    assert runtimes["default"] in {"python311", "python312", "python313"}


# -- IAM --------------------------------------------------------------------------------------

IAM_RESOURCE = re.compile(r"^google_.*_iam_(member|binding|policy)$")


def _iam_grants(tf: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    grants = []
    for entry in tf.get("resource", []):
        for rtype, named in entry.items():
            if IAM_RESOURCE.match(rtype):
                for name, body in named.items():
                    grants.append((rtype, name, body))
    return grants


def _role_values(tf: dict[str, Any], body: dict[str, Any]) -> set[str]:
    """A grant's roles; `role = each.value` over `for_each = local.<map>` is expanded."""
    role = body["role"]
    if role != "${each.value}":
        return {role}
    # `local.<map>`, or `local.<flag> ? local.<map> : {}` for an opt-in grant (the dashboard's).
    source = re.fullmatch(r"\$\{(?:local\.\w+ \? )?local\.(\w+)(?: : \{\})?\}", body["for_each"])
    assert source, f"cannot expand role over for_each {body['for_each']!r}"
    roles = locals_(tf)[source.group(1)]
    assert isinstance(roles, dict), f"local.{source.group(1)} should be a map of roles"
    return set(roles.values())


CUSTOM_ROLE = re.compile(r"(?:\$\{)?google_project_iam_custom_role\.(\w+)(?:\[0\])?\.name\}?")


def _set_literal(expression: str) -> list[str]:
    """Items of `${toset([a, "b", ...])}` as python-hcl2 prints it."""
    inner = re.fullmatch(r"\$\{toset\(\[(.*)\]\)\}", expression.strip(), re.S)
    assert inner, f"expected a toset([...]) literal, got {expression!r}"
    return [item.strip().strip('"') for item in inner.group(1).split(",") if item.strip()]


def test_no_iam_binding_or_policy_resources(tf: dict[str, Any]) -> None:
    # *_iam_binding / *_iam_policy are authoritative: they would strip grants made elsewhere.
    for rtype, name, _ in _iam_grants(tf):
        assert rtype.endswith("_iam_member"), f"{rtype}.{name} is authoritative; use _iam_member"


def test_every_role_is_allowlisted_and_none_is_primitive(tf: dict[str, Any]) -> None:
    grants = _iam_grants(tf)
    assert grants
    seen: set[str] = set()
    for rtype, name, body in grants:
        for role in _role_values(tf, body):
            seen.add(role)
            assert role not in PRIMITIVE_ROLES, f"{rtype}.{name} grants primitive {role}"
            custom = CUSTOM_ROLE.fullmatch(role)
            assert role in ALLOWED_ROLES or custom, f"{rtype}.{name}: {role} is not allowlisted"
    # And nowhere else in the configuration either (e.g. in a local or a default).
    for value in strings(tf):
        for role in re.findall(r"roles/[A-Za-z.]+", value):
            assert role not in PRIMITIVE_ROLES
            assert role in ALLOWED_ROLES, f"{role} is not allowlisted"
    assert "roles/aiplatform.user" not in seen  # the custom roles replace it


def test_custom_vertex_roles_hold_exactly_the_customjob_permissions(tf: dict[str, Any]) -> None:
    roles = resources(tf, "google_project_iam_custom_role")
    assert set(roles) == set(CUSTOM_ROLE_PERMISSIONS)
    for name, permissions in CUSTOM_ROLE_PERMISSIONS.items():
        assert set(roles[name]["permissions"]) == permissions


def test_nothing_is_public(tf: dict[str, Any]) -> None:
    for value in strings(tf):
        assert "allUsers" not in value, value
        assert "allAuthenticatedUsers" not in value, value
    for rtype in resources(tf, "google_cloudfunctions2_function_iam_member"):
        pytest.fail(f"function IAM grants are not used ({rtype}); invokers are on Cloud Run")


def test_the_sweep_is_invokable_by_the_scheduler_account_only(tf: dict[str, Any]) -> None:
    grants = [
        body
        for rtype, _, body in _iam_grants(tf)
        if any(refers_to(v, "google_cloudfunctions2_function.sweep") for v in strings(body))
    ]
    assert len(grants) == 1, "exactly one grant on the sweep's Cloud Run service"
    assert grants[0]["role"] == "roles/run.invoker"
    assert refers_to(grants[0]["member"], "google_service_account.scheduler.member")


def test_act_as_is_granted_on_job_accounts_only(tf: dict[str, Any]) -> None:
    for rtype, name, body in _iam_grants(tf):
        if body["role"] == "roles/iam.serviceAccountUser":
            assert rtype == "google_service_account_iam_member", (
                f"{rtype}.{name}: serviceAccountUser must be granted on an account, "
                "never on the project"
            )
            assert name in ("job_act_as", "build_act_as")
    build_act_as = resource(tf, "google_service_account_iam_member", "build_act_as")
    assert refers_to(build_act_as["service_account_id"], "google_service_account.build")
    act_as = locals_(tf)["job_act_as"]
    assert "local.job_service_accounts" in act_as
    accounts = locals_(tf)["job_service_accounts"]
    assert "var.job_service_accounts" in accounts
    assert "local.default_job_service_account" in accounts
    job = resource(tf, "google_service_account", "job")
    assert locals_(tf)["default_job_service_account"].startswith(f"{job['account_id']}@"), (
        "the default job account's spelled-out email must match the account created"
    )


def test_project_level_grants_are_only_firestore_and_the_custom_roles(tf: dict[str, Any]) -> None:
    grants = resources(tf, "google_project_iam_member")
    assert set(grants) == {
        "dispatch",
        "sweep",
        "notify",
        "state_viewer",
        "dashboard_state",
        "dashboard_logs",
        "build_log_writer",
        "sweep_quotas",
    }
    # The notify function: Firestore, and reading a failed job's log lines; no Vertex role.
    notify = grants.pop("notify")
    assert notify["for_each"] == "${local.notify_project_roles}"
    assert notify["member"] == "${google_service_account.notify.member}"
    assert _role_values(tf, notify) == {"roles/datastore.user", "roles/logging.viewer"}
    # Publishers' read-only state (tests/terraform/test_queues.py checks its condition).
    assert grants.pop("state_viewer")["role"] == "roles/datastore.viewer"
    # The opt-in dashboard: read-only state and logs (test_the_dashboard_is_opt_in_and_private).
    assert grants.pop("dashboard_state")["role"] == "roles/datastore.viewer"
    assert grants.pop("dashboard_logs")["role"] == "roles/logging.viewer"
    # The image build account writes its build logs, nothing else at the project level.
    log_writer = grants.pop("build_log_writer")
    assert log_writer["role"] == "roles/logging.logWriter"
    assert refers_to(log_writer["member"], "google_service_account.build")
    # Opt-in (read_cohort_quotas): the sweep's one Cloud Quotas permission, nobody else's.
    quotas = grants.pop("sweep_quotas")
    assert quotas["count"] == "${var.read_cohort_quotas ? 1 : 0}"
    assert refers_to(quotas["role"], "google_project_iam_custom_role.sweep_quotas")
    assert refers_to(quotas["member"], "google_service_account.sweep")
    for name, body in grants.items():
        assert body["for_each"] == f"${{local.{name}_project_roles}}"
        assert body["member"] == f"${{google_service_account.{name}.member}}"
        assert _role_values(tf, body) == {
            f"${{google_project_iam_custom_role.{name}.name}}",
            "roles/datastore.user",
        }


# -- Pub/Sub ----------------------------------------------------------------------------------


def test_the_dead_letter_topic_has_a_subscription(tf: dict[str, Any]) -> None:
    subscriptions = resources(tf, "google_pubsub_subscription")
    readers = [
        name
        for name, body in subscriptions.items()
        if refers_to(body["topic"], "google_pubsub_topic.dead_letter")
    ]
    assert readers, "a dead-letter topic without a subscription loses what it receives"
    for name in readers:
        body = subscriptions[name]
        assert "push_config" not in body  # kept for inspection and replay, not consumed
        assert block(body, "expiration_policy")["ttl"] == ""


def test_the_dispatch_trigger_retries_and_dead_letters(tf: dict[str, Any]) -> None:
    function = resource(tf, "google_cloudfunctions2_function", "dispatch")
    if "event_trigger" in function:  # an Eventarc trigger could not carry a dead-letter policy
        pytest.fail("dispatch has an event_trigger; the module feeds it by a push subscription")
    sub = resource(tf, "google_pubsub_subscription", "dispatch")
    # One resource for every topic (queues' and the shared one): same policy by construction.
    assert sub["for_each"] == "${local.dispatch_topics}"
    assert sub["topic"] == "${each.value.topic}"
    topics = locals_(tf)["dispatch_topics"]
    assert refers_to(topics, "google_pubsub_topic.queue")
    assert refers_to(topics, "google_pubsub_topic.items")
    push = block(sub, "push_config")
    assert refers_to(push["push_endpoint"], "google_cloudfunctions2_function.dispatch")
    assert push["push_endpoint"].endswith("/${each.value.topic}")
    oidc = block(push, "oidc_token")
    assert refers_to(oidc["service_account_email"], "google_service_account.push.email")
    assert refers_to(oidc["audience"], "google_cloudfunctions2_function.dispatch")
    # Retry on failure: a nack is redelivered with exponential backoff ...
    retry = block(sub, "retry_policy")
    assert refers_to(retry["minimum_backoff"], "var.dispatch_retry_backoff_seconds")
    assert refers_to(retry["maximum_backoff"], "var.dispatch_retry_backoff_seconds")
    # ... until the dead-letter policy moves it aside.
    dead = block(sub, "dead_letter_policy")
    assert refers_to(dead["dead_letter_topic"], "google_pubsub_topic.dead_letter")
    assert refers_to(dead["max_delivery_attempts"], "var.dispatch_max_delivery_attempts")
    # For push the ack deadline is the request timeout: it must cover the function's.
    assert refers_to(sub["ack_deadline_seconds"], "var.dispatch_timeout_seconds")
    assert block(sub, "expiration_policy")["ttl"] == ""
    # Only the push account may invoke the dispatcher.
    grants = [
        body
        for _, _, body in _iam_grants(tf)
        if any(refers_to(v, "google_cloudfunctions2_function.dispatch") for v in strings(body))
    ]
    assert len(grants) == 1
    assert grants[0]["role"] == "roles/run.invoker"
    assert refers_to(grants[0]["member"], "google_service_account.push.member")


def test_the_pubsub_service_agent_can_dead_letter(tf: dict[str, Any]) -> None:
    agent = "local.pubsub_service_agent"
    assert "gcp-sa-pubsub.iam.gserviceaccount.com" in locals_(tf)["pubsub_service_agent"]
    publisher = resource(tf, "google_pubsub_topic_iam_member", "dead_letter_publisher")
    assert refers_to(publisher["topic"], "google_pubsub_topic.dead_letter")
    assert publisher["role"] == "roles/pubsub.publisher"
    assert refers_to(publisher["member"], agent)
    subscriber = resource(tf, "google_pubsub_subscription_iam_member", "dispatch_subscriber")
    # On every dispatch subscription, not only one of them.
    assert subscriber["for_each"] == "${local.dispatch_topics}"
    assert subscriber["subscription"] == "${google_pubsub_subscription.dispatch[each.key].name}"
    assert subscriber["role"] == "roles/pubsub.subscriber"
    assert refers_to(subscriber["member"], agent)
    # And on the notify function's subscription, which dead-letters too.
    notify = resource(tf, "google_pubsub_subscription_iam_member", "notify_subscriber")
    assert notify["subscription"] == "${google_pubsub_subscription.notify.name}"
    assert notify["role"] == "roles/pubsub.subscriber"
    assert refers_to(notify["member"], agent)
    dead_letter_subscriptions = {
        name
        for name, body in resources(tf, "google_pubsub_subscription").items()
        if "dead_letter_policy" in body
    }
    assert dead_letter_subscriptions == {"dispatch", "notify"}


def test_both_functions_may_publish_events_and_nothing_else(tf: dict[str, Any]) -> None:
    grants = resources(tf, "google_pubsub_topic_iam_member")
    events = grants["events_publisher"]
    assert refers_to(events["topic"], "google_pubsub_topic.events")
    assert events["role"] == "roles/pubsub.publisher"
    assert refers_to(events["for_each"], "local.function_members")
    # The dispatcher and the sweep; the notify function reads events and publishes none.
    assert set(locals_(tf)["function_members"]) == {"dispatch", "sweep"}
    assert set(grants) == {
        "events_publisher",
        "dead_letter_publisher",
        "queue_publisher",
        "dashboard_publisher",
        "notify_publisher",
    }
    # The notify function on its rules' topics only (test_notify.py).
    assert grants["notify_publisher"]["for_each"] == "${local.notify_topic_names}"
    assert refers_to(grants["notify_publisher"]["member"], "google_service_account.notify")
    # The third is the publishers' grant on their queues' topics (tests/terraform/test_queues.py);
    # the fourth the opt-in dashboard's, for cancel (test_the_dashboard_is_opt_in_and_private).
    assert refers_to(grants["dashboard_publisher"]["member"], "google_service_account.dashboard")
    assert not any(
        refers_to(v, "google_service_account") for v in strings(grants["queue_publisher"])
    )


# -- Scheduler --------------------------------------------------------------------------------


def test_the_scheduler_calls_the_sweep_with_oidc_and_a_long_enough_deadline(
    tf: dict[str, Any],
) -> None:
    job = resource(tf, "google_cloud_scheduler_job", "sweep")
    assert refers_to(job["schedule"], "var.sweep_schedule")
    assert variables(tf)["sweep_schedule"]["default"] == "* * * * *"
    target = block(job, "http_target")
    assert refers_to(target["uri"], "google_cloudfunctions2_function.sweep")
    oidc = block(target, "oidc_token")
    assert refers_to(oidc["service_account_email"], "google_service_account.scheduler.email")
    assert refers_to(oidc["audience"], "google_cloudfunctions2_function.sweep")
    # attempt_deadline >= the sweep's timeout: here it is that timeout.
    assert job["attempt_deadline"] == "${var.sweep_timeout_seconds}s"
    service = block(resource(tf, "google_cloudfunctions2_function", "sweep"), "service_config")
    assert service["timeout_seconds"] == "${var.sweep_timeout_seconds}"
    # And the variable cannot exceed Scheduler's 30-minute maximum.
    condition = block(variables(tf)["sweep_timeout_seconds"], "validation")["condition"]
    assert "var.sweep_timeout_seconds <= 1800" in condition


# -- APIs, storage, Firestore -----------------------------------------------------------------


def test_the_required_apis_are_enabled(tf: dict[str, Any]) -> None:
    apis = set(_set_literal(locals_(tf)["required_apis"]))
    assert {
        "cloudfunctions.googleapis.com",
        "run.googleapis.com",
        "eventarc.googleapis.com",
        "pubsub.googleapis.com",
        "cloudscheduler.googleapis.com",
        "firestore.googleapis.com",
        "aiplatform.googleapis.com",
        "cloudbuild.googleapis.com",
        "artifactregistry.googleapis.com",
        "iam.googleapis.com",
    } <= apis


def test_the_source_bucket_is_private_and_versioned(tf: dict[str, Any]) -> None:
    bucket = resource(tf, "google_storage_bucket", "sources")
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert block(bucket, "versioning")["enabled"] is True


def test_firestore_indexes_come_from_the_repository_declaration(tf: dict[str, Any]) -> None:
    text = (MODULE / "firestore.tf").read_text()
    assert 'jsondecode(file("${path.module}/../firestore.indexes.json"))' in text
    declaration = json.loads(INDEXES.read_text())
    # Every key the declaration uses is one the module translates.
    for index in declaration["indexes"]:
        assert set(index) <= {"collectionGroup", "queryScope", "fields"}
        for field in index["fields"]:
            assert set(field) <= {"fieldPath", "order", "arrayConfig"}
    for override in declaration["fieldOverrides"]:
        assert set(override) <= {"collectionGroup", "fieldPath", "indexes"}
        for index in override["indexes"]:
            assert set(index) <= {"queryScope", "order", "arrayConfig"}
    index = resource(tf, "google_firestore_index", "this")
    assert refers_to(index["for_each"], "local.firestore_indexes")
    field = resource(tf, "google_firestore_field", "this")
    assert refers_to(field["for_each"], "local.firestore_field_overrides")
    # No TTL policy: the data model has no expiry field to point one at.
    assert "ttl_config" not in field


def test_the_firestore_database_is_optional_and_native(tf: dict[str, Any]) -> None:
    database = resource(tf, "google_firestore_database", "this")
    assert database["type"] == "FIRESTORE_NATIVE"
    assert refers_to(database["count"], "var.create_firestore_database")


# -- example ----------------------------------------------------------------------------------


def test_the_example_calls_the_module_with_its_tfvars() -> None:
    example = parse_dir(EXAMPLE)
    modules = {name: body for entry in example["module"] for name, body in entry.items()}
    assert modules["launchq"]["source"] == "../.."
    tfvars = hcl2.loads(
        (EXAMPLE / "terraform.tfvars.example").read_text(), serialization_options=_OPTIONS
    )
    assert set(tfvars) <= set(variables(example))
    assert "project_id" in tfvars


# -- checkov ----------------------------------------------------------------------------------


def _checkov() -> Path:
    """checkov in its own venv next to the project's (created once, ~35 s, ~270 MB)."""
    override = os.environ.get("LAUNCHQ_CHECKOV")
    if override:
        return Path(override)
    home = Path(sys.prefix) / "tools" / "checkov"
    exe = home / "bin" / "checkov"
    stamp = home / f".installed-{CHECKOV_VERSION}"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(home)], check=True)
        subprocess.run(
            [
                str(home / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                f"checkov=={CHECKOV_VERSION}",
            ],
            check=True,
        )
        stamp.touch()
    return exe


def test_checkov_passes_with_only_reviewed_skips() -> None:
    result = subprocess.run(
        [
            str(_checkov()),
            "-d",
            "terraform",
            "--config-file",
            "terraform/.checkov.yaml",
            "--output",
            "json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.stdout.strip(), f"checkov printed nothing:\n{result.stderr[-3000:]}"
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed, skipped = [], []
    for part in reports:
        failed += part["results"]["failed_checks"]
        skipped += part["results"]["skipped_checks"]
    assert not failed, "checkov failures:\n" + "\n".join(
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}" for c in failed
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for check in skipped:
        reason = (check.get("check_result") or {}).get("suppress_comment") or ""
        where = f"{check['check_id']} on {check['resource']}"
        assert len(reason.strip()) >= 20, f"skip of {where} gives no reason"
        resource_id = check["resource"].split("module.launchq.")[-1]
        assert resource_id in REVIEWED_SKIPS.get(check["check_id"], set()), (
            f"unreviewed skip: {where}"
        )


# -- packaging --------------------------------------------------------------------------------

DEV_TOOLS = {"pytest", "pytest-timeout", "hypothesis", "ruff", "mypy", "python-hcl2", "checkov"}
# What only the CLI or the local stack needs (and what aiplatform drags in): never in an archive.
CLI_ONLY = {
    "rich",
    "pyyaml",
    "google-cloud-pubsub",
    "google-cloud-aiplatform",
    "google-cloud-bigquery",
    "google-cloud-storage",
    "google-cloud-resource-manager",
    "shapely",
}


def _files(name: str) -> list[Path]:
    base = ROOT / "functions" / name
    return [p for p in base.rglob("*") if p.is_file() and "__pycache__" not in p.parts]


def _package(out: Path, *names: str) -> dict[str, Path]:
    result = subprocess.run(
        [sys.executable, str(PACKAGER), "--out", str(out), *names],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return {name: out / f"{name}.zip" for name in names}


def _packaged_functions() -> set[str]:
    """The functions `make package` builds: FUNCTIONS in scripts/package_functions.py."""
    tree = ast.parse(PACKAGER.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "FUNCTIONS" for target in node.targets
        ):
            value = ast.literal_eval(node.value)
            return set(value)
    raise AssertionError(f"{PACKAGER} defines no FUNCTIONS")


def test_make_package_builds_what_terraform_uploads(tf: dict[str, Any]) -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^package:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe, "the Makefile has no `package` target"
    assert "scripts/package_functions.py --out build/functions" in recipe.group(1)
    assert "${path.module}/../build/functions" in locals_(tf)["archives_dir"]
    # Every archive the module uploads is one `make package` builds (filesha256 of a missing
    # archive fails the plan).
    uploaded = set(resources(tf, "google_storage_bucket_object"))
    assert uploaded == set(FUNCTION_SIGNATURES)
    missing = uploaded - _packaged_functions()
    assert not missing, (
        f"terraform/ deploys {sorted(missing)} but scripts/package_functions.py does not "
        "build them: add them to its FUNCTIONS"
    )


@pytest.mark.parametrize("name", sorted(FUNCTION_SIGNATURES))
def test_packages_are_reproducible_and_complete(tmp_path: Path, name: str) -> None:
    first = _package(tmp_path / "a", name)[name]
    time.sleep(1.1)  # a timestamp that leaked into the archive would now differ
    second = _package(tmp_path / "b", name)[name]
    if first.read_bytes() != second.read_bytes():
        with zipfile.ZipFile(first) as a, zipfile.ZipFile(second) as b:
            changed = [n for n in a.namelist() if n not in b.namelist() or a.read(n) != b.read(n)]
        pytest.fail(
            f"{name}.zip differs between two builds; entries {changed} (a file edited "
            "between the builds shows up here too)"
        )

    with zipfile.ZipFile(first) as archive:
        names = archive.namelist()
        assert names == sorted(names)
        assert "main.py" in names
        assert archive.read("main.py") == (ROOT / "functions" / name / "main.py").read_bytes()
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        # Only the runtime core: the function's own files and `launchq/`, nothing of the CLI
        # (`launchq_cli`) or the local stack (`launchq_local`).
        own = {p.relative_to(ROOT / "functions" / name).as_posix() for p in _files(name)}
        assert {n.split("/")[0] for n in names if n not in own} == {"launchq", "requirements.txt"}
        shipped = {n.removeprefix("launchq/") for n in names if n.startswith("launchq/")}
        source = ROOT / "shared" / "launchq"
        expected = {
            p.relative_to(source).as_posix()
            for p in source.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        }
        assert shipped == expected
        requirements = archive.read("requirements.txt").decode().splitlines()
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}

    pins = dict(line.split("==") for line in requirements if line and not line.startswith("#"))
    assert all(line.startswith("#") or "==" in line for line in requirements if line)
    assert "launchq" not in pins  # its source is in the archive
    assert not DEV_TOOLS & set(pins), f"dev tools in requirements: {DEV_TOOLS & set(pins)}"
    cli_only = CLI_ONLY & set(pins)
    assert not cli_only, f"CLI / local-stack dependencies in requirements: {cli_only}"
    for dist, version in pins.items():
        assert metadata.version(dist) == version
    assert {"functions-framework", "google-cloud-firestore", "requests"} <= set(pins)


# -- the packaged dispatcher, served from a fresh venv (integration) --------------------------


@pytest.mark.integration
def test_the_packaged_dispatcher_handles_a_push_in_a_fresh_venv(
    tmp_path: Path,
    emulator_stack: Any,
    gcp_project: str,
    firestore_db: Any,
    pubsub_publisher: Any,
    pubsub_subscriber: Any,
    unique_id: Callable[[str], str],
) -> None:
    archive = _package(tmp_path / "build", "dispatch")["dispatch"]
    src = tmp_path / "src"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(src)

    # A venv with nothing but the archive's requirements.txt: no launchq installed, no access
    # to the project's site-packages. `launchq` can only come from the unpacked archive.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(src / "requirements.txt"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    probe = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print(u.find_spec('launchq'))"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "None", "launchq leaked into the fresh venv"

    events_topic = pubsub_publisher.topic_path(gcp_project, unique_id("events"))
    pubsub_publisher.create_topic(name=events_topic)
    events_sub = pubsub_subscriber.subscription_path(gcp_project, unique_id("events-sub"))
    pubsub_subscriber.create_subscription(name=events_sub, topic=events_topic)

    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "VIRTUAL_ENV"} and not key.startswith("LAUNCHQ_")
    }
    env.update(
        {
            "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            "LAUNCHQ_PROJECT": gcp_project,
            "LAUNCHQ_EVENTS_TOPIC": events_topic.rsplit("/", 1)[-1],
            "FIRESTORE_EMULATOR_HOST": os.environ["FIRESTORE_EMULATOR_HOST"],
            "PUBSUB_EMULATOR_HOST": os.environ["PUBSUB_EMULATOR_HOST"],
        }
    )
    port = free_port()
    log_path = tmp_path / "functions-framework.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                str(venv / "bin" / "functions-framework"),
                "--source=main.py",
                "--target=dispatch",
                "--signature-type=cloudevent",
                "--host=127.0.0.1",
                f"--port={port}",
            ],
            cwd=src,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(url), 60, "functions-framework to listen")
        # A raw Pub/Sub push envelope, as the module's push subscription sends it, whose body
        # is not JSON: the dispatcher must ack it (2xx) and record the rejection.
        message_id = unique_id("m")
        response = requests.post(
            f"{url}/projects/{gcp_project}/topics/launchq-items",
            json={
                "subscription": f"projects/{gcp_project}/subscriptions/launchq-dispatch",
                "message": {
                    "data": base64.b64encode(b"this is not json").decode(),
                    "messageId": message_id,
                    "publishTime": "2026-01-01T00:00:00Z",
                },
            },
            timeout=60,
        )
        assert response.status_code == 200, response.text

        snap = firestore_db.collection("items").document(f"_unroutable~_message-{message_id}")
        doc = snap.get().to_dict() or {}
        assert doc.get("state") == "REJECTED", doc

        pulled = pubsub_subscriber.pull(
            subscription=events_sub, max_messages=10, timeout=30
        ).received_messages
        states = [json.loads(m.message.data) for m in pulled]
        assert any("REJECTED" in json.dumps(event) for event in states), states
    finally:
        proc.terminate()
        proc.wait(10)
        print(log_path.read_text()[-4000:])


# -- the dashboard ----------------------------------------------------------------------------


def test_the_dashboard_is_opt_in_and_private(tf: dict[str, Any]) -> None:
    variable = next(v["dashboard"] for v in tf["variable"] if "dashboard" in v)
    assert variable["default"] == {"enabled": False, "image": "", "members": []}
    for rtype in ("google_service_account", "google_cloud_run_v2_service"):
        assert resource(tf, rtype, "dashboard")["count"] == "${local.dashboard_enabled ? 1 : 0}"
    state = resource(tf, "google_project_iam_member", "dashboard_state")
    assert state["role"] == "roles/datastore.viewer"  # read-only: cancel publishes, never writes
    assert "var.firestore_database" in block(state, "condition")["expression"]
    for name in ("dashboard_state", "dashboard_logs"):
        grant = resource(tf, "google_project_iam_member", name)
        assert grant["count"] == "${local.dashboard_enabled ? 1 : 0}"
        assert refers_to(grant["member"], "google_service_account.dashboard")
    publisher = resource(tf, "google_pubsub_topic_iam_member", "dashboard_publisher")
    assert publisher["role"] == "roles/pubsub.publisher"
    assert publisher["for_each"] == "${local.dashboard_topics}"
    invoker = resource(tf, "google_cloud_run_v2_service_iam_member", "dashboard_invoker")
    assert invoker["role"] == "roles/run.invoker"
    assert "var.dashboard.members" in invoker["for_each"]
    assert refers_to(invoker["name"], "google_cloud_run_v2_service.dashboard")
    # Every other grant naming the dashboard's service is this one: nobody else may invoke it.
    on_service = [
        name
        for rtype, name, body in _iam_grants(tf)
        if any(refers_to(v, "google_cloud_run_v2_service.dashboard") for v in strings(body))
    ]
    assert on_service == ["dashboard_invoker"]
    service = resource(tf, "google_cloud_run_v2_service", "dashboard")
    container = block(block(service, "template"), "containers")
    assert container["command"][:2] == ["launchq", "ui"]
    assert refers_to(
        block(service, "template")["service_account"], "google_service_account.dashboard"
    )


def test_image_builds_grant_on_the_build_repository_and_account_only(tf: dict[str, Any]) -> None:
    """Images built from source: the build account writes the repository; the functions read
    its tags there and may act as that one account."""
    for name in ("build_writer", "tag_reader"):
        grant = resource(tf, "google_artifact_registry_repository_iam_member", name)
        assert refers_to(grant["repository"], "local.image_build_repository_name")
    writer = resource(tf, "google_artifact_registry_repository_iam_member", "build_writer")
    assert writer["role"] == "roles/artifactregistry.writer"
    assert refers_to(writer["member"], "google_service_account.build")
    reader = resource(tf, "google_artifact_registry_repository_iam_member", "tag_reader")
    assert refers_to(reader["role"], "google_project_iam_custom_role.tag_reader.name")
    assert refers_to(reader["for_each"], "local.image_build_callers")
    repository = resource(tf, "google_artifact_registry_repository", "images")
    assert repository["format"] == "DOCKER"
    assert block(repository, "docker_config")["immutable_tags"] is True
    assert refers_to(locals_(tf)["launchq_environment"]["LAUNCHQ_BUILD_REPOSITORY"],
                     "local.image_build_repository")  # fmt: skip
