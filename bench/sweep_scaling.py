"""Sweep scaling: Vertex calls, Firestore reads/writes and wall time of one sweep over N items.

Seeds N items directly (jobs created on the Vertex stand-in with the launchq labels, item
documents written in batches, as the dispatcher would leave them), then runs a busy sweep (every
job changed state since it was recorded) and a quiet one (nothing changed), and in the same run
the naive baseline W&B's agent uses: one GetCustomJob per job. Vertex calls are the stand-in's
counters; Firestore RPCs, documents read and writes are counted on the wire. Prints one JSON
line per N.

    .venv/bin/python -m bench.sweep_scaling --items 100 1000 10000
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import requests

from bench.common import FirestoreCounter, Stack, local_stack
from launchq.gcp.vertex import CallRetry, VertexClient
from launchq.settings import Settings
from launchq.spec.labels import job_labels
from launchq.store import ITEMS, item_doc_id, utcnow
from launchq.store.firestore import FirestoreStore
from launchq.sweep import Sweeper
from launchq.wiring import build
from launchq_client.configs import apply_queue

QUEUE = {
    "project": "launchq-bench",
    "region": "us-central1",
    "max_jobs": -1,
    "spec": {
        "worker_pool_specs": [
            {
                "machine_spec": {"machine_type": "n1-standard-4"},
                "replica_count": 1,
                "container_spec": {"image_uri": "${image_uri}"},
            }
        ],
        "staging_bucket": "gs://launchq-bench",
    },
}
PARENT = "projects/launchq-bench/locations/us-central1"


def seed(store: FirestoreStore, client: VertexClient, queue: str, count: int) -> None:
    def create(n: int) -> tuple[str, dict[str, Any]]:
        item_id = f"item-{n:06d}"
        labels = {**job_labels(queue, item_id), "launchq-attempt": "1"}
        body = {
            "displayName": item_id,
            "labels": labels,
            "jobSpec": {
                "workerPoolSpecs": [
                    {
                        "machineSpec": {"machineType": "n1-standard-4"},
                        "replicaCount": "1",
                        "containerSpec": {"imageUri": "gcr.io/p/t:1"},
                    }
                ]
            },
        }
        return item_id, client.create_custom_job(PARENT, body)

    with ThreadPoolExecutor(8) as pool:
        created = list(pool.map(create, range(count)))
    now = utcnow()
    batch, pending = store.db.batch(), 0
    for item_id, job in created:
        doc = store.db.collection(ITEMS).document(item_doc_id(queue, item_id))
        batch.set(
            doc,
            {
                "queue": queue,
                "item_id": item_id,
                "state": "SUBMITTED",
                "priority": 2,
                "enqueued_at": now,
                "updated_at": now,
                "parent": PARENT,
                "project": "launchq-bench",
                "region": "us-central1",
                "attempt": 1,
                "attempts": [{"n": 1, "job_name": job["name"]}],
                "job": {
                    "name": job["name"],
                    "vertex_state": "JOB_STATE_QUEUED",
                    "create_time": job["createTime"],
                },
                "history": [],
            },
        )
        pending += 1
        if pending == 400:
            batch.commit()
            batch, pending = store.db.batch(), 0
    if pending:
        batch.commit()


def _sweep_once(sweeper: Sweeper, stack: Stack, counter: FirestoreCounter) -> dict[str, Any]:
    stack.admin.reset_counters()
    counter.reset()
    started = time.perf_counter()
    summary = sweeper.run()
    elapsed = time.perf_counter() - started
    calls = stack.admin.counters()
    firestore_counts = counter.snapshot()
    return {
        "wall_s": round(elapsed, 2),
        "vertex_calls": sum(calls.values()),
        "vertex_calls_by_method": {k: v for k, v in calls.items() if v},
        "firestore_rpcs": firestore_counts["rpcs_total"],
        "firestore_docs_read": firestore_counts["docs_read"],
        "firestore_writes": firestore_counts["writes"],
        "items_seen": summary.items_seen,
        "transitions": summary.transitions,
        "errors": summary.errors[:5],
    }


def measure(stack: Stack, count: int, busy: bool = True) -> dict[str, Any]:
    """Seed `count` SUBMITTED items whose jobs are RUNNING on the stand-in, then sweep twice.

    The first ("busy") sweep finds every job changed and records `count` transitions, each a
    Firestore compare-and-swap plus a state-change event; the second ("quiet") finds nothing
    new, which is the steady state of a queue whose jobs run for longer than a minute. Then the
    naive baseline: one GetCustomJob per item, one after the other, as W&B's agent polls.
    """
    project = stack.new_project()
    stack.apply_env(project)
    stack.pubsub(project).create_topic("launchq-events")
    # Jobs are RUNNING as soon as they exist and stay so: every seeded item is out of date.
    stack.admin.reset(delays={"queued": 0, "pending": 0, "running": None})
    db = stack.firestore(project)
    store = FirestoreStore(db)
    client = VertexClient(
        stack.vertex_url, requests.Session(), 30.0, CallRetry(sleep=lambda _s: None)
    )
    settings = Settings(
        project=project,
        events_topic="launchq-events",
        vertex_endpoint=stack.vertex_url,
        create_rate_per_minute=0,  # slot refill is measured here; the budget in bench/capacity
    )
    app = build(
        replace(settings, queue_cache_seconds=10.0), store=store, vertex_for=lambda _r: client
    )
    apply_queue(store, "bench", QUEUE)
    started = time.perf_counter()
    seed(store, client, "bench", count)
    seed_s = time.perf_counter() - started
    sweeper = app.sweeper
    logging.disable(logging.INFO)  # one JSON log line per transition is not what is measured
    try:
        with FirestoreCounter() as counter:
            if busy:
                busy_sweep = _sweep_once(sweeper, stack, counter)
            else:  # record the changes unmeasured, so the quiet sweep below is quiet
                sweeper.run()
                busy_sweep = None
            quiet_sweep = _sweep_once(sweeper, stack, counter)
    finally:
        logging.disable(logging.NOTSET)
    names = [(s.to_dict() or {})["job"]["name"] for s in db.collection(ITEMS).stream()]
    stack.admin.reset_counters()
    started = time.perf_counter()
    for name in names:
        client.get_custom_job(name)
    naive_s = time.perf_counter() - started
    naive_calls = sum(stack.admin.counters().values())
    result: dict[str, Any] = {
        "items": count,
        "seed_s": round(seed_s, 1),
        "busy_sweep": busy_sweep,
        "quiet_sweep": quiet_sweep,
        "naive_get_per_item": {"vertex_calls": naive_calls, "wall_s": round(naive_s, 2)},
        "calls_ratio_vs_naive": round(quiet_sweep["vertex_calls"] / max(naive_calls, 1), 4),
    }
    if count >= 10_000:
        worst = busy_sweep or quiet_sweep
        result["goals"] = {"vertex_calls_max": 100, "wall_s_max": 30}
        result["met"] = {
            "vertex_calls": worst["vertex_calls"] <= 100,
            "wall_s_quiet": quiet_sweep["wall_s"] <= 30,
            "wall_s_busy": None if busy_sweep is None else busy_sweep["wall_s"] <= 30,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, nargs="+", default=[100, 1000, 10_000])
    parser.add_argument(
        "--no-busy", action="store_true", help="skip measuring the sweep that records every item"
    )
    args = parser.parse_args()
    with local_stack() as stack:
        for count in args.items:
            print(json.dumps(measure(stack, count, busy=not args.no_busy)), flush=True)


if __name__ == "__main__":
    main()
