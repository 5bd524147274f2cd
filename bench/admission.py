"""Admission under load: many items into a `max_jobs: 10` queue, jobs ending at random times.

Items are published at once through the Pub/Sub emulator to the dispatcher under
functions-framework (its own process); the dispatcher admits what fits, the rest waits QUEUED.
Sweeps run back to back in this process (`--sweep-interval` adds a pause), recording finished
jobs, freeing their slots and admitting the next items. A monitor polls the stand-in's admin API
every 50 ms: it counts active jobs (the sampled concurrency) and ends each job, with
`:setState SUCCEEDED`, at a random time (`--min-run`..`--max-run` s after its creation).

Reported, from the stand-in's own timestamps: the maximum number of jobs active at once (exact,
from every job's create and end times; and as sampled), and how long a freed slot waits for its
next item: the k-th job end to the (k + max_jobs)-th job creation (the (k + max_jobs)-th job
can only start once k slots have been freed, so this is the time the k-th freed capacity sat
idle).

    .venv/bin/python -m bench.admission --items 500 --max-jobs 10
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

from bench.common import (
    Stack,
    item,
    local_stack,
    percentiles,
    queue_config,
    served_dispatcher,
)
from launchq.gcp.vertex import VertexClient
from launchq.settings import Settings
from launchq.store.firestore import FirestoreStore
from launchq.sweep import Sweeper
from launchq.wiring import build
from launchq_client.configs import apply_queue
from launchq_local.standin.lifecycle import TERMINAL

QUEUE = "admission"
TOPIC = f"launchq-q-{QUEUE}"  # the queue's own topic (launchq.spec.topics)


class Monitor(threading.Thread):
    """Samples active jobs and ends each job at its random finish time."""

    def __init__(
        self, stack: Stack, min_run: float, max_run: float, seed: int, every: float = 0.05
    ) -> None:
        super().__init__(daemon=True, name="bench-monitor")
        self.stack = stack
        self.min_run, self.max_run = min_run, max_run
        self.random = random.Random(seed)
        self.every = every
        self.finish_at: dict[str, float] = {}
        self.max_active = 0
        self.samples = 0
        self.jobs: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self._tick()
                self.stop.wait(self.every)
        except Exception as exc:  # reported by the benchmark
            self.error = exc

    def _tick(self) -> None:
        jobs = self.stack.admin.jobs()
        now = time.time()
        active = [j for j in jobs if j["state"] not in TERMINAL]
        self.max_active = max(self.max_active, len(active))
        self.samples += 1
        self.jobs = jobs
        for job in active:
            created = job["history"][0]["time"]
            due = self.finish_at.setdefault(
                job["id"], created + self.random.uniform(self.min_run, self.max_run)
            )
            if due <= now:
                self.stack.admin.set_state(job["id"], "JOB_STATE_SUCCEEDED")


class SweepLoop(threading.Thread):
    def __init__(self, sweeper: Sweeper, interval: float) -> None:
        super().__init__(daemon=True, name="bench-sweeps")
        self.sweeper = sweeper
        self.interval = interval
        self.durations: list[float] = []
        self.admitted = 0
        self.stop = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                summary = self.sweeper.run()
                self.admitted += summary.admitted
                self.errors.extend(summary.errors)
            except Exception as exc:  # keep sweeping, as Cloud Scheduler would
                self.errors.append(repr(exc))
            self.durations.append(time.perf_counter() - started)
            self.stop.wait(self.interval)


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = [(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals]
    events.sort(key=lambda ev: (ev[0], ev[1]))  # an end before a start at the same instant
    active = best = 0
    for _, delta in events:
        active += delta
        best = max(best, active)
    return best


def measure(
    stack: Stack,
    items: int = 500,
    max_jobs: int = 10,
    min_run: float = 0.2,
    max_run: float = 2.0,
    sweep_interval: float = 0.0,
    seed: int = 7,
    timeout: float = 600.0,
) -> dict[str, Any]:
    project = stack.new_project()
    stack.apply_env(project)
    store = FirestoreStore(stack.firestore(project))
    apply_queue(store, QUEUE, queue_config(max_jobs=max_jobs))
    pubsub = stack.pubsub(project)
    pubsub.create_topic(TOPIC)
    pubsub.create_topic("launchq-events")
    stack.admin.reset(delays={"queued": 0.05, "pending": 0.05, "running": None})
    settings = Settings(
        project=project,
        events_topic="launchq-events",
        vertex_endpoint=stack.vertex_url,
        create_rate_per_minute=0,  # slot refill is measured here; the budget in bench/capacity
    )
    vertex = VertexClient(stack.vertex_url, requests.Session(), 30.0)
    app = build(settings, store=store, vertex_for=lambda _r: vertex)
    monitor = Monitor(stack, min_run, max_run, seed)
    sweeps = SweepLoop(app.sweeper, sweep_interval)
    logging.disable(logging.INFO)
    started = time.time()
    try:
        with (
            tempfile.TemporaryDirectory() as tmp,
            served_dispatcher(stack, project, Path(tmp) / "dispatch.log") as url,
        ):
            pubsub.create_push_subscription(
                "dispatch-push", TOPIC, f"{url}/projects/{project}/topics/{TOPIC}"
            )
            monitor.start()
            sweeps.start()
            for n in range(items):
                pubsub.publish(TOPIC, json.dumps(item(QUEUE, f"a-{n:05d}")).encode())
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and monitor.error is None:
                jobs = monitor.jobs
                if len(jobs) >= items and all(j["state"] in TERMINAL for j in jobs):
                    break
                time.sleep(0.2)
            pubsub.delete_subscription("dispatch-push")
    finally:
        monitor.stop.set()
        sweeps.stop.set()
        monitor.join(10)
        sweeps.join(60)
        logging.disable(logging.NOTSET)
    if monitor.error is not None:
        raise monitor.error
    elapsed = time.time() - started
    jobs = stack.admin.jobs()
    intervals = []
    for job in jobs:
        history = job["history"]
        end = next((h["time"] for h in history if h["state"] in TERMINAL), None)
        intervals.append((history[0]["time"], end if end is not None else time.time()))
    creates = sorted(s for s, _ in intervals)
    ends = sorted(e for _, e in intervals)
    waits_ms = [
        (creates[k + max_jobs] - ends[k]) * 1000 for k in range(max(0, len(creates) - max_jobs))
    ]
    states = [(s.to_dict() or {}).get("state") for s in store.db.collection("items").stream()]
    result: dict[str, Any] = {
        "items": items,
        "max_jobs": max_jobs,
        "job_run_s": [min_run, max_run],
        "jobs_created": len(jobs),
        "all_finished": len(jobs) >= items and all(j["state"] in TERMINAL for j in jobs),
        "items_succeeded": sum(1 for s in states if s == "SUCCEEDED"),
        "max_concurrency_exact": _max_overlap(intervals),
        "max_concurrency_sampled": monitor.max_active,
        "samples": monitor.samples,
        "slot_wait_ms": percentiles(waits_ms),
        "sweeps": len(sweeps.durations),
        "sweep_s_median": round(statistics.median(sweeps.durations), 3)
        if sweeps.durations
        else None,
        "sweep_errors": sweeps.errors[:5],
        "wall_s": round(elapsed, 1),
        "jobs_per_s": round(len(jobs) / elapsed, 2),
    }
    result["goals"] = {"max_concurrency_max": max_jobs}
    result["met"] = {
        "max_concurrency": max(result["max_concurrency_exact"], monitor.max_active) <= max_jobs
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--max-jobs", type=int, default=10)
    parser.add_argument("--min-run", type=float, default=0.2)
    parser.add_argument("--max-run", type=float, default=2.0)
    parser.add_argument("--sweep-interval", type=float, default=0.0)
    args = parser.parse_args()
    with local_stack() as stack:
        result = measure(
            stack, args.items, args.max_jobs, args.min_run, args.max_run, args.sweep_interval
        )
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
