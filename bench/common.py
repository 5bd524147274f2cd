"""What every benchmark shares: the local stack, a stand-in process, Firestore RPC counters.

The benchmarks run against the same pieces as the tests: the gcloud Firestore and Pub/Sub
emulators and the Vertex stand-in. The stand-in runs in its own process (`standin_process`), so
its CPU does not share a GIL with the code being measured. Each benchmark works in its own
Firestore/Pub/Sub project (`Stack.new_project`), so they never see each other's documents and
one emulator stack serves a whole `make bench`.

`Stack` is built either by `local_stack()` (starts everything, used by `bench/run.py` and the
modules' `__main__`) or from the test fixtures (`Stack.from_parts`, used by the smoke test).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from launchq_local.emulators import new_project_id, reset_firestore, start_stack
from launchq_local.standin import AdminClient

ROOT = Path(__file__).resolve().parents[1]
DISPATCH_SOURCE = str(ROOT / "functions" / "dispatch" / "main.py")
BIN = Path(sys.executable).parent
REGION = "us-central1"
VERTEX_PROJECT = "launchq-bench"
PARENT = f"projects/{VERTEX_PROJECT}/locations/{REGION}"


def queue_config(max_jobs: int = -1, **extra: Any) -> dict[str, Any]:
    """The seed's default Vertex queue config (examples/queues/default.yaml), for the
    benchmark's project, region and bucket."""
    seed = ROOT / "examples" / "queues" / "default.yaml"
    config: dict[str, Any] = yaml.safe_load(seed.read_text())
    config["spec"]["staging_bucket"] = "gs://launchq-bench-staging"
    return {**config, "project": VERTEX_PROJECT, "region": REGION, "max_jobs": max_jobs, **extra}


def item(queue: str, item_id: str) -> dict[str, Any]:
    return {"queue": queue, "item_id": item_id, "image_uri": "gcr.io/p/trainer:1"}


def scaled_settings(stack: Stack, project: str, scale: float) -> Any:
    """The functions' settings on the local stack with time running `scale` times faster than
    production: creates per minute up, the quota backoff (15 s doubling to 240 s) down."""
    from launchq.settings import Settings

    return Settings(
        project=project,
        events_topic="",
        vertex_endpoint=stack.vertex_url,
        create_rate_per_minute=60 * scale,
        quota_backoff_initial_seconds=15 / scale,
        quota_backoff_max_seconds=240 / scale,
        queue_cache_seconds=0.0,
    )


def deliver_all(
    apps: list[Any],
    queue: str,
    ids: list[str],
    per_second: float = 0.0,
) -> int:
    """Deliver one item per id to `queue`'s topic through the apps' dispatchers in-process, one
    thread per app, as fast as they go or paced to `per_second`; the number that raised (a
    message that would have been redelivered, then dead-lettered)."""
    from launchq.dispatch import PubsubMessage
    from launchq.spec.topics import queue_topic

    begun = time.monotonic()

    def deliver(index: int) -> int:
        errors = 0
        for n in range(index, len(ids), len(apps)):
            if per_second:
                time.sleep(max(0.0, begun + n / per_second - time.monotonic()))
            payload = json.dumps(item(queue, ids[n])).encode()
            message = PubsubMessage(payload, {}, f"m-{ids[n]}", topic=queue_topic(queue))
            try:
                apps[index].dispatcher.handle(message)
            except Exception:
                errors += 1
        return errors

    with ThreadPoolExecutor(len(apps)) as pool:
        return sum(pool.map(deliver, range(len(apps))))


# -- the stack --------------------------------------------------------------------------------


@dataclass
class Stack:
    """Endpoints of one running local stack."""

    project: str  # the emulator stack's own project (benchmarks take their own, below)
    firestore_host: str
    pubsub_host: str
    vertex_url: str
    admin: AdminClient
    _projects: list[str] = field(default_factory=list)

    @classmethod
    def from_parts(
        cls, project: str, firestore_host: str, pubsub_host: str, vertex_url: str
    ) -> Stack:
        return cls(project, firestore_host, pubsub_host, vertex_url, AdminClient(vertex_url))

    def new_project(self, prefix: str = "lqb") -> str:
        """A fresh project id: its own Firestore documents and Pub/Sub topics."""
        project = new_project_id(prefix)
        self._projects.append(project)
        return project

    def env(self, project: str, **extra: str) -> dict[str, str]:
        """The environment of a dispatcher process for `project` on this stack."""
        return {
            **os.environ,
            "FIRESTORE_EMULATOR_HOST": self.firestore_host,
            "PUBSUB_EMULATOR_HOST": self.pubsub_host,
            "PUBSUB_PROJECT_ID": project,
            "GOOGLE_CLOUD_PROJECT": project,
            "LAUNCHQ_PROJECT": project,
            "LAUNCHQ_VERTEX_ENDPOINT": self.vertex_url,
            "LAUNCHQ_EVENTS_TOPIC": "launchq-events",
            **extra,
        }

    def apply_env(self, project: str) -> None:
        """Point this process's Google clients (and launchq's Settings) at `project` here."""
        for key, value in self.env(project).items():
            if os.environ.get(key) != value:
                os.environ[key] = value

    def firestore(self, project: str) -> Any:
        from google.cloud import firestore

        os.environ["FIRESTORE_EMULATOR_HOST"] = self.firestore_host
        return firestore.Client(project=project)

    def pubsub(self, project: str) -> PubsubRest:
        return PubsubRest(self.pubsub_host, project)

    def cleanup(self) -> None:
        for project in self._projects:
            with contextlib.suppress(Exception):
                reset_firestore(self.firestore_host, project)
        self._projects.clear()


@contextlib.contextmanager
def local_stack() -> Iterator[Stack]:
    """Both emulators and a stand-in process, on free ports; everything stopped afterwards.

    With `BENCH_REUSE_STACK=1`, an already running stack is used instead, taken from
    FIRESTORE_EMULATOR_HOST, PUBSUB_EMULATOR_HOST and LAUNCHQ_VERTEX_ENDPOINT (e.g. `make dev`).
    """
    if os.environ.get("BENCH_REUSE_STACK") == "1":
        stack = Stack.from_parts(
            os.environ.get("GOOGLE_CLOUD_PROJECT", "launchq-dev"),
            os.environ["FIRESTORE_EMULATOR_HOST"],
            os.environ["PUBSUB_EMULATOR_HOST"],
            os.environ["LAUNCHQ_VERTEX_ENDPOINT"],
        )
        try:
            yield stack
        finally:
            stack.cleanup()
        return
    with start_stack() as emulators, standin_process() as url:
        emulators.apply_env()
        stack = Stack.from_parts(
            emulators.project, emulators.firestore.host_port, emulators.pubsub.host_port, url
        )
        try:
            yield stack
        finally:
            stack.cleanup()
            stack.admin.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_STANDIN_MAIN = """
import logging, sys
from launchq_local.standin import StandinServer
logging.disable(logging.INFO)
StandinServer(port=int(sys.argv[1])).serve_forever()
"""


@contextlib.contextmanager
def standin_process() -> Iterator[str]:
    """The Vertex stand-in in its own process (not sharing the benchmark's GIL)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", _STANDIN_MAIN, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(f"{url}/emulator/v1/status"), 60, "the stand-in")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=0.5).status_code < 500
    except requests.RequestException:
        return False


def wait_until(check: Callable[[], bool], timeout: float, what: str, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


@contextlib.contextmanager
def served_dispatcher(stack: Stack, project: str, log_path: Path) -> Iterator[str]:
    """The dispatch function under functions-framework (gunicorn, 1 worker), as deployed."""
    port = free_port()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                str(BIN / "functions-framework"),
                f"--source={DISPATCH_SOURCE}",
                "--target=dispatch",
                "--signature-type=cloudevent",
                "--host=127.0.0.1",
                f"--port={port}",
            ],
            # These benchmarks measure delivery and slot refill, not the creation budget
            # (bench/capacity.py does): without this the default 60/min would pace them.
            env=stack.env(project, LAUNCHQ_CREATE_RATE_PER_MINUTE="0"),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url) or proc.poll() is not None, 60, "functions-framework")
        if proc.poll() is not None:
            raise RuntimeError(f"functions-framework exited: {log_path.read_text()[-2000:]}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# -- Pub/Sub over REST (the emulator serves the same surface as pubsub.googleapis.com) --------


class PubsubRest:
    """Topic/subscription set-up and publishing, one HTTP request per call (no batching delay).

    The publisher's clock is read right before each request, so `publish` returns the time the
    item was handed to Pub/Sub, on the same machine as the stand-in's clock.
    """

    def __init__(self, host: str, project: str) -> None:
        self.base = f"http://{host}/v1/projects/{project}"
        self.project = project
        self.session = requests.Session()

    def create_topic(self, topic: str) -> str:
        response = self.session.put(f"{self.base}/topics/{topic}", json={}, timeout=10)
        if response.status_code not in (200, 409):
            response.raise_for_status()
        return f"projects/{self.project}/topics/{topic}"

    def create_push_subscription(self, name: str, topic: str, endpoint: str) -> None:
        body = {
            "topic": f"projects/{self.project}/topics/{topic}",
            "pushConfig": {"pushEndpoint": endpoint},
            "ackDeadlineSeconds": 60,
        }
        response = self.session.put(f"{self.base}/subscriptions/{name}", json=body, timeout=10)
        response.raise_for_status()

    def delete_subscription(self, name: str) -> None:
        with contextlib.suppress(requests.RequestException):
            self.session.delete(f"{self.base}/subscriptions/{name}", timeout=10)

    def publish(self, topic: str, data: bytes, **attributes: str) -> float:
        import base64

        message = {"data": base64.b64encode(data).decode(), "attributes": attributes}
        sent = time.time()
        response = self.session.post(
            f"{self.base}/topics/{topic}:publish", json={"messages": [message]}, timeout=10
        )
        response.raise_for_status()
        return sent


# -- Firestore RPC counting -------------------------------------------------------------------

_COUNTED = (
    "batch_get_documents",
    "run_query",
    "run_aggregation_query",
    "commit",
    "begin_transaction",
    "rollback",
    "list_documents",
    "get_document",
    "update_document",
)


class FirestoreCounter:
    """Counts Firestore RPCs, documents read and writes committed, in this process.

    Patches the GAPIC `FirestoreClient` class (every `google.cloud.firestore.Client` call goes
    through it), so it counts exactly what goes over the wire: `rpcs` per method, `docs_read`
    (documents returned by gets and queries, as billed) and `writes` (writes in commits).
    """

    def __init__(self) -> None:
        self.rpcs: Counter[str] = Counter()
        self.docs_read = 0
        self.writes = 0
        self._lock = threading.Lock()
        self._saved: dict[str, Any] = {}

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "rpcs": dict(self.rpcs),
                "rpcs_total": sum(self.rpcs.values()),
                "docs_read": self.docs_read,
                "writes": self.writes,
            }

    def reset(self) -> None:
        with self._lock:
            self.rpcs.clear()
            self.docs_read = 0
            self.writes = 0

    def __enter__(self) -> FirestoreCounter:
        from google.cloud.firestore_v1.services.firestore.client import FirestoreClient

        for name in _COUNTED:
            original = getattr(FirestoreClient, name)
            self._saved[name] = original
            setattr(FirestoreClient, name, self._wrap(name, original))
        return self

    def __exit__(self, *exc: object) -> None:
        from google.cloud.firestore_v1.services.firestore.client import FirestoreClient

        for name, original in self._saved.items():
            setattr(FirestoreClient, name, original)
        self._saved.clear()

    def _wrap(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        counter = self

        def counted(client: Any, *args: Any, **kwargs: Any) -> Any:
            with counter._lock:
                counter.rpcs[name] += 1
            if name == "commit":
                request = kwargs.get("request") or (args[0] if args else None)
                writes = getattr(request, "writes", None)
                if writes is None and isinstance(request, dict):
                    writes = request.get("writes")
                with counter._lock:
                    counter.writes += len(writes or [])
            result = original(client, *args, **kwargs)
            if name in ("batch_get_documents", "run_query"):
                return counter._count_stream(result)
            if name == "get_document":
                with counter._lock:
                    counter.docs_read += 1
            return result

        return counted

    def _count_stream(self, stream: Any) -> Any:
        counter = self

        class Counted:
            def __iter__(self) -> Counted:
                return self

            def __next__(self) -> Any:
                response = next(stream)
                if _has_document(response):
                    with counter._lock:
                        counter.docs_read += 1
                return response

            def __getattr__(self, attr: str) -> Any:
                return getattr(stream, attr)

        return Counted()


def _has_document(response: Any) -> bool:
    if hasattr(response, "found"):  # BatchGetDocumentsResponse: found or missing
        return bool(response._pb.HasField("found"))
    return bool(response._pb.HasField("document"))  # RunQueryResponse


# -- statistics and the machine -----------------------------------------------------------------


def percentiles(values: list[float], digits: int = 1) -> dict[str, float]:
    """p50/p95/p99/max/mean of `values` (already in the unit wanted)."""
    if not values:
        return {}
    ordered = sorted(values)

    def pct(p: float) -> float:
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
        return round(ordered[index], digits)

    return {
        "n": len(ordered),
        "p50": pct(50),
        "p95": pct(95),
        "p99": pct(99),
        "max": round(ordered[-1], digits),
        "mean": round(statistics.fmean(ordered), digits),
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    def run(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.rstrip()
        except OSError:
            return ""

    return {
        "nproc": run("nproc"),
        "free_h": run("free", "-h"),
        "python": platform.python_version(),
        "python_V": run(sys.executable, "-V"),
        "uname_a": run("uname", "-a"),
        "cpu_model": _cpu_model(),
        "load_average_at_start": load_average(),
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()
