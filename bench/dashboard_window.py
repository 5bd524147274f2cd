"""What the dashboard's queues page costs, against `launchq queue ls` in the same process.

Seeds `items` finished items of one queue, enqueued over the last 24 h, each with what the
dispatcher and the sweep store: the rendered CustomJob body (examples/queues/trainer.yaml), the
payload, one attempt and a five-entry history. Then, interleaved `repeats` times:

- `queue_ls`: `launchq_client.queues.list_queue_summaries` (running/max_jobs, waiting, paused:
  two count queries per queue), the baseline;
- `window_full`: the 24 h window query reading whole documents;
- `window_projected`: the same query with the field projection `launchq_ui.views` uses (states,
  times and history only);
- `queues_page`: everything the queues page computes per queue (row, oldest wait, reasons,
  24 h outcomes, both chart series and their SVG).

Reported: medians, and each as a ratio of `queue_ls` measured in the same run; plus the
projected/full ratio that justifies the projection.

    .venv/bin/python -m bench.dashboard_window --items 500
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from google.cloud import firestore

from bench.common import ROOT, Stack, local_stack
from launchq.spec.checks import parse_queue_config
from launchq.spec.item import QueueItem
from launchq.spec.render import RenderContext, render
from launchq.store import ITEMS, item_doc_id
from launchq.store.firestore import FirestoreStore
from launchq_client.queues import list_queue_summaries
from launchq_ui import charts, views

QUEUE = "trainer"


def seed(db: firestore.Client, count: int, now: datetime) -> None:
    raw = yaml.safe_load((ROOT / "examples" / "queues" / "trainer.yaml").read_text())
    config = parse_queue_config(raw)
    store = FirestoreStore(db)
    store.put_queue(QUEUE, {"config": raw}, max_jobs=2)
    batch = db.batch()
    for n in range(count):
        item_id = f"item-{n:06d}"
        enqueued = now - timedelta(seconds=(n + 1) * 86_000 / max(count, 1))
        payload = QueueItem(image_uri="us-docker.pkg.dev/launchq-bench/train/trainer:1")
        body = render(config, payload, RenderContext(enqueued, item_id, QUEUE)).body
        steps = [("QUEUED", 0), ("SUBMITTING", 3), ("SUBMITTED", 4), ("RUNNING", 30)]
        steps.append(("SUCCEEDED", 600))
        history = [
            {"from": None if i == 0 else steps[i - 1][0], "to": state, "cause": "bench",
             "at": enqueued + timedelta(seconds=after)}
            for i, (state, after) in enumerate(steps)
        ]  # fmt: skip
        batch.set(
            db.collection(ITEMS).document(item_doc_id(QUEUE, item_id)),
            {
                "item_id": item_id,
                "queue": QUEUE,
                "state": "SUCCEEDED",
                "enqueued_at": enqueued,
                "payload": payload.model_dump(mode="json"),
                "job_body": body,
                "attempts": [{"n": 1, "created_at": enqueued + timedelta(seconds=3)}],
                "history": history,
            },
        )
        if n % 400 == 399:
            batch.commit()
            batch = db.batch()
    batch.commit()


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def measure(stack: Stack, items: int = 500, repeats: int = 5) -> dict[str, Any]:
    project = stack.new_project("lqui")
    db = stack.firestore(project)
    now = datetime.now(UTC)
    seed(db, items, now)
    store = FirestoreStore(db)
    full_query = (
        db.collection(ITEMS)
        .where(filter=firestore.FieldFilter("queue", "==", QUEUE))
        .where(filter=firestore.FieldFilter("enqueued_at", ">=", now - views.WINDOW))
    )

    def page() -> None:
        for document in store.list_queues():
            window = views.window_items(store, str(document["name"]), now)
            views.queue_row(store, document, window, now)
            charts.svg(views.wait_series(window), now, "w")
            charts.svg(views.running_series(window, now), now, "r")

    runs: dict[str, Callable[[], object]] = {
        "queue_ls": lambda: list_queue_summaries(store),
        "window_full": lambda: [s.to_dict() for s in full_query.stream()],
        "window_projected": lambda: views.window_items(store, QUEUE, now),
        "queues_page": page,
    }
    for fn in runs.values():  # warm the connection and the emulator's caches alike
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):  # interleaved, so load changes hit all alike
        for name, fn in runs.items():
            times[name].append(_timed(fn))
    medians = {name: statistics.median(values) for name, values in times.items()}
    seen = len(views.window_items(store, QUEUE, now))
    return {
        "items": items,
        "items_in_window": seen,
        "repeats": repeats,
        "median_s": medians,
        "ratio_to_queue_ls": {n: medians[n] / medians["queue_ls"] for n in medians},
        "projected_to_full": medians["window_projected"] / medians["window_full"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with local_stack() as stack:
        print(json.dumps(measure(stack, args.items, args.repeats), indent=2))


if __name__ == "__main__":
    main()
