"""A budgeted queue under a burst: it never starts a job its budget could not cover.

One queue (`team-a`, max_jobs 40) of 1-L4 jobs with `run.timeout` T and a budget of `fit` x T
accelerator-seconds (`budget.gpu_hours`): `fit` attempts can hold reservations at once. `items`
items are delivered by four dispatcher threads while a sweep loop runs; each job ends at a
seeded random run time shorter than T (through the stand-in's admin API), giving back the rest
of its reservation, so more items fit as jobs end, until the month's budget is spent. Time is
scaled 10x, as in bench/fairshare.py.

Figures: the most the ledger ever held (`spent + reserved`, sampled every 20 ms) against the
limit; what the jobs really used (from the stand-in's own start and end times) against the
limit and against what the ledger booked; jobs started and items left waiting with reason
`budget`; the ledger's writes per second over the burst (2 per attempt); duplicates (jobs per
item beyond one) and messages that raised.

    .venv/bin/python -m bench.budgets --items 30 --fit 10 --seeds 3
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from typing import Any

from bench.common import Stack, local_stack
from bench.fairshare import METRIC, SCALE, _moment, _Run, _wait
from launchq.model.budgets import ledger_id, period_of
from launchq.model.reasons import WaitReason
from launchq.model.states import ItemState
from launchq_client.configs import apply_queue
from launchq_local.standin.lifecycle import TERMINAL

TIMEOUT_S = 60 / SCALE  # a job's timeout: what each attempt reserves
RUN_S = (15 / SCALE, 50 / SCALE)  # what it really runs


def _budgeted_queue(fit: int) -> dict[str, Any]:
    from bench.fairshare import _l4_queue

    config = _l4_queue()
    config["run"] = {**config.get("run", {}), "timeout": int(TIMEOUT_S)}
    config["budget"] = {"gpu_hours": fit * TIMEOUT_S / 3600}
    return config


class _Sampler(threading.Thread):
    """Reads the queue's ledger every 20 ms: the most it ever held, and how many writes."""

    def __init__(self, run: _Run, ledger: str) -> None:
        super().__init__(daemon=True, name="bench-ledger")
        self.run_ = run
        self.ledger = ledger
        self.stop = threading.Event()
        self.max_used = 0
        self.versions: set[Any] = set()

    def run(self) -> None:
        while not self.stop.is_set():
            [found] = self.run_.store.get_ledgers([self.ledger], create=False)
            self.max_used = max(self.max_used, found.used.gpu_ms)
            if found.version is not None:
                self.versions.add(found.version)
            self.stop.wait(0.02)


def burst(stack: Stack, items: int, fit: int, seed: int) -> dict[str, Any]:
    with _Run(stack, False, seed, RUN_S) as run:
        apply_queue(run.store, "team-a", _budgeted_queue(fit))
        run.busy_interval = 2 / SCALE
        stack.admin.set_limits(quotas={METRIC: 1000})  # the budget binds, not the quota
        name = ledger_id("queue", "team-a", period_of(run.store.clock()))
        sampler = _Sampler(run, name)
        sampler.start()
        started = time.time()
        run.publish("team-a", items)

        def settled() -> bool:
            # Every job ended and the queue's next item waits for the budget (its order holds:
            # the ones behind it are not considered).
            jobs = stack.admin.jobs()
            if not jobs or any(j["state"] not in TERMINAL for j in jobs):
                return False
            [booked] = run.store.get_ledgers([name], create=False)
            if booked.reserved.gpu_ms:
                return False  # the sweep has not recorded the last end yet
            head = run.store.waiting_items("team-a", limit=1)
            return not head or WaitReason.of(head[0].reason) is WaitReason.BUDGET

        finished = _wait(settled, 30 + items * RUN_S[1])
        elapsed = time.time() - started
        sampler.stop.set()
        sampler.join(5)
        jobs = run.jobs()
        [ledger] = run.store.get_ledgers([name], create=False)
        waiting = list(run.store.items_in_states([ItemState.QUEUED], queue="team-a"))
    limit = round(fit * TIMEOUT_S * 1000)
    used = 1000 * sum(
        _moment(j["endTime"]) - _moment(j["startTime"])
        for j in jobs
        if j.get("startTime") and j.get("endTime")
    )
    per_item: dict[str, int] = {}
    for job in jobs:
        key = str(job["labels"].get("launchq-item", job["name"]))
        per_item[key] = per_item.get(key, 0) + 1
    return {
        "limit_gpu_ms": limit,
        "max_used_gpu_ms": sampler.max_used,
        "jobs_started": len(jobs),
        "vertex_gpu_ms": round(used),
        "ledger_spent_gpu_ms": ledger.spent.gpu_ms,
        "ledger_reserved_at_end": ledger.reserved.gpu_ms,
        "left_waiting": len(waiting),
        "head_waits_for_budget": bool(waiting)
        and any(WaitReason.of(w.reason) is WaitReason.BUDGET for w in waiting),
        "ledger_writes": ledger.attempts * 2,
        "ledger_writes_busiest_second": _busiest_second(sorted(sampler.versions)),
        "elapsed_s": round(elapsed, 2),
        "duplicates": sum(n - 1 for n in per_item.values()),
        "raised": run.raised,
        "finished": finished,
    }


def _busiest_second(versions: list[Any]) -> int:
    """The most ledger writes seen within one second (of the sampled update times)."""
    best, start = 0, 0
    for end, moment in enumerate(versions):
        while (moment - versions[start]).total_seconds() > 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def measure(stack: Stack, items: int = 30, fit: int = 10, seeds: int = 3) -> dict[str, Any]:
    runs = [burst(stack, items, fit, seed) for seed in range(seeds)]
    result: dict[str, Any] = {
        "scale": SCALE,
        "timeout_s": TIMEOUT_S,
        "run_s": list(RUN_S),
        "items": items,
        "fit": fit,
        "runs": runs,
    }
    result["met"] = {
        "never_over": all(r["max_used_gpu_ms"] <= r["limit_gpu_ms"] for r in runs),
        "vertex_within": all(r["vertex_gpu_ms"] <= r["limit_gpu_ms"] for r in runs),
        "booked_what_ran": all(
            abs(r["ledger_spent_gpu_ms"] - r["vertex_gpu_ms"]) <= r["jobs_started"] for r in runs
        ),
        "exactly_once": all(r["duplicates"] == 0 and r["raised"] == 0 for r in runs),
        "finished": all(r["finished"] for r in runs),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=30)
    parser.add_argument("--fit", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    with local_stack() as stack:
        print(json.dumps(measure(stack, args.items, args.fit, args.seeds), indent=2))


if __name__ == "__main__":
    main()
