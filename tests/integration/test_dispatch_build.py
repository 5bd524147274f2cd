"""Source items on a queue with a `builder` block, through the dispatcher and the sweep, on the
Firestore and GCS emulators, the Vertex stand-in and the Cloud Build stand-in: BUILDING, built
once, QUEUED with the digest-pinned image, and every bad input found before a build."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from launchq.dispatch import DispatchOutcome
from launchq.gcp.events import EventPublisher
from launchq.model.states import ItemState
from launchq.wiring import Launchq, build
from launchq_cli import main
from launchq_client.source import SourceUploader, pack
from launchq_local.cloudbuild_standin import CloudBuildStandin
from tests.fixtures.dispatch import Harness, message, queue_config

pytestmark = [pytest.mark.integration, pytest.mark.storage]

REPOSITORY = "us-central1-docker.pkg.dev/launchq-test/launchq"
DEST = f"{REPOSITORY}/trainer"


def app(harness: Harness, cloudbuild: CloudBuildStandin) -> Launchq:
    settings = dataclasses.replace(
        harness.settings(),
        cloudbuild_endpoint=cloudbuild.url,
        artifactregistry_endpoint=cloudbuild.url,
        build_repository=REPOSITORY,
    )
    return build(
        settings,
        store=harness.store,
        vertex_for=lambda _region: harness.vertex,
        events=EventPublisher(harness.project, harness.events_topic),
        sleep=lambda _s: None,
    )


def builder_queue(bucket: str, **builder: Any) -> dict[str, Any]:
    config = queue_config(builder={"destination": DEST, **builder})
    config["spec"]["staging_bucket"] = f"gs://{bucket}"
    return config


def upload(tmp_path: Path, gcs_client: Any, bucket: str, files: dict[str, str]) -> dict[str, str]:
    root = tmp_path / "project"
    root.mkdir()
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    packed = pack(root, tmp_path / "packed", use_git=False)
    result = SourceUploader(gcs_client, bucket).upload(packed)
    return {"uri": result.uri, "sha256": result.sha256, "module": "train"}


PROJECT = {"Dockerfile": 'FROM python:3.11-slim\nCMD ["python", "train.py"]\n', "train.py": "1\n"}


def settle(
    launchq: Launchq, harness: Harness, item_id: str, timeout: float = 5.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        launchq.sweeper.run()
        data = harness.item_data("b", item_id)
        if data["state"] != ItemState.BUILDING.value or time.monotonic() > deadline:
            return data
        time.sleep(0.05)


def test_first_item_builds_second_skips_and_both_run_the_pinned_image(
    harness: Harness,
    cloudbuild_standin: CloudBuildStandin,
    gcs_client: Any,
    gcs_bucket: Any,
    tmp_path: Path,
) -> None:
    launchq = app(harness, cloudbuild_standin)
    harness.apply("b", builder_queue(gcs_bucket.name))
    source = upload(tmp_path, gcs_client, gcs_bucket.name, PROJECT)
    first = launchq.dispatcher.handle(message({"queue": "b", "item_id": "one", "source": source}))
    assert first.outcome == DispatchOutcome.RECORDED, first.detail
    data = harness.item_data("b", "one")
    assert data["state"] == ItemState.BUILDING.value
    assert data["build"]["build_id"]
    assert data["build"]["log_url"].startswith("https://console.cloud.google.com/cloud-build/")
    assert not data.get("job")
    data = settle(launchq, harness, "one")
    assert data["state"] == ItemState.SUBMITTED.value
    states = [entry["to"] for entry in data["history"]]
    assert states[:3] == ["BUILDING", "QUEUED", "SUBMITTING"]
    built = next(e for e in data["history"] if e["to"] == "QUEUED")
    assert built["digest"].startswith("sha256:")
    assert built["build_seconds"] >= 0
    image = f"{DEST}@{built['digest']}"
    job = harness.vertex.get_custom_job(data["job"]["name"])
    assert job["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["imageUri"] == image

    second = launchq.dispatcher.handle(message({"queue": "b", "item_id": "two", "source": source}))
    assert second.outcome == DispatchOutcome.RECORDED
    again = harness.item_data("b", "two")
    assert again["state"] == ItemState.SUBMITTED.value
    assert "already built" in again["history"][0]["cause"]
    job2 = harness.vertex.get_custom_job(again["job"]["name"])
    assert job2["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["imageUri"] == image
    assert cloudbuild_standin.app.counters["CreateBuild"] == 1


def test_concurrent_items_with_one_source_share_one_build(
    harness: Harness,
    cloudbuild_standin: CloudBuildStandin,
    gcs_client: Any,
    gcs_bucket: Any,
    tmp_path: Path,
) -> None:
    launchq = app(harness, cloudbuild_standin)
    harness.apply("b", builder_queue(gcs_bucket.name))
    source = upload(tmp_path, gcs_client, gcs_bucket.name, PROJECT)
    barrier = threading.Barrier(8)

    def deliver(n: int) -> None:
        barrier.wait()
        launchq.dispatcher.handle(message({"queue": "b", "item_id": f"c{n}", "source": source}))

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cloudbuild_standin.app.counters["CreateBuild"] == 1
    states = {harness.item_data("b", f"c{n}")["state"] for n in range(8)}
    assert states == {ItemState.BUILDING.value}
    settle(launchq, harness, "c0")
    states = {harness.item_data("b", f"c{n}")["state"] for n in range(8)}
    assert states == {ItemState.SUBMITTED.value}


def test_missing_dockerfile_and_foreign_destination_are_refused_before_a_build(
    harness: Harness,
    cloudbuild_standin: CloudBuildStandin,
    gcs_client: Any,
    gcs_bucket: Any,
    tmp_path: Path,
) -> None:
    launchq = app(harness, cloudbuild_standin)
    harness.apply("b", builder_queue(gcs_bucket.name, dockerfile="docker/Dockerfile"))
    source = upload(tmp_path, gcs_client, gcs_bucket.name, PROJECT)
    result = launchq.dispatcher.handle(message({"queue": "b", "item_id": "x", "source": source}))
    assert result.outcome == DispatchOutcome.REJECTED
    error = harness.item_data("b", "x")["error"]
    assert error["reason"] == "dockerfile_missing"
    assert "docker/Dockerfile" in error["message"]
    config = builder_queue(gcs_bucket.name)
    config["builder"]["destination"] = "us-central1-docker.pkg.dev/launchq-test/elsewhere/t"
    harness.apply("b", config)
    result = launchq.dispatcher.handle(message({"queue": "b", "item_id": "y", "source": source}))
    assert result.outcome == DispatchOutcome.REJECTED
    assert harness.item_data("b", "y")["error"]["reason"] == "build_destination_refused"
    assert cloudbuild_standin.app.counters["CreateBuild"] == 0


def test_a_dockerfile_of_any_name_builds_and_a_missing_one_is_refused(
    harness: Harness,
    cloudbuild_standin: CloudBuildStandin,
    gcs_client: Any,
    gcs_bucket: Any,
    tmp_path: Path,
) -> None:
    """`builder.dockerfile: ci/trainer.build` is no Dockerfile-like name: the item builds from
    it when the archive holds it, and is refused before a build when the archive does not."""
    launchq = app(harness, cloudbuild_standin)
    harness.apply("b", builder_queue(gcs_bucket.name, dockerfile="ci/trainer.build"))
    files = {"ci/trainer.build": PROJECT["Dockerfile"], "train.py": "1\n"}
    source = upload(tmp_path, gcs_client, gcs_bucket.name, files)
    result = launchq.dispatcher.handle(message({"queue": "b", "item_id": "ok", "source": source}))
    assert result.outcome == DispatchOutcome.RECORDED, result.detail
    data = settle(launchq, harness, "ok")
    assert data["state"] == ItemState.SUBMITTED.value, data.get("error")
    assert cloudbuild_standin.app.counters["CreateBuild"] == 1

    harness.apply("b", builder_queue(gcs_bucket.name, dockerfile="ci/other.build"))
    result = launchq.dispatcher.handle(message({"queue": "b", "item_id": "no", "source": source}))
    assert result.outcome == DispatchOutcome.REJECTED
    error = harness.item_data("b", "no")["error"]
    assert error["reason"] == "dockerfile_missing"
    assert "has no ci/other.build (Dockerfiles in it: none)" in error["message"]
    assert cloudbuild_standin.app.counters["CreateBuild"] == 1


def test_a_failed_build_fails_the_item_with_step_and_log(
    harness: Harness,
    cloudbuild_standin: CloudBuildStandin,
    gcs_client: Any,
    gcs_bucket: Any,
    tmp_path: Path,
) -> None:
    launchq = app(harness, cloudbuild_standin)
    harness.apply("b", builder_queue(gcs_bucket.name))
    requests.post(
        f"{cloudbuild_standin.url}/emulator/v1/outcomes",
        json={"status": "FAILURE", "failingStep": 0},
        timeout=5,
    ).raise_for_status()
    source = upload(tmp_path, gcs_client, gcs_bucket.name, PROJECT)
    launchq.dispatcher.handle(message({"queue": "b", "item_id": "f", "source": source}))
    data = settle(launchq, harness, "f")
    assert data["state"] == ItemState.FAILED.value
    assert data["error"]["reason"] == "build_failed"
    assert data["error"]["status"] == "FAILURE"
    assert data["error"]["failing_step"] == 0
    assert data["error"]["log_url"].startswith("https://console.cloud.google.com/cloud-build/")
    launchq.sweeper.run()  # nothing loops: a failed item stays failed, no new build
    assert harness.item_data("b", "f")["state"] == ItemState.FAILED.value
    assert cloudbuild_standin.app.counters["CreateBuild"] == 1


def test_cancelling_building_items_cancels_the_build_when_nobody_waits(
    harness: Harness,
    cloudbuild_standin: CloudBuildStandin,
    gcs_client: Any,
    gcs_bucket: Any,
    tmp_path: Path,
) -> None:
    requests.patch(
        f"{cloudbuild_standin.url}/emulator/v1/config", json={"workingSeconds": 30}, timeout=5
    ).raise_for_status()
    launchq = app(harness, cloudbuild_standin)
    harness.apply("b", builder_queue(gcs_bucket.name))
    source = upload(tmp_path, gcs_client, gcs_bucket.name, PROJECT)
    for item_id in ("k1", "k2"):
        launchq.dispatcher.handle(message({"queue": "b", "item_id": item_id, "source": source}))
    assert launchq.canceller.request("b", "k1") == ItemState.CANCELLED
    assert cloudbuild_standin.app.counters["CancelBuild"] == 0  # k2 still waits
    assert launchq.canceller.request("b", "k2") == ItemState.CANCELLED
    assert cloudbuild_standin.app.counters["CancelBuild"] == 1


def test_cli_status_and_ls_show_the_build(
    harness: Harness,
    cloudbuild_standin: CloudBuildStandin,
    gcs_client: Any,
    gcs_bucket: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    launchq = app(harness, cloudbuild_standin)
    harness.apply("b", builder_queue(gcs_bucket.name))
    source = upload(tmp_path, gcs_client, gcs_bucket.name, PROJECT)
    launchq.dispatcher.handle(message({"queue": "b", "item_id": "s", "source": source}))
    monkeypatch.setenv("LAUNCHQ_PROJECT", harness.project)
    monkeypatch.setenv("LAUNCHQ_EVENTS_TOPIC", "")
    runner = CliRunner()
    listed = runner.invoke(main, ["ls", "--queue", "b", "--state", "BUILDING", "--json"])
    assert listed.exit_code == 0, listed.stderr
    assert [row["item_id"] for row in json.loads(listed.stdout)] == ["s"]
    detail = json.loads(runner.invoke(main, ["status", "s", "--queue", "b", "--json"]).stdout)
    assert detail["state"] == "BUILDING"
    assert detail["build"]["build_id"]
    shown = runner.invoke(main, ["status", "s", "--queue", "b"])
    assert shown.exit_code == 0, shown.stderr
    assert "BUILDING" in shown.stdout
    assert "build log" in shown.stdout
    assert detail["build"]["tag_uri"] in shown.stdout.replace("\n", "")


def test_a_refused_build_fails_its_item_once_and_a_new_item_builds_again(
    harness: Harness,
    cloudbuild_standin: CloudBuildStandin,
    gcs_client: Any,
    gcs_bucket: Any,
    tmp_path: Path,
) -> None:
    launchq = app(harness, cloudbuild_standin)
    harness.apply("b", builder_queue(gcs_bucket.name))
    requests.post(
        f"{cloudbuild_standin.url}/emulator/v1/faults",
        json={"methods": ["CreateBuild"], "status": "PERMISSION_DENIED", "count": 1},
        timeout=5,
    ).raise_for_status()
    source = upload(tmp_path, gcs_client, gcs_bucket.name, PROJECT)
    refused = message({"queue": "b", "item_id": "r1", "source": source})
    launchq.dispatcher.handle(refused)
    data = harness.item_data("b", "r1")
    assert data["state"] == ItemState.FAILED.value
    assert data["error"]["reason"] == "build_failed"
    assert "PERMISSION_DENIED" in data["error"]["message"]
    launchq.sweeper.run()
    launchq.dispatcher.handle(refused)  # a redelivery: the same failure, no new build
    assert cloudbuild_standin.app.counters["CreateBuild"] == 1
    # The permission is fixed (the fault was once): a new item with the same source builds.
    launchq.dispatcher.handle(message({"queue": "b", "item_id": "r2", "source": source}))
    assert harness.item_data("b", "r2")["state"] == ItemState.BUILDING.value
    assert cloudbuild_standin.app.counters["CreateBuild"] == 2
    assert settle(launchq, harness, "r2")["state"] not in (ItemState.FAILED.value, "BUILDING")
    assert harness.item_data("b", "r1")["state"] == ItemState.FAILED.value
