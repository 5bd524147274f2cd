"""The python-package runner's pure parts: argv, /gcs/ mapping, change detection, no emulator."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from google.cloud.aiplatform_v1 import types

from launchq_local.standin import pyrun


def test_runner_argv_carries_packages_module_and_args(tmp_path: Path) -> None:
    spec = types.PythonPackageSpec(
        executor_image_uri="img",
        package_uris=["gs://b/one.tar.gz", "gs://b/two.tar.gz"],
        python_module="trainer.task",
        args=["--epochs", "3", "--"],
    )
    argv = pyrun.runner_argv(spec, tmp_path / "job", tmp_path)
    assert argv[1:3] == ["-m", "launchq_local.standin.pyrun"]
    assert argv[argv.index("--mount") + 1] == str(tmp_path / "gcs")
    assert argv[argv.index("--module") + 1] == "trainer.task"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--package"] == [
        "gs://b/one.tar.gz",
        "gs://b/two.tar.gz",
    ]
    assert argv[argv.index("--") + 1 :] == ["--epochs", "3", "--"]


def test_gcs_paths_map_into_the_mount(tmp_path: Path) -> None:
    assert pyrun.to_mount("/gcs/bkt/a/b.json", tmp_path) == str(tmp_path / "bkt/a/b.json")
    assert pyrun.to_mount("/gcsx/bkt", tmp_path) == "/gcsx/bkt"
    assert pyrun.to_mount("--lr=0.1", tmp_path) == "--lr=0.1"
    assert pyrun.split_gs("gs://bkt/a/b.tar.gz") == ("bkt", "a/b.tar.gz")
    with pytest.raises(ValueError, match="gs://"):
        pyrun.split_gs("/tmp/x.tar.gz")


def test_changed_files_sees_new_and_rewritten_files_only(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "old.txt").write_text("old")
    (tmp_path / "b" / "same.txt").write_text("same")
    before = pyrun.snapshot(tmp_path)
    (tmp_path / "b" / "old.txt").write_text("rewritten, longer")
    (tmp_path / "b" / "new").mkdir()
    (tmp_path / "b" / "new" / "x.bin").write_bytes(b"x")
    assert pyrun.changed_files(before, tmp_path) == [
        tmp_path / "b" / "new" / "x.bin",
        tmp_path / "b" / "old.txt",
    ]


def test_without_the_gcs_emulator_the_job_fails_saying_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    argv = ["--job-dir", str(tmp_path), "--mount", str(tmp_path), "--module", "m"]
    with pytest.raises(SystemExit, match="STORAGE_EMULATOR_HOST"):
        pyrun.main([*argv, "--package", "gs://b/p.tar.gz"])
    assert "STORAGE_EMULATOR_HOST" not in os.environ
