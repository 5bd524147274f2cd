"""Run a `python_package_spec` job in execute mode: fetch, install offline, run, sync outputs.

The stand-in starts this module as the job's process (`runner_argv`), in the job's own process
group, so cancelling the job kills the install or the run alike, and whatever goes wrong lands in
the job's stderr and so in its FAILED error message. Steps, and why:

1. Each `packageUris` entry is downloaded from the GCS emulator (`STORAGE_EMULATOR_HOST`) with
   the real storage client. Without the emulator the job fails, saying so.
2. A per-job virtual environment (`{job_dir}/venv`, `--without-pip`: 50 ms instead of 3 s) sees
   the stand-in's own packages after its own, through a `.pth` file: they play the prebuilt
   executor image's preinstalled packages (`executorImageUri` is recorded, not pulled).
3. `pip install --no-index --no-deps --no-build-isolation` installs the packages into that venv
   with the stand-in's pip and setuptools. Nothing is downloaded: `install_requires` are NOT
   resolved (Vertex would pip-install them from PyPI); a dependency that the stand-in's
   environment lacks fails the job at import time, with the ImportError in its stderr.
4. `python -m <pythonModule> <args>` runs with the job's env. `/gcs/<bucket>/...` at the start of
   an argument or env value is rewritten to the local mount `{work_dir}/gcs/<bucket>/...`, where
   `AIP_MODEL_DIR` and friends already point.
5. After the module exits, every file under the mount that is new or changed since step 4 is
   uploaded to the emulator as `gs://<bucket>/<path>` (a missing bucket is created), so outputs
   are readable with the storage client, as after a GCS FUSE write. fake-gcs-server does not
   serve files written into its storage directory (see `launchq_local.gcs`), hence the upload.
   Inputs are not fetched through the mount: only `packageUris` are downloaded.

The process exits with the module's exit status (or 1 when a step before it failed).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import sysconfig
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MOUNT_PREFIX = "/gcs/"
PREFIX = "[launchq stand-in]"


def runner_argv(spec: Any, job_dir: Path, work_dir: Path) -> list[str]:
    """The command that runs a `PythonPackageSpec` (the protobuf message) through this module."""
    argv = [sys.executable, "-m", __name__, "--job-dir", str(job_dir)]
    argv += ["--mount", str(work_dir / "gcs"), "--module", spec.python_module]
    for uri in spec.package_uris:
        argv += ["--package", uri]
    return [*argv, "--", *spec.args]


def to_mount(value: str, mount: Path) -> str:
    """`/gcs/bucket/x` → `{mount}/bucket/x`; anything else unchanged."""
    if value.startswith(MOUNT_PREFIX):
        return str(mount / value[len(MOUNT_PREFIX) :])
    return value


def split_gs(uri: str) -> tuple[str, str]:
    if not uri.startswith("gs://") or "/" not in uri[5:]:
        raise ValueError(f"not a gs://bucket/object URI: {uri!r}")
    bucket, name = uri[5:].split("/", 1)
    return bucket, name


def snapshot(mount: Path) -> dict[Path, tuple[int, int]]:
    """(mtime_ns, size) of every file under the mount."""
    found: dict[Path, tuple[int, int]] = {}
    if mount.is_dir():
        for path in mount.rglob("*"):
            if path.is_file():
                st = path.stat()
                found[path] = (st.st_mtime_ns, st.st_size)
    return found


def changed_files(before: dict[Path, tuple[int, int]], mount: Path) -> list[Path]:
    after = snapshot(mount)
    return sorted(path for path, sig in after.items() if before.get(path) != sig)


def _client() -> Any:
    host = os.environ.get("STORAGE_EMULATOR_HOST")
    if not host:
        raise SystemExit(
            f"{PREFIX} pythonPackageSpec jobs need the GCS emulator: start it "
            "(launchq_local.gcs.start_gcs, or `launchq dev`) and export STORAGE_EMULATOR_HOST."
        )
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.storage import Client

    project = os.environ.get("GOOGLE_CLOUD_PROJECT", "launchq-local")
    return Client(
        project=project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": host if "://" in host else f"http://{host}"},
    )


def fetch_packages(client: Any, uris: Sequence[str], dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, uri in enumerate(uris):
        bucket, name = split_gs(uri)
        # The index keeps two packages with the same basename apart; pip only needs the suffix.
        path = dest / f"{index}-{Path(name).name}"
        client.bucket(bucket).blob(name).download_to_filename(str(path))
        paths.append(path)
    return paths


def make_venv(venv: Path) -> Path:
    """A venv that sees this interpreter's site-packages after its own; returns its python."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    python = venv / "bin" / "python"
    own = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # addsitedir (not a bare path line) so the stand-in's own .pth files, such as an editable
    # install's finder, are processed too.
    base = sysconfig.get_paths()["purelib"]
    (Path(own) / "_launchq_standin_base.pth").write_text(
        f"import site; site.addsitedir({base!r})\n"
    )
    return python


def install(python: Path, packages: Sequence[Path]) -> None:
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--no-index",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
            *map(str, packages),
        ],
        check=True,
        stdout=sys.stderr,  # pip's output is part of the job's log, as on Vertex
    )


def sync_outputs(client: Any, mount: Path, files: Sequence[Path]) -> int:
    """Upload `files` (under `mount`) to their gs:// names; returns how many were uploaded."""
    from google.api_core import exceptions

    buckets: dict[str, Any] = {}
    for path in files:
        rel = path.relative_to(mount).as_posix()
        if "/" not in rel:
            continue  # a file directly under /gcs/ has no bucket
        bucket_name, name = rel.split("/", 1)
        bucket = buckets.get(bucket_name)
        if bucket is None:
            bucket = client.bucket(bucket_name)
            with contextlib.suppress(exceptions.Conflict):  # already there, the usual case
                client.create_bucket(bucket_name)
            buckets[bucket_name] = bucket
        bucket.blob(name).upload_from_filename(str(path))
    return len(files)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="launchq_local.standin.pyrun")
    parser.add_argument("--job-dir", type=Path, required=True)
    parser.add_argument("--mount", type=Path, required=True)
    parser.add_argument("--module", required=True)
    parser.add_argument("--package", action="append", default=[])
    parser.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    mount: Path = ns.mount
    client = _client()
    started = time.monotonic()
    try:
        packages = fetch_packages(client, ns.package, ns.job_dir / "packages")
        python = make_venv(ns.job_dir / "venv")
        if packages:
            install(python, packages)
    except (subprocess.CalledProcessError, OSError, ValueError) as exc:
        print(f"{PREFIX} could not install {ns.package}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a download error from the storage client
        print(f"{PREFIX} could not fetch {ns.package}: {exc}", file=sys.stderr)
        return 1
    print(
        f"{PREFIX} installed {len(packages)} package(s) in {time.monotonic() - started:.1f}s",
        file=sys.stderr,
        flush=True,
    )
    env = {name: to_mount(value, mount) for name, value in os.environ.items()}
    before = snapshot(mount)
    status = subprocess.call(
        [str(python), "-m", ns.module, *(to_mount(a, mount) for a in args)], env=env
    )
    changed = changed_files(before, mount)
    try:
        synced = sync_outputs(client, mount, changed)
    except Exception as exc:
        print(f"{PREFIX} could not upload outputs: {exc}", file=sys.stderr)
        return status or 1
    print(f"{PREFIX} uploaded {synced} output file(s)", file=sys.stderr)
    return 128 - status if status < 0 else status  # a signal death reads like a shell's


if __name__ == "__main__":
    sys.exit(main())
