"""The notify function in the module: its trigger on the events topic and its grants.

Structural checks on the parsed configuration (python-hcl2, as in test_module.py). Which
secrets and topics the grants cover, evaluated from the `queues` variable by the real
`terraform` binary, is in test_queues.py (test_the_notify_function_may_read_the_rules_...);
that the function's entry point exists and its archive is the packaged one, in test_module.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from launchq.model.notices import MAX_ATTEMPTS
from tests.terraform.test_module import (
    MODULE,
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


@pytest.fixture(scope="module")
def tf() -> dict[str, Any]:
    return parse_dir(MODULE)


def test_the_notify_function_is_deployed_like_the_dispatcher(tf: dict[str, Any]) -> None:
    function = resource(tf, "google_cloudfunctions2_function", "notify")
    assert "event_trigger" not in function  # fed by the push subscription below
    build = block(function, "build_config")
    assert build["entry_point"] == "notify"
    source = block(block(build, "source"), "storage_source")
    assert refers_to(source["object"], "google_storage_bucket_object.notify")
    service = block(function, "service_config")
    assert service["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    assert service["min_instance_count"] == 0
    assert service["max_instance_request_concurrency"] == 1
    assert refers_to(service["service_account_email"], "google_service_account.notify.email")
    assert function["name"] == "${local.function_names.notify}"


def test_the_notify_trigger_redelivers_with_exponential_backoff(tf: dict[str, Any]) -> None:
    sub = resource(tf, "google_pubsub_subscription", "notify")
    assert refers_to(sub["topic"], "google_pubsub_topic.events")
    push = block(sub, "push_config")
    assert refers_to(push["push_endpoint"], "google_cloudfunctions2_function.notify")
    oidc = block(push, "oidc_token")
    assert refers_to(oidc["service_account_email"], "google_service_account.push.email")
    assert refers_to(oidc["audience"], "google_cloudfunctions2_function.notify")
    # A receiver that failed is a 500: Pub/Sub's redelivery, 10 s doubling to 600 s, is the
    # notification's retry (launchq.model.notices counts on that range).
    retry = block(sub, "retry_policy")
    assert (retry["minimum_backoff"], retry["maximum_backoff"]) == ("10s", "600s")
    # For push, the ack deadline is the request timeout.
    assert sub["ack_deadline_seconds"] == "${var.notify_timeout_seconds}"
    assert block(sub, "expiration_policy")["ttl"] == ""


def test_only_what_the_function_cannot_handle_is_dead_lettered(tf: dict[str, Any]) -> None:
    """The code gives a notification up after MAX_ATTEMPTS and acknowledges the event: the
    subscription must not dead-letter before that, or the item would never say UNDELIVERED."""
    sub = resource(tf, "google_pubsub_subscription", "notify")
    dead = block(sub, "dead_letter_policy")
    assert refers_to(dead["dead_letter_topic"], "google_pubsub_topic.dead_letter")
    assert dead["max_delivery_attempts"] == "${var.notify_max_delivery_attempts}"
    declared = variables(tf)["notify_max_delivery_attempts"]
    assert declared["default"] > MAX_ATTEMPTS
    condition = block(declared, "validation")["condition"]
    assert f"var.notify_max_delivery_attempts > {MAX_ATTEMPTS}" in condition


def test_only_the_push_account_may_invoke_the_notify_function(tf: dict[str, Any]) -> None:
    grants = [
        (name, body)
        for _, name, body in _iam_grants(tf)
        if any(refers_to(v, "google_cloudfunctions2_function.notify") for v in strings(body))
    ]
    assert [name for name, _ in grants] == ["notify_invoker"]
    [(_, invoker)] = grants
    assert invoker["role"] == "roles/run.invoker"
    assert refers_to(invoker["member"], "google_service_account.push.member")


def test_the_notify_account_holds_only_its_grants(tf: dict[str, Any]) -> None:
    holding = {
        (rtype, name)
        for rtype, name, body in _iam_grants(tf)
        if any(refers_to(v, "google_service_account.notify") for v in strings(body))
    }
    assert holding == {
        ("google_project_iam_member", "notify"),  # datastore.user, logging.viewer
        ("google_secret_manager_secret_iam_member", "notify_secrets"),
        ("google_pubsub_topic_iam_member", "notify_publisher"),
    }
    secrets = resource(tf, "google_secret_manager_secret_iam_member", "notify_secrets")
    assert secrets["for_each"] == "${local.notify_secret_names}"
    assert secrets["role"] == "roles/secretmanager.secretAccessor"
    assert secrets["member"] == "${google_service_account.notify.member}"
    assert secrets["project"] == '${split("/", each.value)[1]}'
    assert secrets["secret_id"] == '${split("/", each.value)[3]}'
    topics = resource(tf, "google_pubsub_topic_iam_member", "notify_publisher")
    assert topics["for_each"] == "${local.notify_topic_names}"
    assert topics["role"] == "roles/pubsub.publisher"
    assert topics["member"] == "${google_service_account.notify.member}"
    assert topics["topic"] == '${split("/", each.value)[3]}'
    # Both sets come from the queues alone: nothing when no queue lists any.
    for name in ("notify_secret_names", "notify_topic_names"):
        assert refers_to(locals_(tf)[name], "var.queues")
    # Nobody else reads a rule's secrets: the W&B grant is the only other secret grant.
    assert set(resources(tf, "google_secret_manager_secret_iam_member")) == {
        "wandb_key",
        "notify_secrets",
    }


def test_the_notify_account_is_its_own(tf: dict[str, Any]) -> None:
    account = resource(tf, "google_service_account", "notify")
    assert account["account_id"] == "${var.name_prefix}-notify"
    # 16 characters of prefix at most, plus "-notify": within the 30 of an account id.
    assert len("x" * 16 + "-notify") <= 30


def test_the_notify_subscription_takes_only_outcomes_and_waiting_notices(
    tf: dict[str, Any],
) -> None:
    """Its filter names exactly the `state` attributes of the events the function acts on:
    the outcomes a rule may ask for and WAITING, as `launchq.gcp.events` sets them."""
    from launchq.gcp.events import (
        EVENT_TYPE,
        WAITING_EVENT_TYPE,
        item_event,
        state_changed_event,
    )
    from launchq.gcp.events import _message as pubsub_message
    from launchq.spec.notify import OUTCOMES, WAITING

    sub = resource(tf, "google_pubsub_subscription", "notify")
    assert "local.notify_states" in str(sub["filter"])
    assert "attributes.state = " in str(sub["filter"])
    assert set(locals_(tf)["notify_states"]) == {*OUTCOMES, WAITING}
    failed = state_changed_event(
        queue="q", item_id="a", from_state="RUNNING", to_state="FAILED", cause="x"
    )
    waiting = item_event(WAITING_EVENT_TYPE, queue="q", item_id="a", data={"waited_s": 900})
    queued = state_changed_event(
        queue="q", item_id="a", from_state=None, to_state="QUEUED", cause="x"
    )
    assert failed["type"] == EVENT_TYPE
    states = {e["type"] + e["data"].get("to", ""): pubsub_message(e)["attributes"]["state"]
              for e in (failed, waiting, queued)}  # fmt: skip
    assert states[EVENT_TYPE + "FAILED"] in locals_(tf)["notify_states"]
    assert states[WAITING_EVENT_TYPE] == WAITING
    assert states[EVENT_TYPE + "QUEUED"] not in locals_(tf)["notify_states"]
