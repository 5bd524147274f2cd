"""Cohorts on the emulators and the stand-in, whose quotas answer Vertex's 429: admission keeps
within a declared quota without being refused, under concurrent dispatchers; a job's end gives
its accelerators to the member below its share; a quota someone outside launchq uses lowers the
limit without backing the queue off; the CLI applies, lists and explains."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from google.cloud import firestore

from launchq_cli import main
from launchq_client.cohorts import apply_cohort, cohort_detail
from launchq_client.reads import pending_items
from launchq_local.standin import StandinServer
from tests.fixtures.dispatch import Harness, item, message, queue_config

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
L4 = "custom_model_training_nvidia_l4_gpus"
POOL = f"launchq-test~us-central1~{L4}"


def l4_queue(max_jobs: int = 10) -> dict[str, Any]:
    config = queue_config(max_jobs)
    config["spec"]["worker_pool_specs"][0]["machine_spec"] = {
        "machine_type": "g2-standard-4",
        "accelerator_type": "NVIDIA_L4",
        "accelerator_count": 1,
    }
    return config


def cohort(limit: int) -> dict[str, Any]:
    return {
        "name": "l4",
        "project": "launchq-test",
        "region": "us-central1",
        "quotas": {L4: limit},
        "members": [{"queue": "team-a"}, {"queue": "team-b"}],
    }


@pytest.fixture
def teams(harness: Harness, standin: StandinServer) -> Iterator[Harness]:
    harness.apply("team-a", l4_queue())
    harness.apply("team-b", l4_queue())
    standin.admin.set_limits(quotas={L4: 4})
    yield harness
    standin.admin.set_limits(quotas={})


def active(standin: StandinServer) -> list[dict[str, Any]]:
    ended = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"}
    return [j for j in standin.admin.jobs() if j["state"] not in ended]


def creates(standin: StandinServer) -> int:
    return standin.admin.counters().get("CreateCustomJob", 0)


def test_concurrent_dispatchers_keep_within_the_declared_quota_without_a_refusal(
    teams: Harness, standin: StandinServer
) -> None:
    apply_cohort(teams.store, cohort(4))
    dispatchers = [teams.dispatcher() for _ in range(6)]

    def deliver(n: int) -> None:
        team = "team-a" if n % 2 else "team-b"
        dispatchers[n % 6].handle(message(item(team, f"{team}-{n}")))

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(deliver, range(24)))
    assert len(active(standin)) == 4
    assert creates(standin) == 4  # no create was refused: admission knew the quota
    held = teams.store.held_units(POOL)
    assert len(held) == 4
    assert {unit.holder for unit in held} == {
        f"{job['labels']['launchq-queue']}~{job['labels']['launchq-item']}"
        for job in active(standin)
    }


def test_a_job_end_gives_its_accelerator_to_the_member_below_its_share(
    teams: Harness, standin: StandinServer
) -> None:
    apply_cohort(teams.store, cohort(4))
    dispatcher = teams.dispatcher()
    for n in range(6):
        dispatcher.handle(message(item("team-a", f"a{n}")))
    dispatcher.handle(message(item("team-b", "b0")))
    assert {j["labels"]["launchq-queue"] for j in active(standin)} == {"team-a"}
    [row] = pending_items(teams.store, "team-b")
    assert row["reason"] == "cohort l4: every accelerator of its quota is in use"
    standin.admin.set_state(active(standin)[0]["id"], "JOB_STATE_SUCCEEDED")
    teams.sweeper().run()
    queues = sorted(j["labels"]["launchq-queue"] for j in active(standin))
    assert queues == ["team-a", "team-a", "team-a", "team-b"]
    assert teams.item_data("team-a", "a4")["state"] == "QUEUED"
    members = {m["queue"]: m for m in cohort_detail(teams.store, "l4")["quotas"][0]["members"]}
    assert (members["team-a"]["held"], members["team-b"]["held"]) == (3, 1)
    assert members["team-a"]["borrowed"] == 1


def test_a_quota_used_outside_launchq_lowers_the_limit_and_the_queue_goes_on(
    teams: Harness, standin: StandinServer
) -> None:
    """The project's 4 L4s, one taken by a job launchq did not make: the declared 4 is one too
    many. The refused item waits with the quota as its reason; the queue does not back off, and
    the next accelerator launchq's own jobs free is used at once."""
    apply_cohort(teams.store, cohort(4))
    outside = dict(json.loads(json.dumps(teams.vertex.create_custom_job(
        "projects/launchq-test/locations/us-central1",
        {"displayName": "notebook", "jobSpec": {"workerPoolSpecs": [{
            "machineSpec": {"machineType": "g2-standard-4", "acceleratorType": "NVIDIA_L4",
                            "acceleratorCount": 1},
            "replicaCount": "1", "containerSpec": {"imageUri": "gcr.io/p/nb:1"}}]}},
    ))))  # fmt: skip
    dispatcher = teams.dispatcher()
    for n in range(4):
        dispatcher.handle(message(item("team-a", f"a{n}")))
    assert len(active(standin)) == 4  # three of launchq's and the outsider's
    refused = teams.item_data("team-a", "a3")
    assert refused["state"] == "QUEUED"
    assert L4 in str(refused["reason"])
    assert "capacity_backoff" not in (teams.store.get_queue("team-a") or {})
    [quota] = cohort_detail(teams.store, "l4")["quotas"]
    assert (quota["declared"], quota["limit"], quota["held"]) == (4, 3, 3)
    assert quota["lowered_until"] is not None
    # One of launchq's jobs ends: its accelerator goes to the next item at once.
    mine = next(j for j in active(standin) if j["id"] != outside["name"].rsplit("/", 1)[-1])
    standin.admin.set_state(mine["id"], "JOB_STATE_SUCCEEDED")
    teams.sweeper().run()
    assert teams.item_data("team-a", "a3")["state"] != "QUEUED"
    assert creates(standin) == 1 + 4 + 1  # the outsider, 3 + 1 refused, then a3


def test_a_cohort_that_reads_its_quota_keeps_within_what_google_enforces(
    teams: Harness, standin: StandinServer
) -> None:
    """The cohort declares 4 L4s but the project was granted 2: with `read_quotas` the sweep
    reads the enforced limit from Cloud Quotas (the stand-in's, driven by the real client) and
    admission keeps within it, so no create is ever refused; a raised quota is used at the next
    read; a quota that cannot be read leaves the declared limit."""
    standin.admin.set_limits(quotas={L4: 2})
    apply_cohort(teams.store, cohort(4) | {"read_quotas": True})

    def sweep(reread: bool = True) -> None:
        sweeper = teams.sweeper()
        if reread:  # else the last read stands for LAUNCHQ_QUOTA_READ_SECONDS (300 s)
            sweeper.quota_read_seconds = 0
        sweeper.run()

    sweep()
    [quota] = cohort_detail(teams.store, "l4")["quotas"]
    assert (quota["declared"], quota["read"], quota["limit"]) == (4, 2, 2)
    assert quota["read_why"] is None
    dispatcher = teams.dispatcher()
    for n in range(4):
        dispatcher.handle(message(item("team-a", f"a{n}")))
    assert len(active(standin)) == 2
    assert creates(standin) == 2  # admission knew: no create was refused
    assert pending_items(teams.store, "team-a")[0]["reason"] == (
        "cohort l4: every accelerator of its quota is in use"
    )
    standin.admin.set_limits(quotas={L4: 3})  # the increase was granted
    sweep(reread=False)
    assert len(active(standin)) == 2  # not read again yet
    sweep()
    assert len(active(standin)) == 3
    assert creates(standin) == 3
    standin.admin.set_limits(quotas={})  # unlimited: Cloud Quotas has no value for the region
    sweep()
    [quota] = cohort_detail(teams.store, "l4")["quotas"]
    assert (quota["read"], quota["limit"]) == (None, 4)
    assert quota["read_why"].startswith("no_value_in_region")
    assert len(active(standin)) == 4


def test_the_cli_applies_lists_and_explains_a_cohort(
    teams: Harness, standin: StandinServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    gcp_project: str, firestore_db: firestore.Client,
) -> None:  # fmt: skip
    monkeypatch.setenv("LAUNCHQ_PROJECT", gcp_project)
    monkeypatch.setenv("LAUNCHQ_VERTEX_ENDPOINT", standin.url)
    path = tmp_path / "l4.yaml"
    path.write_text(yaml.safe_dump(cohort(4) | {"members": [{"queue": "team-a", "shares": 1}]}))
    result = CliRunner().invoke(main, ["cohort", "apply", str(path)])
    assert result.exit_code == 2
    assert "members[0]: unknown key 'shares'; did you mean 'share'?" in result.stderr
    path.write_text(yaml.safe_dump(cohort(4)))
    result = CliRunner().invoke(main, ["cohort", "apply", str(path)])
    assert result.exit_code == 0, result.stderr
    assert f"cohort 'l4' applied (us-central1: {L4} 4)" in result.stdout
    dispatcher = teams.dispatcher()
    for n in range(5):
        dispatcher.handle(message(item("team-a", f"a{n}")))
    listed = json.loads(CliRunner().invoke(main, ["cohort", "ls", "--json"]).stdout)
    [quota] = listed[0]["quotas"]
    assert quota["held"] == 4
    assert listed[0]["members"]["team-a"]["waiting"] == 1
    table = CliRunner().invoke(main, ["cohort", "ls"], env={"COLUMNS": "160"}).stdout
    assert "team-a" in table
    assert "4/4" in table
    pending = json.loads(CliRunner().invoke(main, ["queue", "pending", "team-a", "--json"]).stdout)
    assert pending[0]["reason"] == "cohort l4: every accelerator of its quota is in use"
    gone = CliRunner().invoke(main, ["cohort", "get", "l4x"])
    assert gone.exit_code == 1
    assert "no cohort named 'l4x'; did you mean 'l4'?" in gone.stderr
