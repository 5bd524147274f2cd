"""bench/walk.py on the session's emulators: the figures it reports are counts of a real walk."""

from __future__ import annotations

import pytest

from bench import walk
from bench.common import Stack

pytestmark = pytest.mark.integration


def test_the_walk_of_one_message_reaches_the_job_through_the_units(stack: Stack) -> None:
    figures = walk.measure(stack)
    assert figures["outcome"] == "recorded"
    path = figures["path_to_create"]
    # The create is made below the dispatcher, admission and the submitter, never above them.
    assert path[0] == "launchq.functions"
    assert path[-1] == "launchq.gcp.vertex"
    assert {"launchq.dispatch", "launchq.submission"} <= set(path)
    assert "launchq.store.items" in figures["module_list"]
    assert figures["hops"] >= len(path) - 1
    assert figures["visits"]["launchq.dispatch"] >= 1
    assert figures["packages_and_top_modules"] <= figures["modules"]
