"""Two teams on one scarce quota: how busy it stays while work waits, and how it is split.

The scenario of the issue that asked for cohorts, made reproducible: two queues (`team-a`,
`team-b`, max_jobs 40 each) of 1-L4 jobs burst into us-central1, where the stand-in holds the
project to 5 L4s (`custom_model_training_nvidia_l4_gpus: 5`, enforced with Vertex's 429). Each
job runs a seeded random time, ended by a monitor thread through the stand-in's admin API. One
sweep loop runs in a thread, as the sweep function does; four dispatcher threads deliver the
items in-process (a message that raised would have been redelivered, then dead-lettered: they
are counted).

Time runs 10x faster than production and says so (`SCALE`): sweep passes every 1 s instead of
10 s (0.2 s instead of 2 s while items wait: `LAUNCHQ_SWEEP_BUSY_INTERVAL_SECONDS`), jobs run
6-18 s instead of 60-180 s (short for training: the idle time around a job end is fixed, so
longer jobs only raise utilisation), the quota backoff starts at 1.5 s doubling to 24 s
instead of 15 s to 240 s. Two modes, same process, same seeds:

- `probe` (admission as it was before cohorts, and still is for a queue in no cohort, but for
  the busy interval): the quota is learnt from Vertex's 429s, a refused queue backs off, and
  sweep passes come every 1 s whatever waits.
- `cohort`: both queues in one cohort declaring the 5-L4 quota, shares 50/50 (`launchq.cohorts`).

Figures, from the stand-in's own job records (create and end times): **utilisation while work
waits** (accelerator-seconds busy / (5 x the time from the first publish to the last create));
**team A's share** of the accelerator-seconds in that period; the most jobs active at once (the
quota: never above 5); duplicates (jobs per item beyond one); messages that raised.

**Arrival** (`arrival`, cohort mode): team A publishes `items` at t=0 and uses the whole quota
(borrowing B's idle share); team B publishes a tenth as many at t=`delay`. Reported: whether B's
first job was created before the second job end after its arrival (it takes the first unit that
frees, give or take one sweep pass), how many of A's jobs were cancelled or preempted (0: no
preemption), and how long until B holds its share (2 of 5: it cannot hold 2.5).

    .venv/bin/python -m bench.fairshare --items 16 --seeds 10 --probe-seeds 2 --delay 8
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import requests

from bench.common import (
    REGION,
    VERTEX_PROJECT,
    Stack,
    deliver_all,
    local_stack,
    queue_config,
    scaled_settings,
)
from launchq.gcp.vertex import VertexClient
from launchq.model.states import vertex_state_name
from launchq.store.firestore import FirestoreStore
from launchq.wiring import Launchq, build
from launchq_client.cohorts import apply_cohort
from launchq_client.configs import apply_queue
from launchq_local.standin.lifecycle import TERMINAL

SCALE = 10.0
INTERVAL = 10 / SCALE
PERIOD = 60 / SCALE
BUSY_INTERVAL = 2 / SCALE
QUOTA = 5
METRIC = "custom_model_training_nvidia_l4_gpus"
TEAMS = ("team-a", "team-b")
RUN_S = (60 / SCALE, 180 / SCALE)


def _l4_queue() -> dict[str, Any]:
    config = queue_config(max_jobs=40)
    config["spec"]["worker_pool_specs"][0]["machine_spec"] = {
        "machine_type": "g2-standard-4",
        "accelerator_type": "NVIDIA_L4",
        "accelerator_count": 1,
    }
    return config


def _moment(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class _Ender(threading.Thread):
    """Ends each job at its seeded random run time after it started (JOB_STATE_RUNNING)."""

    def __init__(self, stack: Stack, seed: int, run_s: tuple[float, float]) -> None:
        super().__init__(daemon=True, name="bench-ender")
        self.stack = stack
        self.run_s = run_s
        self.random = random.Random(seed)
        self.due: dict[str, float] = {}
        self.stop = threading.Event()
        self.max_active = 0
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                now = time.time()
                active = [j for j in self.stack.admin.jobs() if j["state"] not in TERMINAL]
                self.max_active = max(self.max_active, len(active))
                for job in active:
                    due = self.due.setdefault(
                        job["id"], job["history"][0]["time"] + self.random.uniform(*self.run_s)
                    )
                    if due <= now:
                        self.stack.admin.set_state(job["id"], "JOB_STATE_SUCCEEDED")
                self.stop.wait(0.05)
        except Exception as exc:  # reported by the benchmark
            self.error = exc


class _Run:
    """One mode on a fresh project: the two queues (in a cohort or not), dispatchers, a sweep."""

    def __init__(
        self, stack: Stack, cohort: bool, seed: int, run_s: tuple[float, float] = RUN_S
    ) -> None:
        # The probe mode is admission as it was before cohorts: no busy interval either.
        self.busy_interval = BUSY_INTERVAL if cohort else None
        self.stack = stack
        self.project = stack.new_project()
        stack.apply_env(self.project)
        self.store = FirestoreStore(stack.firestore(self.project))
        for team in TEAMS:
            apply_queue(self.store, team, _l4_queue())
        if cohort:
            apply_cohort(
                self.store,
                {
                    "name": "l4",
                    "project": VERTEX_PROJECT,
                    "region": REGION,
                    "quotas": {METRIC: QUOTA},
                    "half_life_seconds": int(600 / SCALE),
                    "members": [{"queue": team} for team in TEAMS],
                },
            )
        settings = scaled_settings(stack, self.project, SCALE)
        self.apps: list[Launchq] = [build(settings, store=self.store) for _ in range(4)]
        stack.admin.reset(delays={"queued": 0.05, "pending": 0.05, "running": None})
        stack.admin.set_limits(quotas={METRIC: QUOTA})
        self.ender = _Ender(stack, seed, run_s)
        self.stop = threading.Event()
        self.raised = 0
        self.sweeps = threading.Thread(target=self._sweeps, daemon=True)

    def _sweeps(self) -> None:
        while not self.stop.is_set():
            self.apps[0].sweeper.loop(INTERVAL, PERIOD, self.busy_interval)

    def publish(self, team: str, items: int) -> None:
        ids = [f"{team[-1]}{n:05d}" for n in range(items)]
        self.raised += deliver_all(self.apps, team, ids)

    def ended(self, total: int) -> bool:
        jobs = self.stack.admin.jobs()
        return len(jobs) >= total and all(j["state"] in TERMINAL for j in jobs)

    def jobs(self) -> list[dict[str, Any]]:
        lister = VertexClient(self.stack.vertex_url, requests.Session(), 30.0)
        return list(lister.list_custom_jobs(f"projects/{VERTEX_PROJECT}/locations/{REGION}"))

    def __enter__(self) -> _Run:
        logging.disable(logging.INFO)
        self.ender.start()
        self.sweeps.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.ender.stop.set()
        self.sweeps.join(PERIOD * 3)
        self.ender.join(10)
        logging.disable(logging.NOTSET)


def _intervals(jobs: list[dict[str, Any]]) -> list[tuple[str, float, float]]:
    """(team, created, ended) of every job."""
    out = []
    for job in jobs:
        team = str(job["labels"].get("launchq-queue", ""))
        created = _moment(job["createTime"])
        ended = _moment(job["endTime"]) if job.get("endTime") else time.time()
        out.append((team, created, ended))
    return out


def _figures(jobs: list[dict[str, Any]], started: float) -> dict[str, Any]:
    spans = _intervals(jobs)
    last_create = max(c for _, c, _ in spans)
    period = last_create - started
    busy: dict[str, float] = {}
    for team, created, ended in spans:
        part = max(0.0, min(ended, last_create) - max(created, started))
        busy[team] = busy.get(team, 0.0) + part
    total = sum(busy.values())
    events = sorted([(c, 1) for _, c, _ in spans] + [(e, -1) for _, _, e in spans])
    active = most = 0
    for _, delta in events:
        active += delta
        most = max(most, active)
    per_item = Counter(str(j["labels"].get("launchq-item")) for j in jobs)
    busy.setdefault("team-a", 0.0)
    return {
        "contended_s": round(period, 1),
        "utilisation": round(total / (QUOTA * period), 3) if period > 0 else None,
        "share_a": round(busy["team-a"] / total, 3) if total else None,
        "max_active": most,
        "duplicates": sum(n - 1 for n in per_item.values()),
        "jobs": len(jobs),
    }


def contention(
    stack: Stack, items: int, cohort: bool, seed: int, run_s: tuple[float, float] = RUN_S
) -> dict[str, Any]:
    """Both teams publish `items` each at once; figures over the time work waited."""
    with _Run(stack, cohort, seed, run_s) as run:
        started = time.time()
        threads = [threading.Thread(target=run.publish, args=(t, items)) for t in TEAMS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        finished = _wait(lambda: run.ended(2 * items), 30 + 2 * items * run_s[1] / QUOTA)
        jobs = run.jobs()
        if run.ender.error is not None:
            raise run.ender.error
    result = _figures(jobs, started)
    result.update(finished=finished, raised=run.raised, max_active_sampled=run.ender.max_active)
    return result


def arrival(
    stack: Stack, items: int, delay: float, seed: int, run_s: tuple[float, float] = RUN_S
) -> dict[str, Any]:
    """A bursts `items` at t=0; B publishes items/10 at t=`delay` (cohort mode)."""
    with _Run(stack, True, seed, run_s) as run:
        run.publish("team-a", items)
        time.sleep(delay)
        arrived = time.time()
        run.publish("team-b", max(items // 10, 3))
        _wait(lambda: run.ended(items + max(items // 10, 3)), 30 + items * run_s[1] / QUOTA)
        jobs = run.jobs()
    spans = _intervals(jobs)
    a_before = [s for s in spans if s[0] == "team-a" and s[1] < arrived]
    ends_after = sorted(e for _, _, e in spans if e >= arrived)
    b_creates = sorted(c for t, c, _ in spans if t == "team-b")
    b_first = b_creates[0] if b_creates else None
    # When B first held 2 accelerators (its share of 5, rounded down).
    held_at = None
    events = sorted([(c, 1) for t, c, _ in spans if t == "team-b"] +
                    [(e, -1) for t, _, e in spans if t == "team-b"])  # fmt: skip
    level = 0
    for at, delta in events:
        level += delta
        if level >= 2:
            held_at = at
            break
    return {
        "a_active_at_arrival": sum(1 for _, c, e in a_before if c <= arrived < e),
        "b_first_start_after_arrival_s": round(b_first - arrived, 2) if b_first else None,
        "first_end_after_arrival_s": round(ends_after[0] - arrived, 2) if ends_after else None,
        "b_started_by_second_end": bool(
            b_first is not None and len(ends_after) > 1 and b_first <= ends_after[1]
        ),
        "b_holds_share_after_s": round(held_at - arrived, 2) if held_at else None,
        "a_jobs_cancelled": sum(1 for j in jobs if _ended_badly(j, "team-a")),
        "duplicates": _figures(jobs, arrived)["duplicates"],
        "raised": run.raised,
    }


def _ended_badly(job: dict[str, Any], team: str) -> bool:
    succeeded = vertex_state_name(job.get("state")) == "JOB_STATE_SUCCEEDED"
    return bool(job["labels"].get("launchq-queue") == team and not succeeded)


def _wait(done: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(0.25)
    return False


def measure(
    stack: Stack,
    items: int = 16,
    seeds: int = 10,
    probe_seeds: int = 2,
    delay: float = 8.0,
    run_s: tuple[float, float] = RUN_S,
) -> dict[str, Any]:
    run_s = (float(run_s[0]), float(run_s[1]))
    cohort_runs = [contention(stack, items, True, seed, run_s) for seed in range(seeds)]
    probe_runs = [contention(stack, items, False, seed, run_s) for seed in range(probe_seeds)]
    arrived = arrival(stack, items * 2, delay, 0, run_s)

    def spread(runs: list[dict[str, Any]], key: str) -> list[Any]:
        return [run[key] for run in runs]

    utilisation = spread(cohort_runs, "utilisation")
    shares = spread(cohort_runs, "share_a")
    result: dict[str, Any] = {
        "scale": SCALE,
        "items_per_team": items,
        "run_s": list(run_s),
        "quota": QUOTA,
        "cohort": {
            "utilisation": utilisation,
            "share_a": shares,
            "max_active": max(spread(cohort_runs, "max_active")),
            "duplicates": sum(spread(cohort_runs, "duplicates")),
            "raised": sum(spread(cohort_runs, "raised")),
            "finished": all(spread(cohort_runs, "finished")),
        },
        "probe": {
            "utilisation": spread(probe_runs, "utilisation"),
            "share_a": spread(probe_runs, "share_a"),
            "max_active": max(spread(probe_runs, "max_active")),
            "duplicates": sum(spread(probe_runs, "duplicates")),
            "raised": sum(spread(probe_runs, "raised")),
        },
        "arrival": arrived,
    }
    result["goals"] = {"utilisation_min": 0.95, "share_within": 0.05, "max_active_max": QUOTA}
    result["met"] = {
        "utilisation": min(utilisation) >= 0.95,
        "share": all(abs(s - 0.5) <= 0.05 for s in shares),
        "quota": result["cohort"]["max_active"] <= QUOTA,
        "exactly_once": result["cohort"]["duplicates"] == 0 and result["cohort"]["raised"] == 0,
        "arrival": bool(arrived["b_started_by_second_end"]) and arrived["a_jobs_cancelled"] == 0,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=16, help="items per team")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--probe-seeds", type=int, default=2)
    parser.add_argument("--delay", type=float, default=8.0)
    args = parser.parse_args()
    with local_stack() as stack:
        print(json.dumps(measure(stack, args.items, args.seeds, args.probe_seeds, args.delay),
                         indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
