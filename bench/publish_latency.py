"""Publish -> submit latency: Pub/Sub emulator push -> dispatcher (functions-framework) -> Vertex.

One dispatcher process serves the dispatch function exactly as `functions-framework` runs it
(gunicorn, one worker, its default `cpu_count * 4` threads); a real push subscription on the
Pub/Sub emulator delivers to it. Items are published one request each over Pub/Sub's REST API;
the publisher's clock is read right before each publish, and the stand-in's own record of the
CreateCustomJob (`history[0].time`, same machine, same clock) ends the interval. Jobs are
matched to items by their `launchq-item` label.

Two phases of `--items` items each, after a short warm-up (the first, cold request is
measured by `bench.cold_start`, not here):

- **paced**: an open-loop publisher at `--rate` items/s, below the dispatcher's capacity, so the
  latencies are the pipeline's own, not queueing;
- **burst**: every item published at once; items/s is the dispatcher's throughput (first publish
  to last create), and the latencies show the queueing a burst causes.

    .venv/bin/python -m bench.publish_latency --items 1000 --rate 20
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    Stack,
    item,
    local_stack,
    percentiles,
    queue_config,
    served_dispatcher,
    wait_until,
)
from launchq.spec.labels import ITEM_LABEL, job_labels
from launchq.store.firestore import FirestoreStore
from launchq_client.configs import apply_queue

QUEUE = "latency"
TOPIC = f"launchq-q-{QUEUE}"  # the queue's own topic (launchq.spec.topics)


def _publish_all(pubsub: Any, ids: list[str], rate: float | None) -> dict[str, float]:
    sent: dict[str, float] = {}
    start = time.perf_counter()
    for n, item_id in enumerate(ids):
        if rate:
            due = start + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        data = json.dumps(item(QUEUE, item_id)).encode()
        sent[item_id] = pubsub.publish(TOPIC, data)
    return sent


def _created_at(stack: Stack, ids: list[str], timeout: float) -> tuple[dict[str, float], int]:
    """Create time per item id (stand-in clock) once every item has its job; duplicates."""
    by_label = {job_labels(QUEUE, i)[ITEM_LABEL]: i for i in ids}
    found: dict[str, float] = {}
    duplicates = 0

    def scan() -> bool:
        nonlocal duplicates
        found.clear()
        duplicates = 0
        for job in stack.admin.jobs():
            item_id = by_label.get(job["labels"].get(ITEM_LABEL, ""))
            if item_id is None:
                continue
            if item_id in found:
                duplicates += 1
            found[item_id] = min(found.get(item_id, 1e30), job["history"][0]["time"])
        return len(found) == len(ids)

    wait_until(scan, timeout, f"{len(ids)} jobs on the stand-in", every=0.5)
    return found, duplicates


def _phase(
    stack: Stack, pubsub: Any, prefix: str, count: int, rate: float | None
) -> dict[str, Any]:
    ids = [f"{prefix}-{n:05d}" for n in range(count)]
    sent = _publish_all(pubsub, ids, rate)
    created, duplicates = _created_at(stack, ids, timeout=max(120.0, count * 0.5))
    latencies_ms = [(created[i] - sent[i]) * 1000 for i in ids]
    span = max(created.values()) - min(sent.values())
    return {
        "items": count,
        "publish_rate_per_s": rate,
        "latency_ms": percentiles(latencies_ms),
        "items_per_s": round(count / span, 1),
        "span_s": round(span, 2),
        "duplicate_jobs": duplicates,
    }


def measure(
    stack: Stack, items: int = 1000, rate: float = 20.0, burst: bool = True
) -> dict[str, Any]:
    project = stack.new_project()
    apply_queue(FirestoreStore(stack.firestore(project)), QUEUE, queue_config())
    pubsub = stack.pubsub(project)
    pubsub.create_topic(TOPIC)
    pubsub.create_topic("launchq-events")
    stack.admin.reset(delays={"queued": None})
    with (
        tempfile.TemporaryDirectory() as tmp,
        served_dispatcher(stack, project, Path(tmp) / "dispatch.log") as url,
    ):
        pubsub.create_push_subscription(
            "dispatch-push", TOPIC, f"{url}/projects/{project}/topics/{TOPIC}"
        )
        try:
            warm = _phase(stack, pubsub, "warm", 5, None)  # cold start paid here, not below
            result: dict[str, Any] = {
                "dispatcher": "functions-framework 1 worker (gunicorn gthread, default threads)",
                "warmup": warm,
                "paced": _phase(stack, pubsub, "paced", items, rate),
            }
            if burst:
                result["burst"] = _phase(stack, pubsub, "burst", items, None)
        finally:
            pubsub.delete_subscription("dispatch-push")
    paced = result["paced"]["latency_ms"]
    result["goals"] = {"p50_ms_max": 100, "p99_ms_max": 300}
    result["met"] = {"p50": paced["p50"] <= 100, "p99": paced["p99"] <= 300}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="paced phase, items/s")
    args = parser.parse_args()
    with local_stack() as stack:
        print(json.dumps(measure(stack, args.items, args.rate), indent=2))


if __name__ == "__main__":
    main()
