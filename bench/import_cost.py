"""The import-cost harness: what two ways of calling one API add on top of a baseline.

Each run is a fresh interpreter that times the baseline imports (what the caller loads anyway),
then each way of calling the API (`rest`, `client`), in the run's order. Both orders run,
because whichever goes first pays for shared imports. Reported per order: the median added
seconds and KiB of peak RSS of each path, and each path's time as a ratio of the baseline
measured in the same run. `bench.cloudbuild_import` and `bench.logs_client_import` use it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap
from typing import Any

PATHS = ("rest", "client")

_TIMER = r"""
before = rss_kib()
for name in sys.argv[1].split(","):
    start = time.perf_counter(); globals()[name]()
    out[name + "_s"] = time.perf_counter() - start
    now = rss_kib(); out[name + "_kib"] = now - before; before = now
print(json.dumps(out))
"""


def child_script(setup: str, baseline: str, paths: str) -> str:
    """The child's code: untimed `setup`, timed `baseline`, then `rest()`/`client()` timed."""
    return "\n".join(
        [
            "import json, resource, sys, time",
            "def rss_kib(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss",
            textwrap.dedent(setup),
            "start = time.perf_counter()",
            textwrap.dedent(baseline),
            'out = {"baseline_s": time.perf_counter() - start}',
            textwrap.dedent(paths),
            _TIMER,
        ]
    )


def measure(child: str, runs: int, ratio_name: str = "baseline") -> dict[str, Any]:
    samples: dict[str, list[dict[str, float]]] = {
        ",".join(PATHS): [],
        ",".join(reversed(PATHS)): [],
    }
    for _ in range(runs):
        for order, rows in samples.items():
            done = subprocess.run(
                [sys.executable, "-c", child, order], capture_output=True, text=True, check=True
            )
            rows.append(json.loads(done.stdout))
    result: dict[str, Any] = {}
    for order, rows in samples.items():
        summary: dict[str, float] = {}
        for key in rows[0]:
            summary[f"{key}_median"] = round(statistics.median(r[key] for r in rows), 4)
        for path in PATHS:
            ratios = [r[f"{path}_s"] / r["baseline_s"] for r in rows]
            summary[f"{path}_vs_{ratio_name}_ratio"] = round(statistics.median(ratios), 4)
        result[order] = summary
    return result


def main(doc: str, run: Any) -> None:
    """`--runs N`, then print `run(N)` as JSON."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(run(args.runs), indent=2))
