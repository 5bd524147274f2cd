"""Images the Cloud Build stand-in "built", as the Vertex stand-in's execute mode runs them.

No Docker here: a built image is its unpacked source tree plus the Dockerfile's CMD and
ENTRYPOINT. The Cloud Build stand-in unpacks each successful build's tarball under
`<images dir>/<digest hex>/` and indexes it in `<images dir>/index.json` by its pinned URI
(`REGION-docker.pkg.dev/P/R/IMAGE@sha256:...`); the Vertex stand-in finds the directory through
`LAUNCHQ_LOCAL_IMAGES` and runs a job whose container is such an image inside the build context
directory, with Docker's rules for the command: the pool's `command` replaces the ENTRYPOINT,
its `args` replace the CMD.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path

IMAGES_VARIABLE = "LAUNCHQ_LOCAL_IMAGES"
_INDEX = "index.json"
_lock = threading.Lock()


@dataclass(frozen=True)
class LocalImage:
    uri: str
    root: Path  # the build context inside the unpacked source: the job's working directory
    command: tuple[str, ...]
    entrypoint: tuple[str, ...]

    def argv(self, command: list[str], args: list[str]) -> list[str]:
        """Docker's rules: `command` overrides ENTRYPOINT (and drops CMD); `args` override CMD."""
        if command:
            return [*command, *args]
        return [*self.entrypoint, *(args or self.command)]


def save(
    images_dir: Path,
    uri: str,
    tarball: bytes,
    context: str,
    command: tuple[str, ...],
    entrypoint: tuple[str, ...],
) -> LocalImage:
    """Unpack `tarball` for `uri` (idempotent: the digest names the directory) and index it."""
    digest = uri.rsplit("@sha256:", 1)[-1]
    target = images_dir / digest
    if not target.exists():
        partial = images_dir / f".{digest}.partial"
        partial.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:*") as tar:
            tar.extractall(partial, filter="data")  # no absolute paths, no escaping links
        partial.rename(target)
    image = LocalImage(uri, target / context, command, entrypoint)
    with _lock:
        index = _read_index(images_dir)
        index[uri] = {
            "root": str(image.root),
            "command": list(command),
            "entrypoint": list(entrypoint),
        }
        tmp = images_dir / f".{_INDEX}.tmp"
        tmp.write_text(json.dumps(index, indent=1))
        tmp.replace(images_dir / _INDEX)
    return image


def lookup(uri: str, images_dir: Path | None = None) -> LocalImage | None:
    """The locally built image `uri`, or None (not built here, or no images directory)."""
    if images_dir is None:
        configured = os.environ.get(IMAGES_VARIABLE)
        if not configured:
            return None
        images_dir = Path(configured)
    entry = _read_index(images_dir).get(uri)
    if not isinstance(entry, dict):
        return None
    return LocalImage(
        uri,
        Path(entry["root"]),
        tuple(entry.get("command", [])),
        tuple(entry.get("entrypoint", [])),
    )


def _read_index(images_dir: Path) -> dict[str, object]:
    try:
        data = json.loads((images_dir / _INDEX).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
