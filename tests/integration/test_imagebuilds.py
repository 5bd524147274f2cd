"""Built once: the `builds/{key}` claim on the Firestore emulator, the Artifact Registry tag
lookup and the bulk follow, against the Cloud Build stand-in."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from google.cloud import firestore

from launchq.builds.builder import ImageBuilder
from launchq.builds.records import BuildState
from launchq.gcp.cloudbuild import CloudBuildClient, client_for
from launchq.spec.buildplan import destination_problem, dockerfile_problem, pin_image, plan_for
from launchq.spec.config import BuilderSettings
from launchq.spec.item import ItemSource
from launchq.store.firestore import FirestoreStore
from launchq_local.cloudbuild_standin import CloudBuildStandin
from tests.fixtures.cloudbuild import source_tarball

pytestmark = pytest.mark.integration

DEST = "us-central1-docker.pkg.dev/launchq-test/launchq/trainer"
DOCKERFILE = 'FROM python:3.11-slim\nCMD ["python", "-m", "train"]\n'


def _source(bucket: Any, files: dict[str, str]) -> ItemSource:
    obj = source_tarball(bucket, files)
    # The stand-in reads the object by name; the item's sha256 is the key, so any 64 hex digits
    # that the uri names will do for these tests (the dispatcher checks the real sha256).
    sha = obj.rsplit("/", 1)[1].removesuffix(".tar.gz").ljust(64, "0")
    blob = bucket.blob(f"launchq/sources/{sha}.tar.gz")
    bucket.copy_blob(bucket.blob(obj), bucket, blob.name)
    return ItemSource(uri=f"gs://{bucket.name}/{blob.name}", sha256=sha, module="train")


def _builder(db: firestore.Client, standin: CloudBuildStandin) -> tuple[ImageBuilder, Any]:
    client = CloudBuildClient(standin.url, standin.url, client_for(standin.url).session)
    return ImageBuilder(FirestoreStore(db), lambda: client, lambda: datetime.now(UTC)), client


def _wait_finished(builder: ImageBuilder, key: str, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        finished = builder.follow([key])
        if finished:
            return finished[0]
        time.sleep(0.05)
    raise AssertionError("the build did not finish")


def _together(count: int, deliver: Callable[[int], Any]) -> list[Any]:
    """`deliver(n)` for n in range(count), on as many threads released at once."""
    barrier = threading.Barrier(count)
    results: list[Any] = []

    def run(n: int) -> None:
        barrier.wait()
        results.append(deliver(n))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_eight_concurrent_deliveries_share_one_build(
    firestore_db: firestore.Client, cloudbuild_standin: CloudBuildStandin, gcs_bucket: Any
) -> None:
    builder, _ = _builder(firestore_db, cloudbuild_standin)
    plan = plan_for(
        _source(gcs_bucket, {"Dockerfile": DOCKERFILE}), BuilderSettings(destination=DEST)
    )
    results = _together(8, lambda n: builder.ensure(plan, f"q/item-{n}", "src"))
    assert len(results) == 8
    assert cloudbuild_standin.app.counters["CreateBuild"] == 1
    assert sorted(builder.waiters(plan.key)) == sorted(f"q/item-{n}" for n in range(8))
    done = _wait_finished(builder, plan.key)
    assert done.state == BuildState.SUCCESS
    assert done.pinned_uri is not None
    assert done.pinned_uri.startswith(f"{DEST}@sha256:")
    assert done.details()["build_id"] == done.build_id


def test_an_existing_tag_skips_the_build(
    firestore_db: firestore.Client, cloudbuild_standin: CloudBuildStandin, gcs_bucket: Any
) -> None:
    builder, _ = _builder(firestore_db, cloudbuild_standin)
    plan = plan_for(
        _source(gcs_bucket, {"Dockerfile": DOCKERFILE}), BuilderSettings(destination=DEST)
    )
    first = builder.ensure(plan, "q/a", "src")
    built = _wait_finished(builder, first.key)
    firestore_db.collection("builds").document(plan.key).delete()  # forget it, keep the image
    again = builder.ensure(plan, "q/b", "src")
    assert again.state == BuildState.SUCCESS
    assert again.skipped
    assert again.digest == built.digest
    assert cloudbuild_standin.app.counters["CreateBuild"] == 1
    assert cloudbuild_standin.app.counters["GetTag"] == 2


def test_a_failed_build_names_the_step_and_log(
    firestore_db: firestore.Client, cloudbuild_standin: CloudBuildStandin, gcs_bucket: Any
) -> None:
    builder, _ = _builder(firestore_db, cloudbuild_standin)
    plan = plan_for(_source(gcs_bucket, {"train.py": "x\n"}), BuilderSettings(destination=DEST))
    builder.ensure(plan, "q/a", "src")
    failed = _wait_finished(builder, plan.key)
    assert failed.state == BuildState.FAILED
    assert failed.status == "FAILURE"
    assert failed.failing_step == 0
    assert "Dockerfile" in (failed.detail or "")
    assert (failed.log_url or "").startswith("https://console.cloud.google.com/cloud-build/")


def test_a_new_item_builds_again_after_a_failure_and_a_redelivery_does_not(
    firestore_db: firestore.Client, cloudbuild_standin: CloudBuildStandin, gcs_bucket: Any
) -> None:
    builder, client = _builder(firestore_db, cloudbuild_standin)
    plan = plan_for(
        _source(gcs_bucket, {"Dockerfile": DOCKERFILE + "# flaky\n"}),
        BuilderSettings(destination=DEST),
    )
    requests.post(
        f"{cloudbuild_standin.url}/emulator/v1/outcomes",
        json={"status": "INTERNAL_ERROR"},
        timeout=5,
    ).raise_for_status()
    builder.ensure(plan, "q/first", "src")
    failed = _wait_finished(builder, plan.key)
    assert (failed.state, failed.status, failed.attempt) == (BuildState.FAILED, "INTERNAL_ERROR", 1)
    # A redelivery of the item that waited on it sees the failure: nothing is built.
    assert builder.ensure(plan, "q/first", "src").state == BuildState.FAILED
    assert cloudbuild_standin.app.counters["CreateBuild"] == 1

    # Eight new items arrive together after the failure: one new build, attempt 2.
    results = _together(8, lambda n: builder.ensure(plan, f"q/new-{n}", "src"))
    assert len(results) == 8
    assert {r.state for r in results} <= {BuildState.CLAIMED, BuildState.BUILDING}
    assert cloudbuild_standin.app.counters["CreateBuild"] == 2
    rebuilt = _wait_finished(builder, plan.key)
    assert (rebuilt.state, rebuilt.attempt) == (BuildState.SUCCESS, 2)
    assert rebuilt.details()["build_attempt"] == 2
    stored = builder.store.get_build(plan.key)
    assert stored is not None
    document = stored.data
    assert [a["status"] for a in document["failed_attempts"]] == ["INTERNAL_ERROR"]
    assert document["failed_attempts"][0]["build_id"] == failed.build_id
    assert set(document["waiting"]) == {"q/first", *(f"q/new-{n}" for n in range(8))}
    # Each attempt carries its own tag, so following attempt 2 never sees attempt 1.
    tagged = list(
        client.list_builds(plan.image.project, plan.image.location, f'tags="launchq-{plan.key}-r2"')
    )
    assert [b["id"] for b in tagged] == [rebuilt.build_id]
    # Built now: a later item joins the success, and nothing is built again.
    assert builder.ensure(plan, "q/later", "src").state == BuildState.SUCCESS
    assert cloudbuild_standin.app.counters["CreateBuild"] == 2


def test_follow_lists_in_bulk_not_one_get_per_build(
    firestore_db: firestore.Client, cloudbuild_standin: CloudBuildStandin, gcs_bucket: Any
) -> None:
    builder, _ = _builder(firestore_db, cloudbuild_standin)
    keys = []
    for n in range(25):
        plan = plan_for(
            _source(gcs_bucket, {"Dockerfile": DOCKERFILE + f"# {n}\n"}),
            BuilderSettings(destination=DEST),
        )
        keys.append(builder.ensure(plan, f"q/{n}", "src").key)
    time.sleep(0.35)
    finished = builder.follow(keys)
    assert len(finished) == 25
    assert {r.state for r in finished} == {BuildState.SUCCESS}
    assert cloudbuild_standin.app.counters["ListBuilds"] == 2  # 20 tags per list
    assert cloudbuild_standin.app.counters["GetBuild"] == 0


def test_leave_cancels_only_when_nobody_waits(
    firestore_db: firestore.Client, cloudbuild_standin: CloudBuildStandin, gcs_bucket: Any
) -> None:
    requests.patch(
        f"{cloudbuild_standin.url}/emulator/v1/config", json={"workingSeconds": 30}, timeout=5
    ).raise_for_status()
    builder, _ = _builder(firestore_db, cloudbuild_standin)
    plan = plan_for(
        _source(gcs_bucket, {"Dockerfile": DOCKERFILE}), BuilderSettings(destination=DEST)
    )
    builder.ensure(plan, "q/a", "src")
    builder.ensure(plan, "q/b", "src")
    assert not builder.leave(plan.key, "q/a", lambda waiter: waiter == "q/b")
    assert builder.leave(plan.key, "q/b", lambda waiter: False)
    record = _wait_finished(builder, plan.key)
    assert record.status == "CANCELLED"


def test_bad_input_is_found_before_a_build() -> None:
    settings = BuilderSettings(destination=DEST, dockerfile="docker/Dockerfile")
    source = ItemSource(
        uri=f"gs://bkt/launchq/sources/{'a' * 64}.tar.gz", sha256="a" * 64, module="train"
    )
    plan = plan_for(source, settings)
    assert dockerfile_problem(plan, {"dockerfiles": "Dockerfile"}) is not None
    assert dockerfile_problem(plan, {"dockerfiles": "Dockerfile,docker/Dockerfile"}) is None
    assert dockerfile_problem(plan, {}) is None  # no listing recorded: the build will tell
    assert destination_problem(settings, "us-central1-docker.pkg.dev/launchq-test/launchq") is None
    refused = destination_problem(settings, "us-central1-docker.pkg.dev/launchq-test/other")
    assert refused is not None
    assert "outside" in refused
    body = {"pools": [{"imageUri": plan.tag_uri}, {"imageUri": "other"}]}
    pinned = pin_image(body, plan.tag_uri, f"{DEST}@sha256:{'b' * 64}")
    assert pinned["pools"][0]["imageUri"] == f"{DEST}@sha256:{'b' * 64}"
    assert pinned["pools"][1]["imageUri"] == "other"
    other = plan_for(source, BuilderSettings(destination=DEST, timeout=600))
    assert other.key != plan.key  # other settings, another image
    assert other.key.startswith("a" * 64)
