"""Vertex's limits under a burst, and refill latency of the looping sweep.

**Burst** (`burst`): `items` items into a queue with `max_jobs` 200; every job asks for 2 A100s
and the stand-in holds the region to a quota of 16 A100s (`custom_model_training_nvidia_a100_gpus`,
its own quota check, answering Vertex's 429 RESOURCE_EXHAUSTED with the metric), so at most 8 jobs
run at once and the queue's 200 slots are never the limit: quota is. Everything is scaled 10x
faster, and says so: 600 creates/min instead of 60, quota backoff 1.5 s doubling to 24 s instead
of 15 s to 240 s, sweep interval 1 s and period 6 s instead of 10 s and 60 s; the stand-in runs
each job `run_s` seconds, then it succeeds and frees its GPUs. Eight dispatcher instances
(threads, each its own `wiring.build`) deliver the items while one sweep loop runs. Reported:
refused creates per created job (each refusal is a create request spent for nothing; the
stand-in counts every create it receives), the most creates Vertex saw in any one second against
the budget, makespan against the floor (the quota's `items / 8 * run_s`, or the budget's
`items / 10` s if larger), messages that raised (would be redelivered, then dead-lettered: must
be 0).

**Refill** (`refill`): a `max_jobs` queue kept full; jobs end at random times; the latency
from a job's end to its freed slot's next create, in units of the schedule period, for one sweep
pass per period (what Cloud Scheduler alone gives) and for the loop (a pass every interval).

    .venv/bin/python -m bench.capacity --items 1000 --run-s 1.0
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import requests
from google.cloud.firestore import FieldFilter

from bench.common import PARENT, Stack, item, local_stack, queue_config
from launchq.dispatch import PubsubMessage
from launchq.gcp.vertex import VertexClient
from launchq.settings import Settings
from launchq.spec.topics import queue_topic
from launchq.store.firestore import FirestoreStore
from launchq.wiring import Launchq, build
from launchq_client.configs import apply_queue

A100_QUOTA = 16
GPUS_PER_JOB = 2
METRIC = "custom_model_training_nvidia_a100_gpus"
SCALE = 10.0  # everything runs this much faster than in production


def _settings(stack: Stack, project: str, **extra: Any) -> Settings:
    return Settings(project=project, events_topic="", vertex_endpoint=stack.vertex_url, **extra)


def _moment(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _vertex_timeline(stack: Stack) -> dict[str, Any]:
    """From the stand-in's own job timestamps: creates per second and per (scaled) minute, and
    the most jobs running at once."""
    lister = VertexClient(stack.vertex_url, requests.Session(), 30.0)
    jobs = list(lister.list_custom_jobs(PARENT))
    creates = sorted(_moment(job["createTime"]) for job in jobs)
    per_second = Counter(int(at) for at in creates)
    minute = 60 / SCALE
    begin, per_minute = 0, 0
    for end, at in enumerate(creates):  # a sliding window of one scaled minute
        while at - creates[begin] >= minute:
            begin += 1
        per_minute = max(per_minute, end - begin + 1)
    # Running from startTime to endTime: +1 at a start, -1 at an end (ends first at a tie).
    edges = sorted(
        [(_moment(job["startTime"]), 1) for job in jobs if job.get("startTime")]
        + [
            (_moment(job["endTime"]), -1)
            for job in jobs
            if job.get("startTime") and job.get("endTime")
        ]
    )
    running = most_running = 0
    for _at, step in edges:
        running += step
        most_running = max(most_running, running)
    return {
        "max_creates_in_a_second": max(per_second.values(), default=0),
        "max_creates_in_a_scaled_minute": per_minute,
        "max_jobs_running": most_running,
    }


def _item_states(store: FirestoreStore, queue: str) -> Counter[str]:
    items = store.db.collection("items")
    query = items.where(filter=FieldFilter("queue", "==", queue)).select(["state"])
    return Counter(str((doc.to_dict() or {}).get("state")) for doc in query.stream())


def burst(stack: Stack, items: int = 1000, run_s: float = 1.0, dispatchers: int = 8) -> Any:
    project = stack.new_project()
    stack.apply_env(project)
    stack.admin.reset(
        delays={"queued": 0.0, "pending": 0.0, "running": run_s}, quotas={METRIC: A100_QUOTA}
    )
    store = FirestoreStore(stack.firestore(project))
    config = queue_config(max_jobs=200)
    config["spec"]["worker_pool_specs"][0]["machine_spec"] = {
        "machine_type": "a2-highgpu-2g",
        "accelerator_type": "NVIDIA_TESLA_A100",
        "accelerator_count": GPUS_PER_JOB,
    }
    apply_queue(store, "burst", config)
    rate = 60 * SCALE
    settings = _settings(
        stack,
        project,
        create_rate_per_minute=rate,
        quota_backoff_initial_seconds=15 / SCALE,
        quota_backoff_max_seconds=240 / SCALE,
        queue_cache_seconds=0.0,
    )
    apps: list[Launchq] = [build(settings, store=store) for _ in range(dispatchers)]
    stop = threading.Event()
    raised = 0

    def sweeps() -> None:
        while not stop.is_set():
            apps[0].sweeper.loop(60 / SCALE / 6, 60 / SCALE)

    def deliver(index: int) -> int:
        errors = 0
        for n in range(index, items, dispatchers):
            payload = json.dumps(item("burst", f"b{n:05d}")).encode()
            try:
                apps[index].dispatcher.handle(
                    PubsubMessage(payload, {}, f"m{n}", topic=queue_topic("burst"))
                )
            except Exception:
                errors += 1
        return errors

    logging.disable(logging.INFO)
    sweeper = threading.Thread(target=sweeps)
    started = time.monotonic()
    try:
        sweeper.start()
        with ThreadPoolExecutor(dispatchers) as pool:
            raised = sum(pool.map(deliver, range(dispatchers)))
        delivered_s = time.monotonic() - started
        deadline = started + items / (A100_QUOTA / GPUS_PER_JOB) * run_s * 4 + 60
        while len(stack.admin.jobs()) < items:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        makespan = time.monotonic() - started
        # Then every item to its end, as the sweep records it.
        while _item_states(store, "burst").get("SUCCEEDED", 0) < items:
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        stop.set()
        sweeper.join()
        logging.disable(logging.NOTSET)
    created = len(stack.admin.jobs())
    refused = stack.admin.counters().get("CreateCustomJob", 0) - created
    timeline = _vertex_timeline(stack)
    states = _item_states(store, "burst")
    # Neither limit can be beaten: the quota runs 8 jobs at once, the budget creates
    # `rate / 60` a second; the makespan is compared with the larger of the two floors.
    floor = max(items / (A100_QUOTA / GPUS_PER_JOB) * run_s, items / (rate / 60))
    return {
        "items": items,
        "scale": f"{SCALE:g}x faster than production (rate, backoff, sweep interval, period)",
        "created": created,
        "quota_refusals": refused,
        "refusals_per_job": round(refused / max(created, 1), 3),
        "messages_raised": raised,
        "delivered_s": round(delivered_s, 2),
        "makespan_s": round(makespan, 2),
        "floor_s": round(floor, 2),
        "makespan_ratio": round(makespan / floor, 2),
        "budget_per_second": rate / 60,
        "budget_per_scaled_minute": rate / SCALE,
        "quota_jobs": A100_QUOTA // GPUS_PER_JOB,
        **timeline,
        "item_states": dict(states),
    }


def refill(
    stack: Stack, jobs: int = 40, max_jobs: int = 4, interval: float = 0.5, period: float = 3.0
) -> dict[str, Any]:
    """Freed slot -> next create, in schedule periods: one pass per period vs the loop."""
    out: dict[str, Any] = {"interval_s": interval, "period_s": period}
    for mode in ("one_pass_per_period", "loop"):
        out[mode] = _refill_once(stack, mode, jobs, max_jobs, interval, period)
    return out


def _refill_once(
    stack: Stack, mode: str, jobs: int, max_jobs: int, interval: float, period: float
) -> dict[str, Any]:
    project = stack.new_project()
    stack.apply_env(project)
    stack.admin.reset(delays={"queued": None})
    store = FirestoreStore(stack.firestore(project))
    apply_queue(store, "refill", queue_config(max_jobs=max_jobs))
    vertex = VertexClient(stack.vertex_url, requests.Session(), 30.0)
    settings = _settings(stack, project, create_rate_per_minute=0)
    app = build(settings, store=store, vertex_for=lambda _r: vertex)
    for n in range(jobs):
        payload = json.dumps(item("refill", f"r{n:04d}")).encode()
        app.dispatcher.handle(PubsubMessage(payload, {}, f"m{n}", topic=queue_topic("refill")))
    ended: list[float] = []
    created_at: list[float] = []
    timers: list[threading.Timer] = []
    stop = threading.Event()
    rng = random.Random(7)

    def end(job_name: str) -> None:
        stack.admin.set_state(job_name, "JOB_STATE_SUCCEEDED")
        ended.append(time.time())

    def ender() -> None:
        """Each job runs a random time (from when it is first seen), then succeeds."""
        seen: set[str] = set()
        while not stop.is_set():
            for job in stack.admin.jobs():
                name = str(job["name"])
                if name in seen or job["state"] != "JOB_STATE_QUEUED":
                    continue
                seen.add(name)
                created_at.append(time.time())
                timer = threading.Timer(rng.uniform(0.2, period), end, (name,))
                timer.daemon = True
                timers.append(timer)
                timer.start()
            stop.wait(0.02)

    watcher = threading.Thread(target=ender)
    watcher.start()
    logging.disable(logging.INFO)
    try:
        deadline = time.monotonic() + jobs / max_jobs * period * 3 + 30
        while len(created_at) < jobs and time.monotonic() < deadline:
            if mode == "loop":
                app.sweeper.loop(interval, period)
            else:
                app.sweeper.run()
                time.sleep(period)
    finally:
        stop.set()
        watcher.join()
        for timer in timers:
            timer.cancel()
        logging.disable(logging.NOTSET)
    return _refill_waits(sorted(ended), sorted(created_at), max_jobs, period)


def _refill_waits(
    ends: list[float], creates: list[float], max_jobs: int, period: float
) -> dict[str, Any]:
    """The k-th end frees the slot the (k + max_jobs)-th create takes."""
    waits = [
        creates[k + max_jobs] - ends[k]
        for k in range(min(len(ends), len(creates) - max_jobs))
        if creates[k + max_jobs] >= ends[k]
    ]
    ordered = sorted(waits)
    return {
        "refills": len(waits),
        "p50_periods": round(statistics.median(ordered) / period, 3) if waits else None,
        "p95_periods": round(ordered[int(0.95 * (len(ordered) - 1))] / period, 3)
        if waits
        else None,
        "max_periods": round(max(ordered) / period, 3) if waits else None,
    }


def budget_contention(
    stack: Stack, takers: int = 8, seconds: float = 5.0, rate: float = 600.0
) -> dict[str, Any]:
    """`takers` threads taking tokens as fast as they can for `seconds`: what a window grants,
    what a grant costs in Firestore requests, and how often any token document is written."""
    from launchq.capacity import Capacity

    project = stack.new_project()
    stack.apply_env(project)
    store = FirestoreStore(stack.firestore(project))
    capacity = Capacity(store, None, lambda _region: rate)  # type: ignore[arg-type]
    granted: list[float] = []
    attempts = 0
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def take() -> None:
        nonlocal attempts
        while time.monotonic() < end:
            ok = capacity.take_create("p", "us-central1")
            with lock:
                attempts += 1
                if ok:
                    granted.append(time.time())

    with ThreadPoolExecutor(takers) as pool:
        for _ in range(takers):
            pool.submit(take)
    docs = list(store.db.collection("budgets").stream())
    # Grants per window, counted from the token documents themselves (`KEY~WINDOW_START~N`),
    # not from when each take returned: under load a take granted at the end of one window can
    # return in the next second, which a client-side clock would count against the wrong window.
    per_window = Counter(int(d.id.rsplit("~", 2)[1]) for d in docs)
    full = [
        n for second, n in per_window.items() if second not in (min(per_window), max(per_window))
    ]
    return {
        "takers": takers,
        "rate_per_minute": rate,
        "granted": len(granted),
        "max_granted_in_a_window": max(per_window.values(), default=0),
        "tokens_per_window": rate / 60,
        "full_windows_granted_median": statistics.median(full) if full else None,
        "take_calls": attempts,
        "token_documents": len(docs),
        # A document written after its create() would have update_time != create_time.
        "token_documents_written_again": sum(d.update_time != d.create_time for d in docs),
    }


def measure(
    stack: Stack,
    items: int = 1000,
    run_s: float = 1.0,
    refill_jobs: int = 30,
    budget_seconds: float = 5.0,
) -> dict[str, Any]:
    burst_result = burst(stack, items, run_s)
    return {
        "burst": burst_result,
        "refill": refill(stack, refill_jobs),
        "budget_contention": budget_contention(stack, seconds=budget_seconds),
        "met": {
            "no_message_raised": burst_result["messages_raised"] == 0,
            "all_created": burst_result["created"] == items,
            "all_succeeded": burst_result["item_states"].get("SUCCEEDED", 0) == items,
            "within_quota": burst_result["max_jobs_running"] <= burst_result["quota_jobs"],
            "within_rate": burst_result["max_creates_in_a_scaled_minute"]
            <= burst_result["budget_per_scaled_minute"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--run-s", type=float, default=1.0)
    parser.add_argument("--refill-jobs", type=int, default=40)
    args = parser.parse_args()
    with local_stack() as stack:
        print(json.dumps(measure(stack, args.items, args.run_s, args.refill_jobs), indent=2))


if __name__ == "__main__":
    main()
