"""The whole of launchq on one machine: what `make dev` runs and what the demo and tests start.

    with DevStack(ports=Ports.free()) as stack:     # or Ports() for the documented fixed ports
        stack.env()                                 # the variables that point the CLI at it
        ...

Pieces, each as it runs in Google Cloud except for what stands in for a managed service:

- the Pub/Sub and Firestore emulators (`launchq_local.emulators`), in their own process groups;
- the GCS emulator (fake-gcs-server, `launchq_local.gcs`), where `enqueue --source` uploads and
  from which the stand-in installs python-package jobs;
- the Vertex AI stand-in in execute mode (`launchq_local.standin`), in a thread of this process:
  it runs each job's container command locally (no Docker), so examples/trainer/train.py
  really trains;
- the Cloud Logging stand-in (`launchq_local.logging_standin`), in a thread of this process:
  every line an executed job prints becomes an `ml_job` entry that `launchq logs` reads;
- the dispatch function (`functions/dispatch`, CloudEvent), the sweep function
  (`functions/sweep`, HTTP) and the notify function (`functions/notify`, CloudEvent) under
  functions-framework, each its own process on its own port, with the environment a deployment
  would give them;
- a webhook receiver (`launchq_local.webhook_receiver`), in a thread of this process: where the
  notify function sends the example queues' notifications. Its URL and signing key are in the
  Secret Manager stand-in under the names the examples use (`NOTIFY_SECRETS`), so a queue's
  `notify` rule works locally as it would with a team's endpoint;
- a topic per applied queue (`launchq-q-<queue>`) with a push subscription to the dispatcher
  (endpoint path `/projects/P/topics/T`, which functions-framework turns into a
  `messagePublished` CloudEvent, as Eventarc does in the cloud): `launchq queue apply` creates
  it at once, and the stack gives every queue found in Firestore its topic before each sweep
  (`launchq_local.queue_topics`); the shared topic only when asked (`queue_topic=`); the events
  topic with a pull subscription for readers and a push subscription to the notify function;
- a thread POSTing to the sweep function every `sweep_interval` seconds: Cloud Scheduler's job.

Ports (fixed by default, documented in docs/local-dev.md; `Ports.free()` for tests and the demo,
so stacks never clash): Firestore 8080, Pub/Sub 8085, dispatcher 8081, sweeper 8082, notify
function 8083, stand-in 8090, GCS 4443, Logging stand-in 8091, Cloud Build stand-in 8092, Secret
Manager stand-in 8093, webhook receiver 8094.
The stack also exports `LAUNCHQ_PYTHON` (this
interpreter) and `LAUNCHQ_EXAMPLES` (this checkout's examples/) into the stand-in's environment;
Vertex-style `$(VAR)` references in the example queue configs use them to find the trainer.

Stopping (`stop`, the context manager, or interpreter exit) goes through `DevStack.stop_sequence`,
an ordered list in which each piece stops before the pieces it calls: the sweep loop, the
function process groups, the webhook receiver, the stand-in (which kills running jobs), the
emulators; then it restores the environment: nothing is left behind. The order matters: with
the emulators stopped first, a sweep in flight waited on the dead Firestore for its 120 s request
timeout, and a SIGTERMed `launchq dev` took over two minutes to stop; in order it takes a few
seconds (JVM shutdown is most of it). Each step logs `stopping` / `stopped` with its `piece`.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import errno
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import requests

from launchq.log import get_logger
from launchq_local.cloudbuild_standin import CloudBuildStandin
from launchq_local.cloudbuild_standin.images import IMAGES_VARIABLE
from launchq_local.emulators import (
    EmulatorStack,
    EmulatorStartError,
    die_with_parent,
    free_ports,
    start_stack,
    stop_groups,
)
from launchq_local.gcs import GcsEmulator, start_gcs
from launchq_local.logging_standin import LoggingStandinServer
from launchq_local.queue_topics import (
    DISPATCHER_URL_VARIABLE,
    ensure_push_subscription,
    ensure_push_topic,
    ensure_queue_topics,
)
from launchq_local.secretmanager_standin import SecretManagerStandinServer
from launchq_local.standin import Delays, StandinServer
from launchq_local.standin.limits import Limits
from launchq_local.webhook_receiver import Delivery, WebhookReceiver

log = get_logger(__name__)

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"
EXAMPLES = ROOT / "examples"
EVENTS_SUBSCRIPTION = "launchq-events-local"
# The events topic's push subscription to the notify function (as Eventarc's in the cloud).
NOTIFY_SUBSCRIPTION = "launchq-events-notify"
# The project the example queues name (their W&B key and webhook secrets live there), whatever
# the stack's own project.
EXAMPLES_PROJECT = "launchq-demo"
# The Secret Manager secrets (version 1 each) the stack fills for the example queues' `notify`
# rules: the webhook receiver's signed hook URL, its signing key, and its Slack-format hook URL.
NOTIFY_SECRETS = {
    "hook_url": f"projects/{EXAMPLES_PROJECT}/secrets/launchq-hook-url/versions/1",
    "signing_key": f"projects/{EXAMPLES_PROJECT}/secrets/launchq-hook-key/versions/1",
    "slack_url": f"projects/{EXAMPLES_PROJECT}/secrets/launchq-slack-url/versions/1",
}
# Where `launchq ui` serves by default: the notifications' dashboard links point there.
DASHBOARD_URL = "http://127.0.0.1:8088"
DEV_PROJECT = "launchq-dev"
DEV_BUCKET = "launchq-demo-staging"  # examples/queues/*.yaml's spec.staging_bucket
# Execute-mode jobs spend these in QUEUED and PENDING before their process starts.
DEV_DELAYS = Delays(queued=0.3, pending=0.3, running=5.0, cancelling=0.3)
_STOP_GRACE = 5.0
# A sweep of the local stack takes well under a second; waiting longer for one in flight would
# only delay the stop: stopping the sweep function next ends whatever is still running.
_SWEEP_STOP_WAIT = 5.0


@dataclass(frozen=True)
class Ports:
    """0 means "pick a free port at start"."""

    firestore: int = 8080
    pubsub: int = 8085
    dispatcher: int = 8081
    sweeper: int = 8082
    standin: int = 8090
    gcs: int = 4443
    logging: int = 8091
    cloudbuild: int = 8092
    secretmanager: int = 8093
    notifier: int = 8083
    receiver: int = 8094

    @classmethod
    def free(cls) -> Ports:
        return cls(*(0 for _ in dataclasses.fields(cls)))

    def resolved(self) -> Ports:
        picked = iter(free_ports(sum(1 for port in self._values() if not port)))
        return Ports(*(port or next(picked) for port in self._values()))

    @property
    def any_free(self) -> bool:
        return 0 in self._values()

    def _values(self) -> tuple[int, ...]:
        return dataclasses.astuple(self)


class DevStackError(RuntimeError):
    """A piece of the local stack failed to start or died; the message names it and its log."""


@dataclass
class _Function:
    name: str
    target: str
    signature: str
    port: int
    log_path: Path
    functions_dir: Path = FUNCTIONS
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def source(self) -> Path:
        return self.functions_dir / self.name / "main.py"


@dataclass
class SweepLoop:
    """Cloud Scheduler's stand-in: POST the sweep function every `interval` seconds."""

    url: str
    interval: float
    on_result: Callable[[dict[str, Any]], None] | None = None
    before: Callable[[], object] | None = None  # before each sweep: new queues' topics
    runs: int = 0
    failures: int = 0
    last: dict[str, Any] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _session: requests.Session = field(default_factory=requests.Session)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sweep-loop", daemon=True)
        self._thread.start()

    def sweep_now(self) -> dict[str, Any]:
        response = self._session.post(self.url, json={}, timeout=120)
        response.raise_for_status()
        summary: dict[str, Any] = response.json() if response.content else {}
        return summary

    def _run(self) -> None:
        pause = self.interval
        while not self._stop.wait(pause):
            # Calls start every `interval`, as Cloud Scheduler's do: a sweep that spent a while
            # admitting (waiting for creation-budget windows) is followed without another pause.
            called = time.monotonic()
            pause = self.interval
            try:
                if self.before is not None:
                    self.before()
                self.last = self.sweep_now()
                self.runs += 1
            except Exception as exc:  # a sweep that failed is retried next interval
                if self._stop.is_set():
                    return  # the stack is stopping: the sweep function went away mid-call
                self.failures += 1
                log.warning("sweep call failed", url=self.url, error=str(exc))
                continue
            if self.on_result is not None:
                self.on_result(self.last)
            pause = max(self.interval - (time.monotonic() - called), 0.0)

    def stop(self, timeout: float = _SWEEP_STOP_WAIT) -> None:
        """No new sweep; wait up to `timeout` for the one in flight (the thread is a daemon: one
        still running then ends when the sweep function is stopped, or with the process)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            if self._thread.is_alive():
                log.warning("a sweep is still in flight; stopping without it", url=self.url)
                return
        self._session.close()


class DevStack:
    """Start with `start()` (or `with`), stop with `stop()`; see the module docstring."""

    def __init__(
        self,
        project: str = DEV_PROJECT,
        ports: Ports | None = None,
        sweep_interval: float = 3.0,
        work_dir: Path | None = None,
        delays: Delays | None = None,
        queue_topic: str | None = None,
        events_topic: str = "launchq-events",
        on_sweep: Callable[[dict[str, Any]], None] | None = None,
        functions_dir: Path = FUNCTIONS,
        limits: Limits | None = None,
        scarcity: Sequence[Mapping[str, Any]] = (),
        on_delivery: Callable[[Delivery], None] | None = None,
    ) -> None:
        self.project = project
        self.limits = limits  # Vertex quotas/rate limit for the stand-in (none by default)
        # Stand-in scarcity rules (stockouts, SPOT preemptions), in the admin API's shape.
        self.scarcity = list(scarcity)
        self._requested = ports or Ports()
        self.ports = self._requested.resolved()
        self.sweep_interval = sweep_interval
        self._own_dir = Path(tempfile.mkdtemp(prefix="launchq-dev-"))
        self.work_dir = work_dir or self._own_dir / "vertex"
        self.log_dir = self._own_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.delays = delays or DEV_DELAYS
        self.queue_topic = queue_topic
        self.events_topic = events_topic
        self.on_sweep = on_sweep
        self.emulators: EmulatorStack | None = None
        self.standin: StandinServer | None = None
        self.gcs: GcsEmulator | None = None
        self.logging: LoggingStandinServer | None = None
        self.cloudbuild: CloudBuildStandin | None = None
        self.secrets: SecretManagerStandinServer | None = None
        self.receiver: WebhookReceiver | None = None
        # The webhook receiver's secrets: its key signs, its token is the URL's secret part.
        self.signing_key = "whsec_local_" + secrets.token_hex(24)
        self.hook_token = secrets.token_urlsafe(18)
        self.on_delivery = on_delivery  # called in the receiver's thread for each delivery
        self.sweep_loop: SweepLoop | None = None
        self.functions_dir = functions_dir
        self.functions = self._new_functions()
        self._previous_env: dict[str, str | None] = {}
        self._queue_topics: set[str] = set()  # queues whose topic exists
        self._store: Any = None  # the store on the emulator, for the queue listing
        self._stopped = False
        self.startup_seconds = 0.0

    # -- addresses ----------------------------------------------------------------------------

    @property
    def dispatcher_url(self) -> str:
        return self.functions[0].url

    @property
    def sweeper_url(self) -> str:
        return self.functions[1].url

    @property
    def notifier_url(self) -> str:
        return self.functions[2].url

    @property
    def receiver_url(self) -> str:
        """The webhook receiver (`GET {receiver_url}/deliveries` lists what it took)."""
        return f"http://127.0.0.1:{self.ports.receiver}"

    @property
    def standin_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.standin}"

    @property
    def logging_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.logging}"

    @property
    def cloudbuild_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.cloudbuild}"

    @property
    def secretmanager_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.secretmanager}"

    @property
    def events_subscription_path(self) -> str:
        return f"projects/{self.project}/subscriptions/{EVENTS_SUBSCRIPTION}"

    @property
    def notify_subscription_path(self) -> str:
        return f"projects/{self.project}/subscriptions/{NOTIFY_SUBSCRIPTION}"

    def env(self) -> dict[str, str]:
        """What a shell needs to point the CLI (and any Google client) at this stack."""
        return {
            "LAUNCHQ_PROJECT": self.project,
            "GOOGLE_CLOUD_PROJECT": self.project,
            "PUBSUB_PROJECT_ID": self.project,
            "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{self.ports.pubsub}",
            "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{self.ports.firestore}",
            **({"LAUNCHQ_QUEUE_TOPIC": self.queue_topic} if self.queue_topic else {}),
            "LAUNCHQ_EVENTS_TOPIC": self.events_topic,
            DISPATCHER_URL_VARIABLE: self.dispatcher_url,
            "LAUNCHQ_VERTEX_ENDPOINT": self.standin_url,
            # The Vertex stand-in also answers Cloud Quotas' reads of its quotas.
            "LAUNCHQ_CLOUDQUOTAS_ENDPOINT": self.standin_url,
            "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{self.ports.gcs}",
            "LAUNCHQ_LOGGING_ENDPOINT": self.logging_url,
            # Secret Manager: the CLI and the functions, and the executed jobs' bootstrap
            # (launchq.spec.bootstrap), which read W&B keys from it.
            "LAUNCHQ_SECRETMANAGER_ENDPOINT": self.secretmanager_url,
            # The Cloud Build stand-in also answers Artifact Registry's tag lookups.
            "LAUNCHQ_CLOUDBUILD_ENDPOINT": self.cloudbuild_url,
            "LAUNCHQ_ARTIFACTREGISTRY_ENDPOINT": self.cloudbuild_url,
            # Where built images are unpacked for the Vertex stand-in to run.
            IMAGES_VARIABLE: str(self.work_dir / "images"),
        }

    def _process_env(self) -> dict[str, str]:
        """The functions' environment: the CLI's, plus what makes a local stack snappy."""
        return {
            **self.env(),
            # A queue applied a moment ago must be visible to the next item at once.
            "LAUNCHQ_QUEUE_CACHE_SECONDS": "0",
            # The stack's own scheduler POSTs every `sweep_interval` seconds: one pass each.
            "LAUNCHQ_SWEEP_INTERVAL_SECONDS": "0",
            "LAUNCHQ_PYTHON": sys.executable,
            "LAUNCHQ_EXAMPLES": str(EXAMPLES),
            # The notify function's links: `launchq ui`'s default address.
            "LAUNCHQ_DASHBOARD_URL": DASHBOARD_URL,
            "PYTHONUNBUFFERED": "1",
        }

    # -- start --------------------------------------------------------------------------------

    def _new_functions(self) -> list[_Function]:
        return [
            _Function(
                "dispatch",
                "dispatch",
                "cloudevent",
                self.ports.dispatcher,
                self.log_dir / "dispatch.log",
                self.functions_dir,
            ),
            _Function(
                "sweep",
                "sweep",
                "http",
                self.ports.sweeper,
                self.log_dir / "sweep.log",
                self.functions_dir,
            ),
            _Function(
                "notify",
                "notify",
                "cloudevent",
                self.ports.notifier,
                self.log_dir / "notify.log",
                self.functions_dir,
            ),
        ]

    def start(self, attempts: int = 3) -> Self:
        """Start everything. With picked ports, a port taken between picking it and a JVM
        binding it (another process won the race) means starting again on new ones."""
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once()
            except (EmulatorStartError, OSError) as exc:
                # A JVM emulator reports the race as a bind failure; a stand-in in this process
                # (HTTP servers on picked ports) as EADDRINUSE.
                taken = (
                    exc.is_bind_failure
                    if isinstance(exc, EmulatorStartError)
                    else exc.errno == errno.EADDRINUSE
                )
                if not (taken and self._requested.any_free and attempt < attempts):
                    raise
                log.warning("a picked port was taken; starting again on new ones", attempt=attempt)
                self._reset()
        raise AssertionError("unreachable")

    def _reset(self) -> None:
        """After a failed (and stopped) start: new ports, nothing running, ready to start."""
        self.ports = self._requested.resolved()
        self.functions = self._new_functions()
        self.emulators = self.standin = self.sweep_loop = None
        self.cloudbuild = None
        self.gcs = None
        self.logging = None
        self.secrets = None
        self.receiver = None
        self._previous_env = {}
        self._stopped = False

    def _start_once(self) -> Self:
        started = time.monotonic()
        _register(self)
        try:
            self._apply_env()
            for function in self.functions:
                self._spawn(function)  # they boot while the JVMs do
            self.emulators = start_stack(
                self.project, pubsub_port=self.ports.pubsub, firestore_port=self.ports.firestore
            )
            self.gcs = start_gcs(port=self.ports.gcs, root=self._own_dir / "gcs")
            # The example queues' staging bucket: `enqueue --source` uploads there by default.
            # (It survives a start that had to begin again: the emulator's files stay.)
            from google.api_core.exceptions import Conflict

            with contextlib.suppress(Conflict):
                self.gcs.client(self.project).create_bucket(DEV_BUCKET)
            self.logging = LoggingStandinServer(port=self.ports.logging).start()
            self.secrets = SecretManagerStandinServer(port=self.ports.secretmanager).start()
            self.receiver = WebhookReceiver(
                self.signing_key, self.hook_token, port=self.ports.receiver,
                on_delivery=self.on_delivery,
            ).start()  # fmt: skip
            self._put_notify_secrets()
            self.cloudbuild = CloudBuildStandin(
                port=self.ports.cloudbuild,
                gcs_url=f"http://127.0.0.1:{self.ports.gcs}",
                images_dir=self.work_dir / "images",
            ).start()
            self.standin = StandinServer(
                port=self.ports.standin,
                mode="execute",
                delays=self.delays,
                work_dir=self.work_dir,
                limits=self.limits,
                line_sink=self.logging.book.record,
                scarcity=self.scarcity,
            ).start()
            self._create_topics()
            for function in self.functions:
                self._wait_listening(function)
            self.sweep_loop = SweepLoop(
                self.sweeper_url, self.sweep_interval, self.on_sweep, self.sync_queue_topics
            )
            self.sweep_loop.start()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        log.info("local stack ready", seconds=round(self.startup_seconds, 2), **self.env())
        return self

    def _apply_env(self) -> None:
        for key, value in self._process_env().items():
            self._previous_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def _spawn(self, function: _Function) -> None:
        if not function.source.exists():
            raise DevStackError(f"{function.source} is missing: the {function.name} function")
        binary = Path(sys.executable).parent / "functions-framework"
        command = [
            str(binary),
            f"--source={function.source}",
            f"--target={function.target}",
            f"--signature-type={function.signature}",
            "--host=127.0.0.1",
            f"--port={function.port}",
        ]
        with function.log_path.open("wb") as log_file:
            function.process = subprocess.Popen(
                # If this process is killed outright, its servers go too (a sweep blocked on a
                # dead emulator otherwise ignores SIGTERM while gunicorn drains it).
                die_with_parent(command),
                env={**os.environ, **self._process_env()},
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: Ctrl-C reaches us, we stop it in order
            )

    def _wait_listening(self, function: _Function, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = function.process
            if process is None or process.poll() is not None:
                raise DevStackError(
                    f"the {function.name} function exited at start; log {function.log_path}:\n"
                    + _tail(function.log_path)
                )
            # A TCP connect, not a request: any request to the sweep function runs a sweep.
            try:
                with socket.create_connection(("127.0.0.1", function.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise DevStackError(
            f"the {function.name} function did not listen on {function.url} within {timeout}s"
        )

    def _put_notify_secrets(self) -> None:
        """The receiver's URLs and signing key, as version 1 of the secrets the example queues'
        `notify` rules name, through the real Secret Manager client (REST), as a user would."""
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import secretmanager_v1

        assert self.receiver is not None
        values = {
            "hook_url": self.receiver.hook_url,
            "signing_key": self.signing_key,
            "slack_url": self.receiver.slack_url,
        }
        client = secretmanager_v1.SecretManagerServiceClient(
            transport="rest",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=self.secretmanager_url),
        )
        automatic = secretmanager_v1.Replication(automatic=secretmanager_v1.Replication.Automatic())
        for what, version in NOTIFY_SECRETS.items():
            secret = version.rsplit("/versions/", 1)[0]
            project, _, secret_id = secret.removeprefix("projects/").partition("/secrets/")
            client.create_secret(
                parent=f"projects/{project}",
                secret_id=secret_id,
                secret=secretmanager_v1.Secret(replication=automatic),
            )
            client.add_secret_version(
                parent=secret, payload=secretmanager_v1.SecretPayload(data=values[what].encode())
            )

    def _create_topics(self) -> None:
        from google.api_core import exceptions as gexc
        from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient

        publisher = PublisherClient()
        subscriber = SubscriberClient()
        try:
            events = publisher.topic_path(self.project, self.events_topic)
            with contextlib.suppress(gexc.AlreadyExists):
                publisher.create_topic(name=events)
            with contextlib.suppress(gexc.AlreadyExists):
                subscriber.create_subscription(name=self.events_subscription_path, topic=events)
            # The notify function gets every event as Eventarc would give it: a push to the path
            # functions-framework turns into a `messagePublished` CloudEvent; a 500 (a receiver
            # that failed) is redelivered after the backoff.
            ensure_push_subscription(
                subscriber, self.notify_subscription_path, events, f"{self.notifier_url}/{events}"
            )
        finally:
            subscriber.close()
        if self.queue_topic:  # the opt-in shared topic of a single-team install
            ensure_push_topic(self.project, self.queue_topic, self.dispatcher_url)
        self.sync_queue_topics()

    def sync_queue_topics(self) -> list[str]:
        """Give every queue in Firestore its topic and push subscription (new ones only)."""
        if self._store is None:
            from launchq.store.firestore import connect

            self._store = connect(self.project)
        names = {str(q["name"]) for q in self._store.list_queues() if q.get("name")}
        fresh = sorted(names - self._queue_topics)
        created = ensure_queue_topics(self.project, fresh, self.dispatcher_url)
        self._queue_topics |= set(fresh)
        return created

    # -- running ------------------------------------------------------------------------------

    def check_alive(self) -> None:
        """Raise DevStackError naming the piece that died (the `dev` command polls this)."""
        if self.emulators is not None:
            try:
                self.emulators.check_alive()
            except Exception as exc:
                raise DevStackError(str(exc)) from exc
        if self.gcs is not None and not self.gcs.is_running():
            raise DevStackError(
                f"the GCS emulator exited; log {self.gcs.emulator.log_path}:\n"
                + self.gcs.emulator.log_tail()
            )
        for function in self.functions:
            if function.process is not None and function.process.poll() is not None:
                raise DevStackError(
                    f"the {function.name} function exited with status "
                    f"{function.process.returncode}; log {function.log_path}:\n"
                    + _tail(function.log_path)
                )

    def sweep_now(self) -> dict[str, Any]:
        if self.sweep_loop is None:
            raise DevStackError("the stack is not running")
        return self.sweep_loop.sweep_now()

    # -- stop ---------------------------------------------------------------------------------

    def stop_sequence(self) -> list[tuple[str, Callable[[], None]]]:
        """What `stop` stops, in this order: every piece before the pieces it calls, so nothing
        in flight waits on a piece that is already gone. A new piece goes after everything that
        calls it (another emulator: beside the others, after the functions)."""
        return [
            ("sweep loop", self._stop_sweep_loop),  # calls the sweep function
            ("functions", self._stop_functions),  # call the emulators and the stand-in
            ("webhook receiver", self._stop_receiver),  # the notify function posts to it
            ("vertex stand-in", self._stop_standin),  # runs jobs; calls the two below
            ("logging stand-in", self._stop_logging),
            ("secret manager stand-in", self._stop_secrets),
            ("cloud build stand-in", self._stop_cloudbuild),  # reads the GCS emulator
            ("gcs emulator", self._stop_gcs),
            ("emulators", self._stop_emulators),
        ]

    def stop(self) -> None:
        """Stop everything (`stop_sequence`). Idempotent; safe after a failed start: a piece
        that never started is a no-op, and a step that fails does not keep the rest running."""
        if self._stopped:
            return
        self._stopped = True
        for piece, stop_piece in self.stop_sequence():
            started = time.monotonic()
            log.info("stopping", piece=piece)
            try:
                stop_piece()
            except Exception:
                log.exception("stopping failed; going on with the rest", piece=piece)
            log.info("stopped", piece=piece, seconds=round(time.monotonic() - started, 2))
        for key, value in self._previous_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _unregister(self)
        log.info("local stack stopped")

    def _stop_sweep_loop(self) -> None:
        if self.sweep_loop is not None:
            self.sweep_loop.stop()

    def _stop_functions(self) -> None:
        stop_groups([f.process for f in self.functions if f.process is not None], _STOP_GRACE)

    def _stop_receiver(self) -> None:
        if self.receiver is not None:
            self.receiver.stop()

    def _stop_standin(self) -> None:
        if self.standin is not None:
            self.standin.stop()

    def _stop_logging(self) -> None:
        if self.logging is not None:
            self.logging.stop()

    def _stop_secrets(self) -> None:
        if self.secrets is not None:
            self.secrets.stop()

    def _stop_cloudbuild(self) -> None:
        if self.cloudbuild is not None:
            self.cloudbuild.stop()

    def _stop_gcs(self) -> None:
        if self.gcs is not None:
            self.gcs.stop()

    def _stop_emulators(self) -> None:
        if self.emulators is not None:
            self.emulators.stop()

    def leftovers(self) -> list[str]:
        """Pieces with a live process after `stop` (empty when nothing was left behind)."""
        from launchq_local.emulators import group_members

        groups = {f"the {f.name} function": f.process.pid for f in self.functions if f.process}
        if self.emulators is not None:
            for emulator in self.emulators.emulators:
                groups[f"the {emulator.spec.title}"] = emulator.pgid
        if self.gcs is not None:
            groups[f"the {self.gcs.emulator.spec.title}"] = self.gcs.emulator.pgid
        return [name for name, pgid in groups.items() if group_members(pgid)]

    def remove_files(self) -> None:
        """Delete the logs and the stand-in's work dir (job outputs); after `stop`."""
        import shutil

        shutil.rmtree(self._own_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


_LIVE: set[DevStack] = set()
_LIVE_LOCK = threading.Lock()
_ATEXIT: list[bool] = []


def _register(stack: DevStack) -> None:
    with _LIVE_LOCK:
        if not _ATEXIT:
            atexit.register(_stop_all)
            _ATEXIT.append(True)
        _LIVE.add(stack)


def _unregister(stack: DevStack) -> None:
    with _LIVE_LOCK:
        _LIVE.discard(stack)


def _stop_all() -> None:
    for stack in list(_LIVE):
        stack.stop()
