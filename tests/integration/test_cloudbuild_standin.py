"""The Cloud Build stand-in through the unmodified generated `CloudBuildClient` (REST), and
launchq's own REST client (`launchq.gcp.cloudbuild`) against the same server."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud.devtools.cloudbuild_v1.services.cloud_build import CloudBuildClient
from google.cloud.devtools.cloudbuild_v1.types import Build, BuildStep, Source, StorageSource

from launchq.gcp.cloudbuild import CloudBuildError, client_for, status_name
from launchq.gcp.vertex import CallRetry
from launchq.spec.buildplan import ImageRef
from launchq_local.cloudbuild_standin import BuildDelays, CloudBuildStandin
from launchq_local.cloudbuild_standin.images import IMAGES_VARIABLE
from tests.fixtures.cloudbuild import BUILD_LOCATION, BUILD_PROJECT, source_tarball
from tests.fixtures.standin import make_job, wait_for_state

pytestmark = pytest.mark.integration

PARENT = f"projects/{BUILD_PROJECT}/locations/{BUILD_LOCATION}"
IMAGE = f"{BUILD_LOCATION}-docker.pkg.dev/{BUILD_PROJECT}/repo/trainer"
DOCKERFILE = 'FROM python:3.11-slim\nCOPY . /app\nCMD ["python", "-m", "train", "--epochs", "1"]\n'


def docker_build(bucket: str, obj: str, tag: str, dockerfile: str = "Dockerfile") -> Build:
    return Build(
        source=Source(storage_source=StorageSource(bucket=bucket, object_=obj)),
        steps=[
            BuildStep(
                name="gcr.io/cloud-builders/docker",
                args=["build", "-t", f"{IMAGE}:{tag}", "-f", dockerfile, "."],
                dir_="src",
            )
        ],
        images=[f"{IMAGE}:{tag}"],
        tags=[f"launchq-{tag}"],
    )


def wait_done(client: CloudBuildClient, name: str, timeout: float = 5.0) -> Build:
    deadline = time.monotonic() + timeout
    while True:
        build = client.get_build(name=name)
        if build.status not in (Build.Status.QUEUED, Build.Status.WORKING):
            return build
        assert time.monotonic() < deadline, f"build still {build.status.name}"
        time.sleep(0.05)


def test_create_runs_queued_working_success_and_pushes_a_digest(
    build_client: CloudBuildClient, gcs_bucket: Any, cloudbuild_standin: CloudBuildStandin
) -> None:
    obj = source_tarball(gcs_bucket, {"Dockerfile": DOCKERFILE, "train.py": "print(1)\n"})
    operation = build_client.create_build(
        parent=PARENT, project_id=BUILD_PROJECT, build=docker_build(gcs_bucket.name, obj, "t1")
    )
    first = operation.metadata.build
    assert first.status == Build.Status.QUEUED
    assert first.log_url.startswith("https://console.cloud.google.com/cloud-build/builds")
    seen = {first.status}
    while not operation.done():
        seen.add(build_client.get_build(name=first.name).status)
        time.sleep(0.02)
    built = operation.result(timeout=5)
    assert Build.Status.WORKING in seen
    assert built.status == Build.Status.SUCCESS
    assert built.results.images[0].name == f"{IMAGE}:t1"
    digest = built.results.images[0].digest
    assert digest.startswith("sha256:")
    assert len(digest) == 71
    assert built.steps[0].status == Build.Status.SUCCESS
    images = requests.get(f"{cloudbuild_standin.url}/emulator/v1/images", timeout=5).json()
    assert images["images"][0]["command"] == ["python", "-m", "train", "--epochs", "1"]
    assert images["images"][0]["uri"] == f"{IMAGE}@{digest}"


def test_missing_dockerfile_fails_the_build_step_with_its_log_url(
    build_client: CloudBuildClient, gcs_bucket: Any
) -> None:
    obj = source_tarball(gcs_bucket, {"train.py": "print(1)\n"})
    operation = build_client.create_build(
        parent=PARENT, project_id=BUILD_PROJECT, build=docker_build(gcs_bucket.name, obj, "t2")
    )
    with pytest.raises(exceptions.GoogleAPICallError):
        operation.result(timeout=5)
    build = wait_done(build_client, operation.metadata.build.name)
    assert build.status == Build.Status.FAILURE
    assert build.failure_info.type_ == Build.FailureInfo.FailureType.USER_BUILD_STEP
    assert "src/Dockerfile" in build.failure_info.detail
    assert build.steps[0].status == Build.Status.FAILURE
    assert not build.results.images


def test_unknown_field_is_a_google_worded_400(cloudbuild_standin: CloudBuildStandin) -> None:
    answer = requests.post(
        f"{cloudbuild_standin.url}/v1/{PARENT}/builds",
        json={"steps": [{"name": "x"}], "stepz": []},
        timeout=5,
    )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert 'Unknown name "stepz"' in error["message"]


def test_list_filters_on_tags_in_bulk_and_pages(
    build_client: CloudBuildClient, gcs_bucket: Any
) -> None:
    obj = source_tarball(gcs_bucket, {"Dockerfile": DOCKERFILE})
    for tag in ("a", "b", "c"):
        build_client.create_build(
            parent=PARENT, project_id=BUILD_PROJECT, build=docker_build(gcs_bucket.name, obj, tag)
        )
    found = build_client.list_builds(
        request={
            "parent": PARENT,
            "project_id": BUILD_PROJECT,
            "filter": 'tags="launchq-a" OR tags="launchq-c"',
            "page_size": 1,
        }
    )
    tags = sorted(t for build in found for t in build.tags)
    assert tags == ["launchq-a", "launchq-c"]
    with pytest.raises(exceptions.BadRequest):
        list(build_client.list_builds(request={"parent": PARENT, "filter": "nonsense>1"}))


def test_cancel_a_working_build(build_client: CloudBuildClient, gcs_bucket: Any) -> None:
    obj = source_tarball(gcs_bucket, {"Dockerfile": DOCKERFILE})
    operation = build_client.create_build(
        parent=PARENT, project_id=BUILD_PROJECT, build=docker_build(gcs_bucket.name, obj, "x")
    )
    cancelled = build_client.cancel_build(
        request={"name": operation.metadata.build.name, "project_id": BUILD_PROJECT}
    )
    assert cancelled.status == Build.Status.CANCELLED
    time.sleep(0.3)
    assert build_client.get_build(name=cancelled.name).status == Build.Status.CANCELLED


def test_admin_outcome_and_launchq_rest_client(
    cloudbuild_standin: CloudBuildStandin, gcs_bucket: Any
) -> None:
    """launchq's client: create, bulk list by tag, the failing step, and the tag lookup."""
    client = client_for(cloudbuild_standin.url, cloudbuild_standin.url)
    ref = ImageRef.parse(IMAGE)
    assert client.get_tag(ref, "nope") is None
    obj = source_tarball(gcs_bucket, {"Dockerfile": DOCKERFILE})
    requests.post(
        f"{cloudbuild_standin.url}/emulator/v1/outcomes",
        json={"status": "TIMEOUT", "failingStep": 0},
        timeout=5,
    ).raise_for_status()
    body = Build.to_dict(docker_build(gcs_bucket.name, obj, "bad"), use_integers_for_enums=True)
    failed = client.create_build(BUILD_PROJECT, BUILD_LOCATION, _camel(body))
    ok = client.create_build(
        BUILD_PROJECT,
        BUILD_LOCATION,
        _camel(Build.to_dict(docker_build(gcs_bucket.name, obj, "good"))),
    )
    assert failed["metadata"]["build"]["tags"] == ["launchq-bad"]
    time.sleep(0.4)
    builds = {
        b["tags"][0]: b
        for b in client.list_builds(
            BUILD_PROJECT, BUILD_LOCATION, 'tags="launchq-bad" OR tags="launchq-good"'
        )
    }
    assert status_name(builds["launchq-bad"]["status"]) == "TIMEOUT"
    assert "Build step 0" in builds["launchq-bad"]["statusDetail"]
    assert status_name(builds["launchq-good"]["status"]) == "SUCCESS"
    digest = builds["launchq-good"]["results"]["images"][0]["digest"]
    assert client.get_tag(ref, "good") == digest
    assert client.get_tag(ref, "bad") is None
    assert ok["name"].startswith(PARENT + "/operations/")


def test_faults_surface_as_transient_errors_and_reads_are_retried(
    cloudbuild_standin: CloudBuildStandin,
) -> None:
    client = client_for(cloudbuild_standin.url, cloudbuild_standin.url)
    client.retry = CallRetry(attempts=3, initial_seconds=0.01, max_seconds=0.02)
    requests.post(
        f"{cloudbuild_standin.url}/emulator/v1/faults",
        json={"methods": ["ListBuilds"], "status": "UNAVAILABLE", "count": 1},
        timeout=5,
    ).raise_for_status()
    assert list(client.list_builds(BUILD_PROJECT, BUILD_LOCATION, 'tags="none"')) == []
    assert cloudbuild_standin.app.counters["ListBuilds"] == 2
    requests.post(
        f"{cloudbuild_standin.url}/emulator/v1/faults",
        json={"methods": ["CreateBuild"], "status": "UNAVAILABLE", "count": 1},
        timeout=5,
    ).raise_for_status()
    with pytest.raises(CloudBuildError) as raised:
        client.create_build(BUILD_PROJECT, BUILD_LOCATION, {"steps": [{"name": "x"}]})
    assert raised.value.transient
    assert raised.value.http_status == 503


def test_concurrent_creates_get_distinct_ids(
    cloudbuild_standin: CloudBuildStandin,
) -> None:
    client = client_for(cloudbuild_standin.url, cloudbuild_standin.url)
    names: list[str] = []
    lock = threading.Lock()

    def create() -> None:
        op = client.create_build(BUILD_PROJECT, BUILD_LOCATION, {"steps": [{"name": "x"}]})
        with lock:
            names.append(op["metadata"]["build"]["id"])

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(names)) == 8


def _camel(value: Any) -> Any:
    """proto-plus `to_dict` gives snake_case keys; the REST wire is camelCase."""
    if isinstance(value, dict):
        return {_camel_key(k): _camel(v) for k, v in value.items() if v not in ("", [], {}, 0)}
    if isinstance(value, list):
        return [_camel(v) for v in value]
    return value


def _camel_key(key: str) -> str:
    head, *rest = key.rstrip("_").split("_")
    return head + "".join(part.title() for part in rest)


def test_the_vertex_standin_runs_a_built_image_in_its_source_tree(
    gcs_emulator: Any,
    gcs_bucket: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    job_client: Any,
    standin_parent: str,
    standin_admin: Any,
) -> None:
    """No Docker: the image is the unpacked source, run with its Dockerfile's CMD."""
    dockerfile = 'FROM python:3.11-slim\nCMD ["sh", "-c", "cat marker.txt; echo ran in $PWD"]\n'
    obj = source_tarball(gcs_bucket, {"Dockerfile": dockerfile, "marker.txt": "from-source\n"})
    images = tmp_path / "images"
    monkeypatch.setenv(IMAGES_VARIABLE, str(images))
    with CloudBuildStandin(
        delays=BuildDelays(0, 0), gcs_url=gcs_emulator.url, images_dir=images
    ) as server:
        client = CloudBuildClient(
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            transport="rest",
            client_options=ClientOptions(api_endpoint=server.url),
        )
        operation = client.create_build(
            parent=PARENT, project_id=BUILD_PROJECT, build=docker_build(gcs_bucket.name, obj, "r")
        )
        built = operation.result(timeout=5)
    pinned = f"{IMAGE}@{built.results.images[0].digest}"
    standin_admin.set_mode("execute")
    standin_admin.set_delays(queued=0, pending=0)
    job = make_job("built-image")
    job.job_spec.worker_pool_specs[0].container_spec.image_uri = pinned
    created = job_client.create_custom_job(parent=standin_parent, custom_job=job)
    done = wait_for_state(job_client, created.name, "JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED")
    assert done.state.name == "JOB_STATE_SUCCEEDED", done.error.message
    out = standin_admin.job_log(created.name)["stdout"]
    assert out.startswith("from-source\nran in ")
    assert out.strip().endswith("/src")
