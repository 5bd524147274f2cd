"""bench/source_check.py once at a tiny size on the session's emulators (never a timing)."""

from __future__ import annotations

import pytest

from bench import source_check
from bench.common import Stack
from launchq_local.gcs import GcsEmulator

pytestmark = pytest.mark.integration


def test_source_check_benchmark_runs_at_a_tiny_size(
    stack: Stack, gcs_emulator: GcsEmulator
) -> None:
    result = source_check.measure(stack, gcs_emulator, items=3)
    assert result["items"] == 3
    assert result["vertex_creates_total"] >= 2 * 3  # every item of both kinds became a job
    assert result["ratio"] > 0
    assert result["check_ms_median"] > 0
