"""bench/source_check.py once at a tiny size on the session's emulators (never a timing)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bench import source_check
from bench.common import Stack
from launchq_local.emulators import EmulatorStack
from launchq_local.gcs import GcsEmulator
from launchq_local.standin import StandinServer

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(emulator_stack: EmulatorStack, standin: StandinServer) -> Iterator[Stack]:
    bench_stack = Stack.from_parts(
        emulator_stack.project,
        emulator_stack.firestore.host_port,
        emulator_stack.pubsub.host_port,
        standin.url,
    )
    saved = dict(os.environ)
    try:
        yield bench_stack
    finally:
        bench_stack.cleanup()
        bench_stack.admin.close()
        os.environ.clear()
        os.environ.update(saved)


def test_source_check_benchmark_runs_at_a_tiny_size(
    stack: Stack, gcs_emulator: GcsEmulator
) -> None:
    result = source_check.measure(stack, gcs_emulator, items=3)
    assert result["items"] == 3
    assert result["vertex_creates_total"] >= 2 * 3  # every item of both kinds became a job
    assert result["ratio"] > 0
    assert result["check_ms_median"] > 0
