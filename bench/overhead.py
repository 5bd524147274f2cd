"""Overhead over the I/O floor: the dispatcher's time per item vs the calls it cannot avoid.

Exactly-once submission of one item needs, at the very least, three round trips: one Firestore
compare-and-swap that makes this process the item's owner (here: `create()` of the item
document, which fails if it exists), one CreateCustomJob, and one Firestore write recording the
job. The floor makes exactly those calls, with the same document (payload, rendered job body)
and job body, through the same Firestore client and Vertex session as the dispatcher.

With events on (the production default) the dispatcher also makes one more request: the
item's state-change events, batched into one Pub/Sub publish (`launchq.recorder`). The issue
that set the goal puts the dispatcher's path as "the I/O floor's shape plus the events publish",
so a second floor, `floor_events`, is the same three calls plus that one publish (the same three
events, the same `EventPublisher`): `ratio_events_floor` compares like with like, while `ratio`
keeps the three-call floor for every variant.

Per round, the variants run back to back, so load changes hit them alike: `Dispatcher.handle`
with events on, with events off, with events and budget off, and the two floors. Ratio = median
dispatcher time / median floor time. Firestore RPCs, documents
read and writes are counted on the wire (`bench.common.FirestoreCounter`) per item. A separate
run of the dispatcher under pyinstrument gives the top self-time entries.

The creation budget (`launchq.capacity`) costs every create one more document write (a token's
`create()`); for an item admitted at once it rides in the batch that creates the item, so no
extra round trip. The dispatchers measured here run with a budget that never binds (`BUDGET`,
so what is timed is its cost, not waiting for it), and `dispatch_no_budget` (events off, budget
off) isolates it.

    .venv/bin/python -m bench.overhead --items 200
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
import uuid
from collections import defaultdict
from typing import Any

import requests

from bench.common import (
    PARENT,
    FirestoreCounter,
    Stack,
    item,
    local_stack,
    queue_config,
)
from launchq.dispatch import Dispatcher, PubsubMessage
from launchq.gcp.events import EventPublisher, state_changed_event
from launchq.gcp.vertex import VertexClient
from launchq.settings import Settings
from launchq.spec.topics import queue_topic
from launchq.store import Store, item_doc_id
from launchq.store.firestore import FirestoreStore
from launchq.wiring import build
from launchq_client.configs import apply_queue

QUEUE = "overhead"
GOAL = 1.3  # dispatcher time / floor time
BUDGET = 600_000.0  # creates per minute: 10,000 tokens a second, never the limit here


def _message(item_id: str) -> PubsubMessage:
    # Published to the queue's own topic, as the dispatch function receives it.
    return PubsubMessage(
        json.dumps(item(QUEUE, item_id)).encode(), {}, uuid.uuid4().hex, topic=queue_topic(QUEUE)
    )


def _dispatcher(
    stack: Stack,
    project: str,
    store: Store,
    vertex: VertexClient,
    events: str,
    create_rate: float = BUDGET,
) -> Any:
    settings = Settings(
        project=project,
        events_topic=events,
        vertex_endpoint=stack.vertex_url,
        create_rate_per_minute=create_rate,
    )
    return build(settings, store=store, vertex_for=lambda _region: vertex).dispatcher


class Floor:
    """The three unavoidable calls, made directly."""

    def __init__(
        self,
        store: FirestoreStore,
        vertex: VertexClient,
        template: dict[str, Any],
        events: EventPublisher | None = None,
    ) -> None:
        self.store = store
        self.vertex = vertex
        self.template = template
        self.events = events

    def run(self, item_id: str) -> None:
        ref = self.store.db.collection("items").document(item_doc_id(QUEUE + "-floor", item_id))
        document = {**self.template, "item_id": item_id, "state": "SUBMITTING"}
        ref.create(document)  # the compare-and-swap: exactly one creator wins
        body = {**self.template["job_body"], "displayName": item_id}
        job = self.vertex.create_custom_job(PARENT, body)
        ref.update({"state": "SUBMITTED", "job": {"name": job["name"]}})
        if self.events is not None:
            # The dispatcher's three events of an item admitted at once, in one request.
            self.events.publish_many(
                [
                    state_changed_event(
                        queue=QUEUE,
                        item_id=item_id,
                        from_state=before,
                        to_state=after,
                        cause="floor",
                    )
                    for before, after in _EVENTS
                ]
            )


_EVENTS: tuple[tuple[str | None, str], ...] = (
    (None, "QUEUED"),
    ("QUEUED", "SUBMITTING"),
    ("SUBMITTING", "SUBMITTED"),
)


def _self_times(profiler: Any, top: int) -> list[dict[str, Any]]:
    """Self time per function (wall clock, so I/O waits show where they block)."""
    totals: dict[str, float] = defaultdict(float)
    root = profiler.last_session.root_frame()
    stack = [root]
    while stack:
        frame = stack.pop()
        children = frame.children
        # pyinstrument 5 puts a frame's own time in a synthetic "[self]" child.
        own = frame.time - sum(c.time for c in children if not c.is_synthetic)
        key = f"{frame.function} ({frame.file_path_short}:{frame.line_no})"
        totals[key] += own
        stack.extend(c for c in children if not c.is_synthetic)
    total = root.time or 1.0
    return [
        {"function": k, "self_s": round(v, 3), "share": round(v / total, 3)}
        for k, v in sorted(totals.items(), key=lambda kv: -kv[1])[:top]
    ]


def _profile(dispatcher: Dispatcher, count: int, top: int) -> dict[str, Any]:
    from pyinstrument import Profiler  # a dev dependency

    profiler = Profiler(interval=0.0005)
    profiler.start()
    cpu = time.process_time()
    for n in range(count):
        dispatcher.handle(_message(f"prof-{n:05d}"))
    cpu = time.process_time() - cpu
    profiler.stop()
    return {
        "items": count,
        "cpu_ms_per_item": round(cpu / count * 1000, 2),
        "top_self_time": _self_times(profiler, top),
    }


def _ratios(ms: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Median dispatcher time over median floor time, for each variant, against the goal."""

    def over(variant: str, floor: str = "floor") -> float:
        return round(ms[variant]["median"] / ms[floor]["median"], 2)

    ratios = {
        "ratio": over("dispatch"),
        "ratio_no_events": over("dispatch_no_events"),
        "ratio_no_budget": over("dispatch_no_budget"),
        "ratio_events_floor": over("dispatch", "floor_events"),
    }
    return {
        **ratios,
        "goals": {"ratio_max": GOAL},
        "met": {
            name: ratios[name] <= GOAL
            for name in ("ratio", "ratio_no_events", "ratio_events_floor")
        },
    }


def measure(stack: Stack, items: int = 200, profile_items: int = 100) -> dict[str, Any]:
    project = stack.new_project()
    stack.apply_env(project)
    stack.pubsub(project).create_topic("launchq-events")
    stack.admin.reset(delays={"queued": None})
    store = FirestoreStore(stack.firestore(project))
    apply_queue(store, QUEUE, queue_config())
    vertex = VertexClient(stack.vertex_url, requests.Session(), 30.0)
    with_events = _dispatcher(stack, project, store, vertex, "launchq-events")
    without_events = _dispatcher(stack, project, store, vertex, "")
    without_budget = _dispatcher(stack, project, store, vertex, "", create_rate=0)
    logging.disable(logging.INFO)  # the JSON log lines are not what is measured
    try:
        for n in range(5):  # warm-up: connections, caches, the queue config
            for tag, warming in zip(
                "abc", (with_events, without_events, without_budget), strict=True
            ):
                warming.handle(_message(f"warm-{tag}-{n}"))
        template = store.item_document(QUEUE, "warm-a-0") or {}
        template = {k: template[k] for k in ("queue", "payload", "job_body", "parent", "region")}
        floor = Floor(store, vertex, template)
        floor.run("warm-floor")
        floor_events = Floor(store, vertex, template, EventPublisher(project, "launchq-events"))
        floor_events.run("warm-floor-events")
        timings: dict[str, list[float]] = {
            "dispatch": [],
            "dispatch_no_events": [],
            "dispatch_no_budget": [],
            "floor": [],
            "floor_events": [],
        }
        counts: dict[str, dict[str, Any]] = {}
        with FirestoreCounter() as counter:
            runners = {
                "dispatch": lambda i: with_events.handle(_message(f"d-{i}")),
                "dispatch_no_events": lambda i: without_events.handle(_message(f"n-{i}")),
                "dispatch_no_budget": lambda i: without_budget.handle(_message(f"b-{i}")),
                "floor": lambda i: floor.run(f"f-{i}"),
                "floor_events": lambda i: floor_events.run(f"fe-{i}"),
            }
            rpcs: dict[str, dict[str, float]] = {k: defaultdict(float) for k in runners}
            cpu: dict[str, float] = dict.fromkeys(runners, 0.0)
            for n in range(items):
                for name, run in runners.items():
                    counter.reset()
                    started, cpu_started = time.perf_counter(), time.process_time()
                    run(f"{n:05d}")
                    timings[name].append(time.perf_counter() - started)
                    cpu[name] += time.process_time() - cpu_started
                    snap = counter.snapshot()
                    for key, value in snap["rpcs"].items():
                        rpcs[name][key] += value
                    rpcs[name]["docs_read"] += snap["docs_read"]
                    rpcs[name]["writes"] += snap["writes"]
            for name in runners:
                counts[name] = {k: round(v / items, 2) for k, v in rpcs[name].items()}
                counts[name]["cpu_ms"] = round(cpu[name] / items * 1000, 2)
        creates = stack.admin.counters().get("CreateCustomJob", 0)
        profile = _profile(with_events, profile_items, top=15)
    finally:
        logging.disable(logging.NOTSET)

    def ms(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {
            "median": round(statistics.median(ordered) * 1000, 2),
            "p90": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 2),
            "mean": round(statistics.fmean(ordered) * 1000, 2),
        }

    result: dict[str, Any] = {
        "items": items,
        "vertex_creates_total": creates,
        "ms_per_item": {k: ms(v) for k, v in timings.items()},
        "per_item": counts,
        "events_published_per_item": 3,
    }
    result.update(_ratios(result["ms_per_item"]))
    result["profile"] = profile
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--profile-items", type=int, default=100)
    args = parser.parse_args()
    with local_stack() as stack:
        print(json.dumps(measure(stack, args.items, args.profile_items), indent=2))


if __name__ == "__main__":
    main()
