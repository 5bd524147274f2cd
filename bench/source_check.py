"""What the source check adds to a dispatch: a source item vs an image item on the same queue.

    .venv/bin/python -m bench.source_check --items 100

A source item costs the dispatcher one more round trip than an image item: the metadata GET on its
archive (`launchq.builds.sources`, `launchq.gcp.gcs`) before it is recorded. Both kinds go through
the same `Dispatcher.handle` on one queue (a `source` block and `${image_uri}` in pool 0), against
the Firestore emulator, the Vertex stand-in and the GCS emulator (fake-gcs-server, loopback),
interleaved round by round so load changes hit them alike.

- `ratio` = median ms per source item / median ms per image item (same process, same run).
- `check_ms`: median time of the check alone (`SourceChecker.check`, the GET and the compare).

On loopback the GET is cheap next to the Firestore writes and the Create call; against real
Cloud Storage from a function in the bucket's region it is one more same-region request.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests

from bench.common import Stack, local_stack, queue_config
from launchq.builds.sources import SourceChecker
from launchq.dispatch import DispatchOutcome, PubsubMessage
from launchq.gcp.gcs import GcsClient
from launchq.gcp.vertex import VertexClient
from launchq.settings import Settings
from launchq.spec.item import ItemSource
from launchq.spec.topics import queue_topic
from launchq.store.firestore import FirestoreStore
from launchq.wiring import build
from launchq_client.configs import apply_queue
from launchq_client.source import SourceUploader, pack

QUEUE = "source-check"
EXECUTOR = "us-docker.pkg.dev/vertex-ai/training/pytorch-gpu.2-4.py310:latest"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "source-trainer"


def _message(payload: dict[str, Any]) -> PubsubMessage:
    # Published to the queue's own topic, as the dispatch function receives it.
    topic = queue_topic(QUEUE)
    return PubsubMessage(json.dumps(payload).encode(), {}, uuid.uuid4().hex, topic=topic)


def measure(stack: Stack, gcs: Any, items: int = 100) -> dict[str, Any]:
    """`gcs`: a running `launchq_local.gcs.GcsEmulator`."""
    project = stack.new_project()
    stack.apply_env(project)
    stack.admin.reset(delays={"queued": None})
    bucket = gcs.client(project).create_bucket(f"lqb-src-{uuid.uuid4().hex[:8]}")
    with tempfile.TemporaryDirectory(prefix="launchq-bench-") as scratch:
        packed = pack(EXAMPLE, Path(scratch))
        uploaded = SourceUploader(gcs.client(project), bucket.name).upload(packed)
    source = {"uri": uploaded.uri, "sha256": uploaded.sha256, "module": "trainer.task"}
    config = queue_config(source={"executor_image_uri": EXECUTOR})
    config["spec"]["staging_bucket"] = f"gs://{bucket.name}"
    store = FirestoreStore(stack.firestore(project))
    apply_queue(store, QUEUE, config)
    vertex = VertexClient(stack.vertex_url, requests.Session(), 30.0)
    settings = Settings(
        project=project,
        events_topic="",
        vertex_endpoint=stack.vertex_url,
        storage_endpoint=gcs.url,
        create_rate_per_minute=0,  # what is measured is the source check, not the budget
    )
    app = build(settings, store=store, vertex_for=lambda _region: vertex)
    kinds = {
        "image": lambda i: {"queue": QUEUE, "item_id": f"img-{i}", "image_uri": "gcr.io/p/t:1"},
        "source": lambda i: {"queue": QUEUE, "item_id": f"src-{i}", "source": source},
    }
    timings: dict[str, list[float]] = {name: [] for name in kinds}
    checks: list[float] = []
    checker_item = ItemSource.model_validate(source)
    body = {"jobSpec": {"baseOutputDirectory": {"outputUriPrefix": f"gs://{bucket.name}/x"}}}
    reader = GcsClient(gcs.url)
    checker = SourceChecker(lambda: reader)
    logging.disable(logging.INFO)
    try:
        for make in kinds.values():  # warm-up: connections, the queue config
            for n in range(3):
                app.dispatcher.handle(_message(make(f"warm-{n}")))
        checker.check(checker_item, body)
        for n in range(items):
            for name, make in kinds.items():
                started = time.perf_counter()
                result = app.dispatcher.handle(_message(make(f"{n:05d}")))
                timings[name].append(time.perf_counter() - started)
                assert result.outcome is DispatchOutcome.RECORDED, result
            started = time.perf_counter()
            assert checker.check(checker_item, body) is None
            checks.append(time.perf_counter() - started)
    finally:
        logging.disable(logging.NOTSET)
    medians = {name: statistics.median(values) * 1000 for name, values in timings.items()}
    return {
        "items": items,
        "ms_per_item_median": {name: round(value, 2) for name, value in medians.items()},
        "check_ms_median": round(statistics.median(checks) * 1000, 2),
        "ratio": round(medians["source"] / medians["image"], 2),
        "vertex_creates_total": stack.admin.counters().get("CreateCustomJob", 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100)
    args = parser.parse_args()
    from launchq_local.gcs import start_gcs

    with local_stack() as stack, start_gcs(backend="memory") as gcs:
        print(json.dumps(measure(stack, gcs, args.items), indent=2))


if __name__ == "__main__":
    main()
