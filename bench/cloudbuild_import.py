"""What the dispatcher pays to talk to Cloud Build: launchq's REST client vs the generated one.

Each run is a fresh interpreter that first imports `launchq.vertex` and `launchq.queues` (what
the dispatch function loads anyway: requests, google-auth, tenacity, pydantic and the config and
item models; the baseline, timed in the same process), then, in the run's order, each way of
calling Cloud Build:

- `rest`: `import launchq.cloudbuild` (what `launchq.wiring` uses);
- `client`: `from google.cloud.devtools.cloudbuild_v1.services.cloud_build import
  CloudBuildClient` (google-cloud-build, a gRPC/api-core stack).

Both orders run, because whichever goes first pays for shared imports. Reported: the median added
seconds and KiB of peak RSS of each path, and each path's time as a ratio of the baseline
measured in the same run.

    .venv/bin/python -m bench.cloudbuild_import --runs 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from typing import Any

_CHILD = r"""
import json, resource, sys, time
def rss_kib(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter(); import launchq.vertex, launchq.queues
out = {"baseline_s": time.perf_counter() - start}
def rest():
    import launchq.cloudbuild
def client():
    from google.cloud.devtools.cloudbuild_v1.services.cloud_build import CloudBuildClient
before = rss_kib()
for name in sys.argv[1].split(","):
    start = time.perf_counter(); globals()[name]()
    out[name + "_s"] = time.perf_counter() - start
    now = rss_kib(); out[name + "_kib"] = now - before; before = now
print(json.dumps(out))
"""


def measure(runs: int = 5) -> dict[str, Any]:
    samples: dict[str, list[dict[str, float]]] = {"rest,client": [], "client,rest": []}
    for _ in range(runs):
        for order, rows in samples.items():
            done = subprocess.run(
                [sys.executable, "-c", _CHILD, order], capture_output=True, text=True, check=True
            )
            rows.append(json.loads(done.stdout))
    result: dict[str, Any] = {}
    for order, rows in samples.items():
        summary: dict[str, float] = {}
        for key in rows[0]:
            summary[f"{key}_median"] = round(statistics.median(r[key] for r in rows), 4)
        for path in ("rest", "client"):
            ratios = [r[f"{path}_s"] / r["baseline_s"] for r in rows]
            summary[f"{path}_vs_baseline_ratio"] = round(statistics.median(ratios), 4)
        result[order] = summary
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(measure(args.runs), indent=2))


if __name__ == "__main__":
    main()
