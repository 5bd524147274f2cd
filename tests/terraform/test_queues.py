"""Who may launch onto which queue: the module's per-queue topics, subscriptions and grants.

Structural checks on the parsed configuration (python-hcl2, as in test_module.py), plus the one
part that can run for real offline: the `queues` variable (its validations) and the locals that
expand it into grants only read variables, so they are copied into a provider-free
configuration and evaluated by the real `terraform` binary (`plan` for the validations,
`console` for the values). No provider is needed for that, so nothing is downloaded; init,
plan and console each take well under a second here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from launchq.spec.fields import QUEUE_NAME_PATTERN
from launchq.spec.notify import TOPIC_PATTERN
from tests.terraform.test_module import (
    EXAMPLE,
    MODULE,
    ROOT,
    _iam_grants,
    block,
    locals_,
    parse_dir,
    refers_to,
    resource,
    resources,
    strings,
    variables,
)

TOPIC_PREFIX = "launchq-q-"
# Pub/Sub's resource-name rule for topics and subscriptions, written out independently of the
# module: 3-255 characters, a letter first, then letters, digits and - _ . ~ + %, and never
# starting with "goog".
PUBSUB_NAME = re.compile(r"[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}")


def pubsub_name_ok(name: str) -> bool:
    return PUBSUB_NAME.fullmatch(name) is not None and not name.lower().startswith("goog")


@pytest.fixture(scope="module")
def tf() -> dict[str, Any]:
    return parse_dir(MODULE)


# -- the naming rule --------------------------------------------------------------------------


@given(st.from_regex(QUEUE_NAME_PATTERN, fullmatch=True))
def test_every_queue_name_launchq_allows_forms_a_valid_topic_name(name: str) -> None:
    assert pubsub_name_ok(TOPIC_PREFIX + name), TOPIC_PREFIX + name


def test_the_longest_and_oddest_queue_names_still_form_topic_names() -> None:
    # The edges the property test may not reach: the maximum length and every allowed symbol.
    for name in ("a" * 100, "9" * 100, "0", "A._-z", "goog", "GOOG-queue"):
        assert re.fullmatch(QUEUE_NAME_PATTERN, name)
        assert pubsub_name_ok(TOPIC_PREFIX + name)
    assert len(TOPIC_PREFIX + "a" * 100) == 110  # far below 255


def test_the_module_uses_launchqs_queue_name_rule_and_topic_rule(tf: dict[str, Any]) -> None:
    conditions = [v["condition"] for v in variables(tf)["queues"]["validation"]]
    # The very pattern the Python side validates queue names with ...
    assert any(QUEUE_NAME_PATTERN in c for c in conditions), (
        f"no validation of var.queues uses QUEUE_NAME_PATTERN {QUEUE_NAME_PATTERN!r}"
    )
    # ... and the Pub/Sub rule applied to the topic name built by the fixed prefix.
    topic_rule = [c for c in conditions if f'"{TOPIC_PREFIX}${{name}}"' in c]
    assert topic_rule, "no validation checks launchq-q-<queue> against Pub/Sub's topic rule"
    assert '"goog"' in topic_rule[0]
    assert "{2,254}" in topic_rule[0]
    assert locals_(tf)["queue_topic_prefix"] == TOPIC_PREFIX


# -- topics and subscriptions -----------------------------------------------------------------


def test_each_queue_gets_its_own_topic(tf: dict[str, Any]) -> None:
    topic = resource(tf, "google_pubsub_topic", "queue")
    assert topic["for_each"] == "${var.queues}"
    assert topic["name"] == "${local.queue_topic_prefix}${each.key}"


def test_the_shared_topic_is_an_explicit_opt_in(tf: dict[str, Any]) -> None:
    declared = variables(tf)["shared_items_topic"]
    assert declared["type"] in {"bool", "${bool}"}
    assert declared["default"] is False
    items = resource(tf, "google_pubsub_topic", "items")
    assert items["count"] == "${var.shared_items_topic ? 1 : 0}"
    topics = locals_(tf)["dispatch_topics"]
    assert "if var.shared_items_topic" in topics
    # Nobody is granted publisher on it by the module.
    for _, name, body in _iam_grants(tf):
        assert not any(refers_to(v, "google_pubsub_topic.items") for v in strings(body)), name


def test_every_queue_topic_is_pushed_to_the_dispatcher_like_the_single_one(
    tf: dict[str, Any],
) -> None:
    # One subscription resource for every topic: the OIDC identity, retry policy and
    # dead-letter topic cannot differ between queues (test_module.py checks their values).
    # The only other push subscription is the notify function's, on the events topic.
    subscriptions = resources(tf, "google_pubsub_subscription")
    pushing = {name for name, body in subscriptions.items() if "push_config" in body}
    assert pushing == {"dispatch", "notify"}, "every queue's push subscription must be the one"
    assert refers_to(subscriptions["notify"]["topic"], "google_pubsub_topic.events")
    topics = locals_(tf)["dispatch_topics"]
    assert "for queue in keys(var.queues)" in topics
    assert "google_pubsub_topic.queue[queue].id" in topics
    assert '"${var.name_prefix}-dispatch-q-${queue}"' in topics
    # The pre-per-queue subscription keeps its address's object under the shared key.
    assert '"${var.name_prefix}-dispatch"' in topics
    moved = {(m["from"], m["to"]) for m in parse_dir(MODULE).get("moved", [])}
    assert (
        "${google_pubsub_subscription.dispatch}",
        '${google_pubsub_subscription.dispatch["_shared"]}',
    ) in moved


# -- grants -----------------------------------------------------------------------------------


def test_publishers_are_granted_on_their_queues_topic_only(tf: dict[str, Any]) -> None:
    grant = resource(tf, "google_pubsub_topic_iam_member", "queue_publisher")
    assert grant["for_each"] == "${local.queue_publishers}"
    assert grant["topic"] == "${google_pubsub_topic.queue[each.value.queue].name}"
    assert grant["role"] == "roles/pubsub.publisher"
    assert grant["member"] == "${each.value.member}"
    # Never publisher on the project (it would open every queue), in any grant form.
    for rtype, name, body in _iam_grants(tf):
        if body["role"] == "roles/pubsub.publisher":
            assert rtype == "google_pubsub_topic_iam_member", f"{rtype}.{name}"
    for rtype in ("google_project_iam_member", "google_project_iam_binding"):
        for name, body in resources(tf, rtype).items():
            assert "pubsub" not in str(body.get("role")), f"{rtype}.{name}"


def test_publishers_may_read_launchqs_database_only(tf: dict[str, Any]) -> None:
    grant = resource(tf, "google_project_iam_member", "state_viewer")
    assert grant["role"] == "roles/datastore.viewer"
    assert grant["for_each"] == (
        "${var.grant_publishers_state_viewer ? local.state_viewers : toset([])}"
    )
    assert grant["member"] == "${each.value}"
    expression = block(grant, "condition")["expression"]
    assert "resource.name ==" in expression
    assert "databases/${var.firestore_database}" in expression
    assert "projects/${var.project_id}" in expression


def test_the_dead_letter_grant_covers_every_queue_subscription(tf: dict[str, Any]) -> None:
    subscriber = resource(tf, "google_pubsub_subscription_iam_member", "dispatch_subscriber")
    sub = resource(tf, "google_pubsub_subscription", "dispatch")
    assert subscriber["for_each"] == sub["for_each"] == "${local.dispatch_topics}"
    assert subscriber["role"] == "roles/pubsub.subscriber"
    assert refers_to(subscriber["member"], "local.pubsub_service_agent")


def test_act_as_covers_the_queues_job_accounts_and_no_project_grant(tf: dict[str, Any]) -> None:
    assert "var.queues" in locals_(tf)["job_service_accounts"]
    for rtype in ("google_project_iam_member", "google_project_iam_binding"):
        for name, body in resources(tf, rtype).items():
            assert "serviceAccount" not in str(body.get("role")), f"{rtype}.{name}"
            if body.get("role") == "${each.value}":
                source = re.fullmatch(r"\$\{local\.(\w+)\}", body["for_each"])
                assert source
                roles = set(locals_(tf)[source.group(1)].values())
                assert not {r for r in roles if "serviceAccount" in r}, f"{rtype}.{name}"


def test_the_module_outputs_each_queues_topic(tf: dict[str, Any]) -> None:
    outputs = {name: body for entry in tf["output"] for name, body in entry.items()}
    value = outputs["queue_topics"]["value"]
    assert "google_pubsub_topic.queue" in value
    assert outputs["queue_topic"]["value"] == "${one(google_pubsub_topic.items[*].name)}"


# -- the real terraform binary on the variable and the locals that read it --------------------

LOCALS_TO_EVALUATE = (
    "queue_topic_prefix",
    "queue_publishers",
    "state_viewers",
    "default_job_service_account",
    "job_service_accounts",
    "job_act_as",
    "wandb_secret_access",
    "notify_secret_names",
    "notify_topic_names",
)


STAND_IN_IDS = {
    "google_pubsub_topic.queue[queue].id": (
        '"projects/${var.project_id}/topics/${local.queue_topic_prefix}${queue}"'
    ),
    "one(google_pubsub_topic.items[*].id)": '"projects/${var.project_id}/topics/shared-stand-in"',
}


def _local_source(name: str) -> str:
    """`name = <expression>` as written in a locals block of the module (fmt-normalised)."""
    for path in sorted(MODULE.glob("*.tf")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if re.match(rf"^  {name}\s*=", line):
                end = i + 1
                while end < len(lines) and not re.match(r"^(  [A-Za-z_]\w*\s*=|  #|})", lines[end]):
                    end += 1
                return "\n".join(lines[i:end]).rstrip()
    raise AssertionError(f"no local {name} in terraform/")


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's variables and the queue locals, with no resource and no provider."""
    terraform = shutil.which("terraform")
    assert terraform, "terraform is not on PATH (any 1.5+ binary; no provider is needed)"
    directory = tmp_path_factory.mktemp("queues-harness")
    (directory / "variables.tf").write_text((MODULE / "variables.tf").read_text())
    body = "\n".join(_local_source(name) for name in LOCALS_TO_EVALUATE)
    # dispatch_topics reads the topics' ids, known only after apply: stand in for them with
    # the ids they will have, and fail if the expression no longer reads them this way.
    topics = _local_source("dispatch_topics")
    for resource_id, stand_in in STAND_IN_IDS.items():
        assert resource_id in topics, f"dispatch_topics no longer reads {resource_id}"
        topics = topics.replace(resource_id, stand_in)
    body += "\n" + topics
    (directory / "locals.tf").write_text(f"locals {{\n{body}\n}}\n")
    _terraform(directory, "init", "-input=false", "-backend=false")
    return directory


def _terraform(directory: Path, *args: str, stdin: str | None = None) -> str:
    result = _run(directory, *args, stdin=stdin)
    assert result.returncode == 0, f"terraform {args[0]} failed:\n{result.stderr}"
    return result.stdout


def _run(directory: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "NO_COLOR": "1"}
    return subprocess.run(
        ["terraform", *args],
        cwd=directory,
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )


def _write_vars(directory: Path, queues: dict[str, Any], **extra: Any) -> Path:
    path = directory / "test.tfvars.json"
    path.write_text(json.dumps({"project_id": "my-ml-project", "queues": queues, **extra}))
    return path


def _evaluate(directory: Path, queues: dict[str, Any], expression: str, **extra: Any) -> Any:
    tfvars = _write_vars(directory, queues, **extra)
    out = _terraform(directory, "console", f"-var-file={tfvars}", stdin=f"jsonencode({expression})")
    return json.loads(json.loads(out.strip()))


def _plan_errors(directory: Path, queues: dict[str, Any]) -> str:
    tfvars = _write_vars(directory, queues)
    result = _run(directory, "plan", "-input=false", "-no-color", f"-var-file={tfvars}")
    assert result.returncode != 0, f"plan accepted queues={queues!r}:\n{result.stdout}"
    return " ".join(result.stderr.split())


@pytest.mark.parametrize(
    ("queues", "message"),
    [
        ({"bad/name": {}}, "launchq's queue-name rule"),
        ({"bad/name": {}}, "valid Pub/Sub topic name launchq-q-<queue>"),
        ({"-leading-dash": {}}, "launchq's queue-name rule"),
        ({"a" * 101: {}}, "launchq's queue-name rule"),
        ({"two words": {}}, "launchq's queue-name rule"),
        ({"caf\u00e9": {}}, "valid Pub/Sub topic name"),
        ({"vision": {"publishers": ["allUsers"]}}, "publishers must be IAM members"),
        ({"vision": {"publishers": ["allAuthenticatedUsers"]}}, "publishers must be IAM"),
        ({"vision": {"publishers": ["domain:example.com"]}}, "publishers must be IAM members"),
        ({"vision": {"publishers": ["alice@example.com"]}}, "publishers must be IAM members"),
        (
            {"vision": {"job_service_accounts": ["serviceAccount:t@p.iam.gserviceaccount.com"]}},
            "must be service account emails",
        ),
        ({"vision": {"job_service_accounts": ["alice@gmail.com"]}}, "service account emails"),
        (
            {
                "vision": {
                    "job_service_accounts": ["t@p.iam.gserviceaccount.com"],
                    "wandb_api_key_secret": "projects/p/secrets/k/versions/3",
                }
            },
            "no version",
        ),
        ({"vision": {"wandb_api_key_secret": "projects/p/secrets/k"}}, "lists the job_service"),
        ({"vision": {"notify_secrets": ["projects/p/secrets/k/versions/x"]}}, "notify_secrets"),
        ({"vision": {"notify_secrets": ["slack-webhook"]}}, "notify_secrets are secret"),
        ({"vision": {"notify_topics": ["ml-outcomes"]}}, "notify_topics are topic names"),
        ({"vision": {"notify_topics": ["projects/p/topics/ml"]}}, "notify_topics are topic"),
    ],
    ids=[
        "slash",
        "slash-topic-rule",
        "leading-dash",
        "too-long",
        "space",
        "non-ascii",
        "allUsers",
        "allAuthenticatedUsers",
        "domain",
        "no-member-type",
        "job-sa-with-prefix",
        "job-sa-not-a-service-account",
        "wandb-secret-with-version",
        "wandb-secret-without-job-accounts",
        "notify-secret-bad-version",
        "notify-secret-bare-id",
        "notify-topic-bare-id",
        "notify-topic-short-project",
    ],
)
def test_bad_queues_fail_at_plan_time(harness: Path, queues: dict[str, Any], message: str) -> None:
    assert message in _plan_errors(harness, queues)


def test_good_queues_expand_into_one_grant_per_queue_and_member(harness: Path) -> None:
    longest = "q" * 100
    queues = {
        "vision": {
            "publishers": ["group:vision@example.com", "user:alice@example.com"],
            "job_service_accounts": ["vision-trainer@my-ml-project.iam.gserviceaccount.com"],
        },
        "nlp.v2_big-1": {
            "publishers": [
                "group:vision@example.com",
                "serviceAccount:ci@ci.iam.gserviceaccount.com",
            ],
            "job_service_accounts": ["vision-trainer@my-ml-project.iam.gserviceaccount.com"],
        },
        longest: {},
    }
    result = _evaluate(
        harness,
        queues,
        "{publishers = local.queue_publishers, viewers = local.state_viewers, "
        "act_as = local.job_act_as}",
        job_service_accounts=["shared@my-ml-project.iam.gserviceaccount.com"],
    )
    grants = {(g["queue"], g["member"]) for g in result["publishers"].values()}
    assert grants == {
        ("vision", "group:vision@example.com"),
        ("vision", "user:alice@example.com"),
        ("nlp.v2_big-1", "group:vision@example.com"),
        ("nlp.v2_big-1", "serviceAccount:ci@ci.iam.gserviceaccount.com"),
    }
    assert len(result["publishers"]) == 4  # one per (queue, member), none for `longest`
    assert sorted(result["viewers"]) == [
        "group:vision@example.com",
        "serviceAccount:ci@ci.iam.gserviceaccount.com",
        "user:alice@example.com",
    ]
    # Act-as for both functions on exactly: the queues' accounts (once), the module-wide list
    # and the default job account.
    accounts = {
        "vision-trainer@my-ml-project.iam.gserviceaccount.com",
        "shared@my-ml-project.iam.gserviceaccount.com",
        "launchq-job@my-ml-project.iam.gserviceaccount.com",
    }
    assert {(v["function"], v["job"]) for v in result["act_as"].values()} == {
        (function, job) for function in ("dispatch", "sweep") for job in accounts
    }


def test_a_queues_wandb_key_is_readable_by_its_job_accounts_only(harness: Path) -> None:
    queues = {
        "vision": {
            "job_service_accounts": ["vision-trainer@my-ml-project.iam.gserviceaccount.com",
                                     "vision-eval@my-ml-project.iam.gserviceaccount.com"],
            "wandb_api_key_secret": "projects/my-ml-project/secrets/vision-wandb",
        },
        "nlp": {"job_service_accounts": ["nlp@my-ml-project.iam.gserviceaccount.com"]},
    }  # fmt: skip
    result = _evaluate(harness, queues, "local.wandb_secret_access")
    assert {(v["secret"], v["member"]) for v in result.values()} == {
        ("projects/my-ml-project/secrets/vision-wandb",
         "serviceAccount:vision-trainer@my-ml-project.iam.gserviceaccount.com"),
        ("projects/my-ml-project/secrets/vision-wandb",
         "serviceAccount:vision-eval@my-ml-project.iam.gserviceaccount.com"),
    }  # fmt: skip
    assert _evaluate(harness, {}, "local.wandb_secret_access") == {}


def test_the_notify_function_may_read_the_rules_secrets_and_topics_only(harness: Path) -> None:
    queues = {
        "vision": {
            "notify_secrets": [
                "projects/acme-ml/secrets/vision-slack/versions/latest",
                "projects/acme-ml/secrets/pager-url/versions/3",
                "projects/123456789012/secrets/pager-hmac/versions/1",
            ],
            "notify_topics": ["projects/acme-ml/topics/ml-outcomes"],
        },
        "nlp": {
            # The same secret as another version, and as the secret itself: one grant.
            "notify_secrets": [
                "projects/acme-ml/secrets/pager-url/versions/4",
                "projects/acme-ml/secrets/pager-url",
            ],
            "notify_topics": ["projects/audit-project/topics/ml-outcomes"],
        },
        "quiet": {},
    }
    result = _evaluate(
        harness, queues, "{secrets = local.notify_secret_names, topics = local.notify_topic_names}"
    )
    assert sorted(result["secrets"]) == [
        "projects/123456789012/secrets/pager-hmac",
        "projects/acme-ml/secrets/pager-url",
        "projects/acme-ml/secrets/vision-slack",
    ]
    assert sorted(result["topics"]) == [
        "projects/acme-ml/topics/ml-outcomes",
        "projects/audit-project/topics/ml-outcomes",
    ]
    # No queue names any: no grant at all.
    empty = "{secrets = local.notify_secret_names, topics = local.notify_topic_names}"
    assert _evaluate(harness, {"vision": {}}, empty) == {"secrets": [], "topics": []}
    assert _evaluate(harness, {}, empty) == {"secrets": [], "topics": []}


def test_the_notify_variables_use_the_rules_patterns(tf: dict[str, Any]) -> None:
    conditions = [v["condition"] for v in variables(tf)["queues"]["validation"]]
    # A pubsub rule's topic: the very pattern the config validates it with.
    assert any(TOPIC_PATTERN in c and "notify_topics" in c for c in conditions)
    # A rule's secret: launchq.spec.wandb.SECRET_VERSION_PATTERN, with the version optional
    # (the grant is on the secret); test_bad_queues_fail_at_plan_time tries what it refuses.
    assert any("notify_secrets" in c and "/versions/(latest|[0-9]+))?$" in c for c in conditions)


def test_no_queues_means_no_grants(harness: Path) -> None:
    result = _evaluate(
        harness,
        {},
        "{publishers = local.queue_publishers, viewers = local.state_viewers}",
        create_job_service_account=False,
    )
    assert result == {"publishers": {}, "viewers": []}


# -- documentation ----------------------------------------------------------------------------


def test_deploy_docs_name_every_role_the_module_grants_and_every_persona(
    tf: dict[str, Any],
) -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text()
    granted = {role for value in strings(tf) for role in re.findall(r"roles/[A-Za-z.]+", value)}
    assert "roles/datastore.viewer" in granted
    for role in granted:
        assert f"`{role}`" in doc, f"docs/deploy.md does not document {role}"
    for persona in ("Researcher", "Operator", "Platform admin", "How to add a team"):
        assert persona in doc, f"docs/deploy.md does not mention {persona!r}"
    assert "submitted_by" in doc  # the unverified-identity caveat


def test_the_example_passes_queues_through_with_the_modules_type(tf: dict[str, Any]) -> None:
    example = parse_dir(EXAMPLE)
    modules = {name: body for entry in example["module"] for name, body in entry.items()}
    assert modules["launchq"]["queues"] == "${var.queues}"
    assert variables(example)["queues"]["type"] == variables(tf)["queues"]["type"]


@pytest.mark.parametrize("shared", [False, True], ids=["per-queue-only", "with-shared-topic"])
def test_each_queue_topic_and_the_opted_in_shared_one_get_a_subscription(
    harness: Path, shared: bool
) -> None:
    topics = _evaluate(
        harness,
        {"vision": {}, "nlp.v2": {"publishers": ["group:nlp@example.com"]}},
        "local.dispatch_topics",
        shared_items_topic=shared,
    )
    expected = {
        "vision": {
            "topic": "projects/my-ml-project/topics/launchq-q-vision",
            "subscription": "launchq-dispatch-q-vision",
        },
        "nlp.v2": {
            "topic": "projects/my-ml-project/topics/launchq-q-nlp.v2",
            "subscription": "launchq-dispatch-q-nlp.v2",
        },
    }
    if shared:
        expected["_shared"] = {
            "topic": "projects/my-ml-project/topics/shared-stand-in",
            "subscription": "launchq-dispatch",
        }
    assert topics == expected
    for value in topics.values():
        assert pubsub_name_ok(value["subscription"])
