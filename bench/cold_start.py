"""Cold start: a fresh dispatcher handling its first event vs `import google.cloud.aiplatform`.

Each dispatcher run is a new interpreter that does what Cloud Functions does on a cold instance:
`functions_framework.create_app()` loads `functions/dispatch/main.py`, then its first request, the
Pub/Sub emulator's raw push envelope, is handled (via the Flask test client: no socket) against
the real Firestore emulator and the Vertex stand-in, ending with a CustomJob created. The
baseline is what W&B's agent pays before it can do anything: `python -c "import
google.cloud.aiplatform"`. Runs alternate (dispatcher, baseline, dispatcher, ...) after one
unmeasured warm-up each, so load changes hit both alike.

Time is from spawning the process to the response (resp. the import) being done, read on the
same clock; peak RSS is the child's own high-water mark (`VmHWM`) when it is done. One more
dispatcher run under `-X importtime` gives the import profile.

A third child, run in the same rotation, imports only the libraries a dispatch function cannot do
without (`functions_framework`, `google.cloud.firestore`, `pydantic`, `requests`, `google.auth`):
`libraries_ratio` is what they alone cost against the baseline, so the part launchq itself adds
(its modules and the first event) is `time_ratio - libraries_ratio`.

    .venv/bin/python -m bench.cold_start --runs 7
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import DISPATCH_SOURCE, ROOT, Stack, item, local_stack, queue_config

QUEUE = "cold"

_DISPATCH_CHILD = """
import json, sys, time
from functions_framework import create_app
client = create_app("dispatch", sys.argv[1], "cloudevent").test_client()
imported = time.time()
response = client.post("/projects/p/topics/launchq-q-cold", data=sys.argv[2],
                       content_type="application/json")
done = time.time()
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"imported": imported, "done": done, "status": response.status_code,
                  "hwm_kb": int(hwm)}), flush=True)
"""
_LIBRARIES_CHILD = """
import json, time
import functions_framework, google.cloud.firestore, pydantic, requests, google.auth
done = time.time()
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"imported": done, "done": done, "status": 0, "hwm_kb": int(hwm)}), flush=True)
"""
_BASELINE_CHILD = """
import json, time
import google.cloud.aiplatform
done = time.time()
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"imported": done, "done": done, "status": 0, "hwm_kb": int(hwm)}), flush=True)
"""


def _envelope(item_id: str) -> str:
    data = base64.b64encode(json.dumps(item(QUEUE, item_id)).encode()).decode()
    message_id = str(uuid.uuid4().int % 10**9)
    return json.dumps(
        {
            "subscription": "projects/p/subscriptions/dispatch-push",
            "message": {"data": data, "attributes": {}, "messageId": message_id},
        }
    )


def _spawn(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run a child; seconds from spawn to its 'done' mark, to exit, and its peak RSS (MB)."""
    started = time.time()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None
    assert proc.stderr is not None
    with ThreadPoolExecutor(2) as pool:  # drain both pipes: -X importtime fills stderr
        out_future = pool.submit(proc.stdout.read)
        err = proc.stderr.read()
        out = out_future.result()
    _, status, _usage = os.wait4(proc.pid, 0)
    exited = time.time()
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = [line for line in out.decode().splitlines() if line.startswith('{"imported"')]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"child failed ({proc.returncode}): {err.decode()[-3000:]}")
    marks = json.loads(lines[-1])
    return {
        "ready_s": marks["done"] - started,
        "import_s": marks["imported"] - started,
        "exit_s": exited - started,
        # VmHWM of the child's own address space: wait4's ru_maxrss would also count the
        # benchmark's pages the child had between fork and exec.
        "peak_rss_mb": marks["hwm_kb"] / 1024,
        "status": marks["status"],
        "stderr": err.decode(),
    }


def importtime_profile(stderr: str, top: int = 12) -> dict[str, Any]:
    """Self time by package and the heaviest modules (cumulative) from `-X importtime`."""
    by_package: dict[str, float] = defaultdict(float)
    modules: list[tuple[float, float, str]] = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line[len("import time:") :].split("|")
        module = name.strip()
        parts = module.split(".")
        package = ".".join(parts[:3] if parts[0] == "google" else parts[:1])
        by_package[package] += int(self_us) / 1e6
        modules.append((int(cumulative_us) / 1e6, int(self_us) / 1e6, module))
    total = sum(by_package.values())
    packages = sorted(by_package.items(), key=lambda kv: -kv[1])[:top]
    return {
        "import_self_total_s": round(total, 3),
        "modules_imported": len(modules),
        "self_time_by_package_s": {k: round(v, 3) for k, v in packages},
        "heaviest_modules_cumulative_s": [
            {"module": m, "cumulative_s": round(c, 3)}
            for c, _s, m in sorted(modules, reverse=True)[:top]
        ],
    }


def measure(stack: Stack, runs: int = 5, profile: bool = True) -> dict[str, Any]:
    project = stack.new_project()
    from launchq.store.firestore import FirestoreStore
    from launchq_client.configs import apply_queue

    apply_queue(FirestoreStore(stack.firestore(project)), QUEUE, queue_config())
    stack.pubsub(project).create_topic("launchq-events")
    stack.admin.reset(delays={"queued": None})
    env = stack.env(project)
    dispatch_argv = [sys.executable, "-c", _DISPATCH_CHILD, DISPATCH_SOURCE]
    baseline_argv = [sys.executable, "-c", _BASELINE_CHILD]
    libraries_argv = [sys.executable, "-c", _LIBRARIES_CHILD]

    def dispatch_once() -> dict[str, Any]:
        result = _spawn([*dispatch_argv, _envelope(f"cold-{uuid.uuid4().hex[:8]}")], env)
        if result["status"] != 200:
            raise RuntimeError(f"the first event answered {result['status']}")
        return result

    dispatch_once()  # warm-up: bytecode caches, page cache
    _spawn(baseline_argv, env)
    _spawn(libraries_argv, env)
    creates_before = stack.admin.counters().get("CreateCustomJob", 0)
    dispatch_runs, baseline_runs, library_runs = [], [], []
    for _ in range(runs):
        dispatch_runs.append(dispatch_once())
        baseline_runs.append(_spawn(baseline_argv, env))
        library_runs.append(_spawn(libraries_argv, env))
    creates = stack.admin.counters().get("CreateCustomJob", 0) - creates_before

    def med(rows: list[dict[str, Any]], key: str) -> float:
        return round(statistics.median(r[key] for r in rows), 3)

    result: dict[str, Any] = {
        "runs": runs,
        "jobs_created": creates,
        "dispatch": {
            "ready_s_median": med(dispatch_runs, "ready_s"),
            "import_s_median": med(dispatch_runs, "import_s"),
            "first_event_s_median": round(
                statistics.median(r["ready_s"] - r["import_s"] for r in dispatch_runs), 3
            ),
            "exit_s_median": med(dispatch_runs, "exit_s"),
            "peak_rss_mb_median": med(dispatch_runs, "peak_rss_mb"),
            "ready_s_all": [round(r["ready_s"], 3) for r in dispatch_runs],
        },
        "aiplatform_import": {
            "ready_s_median": med(baseline_runs, "ready_s"),
            "exit_s_median": med(baseline_runs, "exit_s"),
            "peak_rss_mb_median": med(baseline_runs, "peak_rss_mb"),
            "ready_s_all": [round(r["ready_s"], 3) for r in baseline_runs],
        },
    }
    result["time_ratio"] = round(
        result["dispatch"]["ready_s_median"] / result["aiplatform_import"]["ready_s_median"], 3
    )
    result["libraries_import"] = {
        "ready_s_median": med(library_runs, "ready_s"),
        "peak_rss_mb_median": med(library_runs, "peak_rss_mb"),
    }
    result["libraries_ratio"] = round(
        result["libraries_import"]["ready_s_median"]
        / result["aiplatform_import"]["ready_s_median"],
        3,
    )
    result["memory_ratio"] = round(
        result["dispatch"]["peak_rss_mb_median"]
        / result["aiplatform_import"]["peak_rss_mb_median"],
        3,
    )
    result["goals"] = {"time_ratio_max": 0.25, "memory_ratio_max": 0.5}
    result["met"] = {
        "time": result["time_ratio"] <= 0.25,
        "memory": result["memory_ratio"] <= 0.5,
    }
    if profile:
        profiled = _spawn(
            [sys.executable, "-X", "importtime", *dispatch_argv[1:], _envelope("cold-profile")],
            env,
        )
        result["import_profile"] = importtime_profile(profiled["stderr"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with local_stack() as stack:
        print(json.dumps(measure(stack, args.runs), indent=2))


if __name__ == "__main__":
    main()
