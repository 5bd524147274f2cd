"""Creates per second against the Vertex stand-in with the real generated REST client.

    .venv/bin/python bench/standin_creates.py --jobs 2000 --threads 1
    .venv/bin/python bench/standin_creates.py --jobs 2000 --threads 4

Starts the stand-in in a separate process by default (an in-process server would share the GIL
with the client and measure both at once), or uses --url. Only `create_custom_job` calls are
timed: each thread builds its own `JobServiceClient` and opens its connection first.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import requests
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1 import types
from google.cloud.aiplatform_v1.services.job_service import JobServiceClient

from launchq_local.standin import AdminClient, StandinServer

PARENT = "projects/bench-project/locations/us-central1"


def _job(index: int) -> types.CustomJob:
    return types.CustomJob(
        display_name=f"bench-{index}",
        labels={"bench": "creates", "request_id": f"r{index}"},
        job_spec=types.CustomJobSpec(
            worker_pool_specs=[
                types.WorkerPoolSpec(
                    machine_spec=types.MachineSpec(machine_type="n1-standard-4"),
                    replica_count=1,
                    container_spec=types.ContainerSpec(
                        image_uri="us-docker.pkg.dev/p/r/img:1", args=["--x", "1"]
                    ),
                )
            ],
            base_output_directory=types.GcsDestination(output_uri_prefix="gs://b/out"),
        ),
    )


def _client(url: str) -> JobServiceClient:
    return JobServiceClient(
        transport="rest",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=url),
    )


def run(url: str, total: int, threads: int) -> float:
    """Creates per second over `total` creates split across `threads` threads."""
    per = total // threads
    clients = [_client(url) for _ in range(threads)]
    payloads = [[_job(t * per + i) for i in range(per)] for t in range(threads)]
    for client in clients:  # open each keep-alive connection before the clock starts
        client.create_custom_job(parent=PARENT, custom_job=_job(-1))
    barrier = threading.Barrier(threads + 1)

    def work(index: int) -> None:
        barrier.wait()
        for job in payloads[index]:
            clients[index].create_custom_job(parent=PARENT, custom_job=job)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    return per * threads / (time.perf_counter() - start)


@contextlib.contextmanager
def _standin_process() -> Iterator[str]:
    """`launchq vertex-emulator` on a free port, stopped (by its pid) afterwards."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    entry = "from launchq_cli import main; main()"
    cmd = [sys.executable, "-c", entry, "vertex-emulator", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        admin = AdminClient(url)
        deadline = time.monotonic() + 30
        while True:
            try:
                admin.status()
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--url", help="an already running stand-in")
    parser.add_argument("--in-process", action="store_true", help="serve from this process")
    args = parser.parse_args()
    if args.url:
        rate = run(args.url, args.jobs, args.threads)
    elif args.in_process:
        with StandinServer() as server:
            rate = run(server.url, args.jobs, args.threads)
    else:
        with _standin_process() as url:
            rate = run(url, args.jobs, args.threads)
    print(f"{args.jobs} creates, {args.threads} thread(s): {rate:.0f} creates/s")


if __name__ == "__main__":
    main()
