"""The capacity ladder under scarcity: failover latency, a burst over two regions, a preemption
storm. Counts and ratios from one run, against the stand-in's own job records.

Everything runs 10x faster than production and says so (`SCALE`): sweep interval 1 s and period
6 s instead of 10 s and 60 s; 600 creates/min per region instead of 60; retry backoff 1 s
doubling to 8 s. One sweep loop runs in a thread, as the sweep function does.

**Failover** (`failover`): `items` items, published 4 a second (under the creation budget, so
the lag is the sweep's, not creates queued for budget windows) on a two-placement queue
(us-central1, us-east4); the stand-in stocks out every us-central1 job (it fails with Vertex's
capacity error 0.2 s after PENDING). For each item: from the first job's end (Vertex's
`endTime`: when the failure is visible) to the second job's create (`createTime`, in
us-east4), as a fraction of the sweep period and of the pass interval; p50, p95, max.

**Burst** (`burst`): `items` items, every job 2 A100s, the stand-in holding each region to 16
A100s (8 jobs); first on a queue with one placement (us-central1), then on a queue with two
(us-central1, us-east4). Makespan (first publish to the last create) of each, their ratio, the
most jobs running at once per region (the quota), creates refused for quota, jobs per item
attempt (a duplicate would be 2), messages that raised (would be dead-lettered).

**Preemption storm** (`storm`): `items` items on a SPOT placement in us-central1 then a SPOT
placement in us-east4; the stand-in preempts 30% of SPOT jobs (seeded) 0.3 s after RUNNING, each
at most once per item (an item's second SPOT job is not struck: its `count` is per rule, and the
rule's fraction applies to every matching job, so a resumed attempt may be preempted again and
moves again). Reported: items SUCCEEDED, items preempted at least once, duplicate jobs, and for
each resumed attempt whether it ran with the same `LAUNCHQ_CHECKPOINT_DIR` as the attempt before
it (what a script needs to resume; the stand-in runs no script in this mode, so *seeing* the
checkpoint is shown by `make demo`'s `demo-ladder`, which reads it back).

    .venv/bin/python -m bench.ladder --items 50 --burst-items 500 --run-s 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

import requests

from bench.common import (
    VERTEX_PROJECT,
    Stack,
    deliver_all,
    local_stack,
    queue_config,
    scaled_settings,
)
from launchq.gcp.vertex import VertexClient
from launchq.store.firestore import FirestoreStore
from launchq.wiring import Launchq, build
from launchq_client.configs import apply_queue

SCALE = 10.0
INTERVAL = 10 / SCALE
PERIOD = 60 / SCALE
A100_QUOTA = 16
GPUS_PER_JOB = 2
METRIC = "custom_model_training_nvidia_a100_gpus"
REGIONS = ("us-central1", "us-east4")
RETRY = {"max_attempts": 20, "backoff_initial_seconds": 1, "backoff_max_seconds": 8}
LADDER = [
    {"name": "central"},
    {"name": "east", "region": "us-east4", "staging_bucket": "gs://launchq-bench-staging-east"},
]


def _moment(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _app(stack: Stack, project: str) -> tuple[FirestoreStore, Callable[[], Launchq]]:
    store = FirestoreStore(stack.firestore(project))
    settings = scaled_settings(stack, project, SCALE)
    return store, lambda: build(settings, store=store)


def _jobs(stack: Stack) -> list[dict[str, Any]]:
    lister = VertexClient(stack.vertex_url, requests.Session(), 30.0)
    parent = f"projects/{VERTEX_PROJECT}/locations/"
    return [job for region in REGIONS for job in lister.list_custom_jobs(parent + region)]


class _Run:
    """Items published by `dispatchers` threads while one sweep loop runs."""

    def __init__(self, stack: Stack, queue: str, config: dict[str, Any], dispatchers: int = 4):
        self.project = stack.new_project()
        stack.apply_env(self.project)
        self.store, make = _app(stack, self.project)
        apply_queue(self.store, queue, config)
        self.queue = queue
        self.apps = [make() for _ in range(dispatchers)]
        self.stop = threading.Event()
        self.raised = 0
        self.sweeper = threading.Thread(target=self._sweeps)

    def _sweeps(self) -> None:
        while not self.stop.is_set():
            self.apps[0].sweeper.loop(INTERVAL, PERIOD)

    def publish(self, items: int, per_second: float = 0.0) -> None:
        """Every item, as fast as the dispatchers go, or paced to `per_second`."""
        ids = [f"i{n:05d}" for n in range(items)]
        self.raised += deliver_all(self.apps, self.queue, ids, per_second)

    def wait(self, done: Callable[[], bool], seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if done():
                return True
            time.sleep(0.25)
        return False

    def states(self) -> Counter[str]:
        docs = self.store.db.collection("items").select(["state", "queue"]).stream()
        return Counter(str((d.to_dict() or {}).get("state")) for d in docs)

    def items(self) -> list[dict[str, Any]]:
        return [d.to_dict() or {} for d in self.store.db.collection("items").stream()]

    def __enter__(self) -> _Run:
        logging.disable(logging.INFO)
        self.sweeper.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.sweeper.join()
        logging.disable(logging.NOTSET)


def _duplicates(jobs: list[dict[str, Any]]) -> int:
    """Jobs beyond one per (item, attempt): what exactly-once forbids."""
    per = Counter(
        (job["labels"].get("launchq-item"), job["labels"].get("launchq-attempt")) for job in jobs
    )
    return sum(count - 1 for count in per.values())


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def failover(stack: Stack, items: int = 50) -> dict[str, Any]:
    stack.admin.reset(delays={"queued": 0.05, "pending": 0.05, "running": 0.5})
    stack.admin.add_scarcity("stockout", "us-central1", delay_seconds=0.2)
    config = queue_config(max_jobs=-1, placements=LADDER, retry=RETRY)
    with _Run(stack, "failover", config) as run:
        # Paced under the creation budget (10/s per region at this scale): the lag measured is
        # the sweep's, not a queue of creates waiting for budget windows.
        run.publish(items, per_second=4)
        run.wait(lambda: run.states().get("SUCCEEDED", 0) >= items, 120)
        jobs = _jobs(stack)
        states = run.states()
    by_item: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for job in jobs:
        by_item[job["labels"]["launchq-item"]][job["labels"]["launchq-attempt"]] = job
    lags = [
        _moment(attempts["2"]["createTime"]) - _moment(attempts["1"]["endTime"])
        for attempts in by_item.values()
        if "1" in attempts and "2" in attempts and attempts["1"].get("endTime")
    ]
    moved = sum(1 for a in by_item.values() if "2" in a and "/us-east4/" in str(a["2"]["name"]))
    return {
        "items": items,
        "scale": f"{SCALE:g}x: pass interval {INTERVAL:g} s, period {PERIOD:g} s",
        "moved_to_us_east4": moved,
        "succeeded": states.get("SUCCEEDED", 0),
        "lag_p50_s": round(_pct(lags, 0.5), 3),
        "lag_p95_s": round(_pct(lags, 0.95), 3),
        "lag_max_s": round(max(lags, default=float("nan")), 3),
        "lag_p95_of_period": round(_pct(lags, 0.95) / PERIOD, 3),
        "lag_p95_of_interval": round(_pct(lags, 0.95) / INTERVAL, 3),
        "duplicates": _duplicates(jobs),
        "messages_raised": run.raised,
    }


def _burst_once(
    stack: Stack, items: int, run_s: float, placements: list[dict[str, Any]] | None
) -> dict[str, Any]:
    stack.admin.reset(
        delays={"queued": 0.0, "pending": 0.0, "running": run_s}, quotas={METRIC: A100_QUOTA}
    )
    config = queue_config(max_jobs=200, retry=RETRY)
    config["spec"]["worker_pool_specs"][0]["machine_spec"] = {
        "machine_type": "a2-highgpu-2g",
        "accelerator_type": "NVIDIA_TESLA_A100",
        "accelerator_count": GPUS_PER_JOB,
    }
    if placements:
        config["placements"] = placements
    started = time.monotonic()
    with _Run(stack, "burst", config) as run:
        run.publish(items)
        created = run.wait(lambda: len(_jobs(stack)) >= items, items * run_s + 120)
        makespan = time.monotonic() - started
        run.wait(lambda: run.states().get("SUCCEEDED", 0) >= items, 60)
        jobs = _jobs(stack)
        states = run.states()
    running: dict[str, int] = {}
    for region in REGIONS:
        edges = sorted(
            [
                (_moment(j["startTime"]), 1)
                for j in jobs
                if region in j["name"] and j.get("startTime")
            ]
            + [
                (_moment(j["endTime"]), -1)
                for j in jobs
                if region in j["name"] and j.get("startTime") and j.get("endTime")
            ]
        )
        now = most = 0
        for _at, step in edges:
            now += step
            most = max(most, now)
        running[region] = most
    refused = stack.admin.counters().get("CreateCustomJob", 0) - len(jobs)
    return {
        "all_created": created,
        "makespan_s": round(makespan, 2),
        "jobs": len(jobs),
        "max_running_per_region": running,
        "quota_jobs_per_region": A100_QUOTA // GPUS_PER_JOB,
        "quota_refusals": refused,
        "duplicates": _duplicates(jobs),
        "messages_raised": run.raised,
        "item_states": dict(states),
    }


def burst(stack: Stack, items: int = 500, run_s: float = 2.0) -> dict[str, Any]:
    one = _burst_once(stack, items, run_s, None)
    two = _burst_once(stack, items, run_s, LADDER)
    return {
        "items": items,
        "run_s": run_s,
        "one_placement": one,
        "two_placements": two,
        "makespan_ratio_two_over_one": round(two["makespan_s"] / one["makespan_s"], 3),
    }


def storm(stack: Stack, items: int = 50, fraction: float = 0.3) -> dict[str, Any]:
    stack.admin.reset(delays={"queued": 0.05, "pending": 0.05, "running": 1.0}, seed=7)
    stack.admin.add_scarcity("preempt", "*", strategy="SPOT", fraction=fraction, delay_seconds=0.3)
    placements = [
        {"name": "central-spot", "scheduling_strategy": "SPOT"},
        {**LADDER[1], "name": "east-spot", "scheduling_strategy": "SPOT"},
    ]
    config = queue_config(max_jobs=-1, placements=placements, retry=RETRY)
    with _Run(stack, "storm", config) as run:
        run.publish(items)
        run.wait(lambda: run.states().get("SUCCEEDED", 0) >= items, 180)
        jobs = _jobs(stack)
        states = run.states()
        records = run.items()
    same_dir = resumed = 0
    by_item: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for job in jobs:
        by_item[job["labels"]["launchq-item"]].append(job)
    for attempts in by_item.values():
        ordered = sorted(attempts, key=lambda j: int(j["labels"]["launchq-attempt"]))
        dirs = [_env(j).get("LAUNCHQ_CHECKPOINT_DIR") for j in ordered]
        for before, after in itertools.pairwise(dirs):
            resumed += 1
            same_dir += before is not None and before == after
    preempted = sum(
        1
        for r in records
        if any(a.get("failure_class") == "preempted" for a in r.get("attempts") or [])
    )
    return {
        "items": items,
        "preempt_fraction": fraction,
        "succeeded": states.get("SUCCEEDED", 0),
        "items_preempted_at_least_once": preempted,
        "resumed_attempts": resumed,
        "resumed_with_the_same_checkpoint_dir": same_dir,
        "duplicates": _duplicates(jobs),
        "messages_raised": run.raised,
    }


def _env(job: dict[str, Any]) -> dict[str, str]:
    container = job["jobSpec"]["workerPoolSpecs"][0].get("containerSpec", {})
    return {e["name"]: e["value"] for e in container.get("env", [])}


def measure(
    stack: Stack, items: int = 50, burst_items: int = 500, run_s: float = 2.0
) -> dict[str, Any]:
    out = {
        "failover": failover(stack, items),
        "burst": burst(stack, burst_items, run_s),
        "storm": storm(stack, items),
    }
    out["met"] = {
        # Seen by the next pass (at most one interval after the failure), created by that pass
        # before the one after it starts.
        "failover_p95_within_one_pass": out["failover"]["lag_p95_of_interval"] <= 2.0,
        "burst_ratio_at_most_0_6": out["burst"]["makespan_ratio_two_over_one"] <= 0.6,
        "storm_all_succeeded": out["storm"]["succeeded"] == items,
        "no_duplicates": all(
            part["duplicates"] == 0
            for part in (
                out["failover"],
                out["storm"],
                out["burst"]["one_placement"],
                out["burst"]["two_placements"],
            )
        ),
        "quota_never_exceeded": all(
            most <= A100_QUOTA // GPUS_PER_JOB
            for key in ("one_placement", "two_placements")
            for most in out["burst"][key]["max_running_per_region"].values()
        ),
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--burst-items", type=int, default=500)
    parser.add_argument("--run-s", type=float, default=2.0)
    parser.add_argument("--only", choices=["failover", "burst", "storm"])
    args = parser.parse_args()
    with local_stack() as stack:
        if args.only == "failover":
            result: Any = failover(stack, args.items)
        elif args.only == "burst":
            result = burst(stack, args.burst_items, args.run_s)
        elif args.only == "storm":
            result = storm(stack, args.items)
        else:
            result = measure(stack, args.items, args.burst_items, args.run_s)
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
