"""bench/dashboard_window.py once at a tiny size on the session's emulators (never a timing)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bench import dashboard_window
from bench.common import Stack
from launchq_local.emulators import EmulatorStack
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


def test_dashboard_window_benchmark_runs_at_a_tiny_size(stack: Stack) -> None:
    result = dashboard_window.measure(stack, items=5, repeats=1)
    assert result["items_in_window"] == 5  # every seeded item is inside the 24 h window
    assert set(result["ratio_to_queue_ls"]) == {
        "queue_ls",
        "window_full",
        "window_projected",
        "queues_page",
    }
    assert result["ratio_to_queue_ls"]["queue_ls"] == 1.0
    assert result["projected_to_full"] > 0
