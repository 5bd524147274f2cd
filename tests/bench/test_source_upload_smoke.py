"""bench/source_upload.py once at a tiny size on the session's GCS emulator (never a timing)."""

from __future__ import annotations

from typing import Any

import pytest

from bench import source_upload

pytestmark = pytest.mark.integration


def test_source_upload_benchmark_runs_at_a_tiny_size(gcs_client: Any) -> None:
    result = source_upload.measure(gcs_client, files=30, mb=0.3, repeats=1)
    assert result["files"] == 30
    assert result["first_bytes_sent"] == result["archive_bytes"] > 0
    assert result["dedup_bytes_sent"] == 0
    assert result["dedup_already_present"] is True
    assert result["tar_czf_bytes"] > 0
    for key in ("pack_ratio", "first_ratio", "dedup_ratio", "size_ratio"):
        assert result[key] > 0, key
