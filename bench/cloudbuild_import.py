"""What the dispatcher pays to talk to Cloud Build: launchq's REST client vs the generated one.

Each run is a fresh interpreter that first imports `launchq.gcp.vertex` and `launchq.queues` (what
the dispatch function loads anyway: requests, google-auth, tenacity, pydantic and the config and
item models; the baseline, timed in the same process), then, in the run's order, each way of
calling Cloud Build:

- `rest`: `import launchq.gcp.cloudbuild` (what `launchq.wiring` uses);
- `client`: `from google.cloud.devtools.cloudbuild_v1.services.cloud_build import
  CloudBuildClient` (google-cloud-build, a gRPC/api-core stack).

Both orders run (`bench.import_cost`). Reported: the median added seconds and KiB of peak RSS of
each path, and each path's time as a ratio of the baseline
measured in the same run.

    .venv/bin/python -m bench.cloudbuild_import --runs 5
"""

from __future__ import annotations

from typing import Any

from bench import import_cost

SETUP = ""
BASELINE = "import launchq.gcp.vertex, launchq.queues"
PATHS = """
def rest():
    import launchq.gcp.cloudbuild
def client():
    from google.cloud.devtools.cloudbuild_v1.services.cloud_build import CloudBuildClient
"""


def measure(runs: int = 5) -> dict[str, Any]:
    child = import_cost.child_script(SETUP, BASELINE, PATHS)
    return import_cost.measure(child, runs, ratio_name="baseline")


if __name__ == "__main__":
    import_cost.main(__doc__ or "", measure)
