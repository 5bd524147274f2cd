"""What `launchq logs` pays to read Cloud Logging: REST vs google-cloud-logging, vs Firestore.

Each run is a fresh interpreter that imports what every cloud-facing command has (click, rich)
and the Firestore client (`logs` looks the item up first: the baseline, measured in the same
process), then, in the run's order, each way of calling `entries.list`:

- `rest`: `requests` + `google.auth.transport.requests` and a `requests.Session` (what
  `launchq_client.logs` uses);
- `client`: `import google.cloud.logging` and a `Client(_use_grpc=False)` with its JSON API.

Both orders run (`bench.import_cost`). Reported: the median added seconds and KiB of peak RSS of
each path, and each path's time as a ratio of the Firestore
baseline measured in the same run.

    .venv/bin/python -m bench.logs_client_import --runs 5
"""

from __future__ import annotations

from typing import Any

from bench import import_cost

SETUP = "import click, rich"
BASELINE = "from google.cloud import firestore"
PATHS = """
def rest():
    import requests, google.auth.transport.requests
    requests.Session().close()
def client():
    import google.cloud.logging
    from google.auth.credentials import AnonymousCredentials
    c = google.cloud.logging.Client(project="p", credentials=AnonymousCredentials(),
        _use_grpc=False, client_options={"api_endpoint": "http://127.0.0.1:9"})
    c.logging_api
"""


def measure(runs: int = 5) -> dict[str, Any]:
    child = import_cost.child_script(SETUP, BASELINE, PATHS)
    return import_cost.measure(child, runs, ratio_name="firestore")


if __name__ == "__main__":
    import_cost.main(__doc__ or "", measure)
