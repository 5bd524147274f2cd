"""What the line sink costs an executed job that prints a lot: pipes + Logging stand-in vs files.

One Vertex stand-in in execute mode runs the same job (a Python process printing `--lines`
lines of 80 characters) without a sink (stdout/stderr straight to files, the baseline) and with
the Cloud Logging stand-in's `LogBook.record` as the sink (pipes, a reader thread per stream,
one entry per line), alternating, in this process. Reported: median seconds from create to
SUCCEEDED for each, their ratio, and the entries recorded.

    .venv/bin/python -m bench.standin_log_lines --lines 100000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1 import types
from google.cloud.aiplatform_v1.services.job_service import JobServiceClient

from launchq_local.logging_standin import LogBook
from launchq_local.standin import Delays, StandinServer

_DELAYS = Delays(queued=0.0, pending=0.0, running=None, cancelling=0.0)


def _job(lines: int) -> types.CustomJob:
    script = f"for i in range({lines}): print(str(i).rjust(80, '.'))"
    return types.CustomJob(
        display_name="printer",
        job_spec=types.CustomJobSpec(
            worker_pool_specs=[
                types.WorkerPoolSpec(
                    machine_spec=types.MachineSpec(machine_type="n1-standard-4"),
                    replica_count=1,
                    container_spec=types.ContainerSpec(
                        image_uri="python:3.11-slim", command=[sys.executable, "-c", script]
                    ),
                )
            ]
        ),
    )


def _run_once(lines: int, book: LogBook | None, work: Path) -> float:
    sink = book.record if book is not None else None
    with StandinServer(mode="execute", delays=_DELAYS, work_dir=work, line_sink=sink) as vertex:
        client = JobServiceClient(
            transport="rest",
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=vertex.url),
        )
        started = time.perf_counter()
        job = client.create_custom_job(
            parent="projects/bench/locations/us-central1", custom_job=_job(lines)
        )
        while client.get_custom_job(name=job.name).state.name != "JOB_STATE_SUCCEEDED":
            time.sleep(0.01)
        return time.perf_counter() - started


def measure(lines: int = 100_000, runs: int = 3) -> dict[str, Any]:
    files: list[float] = []
    sinks: list[float] = []
    entries = 0
    with tempfile.TemporaryDirectory(prefix="launchq-bench-") as tmp:
        for run in range(runs):
            files.append(_run_once(lines, None, Path(tmp) / f"files-{run}"))
            book = LogBook()
            sinks.append(_run_once(lines, book, Path(tmp) / f"sink-{run}"))
            entries = len(book)
    return {
        "lines": lines,
        "runs": runs,
        "files_s_median": round(statistics.median(files), 3),
        "sink_s_median": round(statistics.median(sinks), 3),
        "sink_vs_files_ratio": round(statistics.median(sinks) / statistics.median(files), 2),
        "entries_recorded": entries,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(measure(args.lines, args.runs), indent=2))


if __name__ == "__main__":
    main()
