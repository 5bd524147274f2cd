"""One message's walk through the core: which modules it enters, and how often it crosses
between them, from the dispatch function's entry (`launchq.functions.handle_pubsub_event`) to
the recorded job.

Counted with `sys.setprofile` on one dispatch of one item onto an idle queue (so it is admitted
and submitted in the same invocation) against the local stack: the emulators and the Vertex
stand-in, in this process. Only Python calls whose code lives in the core (`shared/launchq`)
count; calls into libraries and back are not hops. Figures are counts, not times, so they do
not depend on the machine:

- `modules`: the core modules with at least one function called (`packages_and_top_modules`:
  the same with each subpackage counted once);
- `hops`: calls from a function of one core module into a function of another;
- `entries` per module: calls into that module from another one;
- `visits` per module: how often control arrives in the module from another one, by a call into
  it or by a return to it from a call it made (a module that only passes arguments on is
  visited on the way down and again on the way back);
- `path_to_create`: the core modules on the stack when `create_custom_job` is called, outermost
  first: the layers a create travels through.

    .venv/bin/python -m bench.walk          # prints the figures as JSON
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
import uuid
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

from bench.common import Stack, local_stack, queue_config
from launchq.store.firestore import FirestoreStore

CORE = Path(__file__).resolve().parents[1] / "shared" / "launchq"
QUEUE = "walk"


def _module(filename: str) -> str | None:
    path = Path(filename)
    try:
        relative = path.resolve().relative_to(CORE)
    except ValueError:
        return None
    parts = ["launchq", *relative.with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def trace_one_dispatch(handle: Any, data: dict[str, Any], source: str) -> dict[str, Any]:
    """Run `handle(data, source)` under a profiler and count the walk."""
    modules: set[str] = set()
    entries: Counter[str] = Counter()
    hops = 0
    visits: Counter[str] = Counter()
    path_to_create: list[str] = []
    names: dict[Any, str | None] = {}

    def module_of(frame: FrameType | None) -> str | None:
        if frame is None:
            return None
        code = frame.f_code
        if code not in names:
            names[code] = _module(code.co_filename)
        return names[code]

    def chain(frame: FrameType | None) -> list[str]:
        found: list[str] = []
        while frame is not None:
            name = module_of(frame)
            if name is not None and (not found or found[-1] != name):
                found.append(name)
            frame = frame.f_back
        return found[::-1]

    def profile(frame: FrameType, event: str, _arg: Any) -> None:
        nonlocal hops
        if event == "return":
            back = module_of(frame.f_back)
            if back is not None and back != module_of(frame):
                visits[back] += 1
            return
        if event != "call":
            return
        callee = module_of(frame)
        if callee is None:
            return
        if frame.f_code.co_name == "create_custom_job" and not path_to_create:
            path_to_create.extend(chain(frame))
        modules.add(callee)
        caller = module_of(frame.f_back)
        if caller is not None and caller != callee:
            hops += 1
            entries[callee] += 1
            visits[callee] += 1

    sys.setprofile(profile)
    try:
        result = handle(data, source)
    finally:
        sys.setprofile(None)
    return {
        "outcome": str(getattr(result, "outcome", result)),
        "modules": len(modules),
        # Subpackages (launchq.store.items, ...) counted once, as the unit a reader opens.
        "packages_and_top_modules": len({".".join(m.split(".")[:2]) for m in modules}),
        "hops": hops,
        "entries": dict(entries.most_common()),
        "visits": dict(visits.most_common()),
        "path_to_create": path_to_create,
        "module_list": sorted(modules),
    }


def measure(stack: Stack) -> dict[str, Any]:
    """The walk of one item through the dispatch function's entry, on `stack`."""
    from launchq import functions
    from launchq.spec.topics import queue_topic
    from launchq_client.configs import apply_queue

    project = stack.new_project("walk")
    stack.apply_env(project)
    # A budget that never binds here: the walk measured is an admitted-at-once item's.
    os.environ["LAUNCHQ_CREATE_RATE_PER_MINUTE"] = "600000"
    stack.pubsub(project).create_topic("launchq-events")
    apply_queue(FirestoreStore(stack.firestore(project)), QUEUE, queue_config(max_jobs=-1))
    functions.reset()
    source = f"//pubsub.googleapis.com/projects/{project}/topics/{queue_topic(QUEUE)}"
    try:
        # A first message warms the process (clients, caches) so the walk is a warm one's.
        functions.handle_pubsub_event(_event("warm"), source)
        return trace_one_dispatch(functions.handle_pubsub_event, _event("walk"), source)
    finally:
        functions.reset()


def _event(item_id: str) -> dict[str, Any]:
    body = {"queue": QUEUE, "item_id": item_id, "image_uri": "gcr.io/p/trainer:1"}
    return {
        "message": {
            "data": base64.b64encode(json.dumps(body).encode()).decode(),
            "messageId": uuid.uuid4().hex,
            "attributes": {},
        }
    }


def main() -> None:
    logging.disable(logging.WARNING)
    with local_stack() as stack:
        figures = measure(stack)
    sys.stdout.write(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
