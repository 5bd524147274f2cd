"""Sweep scaling: Vertex calls and wall time of one sweep over N active items.

Seeds N items directly (jobs created on the Vertex stand-in with the launchq labels, item
documents written in batches, as the dispatcher would leave them), then runs one sweep, and in
the same run the naive baseline W&B's agent uses: one GetCustomJob per job. Prints one JSON line
per N with the ratio of the two.

    .venv/bin/python bench/sweep_scaling.py --items 1000 10000
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from google.cloud import firestore

from launchq.dispatch import Dispatcher
from launchq.emulators import start_stack
from launchq.events import EventPublisher
from launchq.labels import job_labels
from launchq.queues import QueueSource, apply_queue
from launchq.settings import Settings
from launchq.standin import Delays, StandinServer
from launchq.store import ITEMS, Store, item_doc_id, utcnow
from launchq.sweep import Sweeper
from launchq.vertex import RetryPolicy, VertexClient

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


def seed(store: Store, client: VertexClient, queue: str, count: int) -> None:
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


def measure(count: int) -> dict[str, Any]:
    with start_stack() as stack, StandinServer(delays=Delays(queued=None)) as standin:
        stack.apply_env()
        db = firestore.Client(project=stack.project)
        store = Store(db)
        client = VertexClient(
            standin.url, requests.Session(), 30.0, RetryPolicy(sleep=lambda _s: None)
        )
        settings = Settings(project=stack.project, events_topic="", vertex_endpoint=standin.url)
        queues = QueueSource(store, 10.0)
        dispatcher = Dispatcher(
            settings, store, queues, EventPublisher(stack.project, ""), lambda _r: client
        )
        apply_queue(store, "bench", QUEUE)
        seed(store, client, "bench", count)
        standin.admin.reset_counters()
        started = time.perf_counter()
        summary = Sweeper(store, dispatcher, queues).run()
        sweep_s = time.perf_counter() - started
        sweep_calls = standin.admin.counters()
        standin.admin.reset_counters()
        names = [(s.to_dict() or {})["job"]["name"] for s in db.collection(ITEMS).stream()]
        started = time.perf_counter()
        for name in names:
            client.get_custom_job(name)
        naive_s = time.perf_counter() - started
        naive_calls = standin.admin.counters()
        return {
            "items": count,
            "sweep_vertex_calls": sum(sweep_calls.values()),
            "sweep_s": round(sweep_s, 2),
            "sweep_items_seen": summary.items_seen,
            "sweep_errors": summary.errors,
            "naive_vertex_calls": sum(naive_calls.values()),
            "naive_s": round(naive_s, 2),
            "calls_ratio": round(sum(sweep_calls.values()) / max(sum(naive_calls.values()), 1), 4),
            "time_ratio": round(sweep_s / naive_s, 3),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, nargs="+", default=[100, 1000])
    args = parser.parse_args()
    for count in args.items:
        print(json.dumps(measure(count)), flush=True)


if __name__ == "__main__":
    main()
