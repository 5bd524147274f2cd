"""What `launchq logs` pays to read Cloud Logging: REST vs google-cloud-logging, vs Firestore.

Each run is a fresh interpreter that imports what every cloud-facing command has (click, rich)
and the Firestore client (`logs` looks the item up first: the baseline, measured in the same
process), then, in the run's order, each way of calling `entries.list`:

- `rest`: `requests` + `google.auth.transport.requests` and a `requests.Session` (what
  `launchq_cli.joblogs` uses);
- `client`: `import google.cloud.logging` and a `Client(_use_grpc=False)` with its JSON API.

Both orders run, because whichever goes first pays for shared imports. Reported: the median added
seconds and KiB of peak RSS of each path, and each path's time as a ratio of the Firestore
baseline measured in the same run.

    .venv/bin/python -m bench.logs_client_import --runs 5
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
import click, rich
start = time.perf_counter(); from google.cloud import firestore
out = {"baseline_s": time.perf_counter() - start}
def rest():
    import requests, google.auth.transport.requests
    requests.Session().close()
def client():
    import google.cloud.logging
    from google.auth.credentials import AnonymousCredentials
    c = google.cloud.logging.Client(project="p", credentials=AnonymousCredentials(),
        _use_grpc=False, client_options={"api_endpoint": "http://127.0.0.1:9"})
    c.logging_api
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
            summary[f"{path}_vs_firestore_ratio"] = round(statistics.median(ratios), 4)
        result[order] = summary
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(measure(args.runs), indent=2))


if __name__ == "__main__":
    main()
