"""The CLI against the real emulators: Click's CliRunner, `--json` shapes, exit codes, errors.

The dispatcher is not running here: `enqueue` is checked by pulling what it published from a
subscription on the emulator, and items are put into Firestore through the real `Dispatcher`
(as the dispatch function would) so that `ls`/`status`/`queue pending` read what production
writes. The full loop (push, functions, sweep) is covered by test_cli_stack.py and the demo.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from google.cloud import firestore, pubsub_v1

from launchq_cli import main
from launchq_local.standin import StandinServer
from tests.fixtures.dispatch import Harness, message

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TRAINER = EXAMPLES / "queues" / "trainer.yaml"
DEFAULT = EXAMPLES / "queues" / "default.yaml"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def run_json(*args: str) -> Any:
    code, out, err = run(*args, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def cli_env(
    monkeypatch: pytest.MonkeyPatch,
    firestore_db: firestore.Client,
    gcp_project: str,
    standin: StandinServer,
    pubsub_publisher: pubsub_v1.PublisherClient,
    pubsub_subscriber: pubsub_v1.SubscriberClient,
    unique_id: Callable[[str], str],
) -> Iterator[str]:
    """A queue topic with a pull subscription (what `enqueue` published); returns its path."""
    topic_id = unique_id("items")
    standin.admin.set_delays(queued=None)  # jobs stay put: no test races the scripted lifecycle
    monkeypatch.setenv("LAUNCHQ_PROJECT", gcp_project)
    monkeypatch.setenv("LAUNCHQ_QUEUE_TOPIC", topic_id)
    monkeypatch.setenv("LAUNCHQ_EVENTS_TOPIC", "")
    monkeypatch.setenv("LAUNCHQ_VERTEX_ENDPOINT", standin.url)
    topic = pubsub_publisher.topic_path(gcp_project, topic_id)
    pubsub_publisher.create_topic(name=topic)
    subscription = pubsub_subscriber.subscription_path(gcp_project, unique_id("sub"))
    pubsub_subscriber.create_subscription(name=subscription, topic=topic)
    yield subscription
    pubsub_subscriber.delete_subscription(subscription=subscription)
    pubsub_publisher.delete_topic(topic=topic)


def pulled(subscriber: pubsub_v1.SubscriberClient, subscription: str) -> list[Any]:
    response = subscriber.pull(subscription=subscription, max_messages=10, timeout=10)
    return [m.message for m in response.received_messages]


# -- queue apply / get / ls / pause / resume -------------------------------------------------


def test_queue_apply_get_ls_pause_resume(cli_env: str) -> None:
    code, out, _ = run("queue", "apply", str(TRAINER))
    assert code == 0
    assert out == "queue 'trainer' applied (max_jobs 2)\n"
    applied = run_json("queue", "apply", str(DEFAULT))
    assert applied["name"] == "default"  # from the file's stem: the seed config has no name
    assert applied["max_jobs"] == 1

    detail = run_json("queue", "get", "trainer")
    assert set(detail) == {
        "name", "max_jobs", "running", "waiting", "paused", "priority", "updated_at", "budget",
        "config",
    }  # fmt: skip
    assert detail["budget"] is None
    assert detail["config"]["template_variables"]["epochs"]["type"] == "integer"
    assert (detail["running"], detail["waiting"], detail["paused"]) == (0, 0, False)

    assert [q["name"] for q in run_json("queue", "ls")] == ["default", "trainer"]
    assert run_json("queue", "pause", "trainer")["paused"] is True
    code, out, _ = run("queue", "ls")
    assert code == 0
    assert "trainer" in out
    assert "paused" in out
    code, out, _ = run("queue", "resume", "trainer")
    assert (code, out) == (0, "queue 'trainer' resumed\n")
    assert run_json("queue", "get", "trainer")["paused"] is False


def test_queue_apply_of_an_invalid_file_exits_2_listing_every_error(
    cli_env: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_jobs: 0\nspec: {worker_pool_specs: []}\n")
    code, out, err = run("queue", "apply", str(bad))
    assert code == 2
    assert out == ""
    assert err.startswith("error: invalid queue config (")
    assert "max_jobs: 0 is not allowed" in err
    malformed = tmp_path / "malformed.yaml"
    malformed.write_text("spec: [\n")
    code, _, err = run("queue", "apply", str(malformed))
    assert code == 2
    assert "is not valid YAML/JSON" in err
    assert "Traceback" not in err


def test_unknown_queue_is_one_sentence_with_exit_1_for_get_and_2_for_enqueue(
    cli_env: str,
) -> None:
    run("queue", "apply", str(TRAINER))
    code, _, err = run("queue", "get", "nope")
    assert code == 1
    assert err == "error: no queue named 'nope' (queues: trainer)\n"
    code, _, err = run("enqueue", "-q", "nope", "--image", "img")
    assert code == 2
    assert err == "error: no queue named 'nope' (queues: trainer)\n"
    code, _, err = run("queue", "pause", "nope")
    assert code == 1


def test_mistakes_are_answered_with_the_likely_fix(cli_env: str) -> None:
    run("queue", "apply", str(TRAINER))
    code, _, err = run("enqueue", "-q", "trainr", "--image", "img")
    assert code == 2
    assert err == "error: no queue named 'trainr'; did you mean 'trainer'? (queues: trainer)\n"
    code, _, err = run("ls", "--state", "runing")
    assert code == 2
    assert "unknown state 'runing'; did you mean 'running'? (states: " in err
    # Not applied yet, but this checkout's examples define it: say how to apply it.
    code, _, err = run("enqueue", "-q", "default", "--image", "img")
    assert code == 2
    assert err == (
        "error: no queue named 'default'; `launchq queue apply examples/queues/default.yaml` "
        "defines it (queues: trainer)\n"
    )
    # A required field names the flag that sets it.
    run("queue", "apply", str(DEFAULT))
    code, _, err = run("enqueue", "-q", "default")
    assert code == 2
    assert "  - image_uri: required: the queue uses ${image_uri}" in err
    assert err.rstrip().endswith("; pass --image IMAGE")


# -- enqueue ---------------------------------------------------------------------------------


def test_enqueue_publishes_typed_vars_and_sets_attributes(
    cli_env: str, pubsub_subscriber: pubsub_v1.SubscriberClient
) -> None:
    run("queue", "apply", str(TRAINER))
    code, out, err = run(
        *("enqueue", "-q", "trainer", "--image", "gcr.io/p/t:1", "--item-id", "run-1"),
        *("--set-var", "epochs=7", "--set-var", "learning_rate=0.5", "--priority", "high"),
        *("--env", "WANDB_MODE=offline", "--label", "team=vision", "--args", "--seed 3"),
    )
    assert (code, out) == (0, "run-1\n"), err
    [published] = pulled(pubsub_subscriber, cli_env)
    import getpass

    assert dict(published.attributes) == {
        "queue": "trainer",
        "item_id": "run-1",
        "launchq-submitted-by": getpass.getuser(),  # the publisher's word, unverified
    }
    payload = json.loads(published.data)
    assert payload == {
        "image_uri": "gcr.io/p/t:1",
        "args": ["--seed", "3"],
        "env": {"WANDB_MODE": "offline"},
        "labels": {"team": "vision"},
        "priority": "high",
        "queue": "trainer",
        "item_id": "run-1",
        "template_variables": {"epochs": 7, "learning_rate": 0.5},
    }


def test_enqueue_json_and_a_generated_item_id(
    cli_env: str, pubsub_subscriber: pubsub_v1.SubscriberClient, gcp_project: str
) -> None:
    run("queue", "apply", str(TRAINER))
    result = run_json("enqueue", "--from-file", str(EXAMPLES / "items" / "train.json"))
    assert set(result) == {"item_id", "queue", "message_id", "topic"}
    assert result["queue"] == "trainer"
    assert result["topic"].startswith(f"projects/{gcp_project}/topics/items-")
    [published] = pulled(pubsub_subscriber, cli_env)
    assert published.attributes["item_id"] == result["item_id"]
    assert json.loads(published.data)["item_id"] == result["item_id"]


def test_enqueue_rejects_bad_set_var_and_invalid_items_before_publishing(
    cli_env: str, pubsub_subscriber: pubsub_v1.SubscriberClient, tmp_path: Path
) -> None:
    run("queue", "apply", str(TRAINER))
    base = ("enqueue", "-q", "trainer", "--image", "img")
    code, _, err = run(*base, "--set-var", "gpus=2")
    assert code == 2
    assert err == (
        "error: --set-var gpus: queue 'trainer' declares no template variable 'gpus' "
        "(declared: epochs, learning_rate, machine)\n"
    )
    code, _, err = run(*base, "--set-var", "epochs=many")
    assert (code, err) == (2, "error: --set-var epochs=many: 'epochs' is declared as integer\n")
    code, _, err = run(*base, "--set-var", "epochs=0")
    assert (code, err) == (2, "error: --set-var epochs=0: 0 is below the minimum 1\n")
    code, _, err = run(*base, "--set-var", "novalue")
    assert (code, err) == (2, "error: --set-var 'novalue': expected KEY=VALUE\n")
    code, _, err = run("enqueue", "--from-file", str(EXAMPLES / "items" / "invalid.json"))
    assert code == 2
    assert err.startswith("error: invalid queue item (2 errors):\n")
    assert "env.AIP_MODEL_DIR: reserved" in err
    malformed = tmp_path / "item.json"
    malformed.write_text('{"queue": "trainer",')
    code, _, err = run("enqueue", "--from-file", str(malformed))
    assert code == 2
    assert err.startswith(f"error: {malformed} is not valid JSON: ")
    code, _, err = run("enqueue", "--image", "img")
    assert code == 2
    assert "no queue" in err
    nothing = pubsub_subscriber.pull(subscription=cli_env, max_messages=10, timeout=2)
    assert list(nothing.received_messages) == []


def test_no_check_publishes_an_invalid_item_for_the_dispatcher_to_judge(
    cli_env: str, pubsub_subscriber: pubsub_v1.SubscriberClient
) -> None:
    run("queue", "apply", str(TRAINER))
    code, out, _ = run(
        "enqueue", "--from-file", str(EXAMPLES / "items" / "invalid.json"), "--no-check"
    )
    assert code == 0
    assert len(pulled(pubsub_subscriber, cli_env)) == 1
    assert out.strip()


def test_a_missing_topic_and_a_missing_project_are_one_sentence(
    cli_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run("queue", "apply", str(TRAINER))
    code, _, err = run(
        "enqueue", "-q", "trainer", "--image", "img", "--queue-topic", "no-such-topic"
    )
    assert code == 1
    assert "topic projects/" in err
    assert "does not exist" in err
    monkeypatch.delenv("LAUNCHQ_PROJECT")
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    code, _, err = run("ls")
    assert code == 2
    assert err.startswith("error: no GCP project: set LAUNCHQ_PROJECT")


# -- ls / status / pending, on what the dispatcher records -------------------------------------


def dispatch(harness: Harness, queue: str, item_id: str, **extra: Any) -> None:
    payload = {"queue": queue, "item_id": item_id, "image_uri": "gcr.io/p/t:1", **extra}
    harness.dispatcher().handle(message(payload))


def test_pending_status_and_ls_say_why_an_item_waits_now(
    cli_env: str, firestore_db: firestore.Client, gcp_project: str, standin: StandinServer
) -> None:
    """An item recorded `waiting for a free slot` reads `queue paused` once its queue is paused
    (in every command, tables too), and what it waits for again after the resume."""
    harness = Harness(firestore_db, gcp_project, standin.url)
    run("queue", "apply", str(TRAINER))  # max_jobs 2
    for item_id in ("a", "b", "c"):
        dispatch(harness, "trainer", item_id)

    def reasons() -> tuple[str, str, str]:
        [pending] = run_json("queue", "pending", "trainer")
        [listed] = run_json("ls", "--state", "queued")
        return pending["reason"], run_json("status", "c")["reason"], listed["reason"]

    assert reasons() == ("waiting for a free slot",) * 3
    run("queue", "pause", "trainer")
    assert reasons() == ("queue paused",) * 3
    code, out, _ = run("status", "c")
    assert code == 0
    assert "queue paused" in out
    run("queue", "resume", "trainer")
    assert reasons() == ("waiting for a free slot",) * 3  # a and b still hold both slots


def test_ls_status_and_pending_read_what_the_dispatcher_recorded(
    cli_env: str, firestore_db: firestore.Client, gcp_project: str, standin: StandinServer
) -> None:
    harness = Harness(firestore_db, gcp_project, standin.url)
    run("queue", "apply", str(TRAINER))
    for item_id, priority in (("a", "low"), ("b", "low"), ("c", "low"), ("d", "critical")):
        dispatch(harness, "trainer", item_id, priority=priority)
    dispatch(harness, "trainer", "bad", template_variables={"epochs": 0})

    rows = run_json("ls")
    assert [r["item_id"] for r in rows] == ["bad", "d", "c", "b", "a"]  # newest first
    assert set(rows[0]) == {
        "item_id", "queue", "state", "priority", "enqueued_at", "updated_at", "age_s",
        "time_to_submit_s", "run_time_s", "attempts", "job_name", "job_id", "vertex_state",
        "reason", "error", "display_name", "submitted_by", "priority_name", "ran",
        "region", "placement", "gpu_hours", "cost_usd", "spot_saved_usd", "wandb_url",
        "sweep_of", "children",
    }  # fmt: skip
    states = {r["item_id"]: r["state"] for r in rows}
    assert states == {
        "a": "SUBMITTED", "b": "SUBMITTED", "c": "QUEUED", "d": "QUEUED", "bad": "REJECTED"
    }  # fmt: skip
    assert [r["item_id"] for r in run_json("ls", "--state", "queued")] == ["d", "c"]
    code, _, err = run("ls", "--state", "sleeping")
    assert code == 2
    assert "unknown state 'sleeping'" in err

    pending = run_json("queue", "pending", "trainer")
    assert [(p["position"], p["item_id"], p["priority"]) for p in pending] == [
        (1, "d", 0),
        (2, "c", 3),
    ]
    summary = run_json("queue", "get", "trainer")
    assert (summary["running"], summary["waiting"]) == (2, 2)

    detail = run_json("status", "a")
    assert detail["state"] == "SUBMITTED"
    assert detail["job"]["console_url"].startswith("https://console.cloud.google.com/vertex-ai/")
    assert [h["to"] for h in detail["history"]] == ["QUEUED", "SUBMITTING", "SUBMITTED"]
    assert detail["attempts"] == 1
    rejected = run_json("status", "bad", "--queue", "trainer")
    assert rejected["error"] == "template_variables.epochs: 0 is below the minimum 1"

    # Wide enough for every column (at 120 the job id gives way first: docs/cli.md).
    result = CliRunner().invoke(main, ["ls", "--queue", "trainer"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for header in ("item", "state", "queue", "priority", "age", "duration", "attempts", "job id"):
        assert header in result.stdout
    for header in ("name", "submitter", "ran"):
        assert header in result.stdout
    code, out, _ = run("status", "bad")
    assert code == 0
    assert "REJECTED" in out
    assert "0 is below the minimum 1" in out
    code, _, err = run("status", "nope")
    assert (code, err) == (1, "error: no item 'nope' in any queue\n")


def test_cancel_publishes_a_control_message_the_dispatcher_carries_out(
    cli_env: str,
    pubsub_subscriber: pubsub_v1.SubscriberClient,
    firestore_db: firestore.Client,
    gcp_project: str,
    standin: StandinServer,
) -> None:
    harness = Harness(firestore_db, gcp_project, standin.url)
    run("queue", "apply", str(TRAINER))
    for item_id in ("a", "b", "c"):
        dispatch(harness, "trainer", item_id)
    pulled(pubsub_subscriber, cli_env)  # nothing published yet
    result = run_json("cancel", "c")
    assert result["cancelled"] is True
    assert result["state"] == "QUEUED"  # requested; the dispatcher carries it out
    [control] = pulled(pubsub_subscriber, cli_env)
    assert control.attributes["launchq-action"] == "cancel"
    assert json.loads(control.data) == {"item_id": "c"}
    assert control.message_id == result["message_id"]
    # What the dispatch function does with it (on the shared topic this fixture uses).
    outcome = harness.dispatcher().handle(
        message(json.loads(control.data), **dict(control.attributes))
    )
    assert outcome.outcome == "controlled"
    assert harness.item_data("trainer", "c")["state"] == "CANCELLED"
    # Idempotent: nothing published, exit 0, and the output says it was so already.
    assert run("cancel", "c")[:2] == (0, "c: already CANCELLED (nothing published)\n")
    dispatch(harness, "trainer", "bad", template_variables={"epochs": 0})
    code, _, err = run("cancel", "bad")
    assert (code, err) == (1, "error: bad was not cancelled: it had already ended REJECTED\n")
    code, _, err = run("cancel", "zzz")
    assert (code, err) == (1, "error: no item 'zzz' in any queue\n")


def test_unreachable_emulator_fails_fast_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    from launchq_local.emulators import free_port

    monkeypatch.setenv("LAUNCHQ_PROJECT", "p")
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    code, _, err = run("queue", "ls")
    assert code == 1
    assert "cannot reach the Firestore emulator" in err
    assert "make dev" in err
    code, _, err = run("queue", "ls", "--debug")
    assert code == 1


def test_enqueue_refuses_a_taken_item_id_with_another_payload(
    cli_env: str,
    pubsub_subscriber: pubsub_v1.SubscriberClient,
    firestore_db: firestore.Client,
    gcp_project: str,
    standin: StandinServer,
) -> None:
    """The dispatcher would acknowledge and ignore it (a conflict): the CLI says so up front."""

    def take() -> list[Any]:
        response = pubsub_subscriber.pull(subscription=cli_env, max_messages=10, timeout=10)
        if response.received_messages:
            pubsub_subscriber.acknowledge(
                subscription=cli_env, ack_ids=[m.ack_id for m in response.received_messages]
            )
        return [m.message for m in response.received_messages]

    harness = Harness(firestore_db, gcp_project, standin.url)
    run("queue", "apply", str(TRAINER))
    base = ("enqueue", "-q", "trainer", "--item-id", "taken", "--set-var", "epochs=2")
    assert run(*base, "--image", "gcr.io/p/t:1")[0] == 0
    [published] = take()
    # What the dispatch function does with it: the item is recorded.
    harness.dispatcher().handle(message(json.loads(published.data)))
    # The same payload again is a retry: allowed (the dispatcher treats it as a redelivery).
    assert run(*base, "--image", "gcr.io/p/t:1")[0] == 0
    assert len(take()) == 1
    code, _, err = run(*base, "--image", "gcr.io/p/t:2")
    assert code == 2
    assert "item id 'taken' is already taken in queue 'trainer' by a different payload" in err


def test_enqueue_sends_again_an_item_rejected_before_its_queue_existed(
    cli_env: str,
    pubsub_subscriber: pubsub_v1.SubscriberClient,
    firestore_db: firestore.Client,
    gcp_project: str,
    standin: StandinServer,
) -> None:
    """The rejection stored the hash the CLI computes (one hash, `launchq.spec.item.item_hash`): the
    same item again is a retry, not a reuse of its id by another payload."""
    harness = Harness(firestore_db, gcp_project, standin.url)
    run("queue", "apply", str(TRAINER))
    base = ("enqueue", "-q", "trainer", "--item-id", "early", "--set-var", "epochs=2")
    assert run(*base, "--image", "gcr.io/p/t:1")[0] == 0
    [published] = pulled(pubsub_subscriber, cli_env)
    harness.store.queue_ref("trainer").delete()  # delivered while the queue does not exist
    harness.dispatcher().handle(message(json.loads(published.data)))
    assert harness.item_data("trainer", "early")["error"]["reason"] == "unknown_queue"
    run("queue", "apply", str(TRAINER))
    code, _, err = run(*base, "--image", "gcr.io/p/t:1")
    assert code == 0, err
    assert run(*base, "--image", "gcr.io/p/t:2")[0] == 2  # another payload is still refused


def test_researcher_commands_never_write_state_nor_call_vertex(
    cli_env: str,
    pubsub_subscriber: pubsub_v1.SubscriberClient,
    firestore_db: firestore.Client,
    gcp_project: str,
    standin: StandinServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A researcher has roles/datastore.viewer and publisher on their queues' topics: every
    command they use must work with that alone. Every Firestore write path and every Vertex
    call is made to fail, and the commands must still succeed."""
    from google.cloud.firestore_v1 import batch, document, transaction

    from launchq.gcp.vertex import VertexClient

    harness = Harness(firestore_db, gcp_project, standin.url)
    run("queue", "apply", str(TRAINER))  # the platform admin's part
    dispatch(harness, "trainer", "waiting")
    run("queue", "apply", str(DEFAULT))
    cohort = tmp_path / "shared.yaml"  # the trainer queue in a cohort: pending reads it too
    cohort.write_text(
        "project: launchq-demo\nregion: us-central1\n"
        "quotas: {custom_model_training_nvidia_l4_gpus: 4}\nmembers: [{queue: trainer}]\n"
        "budget: {gpu_hours: 10, usd: 100}\n"
    )
    assert run("cohort", "apply", str(cohort))[0] == 0
    budgeted = tmp_path / "budgeted.yaml"  # a queue with a budget: queue ls reads its ledger
    budgeted.write_text(DEFAULT.read_text() + "\nbudget: {gpu_hours: 5}\n")
    assert run("queue", "apply", str(budgeted))[0] == 0
    rejected = {"queue": "default", "item_id": "ended", "image_uri": "i", "env": {"AIP_X": "1"}}
    harness.dispatcher().handle(message(rejected))

    writes: list[str] = []

    def forbidden(name: str) -> Any:
        def call(*_args: Any, **_kwargs: Any) -> Any:
            writes.append(name)
            raise AssertionError(f"a researcher command called {name}")

        return call

    for cls, names in (
        (document.DocumentReference, ("create", "set", "update", "delete")),
        (batch.WriteBatch, ("commit",)),
        (transaction.Transaction, ("commit",)),
        (VertexClient, ("create_custom_job", "cancel_custom_job", "get_custom_job")),
    ):
        for name in names:
            monkeypatch.setattr(cls, name, forbidden(f"{cls.__name__}.{name}"))
    monkeypatch.setattr(VertexClient, "list_custom_jobs", forbidden("VertexClient.list"))

    commands = [
        ("enqueue", "-q", "trainer", "--image", "gcr.io/p/t:1", "--item-id", "new"),
        ("ls", "--queue", "trainer"),
        ("status", "waiting"),
        ("watch", "--queue", "default", "--until-done", "--json", "--interval", "0.1"),
        ("queue", "ls"),
        ("queue", "get", "trainer"),
        ("queue", "pending", "trainer"),
        ("cohort", "ls"),
        ("cohort", "get", "shared"),
        ("prices", "show"),
        ("cancel", "waiting"),
    ]
    for command in commands:
        code, _, err = run(*command)
        assert code == 0, (command, err)
    assert writes == []
    published = pulled(pubsub_subscriber, cli_env)
    assert sorted(m.attributes.get("launchq-action", "item") for m in published) == [
        "cancel",
        "item",
    ]


def test_prices_validate_apply_show_and_a_budget_in_queue_ls(
    cli_env: str, firestore_db: firestore.Client, gcp_project: str, standin: StandinServer,
    tmp_path: Path,
) -> None:  # fmt: skip
    shown = run_json("prices", "show")
    assert shown["shipped"] is True
    assert shown["source"] == "https://cloud.google.com/vertex-ai/pricing"
    table = EXAMPLES / "prices" / "vertex-us-central1.yaml"
    code, out, _ = run("prices", "validate", str(table))
    assert (code, "2 rates" in out) == (0, True)
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: x\nretrieved: 2026-12-01\nrates:\n"
                   "  - {kind: accelerator, name: NVIDIA_L44, usd_per_hour: 1}\n")  # fmt: skip
    code, _, err = run("prices", "validate", str(bad))
    assert code == 2
    assert "rates[0]" in err
    assert "did you mean 'NVIDIA_L4'" in err
    assert run("prices", "apply", str(bad))[0] == 2
    local = tmp_path / "local.yaml"
    local.write_text(table.read_text() + "  - {kind: accelerator, name: NVIDIA_L4, "
                     "usd_per_hour: 0.7, source: contract}\n")  # fmt: skip
    assert run("prices", "apply", str(local))[0] == 0
    shown = run_json("prices", "show")
    assert shown["shipped"] is False
    assert [r["name"] for r in shown["rates"]][-1] == "NVIDIA_L4"
    budgeted = tmp_path / "capped.yaml"
    budgeted.write_text(DEFAULT.read_text() + "\nbudget: {gpu_hours: 5, usd: 40}\n")
    assert run("queue", "apply", str(budgeted))[0] == 0
    [row] = [r for r in run_json("queue", "ls") if r["name"] == "capped"]
    assert row["budget"]["gpu_hours"] == {"limit": 5, "spent": 0.0, "reserved": 0.0, "left": 5}
    assert row["budget"]["usd"]["left"] == 40
    code, out, _ = run("queue", "ls")
    assert code == 0
    assert "0/5 GPU-h, $0.00/$40.00" in out
    # A dollar budget on jobs the table cannot price: applied, with a warning that says which.
    unpriced = tmp_path / "unpriced.yaml"
    unpriced.write_text(budgeted.read_text().replace("n1-standard-4", "g2-standard-4"))
    code, _, err = run("queue", "apply", str(unpriced))
    assert code == 0
    assert "no rate for g2-standard-4 (STANDARD, us-central1)" in err
    assert "warning" not in run("queue", "apply", str(budgeted))[2]
