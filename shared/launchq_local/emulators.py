"""Start, probe, reset and stop the gcloud Pub/Sub and Firestore emulators.

Everything launchq does is tested and demoed against these two emulators, so the tests, the
`launchq emulators` command and a later `make dev` share this one module::

    with start_stack() as stack:          # both emulators, on free loopback ports
        stack.apply_env()                 # PUBSUB_EMULATOR_HOST, FIRESTORE_EMULATOR_HOST, ...
        ...
        stack.reset_firestore()           # wipe every document of the stack's project

Design choices, and why:

- The emulators' own launchers under `<sdk_root>/platform/` are run directly rather than through
  `gcloud beta emulators ... start`: gcloud adds about a second of Python start-up and one more
  process layer, and writes shared state under `~/.config/gcloud/emulators/`.
- Both bind `127.0.0.1` explicitly (the Pub/Sub emulator defaults to IPv6 `[::1]`, which clients
  resolving `localhost` to IPv4 cannot reach) and use free ports, so parallel runs never clash.
- Both start concurrently: each JVM takes one to two seconds to boot, in parallel it is the
  slower of the two, not the sum.
- Each emulator runs in its own session (`start_new_session=True`), so a terminal's Ctrl-C does
  not hit the JVMs half-way through our orderly shutdown, and stopping it means signalling the
  whole process group: the Firestore launcher is a shell script that forks `java` instead of
  exec'ing it, so killing only the direct child would orphan the JVM.
- Every started emulator is registered for clean-up at interpreter exit and on SIGTERM/SIGHUP
  (after the process's own handler, if it has one: its orderly stop comes first); on Linux the
  direct child also gets `PR_SET_PDEATHSIG`, which covers a SIGKILLed parent for the Pub/Sub JVM
  (its launcher exec's java) and the Firestore launcher script.
- A missing gcloud, Java or emulator component raises `EmulatorNotInstalled`, whose message names
  the missing piece and the command that installs it. Callers must not turn it into a skip.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Self

from launchq.log import get_logger

log = get_logger(__name__)

LOOPBACK = "127.0.0.1"
DEFAULT_START_TIMEOUT = 60.0
DEFAULT_STOP_TIMEOUT = 10.0
_POLL_INTERVAL = 0.05
_BIND_FAILURE_MARKERS = ("Address already in use", "BindException")
# The Pub/Sub JVM logs a BindException from its main thread but stays alive (netty's threads
# are not daemons), so a taken port would only surface at the deadline without this check.
_FATAL_MARKERS = ("java.net.BindException",)

INSTALL_COMPONENTS = "gcloud components install pubsub-emulator cloud-firestore-emulator"
INSTALL_DEBIAN = (
    "sudo apt-get install google-cloud-cli-pubsub-emulator google-cloud-cli-firestore-emulator"
)
INSTALL_JAVA = "sudo apt-get install openjdk-17-jre-headless (or any Java 11+ runtime on PATH)"
INSTALL_GCLOUD = (
    "install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install, "
    "or `sudo apt-get install google-cloud-cli` from Google's apt repository)"
)


class EmulatorError(RuntimeError):
    """Base class for everything that can go wrong with the local emulators."""


class EmulatorNotInstalled(EmulatorError):
    """gcloud, Java or an emulator component is missing; the message says how to install it."""

    def __init__(self, missing: str, how_to_install: str) -> None:
        super().__init__(f"{missing} is missing. To install it: {how_to_install}")
        self.missing = missing
        self.how_to_install = how_to_install


class EmulatorStartError(EmulatorError):
    """An emulator died or did not answer in time; the message carries its own log tail."""

    def __init__(self, message: str, *, log_tail: str = "") -> None:
        text = (
            f"{message}\n--- emulator output (last lines) ---\n{log_tail}" if log_tail else message
        )
        super().__init__(text)
        self.log_tail = log_tail

    @property
    def is_bind_failure(self) -> bool:
        """True when the port was taken between picking it and the JVM binding it."""
        return any(marker in self.log_tail for marker in _BIND_FAILURE_MARKERS)


@dataclass(frozen=True)
class EmulatorSpec:
    """How to find and launch one emulator component of the Cloud SDK."""

    name: str
    title: str
    component: str
    debian_package: str
    launcher: str  # relative to the SDK root
    extra_args: tuple[str, ...]

    def install_hint(self) -> str:
        return (
            f"`gcloud components install {self.component}`, or where gcloud came from apt "
            f"(components are disabled there) `sudo apt-get install {self.debian_package}`"
        )


PUBSUB = EmulatorSpec(
    name="pubsub",
    title="Pub/Sub emulator",
    component="pubsub-emulator",
    debian_package="google-cloud-cli-pubsub-emulator",
    launcher="platform/pubsub-emulator/bin/cloud-pubsub-emulator",
    extra_args=(),
)
FIRESTORE = EmulatorSpec(
    name="firestore",
    title="Firestore emulator",
    component="cloud-firestore-emulator",
    debian_package="google-cloud-cli-firestore-emulator",
    launcher="platform/cloud-firestore-emulator/cloud_firestore_emulator",
    extra_args=("start", "--database-mode=firestore-native"),
)
SPECS = (PUBSUB, FIRESTORE)


# --------------------------------------------------------------------------- locating the pieces


@dataclass(frozen=True)
class EmulatorInstall:
    """The resolved pieces needed to run both emulators."""

    sdk_root: Path
    java: Path
    launchers: dict[str, Path]


def locate_install(sdk_root: Path | None = None, path: str | None = None) -> EmulatorInstall:
    """Find Java, the Cloud SDK root and both emulator launchers, or say what to install.

    `path` replaces `$PATH` for the look-ups (tests use it to simulate a bare machine);
    `sdk_root` skips the gcloud look-up.
    """
    java = find_java(path)
    root = sdk_root if sdk_root is not None else find_sdk_root(path)
    launchers = {spec.name: root / spec.launcher for spec in SPECS}
    missing = [spec for spec in SPECS if not _is_executable(launchers[spec.name])]
    if missing:
        raise _missing_components(missing, root)
    return EmulatorInstall(sdk_root=root, java=java, launchers=launchers)


def find_java(path: str | None = None) -> Path:
    """The `java` both launchers will run: `$JAVA_HOME/bin/java`, else the one on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and _is_executable(Path(java_home) / "bin" / "java"):
        return Path(java_home) / "bin" / "java"
    found = shutil.which("java", path=path)
    if found is None:
        raise EmulatorNotInstalled(
            "Java (the `java` runtime the gcloud emulators run on)", INSTALL_JAVA
        )
    return Path(found)


def find_sdk_root(path: str | None = None) -> Path:
    """Resolve the Cloud SDK root from the `gcloud` binary, falling back to `gcloud info`.

    Following the symlink (`/usr/bin/gcloud` -> `<root>/bin/gcloud`) takes microseconds;
    `gcloud info` takes about a second, so it is only the fallback for unusual layouts.
    """
    gcloud = shutil.which("gcloud", path=path)
    if gcloud is None:
        raise EmulatorNotInstalled("gcloud (the Google Cloud CLI)", INSTALL_GCLOUD)
    candidate = Path(os.path.realpath(gcloud)).parent.parent
    if (candidate / "platform").is_dir() or (candidate / "lib" / "googlecloudsdk").is_dir():
        return candidate
    return _sdk_root_from_gcloud_info(gcloud, candidate)


def _sdk_root_from_gcloud_info(gcloud: str, fallback: Path) -> Path:
    try:
        out = subprocess.run(
            [gcloud, "info", "--format=value(installation.sdk_root)"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return fallback
    return Path(out) if out else fallback


def _missing_components(missing: list[EmulatorSpec], root: Path) -> EmulatorNotInstalled:
    names = " and ".join(spec.title for spec in missing)
    looked = ", ".join(str(root / spec.launcher) for spec in missing)
    components = " ".join(spec.component for spec in missing)
    packages = " ".join(spec.debian_package for spec in missing)
    return EmulatorNotInstalled(
        f"The {names} (gcloud component {components!r}; looked for {looked})",
        f"`gcloud components install {components}`, or where gcloud came from apt "
        f"(components are disabled there) `sudo apt-get install {packages}`",
    )


def _is_executable(candidate: Path) -> bool:
    return candidate.is_file() and os.access(candidate, os.X_OK)


# --------------------------------------------------------------------------- small helpers


def free_port(host: str = LOOPBACK) -> int:
    """A port the kernel considers free right now (a tiny race remains; start_stack retries)."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """`count` distinct free ports: every socket stays bound until all are picked, because two
    bind-and-close calls in a row may be handed the same port."""
    with contextlib.ExitStack() as sockets:
        ports = []
        for _ in range(count):
            sock = sockets.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def new_project_id(prefix: str = "launchq-test") -> str:
    """A unique, valid project id: Firestore partitions data by project, so this isolates runs."""
    return f"{prefix}-{secrets.token_hex(4)}"


def emulator_env(project: str, pubsub_host: str, firestore_host: str) -> dict[str, str]:
    """The variables the Google client libraries read to talk to the emulators, no auth."""
    return {
        "PUBSUB_EMULATOR_HOST": pubsub_host,
        "PUBSUB_PROJECT_ID": project,
        "FIRESTORE_EMULATOR_HOST": firestore_host,
        "GOOGLE_CLOUD_PROJECT": project,
    }


def apply_env(
    env: dict[str, str], environ: MutableMapping[str, str] | None = None
) -> dict[str, str | None]:
    """Set `env` in `environ` (default os.environ); return the old values for `restore_env`."""
    target = os.environ if environ is None else environ
    previous = {key: target.get(key) for key in env}
    target.update(env)
    return previous


def restore_env(
    previous: dict[str, str | None], environ: MutableMapping[str, str] | None = None
) -> None:
    """Undo `apply_env`: put back old values, drop variables that did not exist before."""
    target = os.environ if environ is None else environ
    for key, value in previous.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value


def reset_firestore(
    host_port: str, project: str, database: str = "(default)", timeout: float = 10.0
) -> None:
    """Delete every document of `project` in the Firestore emulator (the emulator's own API)."""
    url = f"http://{host_port}/emulator/v1/projects/{project}/databases/{database}/documents"
    request = urllib.request.Request(url, method="DELETE")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()


def _answers(url: str) -> bool:
    """Both emulators answer `GET /` with 200 "Ok" once they accept requests."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid`, read from /proc.

    `os.killpg(pgid, 0)` would also count zombies waiting for init to reap them, which would make
    a stopped emulator look alive.
    """
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _group_alive(pgid: int) -> bool:
    if Path("/proc/self/stat").exists():
        return bool(group_members(pgid))
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def die_with_parent(command: list[str]) -> list[str]:
    """`command` run so that Linux SIGKILLs it when its parent dies (unchanged elsewhere).

    Through util-linux's `setpriv --pdeathsig`, which sets the signal and then execs the
    launcher, rather than a `preexec_fn` calling prctl: a preexec_fn forces a real fork() of a
    process whose gRPC threads (the test session's Firestore and Pub/Sub clients) run their fork
    handlers in the child, and those aborted the child before exec (SIGABRT, seen in CI).
    """
    setpriv = shutil.which("setpriv")
    if not sys.platform.startswith("linux") or setpriv is None:
        return command
    return [setpriv, "--pdeathsig", "KILL", "--", *command]


# --------------------------------------------------------------------------- one emulator


@dataclass(eq=False)
class RunningEmulator:
    """One emulator process group, started by `launch`."""

    spec: EmulatorSpec
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    owner_pid: int = field(default_factory=os.getpid)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def host_port(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host_port}"

    @property
    def pgid(self) -> int:
        """The child is a session leader, so its pid is also its process group id."""
        return self.process.pid

    def is_running(self) -> bool:
        return self.process.poll() is None

    def answers(self) -> bool:
        return _answers(self.url + "/")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 25) -> str:
        """The last lines without Java stack frames, which would push the cause out of view."""
        kept = [
            line
            for line in self.log_text().splitlines()
            if not line.startswith(("\tat ", "\t... "))
        ]
        return "\n".join(kept[-lines:])

    def fatal_error(self) -> str | None:
        """A fatal line in the log of a JVM that has not exited (yet)."""
        text = self.log_text()
        return next((marker for marker in _FATAL_MARKERS if marker in text), None)

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        stop_emulators([self], timeout)


def launch(
    spec: EmulatorSpec, install: EmulatorInstall, port: int, log_dir: Path
) -> RunningEmulator:
    """Start one emulator in its own session, output to a log file; does not wait for it."""
    log_path = log_dir / f"{spec.name}.log"
    command = [
        str(install.launchers[spec.name]),
        *spec.extra_args,
        f"--host={LOOPBACK}",
        f"--port={port}",
    ]
    env = {**os.environ, "JAVA": str(install.java)}  # the Firestore launcher honours $JAVA
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            die_with_parent(command),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    emulator = RunningEmulator(spec, LOOPBACK, port, process, log_path)
    _REGISTRY.add(emulator)
    log.debug("emulator launched", emulator=spec.name, port=port, pid=process.pid)
    return emulator


def wait_until_ready(emulators: Iterable[RunningEmulator], timeout: float) -> None:
    """Poll every emulator's HTTP endpoint until all answer; fail fast if one dies."""
    pending = list(emulators)
    deadline = time.monotonic() + timeout
    while pending:
        for emulator in list(pending):
            if not emulator.is_running():
                raise EmulatorStartError(
                    f"The {emulator.spec.title} exited with status {emulator.process.returncode} "
                    f"before answering on {emulator.url} (log: {emulator.log_path})",
                    log_tail=emulator.log_tail(),
                )
            fatal = emulator.fatal_error()
            if fatal:
                raise EmulatorStartError(
                    f"The {emulator.spec.title} failed to start on {emulator.url}: {fatal} "
                    f"(log: {emulator.log_path})",
                    log_tail=emulator.log_tail(),
                )
            if emulator.answers():
                pending.remove(emulator)
        if pending and time.monotonic() > deadline:
            slow = pending[0]
            raise EmulatorStartError(
                f"The {slow.spec.title} did not answer on {slow.url} within {timeout:.0f}s "
                f"(log: {slow.log_path})",
                log_tail=slow.log_tail(),
            )
        if pending:
            time.sleep(_POLL_INTERVAL)


def stop_emulators(
    emulators: Iterable[RunningEmulator], timeout: float, *, keep_logs: bool = False
) -> None:
    """Stop emulators (see `stop_groups`); reap the direct children, remove the logs.

    Logs are removed unless `keep_logs` (a failed start keeps them: its error names the file).
    """
    targets = [e for e in emulators if e.owner_pid == os.getpid()]
    killed = stop_groups([e.process for e in targets], timeout)
    for emulator in targets:
        if emulator.process.pid in killed:
            log.warning("emulator ignored SIGTERM, killed", emulator=emulator.name)
        _REGISTRY.discard(emulator)
        if not keep_logs:
            _remove_log(emulator.log_path)


def stop_groups(processes: Sequence[subprocess.Popen[bytes]], timeout: float) -> list[int]:
    """SIGTERM the process group each process leads, wait, then SIGKILL whatever is left.

    Each process must have been started with `start_new_session=True`, so its pid is its group
    id and the whole group (a launcher script and its JVM, gunicorn and its workers) goes with
    it. All groups are signalled before waiting, so stopping two JVMs costs one shutdown, not
    two. Returns the pids of the groups that had to be killed; their direct children are reaped.
    """
    for process in processes:
        _signal_group(process.pid, signal.SIGTERM)
    _wait_groups_gone(processes, timeout)
    killed = [p.pid for p in processes if _group_alive(p.pid)]
    for pid in killed:
        _signal_group(pid, signal.SIGKILL)
    _wait_groups_gone(processes, 5.0)
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=1.0)
    return killed


def _remove_log(log_path: Path) -> None:
    """Delete one log, and its folder once the last log in it is gone."""
    log_path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        log_path.parent.rmdir()


def _wait_groups_gone(processes: Sequence[subprocess.Popen[bytes]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            process.poll()  # reap the direct child so it does not linger as a zombie
        if not any(_group_alive(p.pid) for p in processes):
            return
        time.sleep(_POLL_INTERVAL)


# --------------------------------------------------------------------------- the pair


@dataclass(eq=False)
class EmulatorStack:
    """Both emulators for one project, plus the knobs tests and the CLI need."""

    project: str
    pubsub: RunningEmulator
    firestore: RunningEmulator
    log_dir: Path
    startup_seconds: float = 0.0
    _previous_env: dict[str, str | None] | None = None

    @property
    def emulators(self) -> tuple[RunningEmulator, RunningEmulator]:
        return (self.pubsub, self.firestore)

    def env(self) -> dict[str, str]:
        return emulator_env(self.project, self.pubsub.host_port, self.firestore.host_port)

    def apply_env(self, environ: MutableMapping[str, str] | None = None) -> None:
        """Point the client libraries at this stack; `stop` restores the previous values."""
        previous = apply_env(self.env(), environ)
        if self._previous_env is None:
            self._previous_env = previous

    def reset_firestore(self, database: str = "(default)") -> None:
        reset_firestore(self.firestore.host_port, self.project, database)

    def check_alive(self) -> None:
        """Raise if an emulator has exited, with its log tail (the CLI watches with this)."""
        for emulator in self.emulators:
            if not emulator.is_running():
                raise EmulatorStartError(
                    f"The {emulator.spec.title} exited with status {emulator.process.returncode}",
                    log_tail=emulator.log_tail(),
                )

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop both process groups, restore the environment, remove the logs. Idempotent."""
        stop_emulators(self.emulators, timeout)
        if self._previous_env is not None:
            restore_env(self._previous_env)
            self._previous_env = None
        shutil.rmtree(self.log_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_stack(
    project: str | None = None,
    *,
    pubsub_port: int | None = None,
    firestore_port: int | None = None,
    timeout: float = DEFAULT_START_TIMEOUT,
    install: EmulatorInstall | None = None,
    attempts: int = 3,
) -> EmulatorStack:
    """Start both emulators concurrently on loopback and return once both answer.

    Ports default to free ones; when an auto-picked port is taken before the JVM binds it, the
    start is retried on new ports (not when a port was given: that would just fail again).
    Raises EmulatorNotInstalled or EmulatorStartError; the logs of a failed start are kept.
    """
    install = install or locate_install()
    project = project or new_project_id()
    retryable = pubsub_port is None and firestore_port is None
    for attempt in range(1, attempts + 1):
        will_retry = retryable and attempt < attempts
        try:
            return _start_once(project, pubsub_port, firestore_port, timeout, install, will_retry)
        except EmulatorStartError as exc:
            if not (exc.is_bind_failure and will_retry):
                raise
            log.warning("emulator port was taken, retrying", attempt=attempt)
    raise AssertionError("unreachable")


def _start_once(
    project: str,
    pubsub_port: int | None,
    firestore_port: int | None,
    timeout: float,
    install: EmulatorInstall,
    will_retry_bind_failure: bool,
) -> EmulatorStack:
    _install_cleanup_handlers()
    log_dir = Path(tempfile.mkdtemp(prefix="launchq-emulators-"))
    started = time.monotonic()
    launched: list[RunningEmulator] = []
    try:
        launched.append(launch(PUBSUB, install, pubsub_port or free_port(), log_dir))
        launched.append(launch(FIRESTORE, install, firestore_port or free_port(), log_dir))
        wait_until_ready(launched, timeout)
    except EmulatorStartError as exc:
        # Keep the logs the error points at, unless this attempt is about to be retried.
        keep = not (will_retry_bind_failure and exc.is_bind_failure)
        stop_emulators(launched, DEFAULT_STOP_TIMEOUT, keep_logs=keep)
        raise
    except BaseException:  # Ctrl-C or a launcher that cannot be executed
        stop_emulators(launched, DEFAULT_STOP_TIMEOUT)
        raise
    elapsed = time.monotonic() - started
    stack = EmulatorStack(project, launched[0], launched[1], log_dir, startup_seconds=elapsed)
    log.info(
        "emulators ready",
        project=project,
        pubsub=stack.pubsub.host_port,
        firestore=stack.firestore.host_port,
        seconds=round(elapsed, 2),
    )
    return stack


# --------------------------------------------------------------------------- clean-up on exit


class _Registry:
    """Every emulator this process started and has not stopped yet."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: set[RunningEmulator] = set()

    def add(self, emulator: RunningEmulator) -> None:
        with self._lock:
            self._live.add(emulator)

    def discard(self, emulator: RunningEmulator) -> None:
        with self._lock:
            self._live.discard(emulator)

    def snapshot(self) -> list[RunningEmulator]:
        with self._lock:
            return list(self._live)


_REGISTRY = _Registry()
_HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def register(emulator: RunningEmulator) -> None:
    """Have `stop_all` (at exit, on SIGTERM/SIGHUP) stop an emulator started outside `launch`."""
    _install_cleanup_handlers()
    _REGISTRY.add(emulator)


def stop_all(timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
    """Stop every emulator still running from this process (atexit and signal hook)."""
    live = _REGISTRY.snapshot()
    if live:
        log.info("stopping leftover emulators", count=len(live))
        stop_emulators(live, timeout)


@functools.cache
def _install_cleanup_handlers() -> None:
    """Register atexit once, and SIGTERM/SIGHUP handlers when we are on the main thread.

    A handler someone else installed is chained to, not replaced, and runs *first*: a process
    with its own handler has its own orderly stop (`launchq dev` stops its sweep loop and
    functions before the emulators they call). Stopping the emulators before that handler ran
    left a sweep hanging on a dead Firestore and made `launchq dev` take two minutes to stop on
    SIGTERM. When that handler raises (KeyboardInterrupt, SystemExit), the owner's stop runs and
    atexit catches whatever it leaves; when it returns, the emulators are stopped here. Without
    a handler, the default action is re-raised after clean-up so the process still dies "by
    SIGTERM" for its parent.
    """
    atexit.register(stop_all)
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in _HANDLED_SIGNALS:
        previous = signal.getsignal(sig)
        if previous is signal.SIG_IGN:
            continue
        signal.signal(sig, _make_handler(previous))


_Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


def _make_handler(previous: _Handler) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        if callable(previous):
            previous(signum, frame)  # may raise: then the owner stops us in its own order
            stop_all()
            return
        stop_all()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    return handler
