"""Bytes per ListCustomJobs page, with and without the readMask a sweep needs.

Creates `jobs` CustomJobs on the Vertex stand-in (each rendered by launchq from
examples/queues/trainer.yaml, as the dispatcher would submit it), then fetches one page of all
of them the way the core client does (`$alt=json;enum-encoding=int`, the sweep's label filter)
twice: the full jobs, and with `readMask` set to the fields the sweep reads. Reports the body
bytes of each page and their ratio, and the median wall time of `repeats` fetches of each
(fetch + JSON decode) with its ratio, all in the same run.

    .venv/bin/python -m bench.list_bytes --jobs 1000

The stand-in returns jobs as created plus the output-only fields; the real service also fills in
server-side defaults (disk spec, scheduling, ...), so real full jobs are larger and the saving
there is at least this ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import requests
import yaml

from bench.common import REGION, ROOT, Stack, standin_process
from launchq.gcp.vertex import VertexClient
from launchq.spec.checks import parse_queue_config
from launchq.spec.item import QueueItem
from launchq.spec.labels import QUEUE_LABEL
from launchq.spec.render import RenderContext, render

SWEEP_READ_MASK = (
    "name",
    "state",
    "labels",
    "createTime",
    "startTime",
    "endTime",
    "updateTime",
    "error",
)
QUEUE = "trainer"


def _bodies(count: int) -> list[dict[str, Any]]:
    config = parse_queue_config(
        yaml.safe_load((ROOT / "examples" / "queues" / "trainer.yaml").read_text())
    )
    now = datetime.now(UTC)
    bodies = []
    for n in range(count):
        item_id = f"item-{n:06d}"
        item = QueueItem(image_uri="us-docker.pkg.dev/launchq-bench/train/trainer:1")
        bodies.append(render(config, item, RenderContext(now, item_id, QUEUE)).body)
    return bodies


def _fetch(session: requests.Session, url: str, params: dict[str, str | int]) -> tuple[int, float]:
    """Body bytes of one page, and seconds to fetch and decode it."""
    started = time.perf_counter()
    response = session.get(url, params=params, timeout=60)
    response.raise_for_status()
    response.json()
    return len(response.content), time.perf_counter() - started


def measure(stack: Stack, jobs: int = 1000, repeats: int = 5) -> dict[str, Any]:
    """On the bench stack's stand-in, in a Vertex project of its own."""
    return measure_url(stack.vertex_url, stack.new_project("lqlist"), jobs, repeats)


def measure_url(vertex_url: str, project: str, jobs: int, repeats: int) -> dict[str, Any]:
    parent = f"projects/{project}/locations/{REGION}"
    client = VertexClient(vertex_url, requests.Session())
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda body: client.create_custom_job(parent, body), _bodies(jobs)))
    url = f"{vertex_url}/v1/{parent}/customJobs"
    base: dict[str, str | int] = {
        "$alt": "json;enum-encoding=int",
        "pageSize": jobs,
        "filter": f"labels.{QUEUE_LABEL}:*",
    }
    masked = {**base, "readMask": ",".join(SWEEP_READ_MASK)}
    session = requests.Session()
    session.trust_env = False
    full_bytes, masked_bytes = _fetch(session, url, base)[0], _fetch(session, url, masked)[0]
    full_s: list[float] = []
    masked_s: list[float] = []
    for _ in range(repeats):  # interleaved, so load changes hit both alike
        full_s.append(_fetch(session, url, base)[1])
        masked_s.append(_fetch(session, url, masked)[1])
    listed = list(client.list_custom_jobs(parent, page_size=jobs, read_mask=SWEEP_READ_MASK))
    return {
        "jobs": jobs,
        "jobs_listed_with_mask": len(listed),
        "fields_with_mask": sorted({key for job in listed for key in job}),
        "read_mask": list(SWEEP_READ_MASK),
        "bytes": {"full": full_bytes, "masked": masked_bytes},
        "bytes_per_job": {"full": full_bytes / jobs, "masked": masked_bytes / jobs},
        "bytes_ratio": masked_bytes / full_bytes,
        "page_s_median": {
            "full": statistics.median(full_s),
            "masked": statistics.median(masked_s),
        },
        "time_ratio": statistics.median(masked_s) / statistics.median(full_s),
        "repeats": repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with standin_process() as url:  # the stand-in alone: no emulators needed
        print(json.dumps(measure_url(url, "lqlist", args.jobs, args.repeats), indent=2))


if __name__ == "__main__":
    main()
