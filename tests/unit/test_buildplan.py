"""The content-addressed build plan and the Cloud Build wire functions (no I/O)."""

from __future__ import annotations

from pathlib import Path

import pytest

from launchq.gcp.cloudbuild import status_name
from launchq.spec.buildplan import (
    ImageRef,
    build_request,
    build_tag,
    decode_files,
    dockerfile_problem,
    encode_files,
    plan_for,
    settings_hash,
)
from launchq.spec.config import BuilderSettings
from launchq.spec.item import ItemSource
from launchq_client.source import object_metadata, pack
from launchq_local.cloudbuild_standin.server import parse_filter
from launchq_local.standin.wire import ApiError

SHA = "c" * 64
SOURCE = ItemSource(uri=f"gs://bkt/launchq/sources/{SHA}.tar.gz", sha256=SHA, module="train")
DEST = "europe-west4-docker.pkg.dev/my-project/launchq/team/trainer"


def test_image_ref_parses_artifact_registry_and_refuses_tags_and_other_registries() -> None:
    ref = ImageRef.parse(DEST)
    assert (ref.location, ref.project, ref.repository, ref.package) == (
        "europe-west4",
        "my-project",
        "launchq",
        "team/trainer",
    )
    assert ref.uri == DEST
    assert ref.repository_uri == "europe-west4-docker.pkg.dev/my-project/launchq"
    for bad in (f"{DEST}:v1", f"{DEST}@sha256:{'a' * 64}", "gcr.io/my-project/trainer"):
        with pytest.raises(ValueError, match=r"REGION-docker\.pkg\.dev"):
            ImageRef.parse(bad)


def test_the_tag_is_the_source_sha_plus_a_hash_of_every_setting() -> None:
    base = BuilderSettings(destination=DEST)
    plan = plan_for(SOURCE, base)
    assert plan.key == f"{SHA}-{settings_hash(base)}"
    assert plan.tag_uri == f"{DEST}:{plan.key}"
    assert len(build_tag(plan.key, 99)) <= 128  # Cloud Build's tag limit, even for a rebuild
    others = [
        BuilderSettings(destination=DEST, dockerfile="docker/Dockerfile"),
        BuilderSettings(destination=DEST, timeout=600),
        BuilderSettings(destination=DEST, machine_type="E2_HIGHCPU_8"),
        BuilderSettings(destination=DEST.replace("trainer", "other")),
    ]
    keys = {plan_for(SOURCE, settings).key for settings in others}
    assert plan.key not in keys
    assert len(keys) == len(others)
    assert plan_for(SOURCE, BuilderSettings(destination=DEST)).key == plan.key


def test_the_build_request_builds_pushes_and_tags_the_one_image() -> None:
    settings = BuilderSettings(
        destination=DEST,
        dockerfile="docker/Dockerfile",
        timeout=900,
        machine_type="E2_HIGHCPU_8",
        service_account="launchq-build@my-project.iam.gserviceaccount.com",
    )
    plan = plan_for(SOURCE, settings)
    body = build_request(plan, "trainer-0.1.0")
    assert body["source"] == {
        "storageSource": {"bucket": "bkt", "object": f"launchq/sources/{SHA}.tar.gz"}
    }
    [step] = body["steps"]
    assert step["args"] == ["build", "-t", plan.tag_uri, "-f", "docker/Dockerfile", "."]
    assert step["dir"] == "trainer-0.1.0"
    assert body["images"] == [plan.tag_uri]
    assert body["tags"] == [f"launchq-{plan.key}"]
    assert build_request(plan, "trainer-0.1.0", attempt=3)["tags"] == [f"launchq-{plan.key}-r3"]
    assert body["timeout"] == "900s"
    assert body["options"]["machineType"] == "E2_HIGHCPU_8"
    assert body["serviceAccount"] == (
        "projects/my-project/serviceAccounts/launchq-build@my-project.iam.gserviceaccount.com"
    )


@pytest.mark.parametrize(
    ("raw", "name"),
    [(3, "SUCCESS"), ("4", "FAILURE"), ("TIMEOUT", "TIMEOUT"), (99, "STATUS_UNKNOWN"),
     (True, "STATUS_UNKNOWN"), ("bogus", "STATUS_UNKNOWN"), (None, "STATUS_UNKNOWN")],
)  # fmt: skip
def test_status_names_come_from_numbers_or_names(raw: object, name: str) -> None:
    assert status_name(raw) == name


def test_the_standin_filter_ors_tags_and_refuses_what_it_does_not_know() -> None:
    class Build:
        def __init__(self, tags: list[str], status: int) -> None:
            self.tags, self.status, self.id, self.images = tags, status, "x", []

    matches = parse_filter('tags="launchq-a" OR tags="launchq-b" AND status="SUCCESS"')
    assert matches(Build(["launchq-a"], 2))
    assert matches(Build(["launchq-b"], 3))
    assert not matches(Build(["launchq-b"], 2))
    assert not matches(Build(["launchq-c"], 3))
    for bad in ('create_time>"2020"', 'status="DONE"', "tags"):
        with pytest.raises(ApiError):
            parse_filter(bad)


def _packed_metadata(tmp_path: Path, files: list[str]) -> dict[str, str]:
    root = tmp_path / "proj"
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("FROM scratch\n" if "build" in rel else "x = 1\n")
    return object_metadata(pack(root, tmp_path / "out", use_git=False))


def _problem(dockerfile: str, metadata: dict[str, str] | None) -> str | None:
    return dockerfile_problem(
        plan_for(SOURCE, BuilderSettings(destination=DEST, dockerfile=dockerfile)), metadata
    )


def test_a_dockerfile_of_any_name_in_the_archive_is_found(tmp_path: Path) -> None:
    """builder.dockerfile: ci/trainer.build names no Dockerfile-like file: the uploader's record
    must still show it is there, and refuse it when it is not."""
    metadata = _packed_metadata(tmp_path, ["ci/trainer.build", "train.py", "Dockerfile"])
    assert metadata["dockerfiles"] == "Dockerfile"
    assert _problem("ci/trainer.build", metadata) is None
    assert _problem("./ci/trainer.build", metadata) is None
    assert _problem("Dockerfile", metadata) is None
    missing = _problem("ci/other.build", metadata)
    assert missing is not None
    assert "has no ci/other.build (Dockerfiles in it: Dockerfile)" in missing
    assert _problem("docker/Dockerfile", metadata) is not None


def test_without_the_full_listing_only_dockerfile_like_names_are_judged(tmp_path: Path) -> None:
    """An archive uploaded before the `files` record, or with too many paths for it: the
    `dockerfiles` record is complete for Dockerfile-like names only."""
    legacy = {"sha256": SHA, "top": "proj-0.0.0", "dockerfiles": "Dockerfile"}
    assert _problem("ci/trainer.build", legacy) is None  # not judged: the build will tell
    assert _problem("docker/Dockerfile", legacy) is not None
    assert _problem("Dockerfile", legacy) is None
    assert _problem("Dockerfile", {"sha256": SHA}) is None  # another tool's object
    assert _problem("ci/x.build", {**legacy, "files": "not base64!"}) is None
    many = [f"pkg{n // 100}/module_{n:05d}_{'x' * 40}.py" for n in range(5000)]
    assert encode_files(many) is None
    assert decode_files(encode_files(many[:50])) == many[:50]


def test_the_metadata_fits_cloud_storage_for_a_large_tree(tmp_path: Path) -> None:
    files = [f"pkg/m{n:04d}/Dockerfile.{'v' * 40}" for n in range(300)]
    files += [f"src/module_{n:04d}.py" for n in range(400)]
    metadata = _packed_metadata(tmp_path, files)
    assert sum(len(k) + len(v) for k, v in metadata.items()) <= 8192
    assert "files" in metadata
    assert _problem("src/module_0007.py", metadata) is None
