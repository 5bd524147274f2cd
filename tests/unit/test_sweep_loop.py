"""`Sweeper.loop` paces passes start to start, and a single pass may wait for budget windows."""

from __future__ import annotations

from typing import Any, cast

from launchq.sweep import ADMIT_SECONDS, Sweeper, SweepSummary


class _Lease:
    def give_up_leadership(self, name: str, holder: str) -> None:
        pass


class _Timed(Sweeper):
    """A sweeper whose passes take `took` seconds of a fake clock, recording their windows."""

    def __init__(self, took: float) -> None:
        self.now = 0.0
        self.took = took
        self.sleeps: list[float] = []
        self.admit_windows: list[float] = []

        def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)
            self.now += seconds

        store, none = cast(Any, _Lease()), cast(Any, None)
        super().__init__(
            store, none, none, none, none, none, lambda: self.now, sleep, canceller=none
        )

    def _pass(self, holder: str, admit_seconds: float) -> SweepSummary:
        self.admit_windows.append(admit_seconds)
        self.now += self.took
        return SweepSummary(passes=1)


def test_passes_start_every_interval_even_when_a_pass_took_most_of_it() -> None:
    sweeper = _Timed(took=7.0)  # e.g. waiting for creation-budget windows while items wait
    summary = sweeper.loop(10.0, 60.0)
    # Before: sleep(10) after every pass, so passes began 17 s apart and tokens went unused.
    assert sweeper.sleeps == [3.0] * (summary.passes - 1)
    assert summary.passes == 5  # at 0, 10, 20, 30, 40; one at 50 would end past 60 - 10
    assert sweeper.admit_windows == [10.0] * 5


def test_a_single_pass_invocation_may_wait_for_budget_windows() -> None:
    sweeper = _Timed(took=0.1)
    summary = sweeper.loop(0.0, 60.0)
    assert summary.passes == 1
    assert sweeper.sleeps == []
    # Before: 0 s, so a pass that found the window's one token taken admitted nothing more.
    assert sweeper.admit_windows == [ADMIT_SECONDS]


class _Busy(_Timed):
    """Passes that leave items waiting (`waiting_queues`) for the first `busy` passes."""

    def __init__(self, took: float, busy: int) -> None:
        super().__init__(took)
        self.busy = busy

    def _pass(self, holder: str, admit_seconds: float) -> SweepSummary:
        summary = super()._pass(holder, admit_seconds)
        summary.waiting_queues = 1 if self.busy > 0 else 0
        self.busy -= 1
        return summary


def test_passes_come_every_busy_interval_while_items_wait() -> None:
    sweeper = _Busy(took=0.5, busy=4)
    summary = sweeper.loop(10.0, 60.0, busy_interval=2.0)
    # Four passes left items waiting: the next came 2 s after each began; then every 10 s.
    assert sweeper.sleeps[:4] == [1.5] * 4
    assert set(sweeper.sleeps[4:]) == {9.5}
    assert summary.passes > 5
    assert summary.waiting_queues == 0  # the last pass's


def test_without_a_busy_interval_waiting_items_change_nothing() -> None:
    sweeper = _Busy(took=0.5, busy=100)
    sweeper.loop(10.0, 60.0)
    assert set(sweeper.sleeps) == {9.5}
