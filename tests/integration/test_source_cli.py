"""`launchq source push` against the GCS emulator, with the real storage client underneath."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from launchq_cli import main
from launchq_local.gcs import GcsEmulator

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "source-trainer"


def test_push_uploads_once_and_prints_the_source_block(
    gcs_emulator: GcsEmulator, gcs_bucket: Any
) -> None:
    runner = CliRunner()
    argv = ["source", "push", str(EXAMPLE), "--bucket", f"gs://{gcs_bucket.name}"]
    first = runner.invoke(main, [*argv, "--module", "trainer.task", "--json"])
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["uri"] == f"gs://{gcs_bucket.name}/launchq/sources/{report['sha256']}.tar.gz"
    assert report["module"] == "trainer.task"
    assert report["bytes_sent"] == report["size"] > 0
    assert report["already_present"] is False
    blob = gcs_bucket.get_blob(f"launchq/sources/{report['sha256']}.tar.gz")
    assert blob.size == report["size"]

    second = runner.invoke(main, argv)
    assert second.exit_code == 0, second.output
    assert f"sha256: {report['sha256']}" in second.stdout
    assert "bytes_sent: 0" in second.stdout
    assert "already_present: True" in second.stdout


def test_dry_run_lists_without_uploading(tmp_path: Path) -> None:
    (tmp_path / "task.py").write_text("print(1)\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "task.cpython-311.pyc").write_bytes(b"x")
    result = CliRunner().invoke(
        main, ["source", "push", str(tmp_path), "--dry-run", "--no-git", "--list", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert "uri" not in report
    top = report["top"]
    assert report["listing"] == [f"{top}/setup.py", f"{top}/task.py"]


def test_push_without_bucket_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "task.py").write_text("")
    result = CliRunner().invoke(main, ["source", "push", str(tmp_path)])
    assert result.exit_code == 2
    assert "--bucket is required" in result.output
