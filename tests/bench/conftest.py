"""The benchmarks' local stack, built from the test session's emulators and stand-in."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bench.common import Stack
from launchq_local.emulators import EmulatorStack
from launchq_local.standin import StandinServer


@pytest.fixture
def stack(emulator_stack: EmulatorStack, standin: StandinServer) -> Iterator[Stack]:
    bench_stack = Stack.from_parts(
        emulator_stack.project,
        emulator_stack.firestore.host_port,
        emulator_stack.pubsub.host_port,
        standin.url,
    )
    saved = dict(os.environ)  # the benchmarks point the environment at their own projects
    try:
        yield bench_stack
    finally:
        bench_stack.cleanup()
        bench_stack.admin.close()
        os.environ.clear()
        os.environ.update(saved)
