"""bench/dashboard_window.py once at a tiny size on the session's emulators (never a timing)."""

from __future__ import annotations

import pytest

from bench import dashboard_window
from bench.common import Stack

pytestmark = pytest.mark.integration


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
