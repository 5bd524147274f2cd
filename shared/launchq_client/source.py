"""Pack a local directory into a deterministic Python source distribution and upload it once.

`launchq enqueue --source ./proj --module trainer.task` runs *your code*, not an image: the
directory becomes a `.tar.gz` sdist that Vertex installs with pip (`python_package_spec`), stored
content-addressed at `gs://<bucket>/launchq/sources/<sha256>.tar.gz`. The same tree must give the
same bytes, so an unchanged project is never uploaded twice. Every source of non-determinism in
`tar czf` is pinned here (docs/source-jobs.md lists the rules):

- entries sorted by path, files only (no directory entries), uid/gid 0, owner names empty;
- every mtime fixed at 1980-01-02 00:00 UTC: setuptools copies file mtimes into the wheel it
  builds, and ZIP cannot store times before 1980 *in local time*, so 1980-01-01 00:00 UTC would
  break a build west of Greenwich;
- modes normalised to 0644, or 0755 when the owner may execute the file (umask-independent);
- gzip header with mtime 0 and an empty file name (gzip writes both by default);
- symlinks are followed and stored as regular files (a link that leaves the tree, or is broken,
  is left out: its target is not part of the project).

What is packed: in a git checkout, `git ls-files --cached --others --exclude-standard` (tracked
files plus untracked files that `.gitignore` does not exclude: a file you just created is part of
the code you want to run, a file you ignored is not); elsewhere every file. In both cases the
built-in ignore list (`DEFAULT_IGNORES`) and the directory's `.launchqignore` (gitignore syntax,
via `pathspec`) are then applied.

A directory with `pyproject.toml` or `setup.py` is already a Python project and is packed as-is
under `<name>-<version>/` (the sdist layout pip expects); a bare directory of modules gets a
generated `setup.py`, as the aiplatform SDK's script packager does, with `requirements.txt` as
`install_requires`. The generated file is written into the archive only, never into your tree.
"""

from __future__ import annotations

import configparser
import difflib
import gzip
import hashlib
import io
import os
import re
import stat
import subprocess
import tarfile
import tomllib
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pathspec

from launchq.builds.sources import SHA256_METADATA
from launchq.log import get_logger
from launchq.spec.buildplan import (
    DOCKERFILES_METADATA,
    DOCKERFILES_METADATA_BYTES,
    FILES_METADATA,
    TOP_METADATA,
    encode_files,
    looks_like_dockerfile,
)

log = get_logger(__name__)

SOURCES_PREFIX = "launchq/sources"
IGNORE_FILE = ".launchqignore"
# 1980-01-02T00:00:00Z; see the module docstring for why not the 1st.
FIXED_MTIME = 315_619_200
GZIP_LEVEL = 6  # level 9 costs ~2x the time for ~1% smaller archives of source trees
DEFAULT_VERSION = "0.0.0"
# Always left out: VCS metadata, virtual environments, caches and build output. Gitignore syntax.
DEFAULT_IGNORES: tuple[str, ...] = (
    ".git/",
    ".hg/",
    ".svn/",
    "__pycache__/",
    "*.pyc",
    "*.pyo",
    ".venv/",
    "venv/",
    ".env/",
    ".tox/",
    ".nox/",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".hypothesis/",
    ".ipynb_checkpoints/",
    "node_modules/",
    "*.egg-info/",
    "build/",
    "dist/",
    ".DS_Store",
)
_NAME_RE = re.compile(r"[^A-Za-z0-9.]+")
_CHUNK = 1024 * 1024


class SourceError(ValueError):
    """The directory cannot be packed (not a directory, nothing to pack, bad metadata)."""


@dataclass(frozen=True)
class PackedSource:
    """A packed source distribution on local disk."""

    path: Path
    sha256: str
    size: int
    top: str  # the archive's top directory, `<name>-<version>`
    listing: tuple[str, ...]  # every path in the archive, in archive order
    generated_project: bool  # True when setup.py was generated for a bare directory
    git: bool  # True when the file list came from `git ls-files`

    def object_name(self, prefix: str = SOURCES_PREFIX) -> str:
        return f"{prefix}/{self.sha256}.tar.gz"

    @property
    def files(self) -> list[str]:
        """Every path in the archive relative to `top`, in archive order."""
        return [member.removeprefix(f"{self.top}/") for member in self.listing]

    @property
    def dockerfiles(self) -> list[str] | None:
        """Dockerfile-like paths under `top`, or None when too many to record in the object's
        metadata (GCS allows 8 KiB in all)."""
        found = [rel for rel in self.files if looks_like_dockerfile(rel)]
        return found if len(",".join(found)) <= DOCKERFILES_METADATA_BYTES else None


def object_metadata(packed: PackedSource) -> dict[str, str]:
    """The archive's custom metadata: its sha256 (the dispatcher's match check), and for image
    builds its top directory, its Dockerfile-like paths and, when it fits, every path, so that a
    queue's `builder.dockerfile` of any name is judged before a build starts
    (launchq.spec.buildplan.dockerfile_problem)."""
    metadata = {SHA256_METADATA: packed.sha256, TOP_METADATA: packed.top}
    dockerfiles = packed.dockerfiles
    if dockerfiles is not None:
        metadata[DOCKERFILES_METADATA] = ",".join(dockerfiles)
    files = encode_files(packed.files)
    if files is not None:
        metadata[FILES_METADATA] = files
    return metadata


def runnable_modules(files: Iterable[str]) -> set[str]:
    """Every name `python -m NAME` could run from these paths once the project is installed.

    `a/b.py` is `a.b`, `a/__main__.py` makes `a` runnable (an `__init__.py` alone does not:
    Python refuses to run a package without `__main__`). Where a project's packages start
    depends on its build config (a `src/` layout, `package-dir`), so every dotted suffix counts:
    `src/trainer/task.py` gives `src.trainer.task`, `trainer.task` and `task`. Lenient on
    purpose: the point is to catch a module that is no file at all, never to refuse a real one.
    """
    found: set[str] = set()
    for path in files:
        if not path.endswith(".py"):
            continue
        parts = path.removesuffix(".py").split("/")
        if parts[-1] == "__init__":
            continue
        if parts[-1] == "__main__":
            parts = parts[:-1]
        found.update(".".join(parts[i:]) for i in range(len(parts)))
    found.discard("")
    return found


def module_problem(packed: PackedSource, module: str) -> str | None:
    """Why `python -m MODULE` would fail on this archive (no such file), with the closest
    names there are, or None. Found here, before the upload, instead of by the job on Vertex."""
    runnable = runnable_modules(packed.files)
    if module in runnable:
        return None
    path = module.replace(".", "/")
    close = difflib.get_close_matches(module, sorted(runnable), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return (
        f"--module {module!r}: the source has no {path}.py or {path}/__main__.py, so "
        f"`python -m {module}` would fail{hint}"
    )


# --------------------------------------------------------------------------- choosing files


def ignore_spec(root: Path, extra: Iterable[str] = ()) -> pathspec.GitIgnoreSpec:
    """The built-in ignore list, then `.launchqignore`, then `extra` (later lines win)."""
    lines = list(DEFAULT_IGNORES)
    ignore_file = root / IGNORE_FILE
    if ignore_file.is_file():
        lines.extend(ignore_file.read_text().splitlines())
    lines.extend(extra)
    return pathspec.GitIgnoreSpec.from_lines(lines)


def git_files(root: Path) -> list[str] | None:
    """Tracked plus untracked-but-not-ignored files under `root`, or None outside a checkout."""
    try:
        inside = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--is-inside-work-tree"],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:  # no git on this machine: not a checkout as far as we can tell
        return None
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        return None
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "."],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout
    # Paths come relative to `root` (git's cwd); tracked files deleted from the work tree are
    # still listed by --cached and are dropped here.
    names = {name for name in listed.decode().split("\0") if name}
    return sorted(name for name in names if (root / name).is_file())


def walk_files(root: Path, spec: pathspec.GitIgnoreSpec) -> list[str]:
    """Every file under `root` the spec does not ignore; ignored directories are not entered."""
    found: list[str] = []
    for current, dirs, files in os.walk(root, followlinks=False):
        rel_dir = Path(current).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else f"{rel_dir}/"
        dirs[:] = [d for d in dirs if not spec.match_file(f"{prefix}{d}/")]
        found.extend(f"{prefix}{name}" for name in files if not spec.match_file(f"{prefix}{name}"))
    return sorted(found)


def select_files(root: Path, *, use_git: bool = True) -> tuple[list[str], bool]:
    """The files to pack (relative posix paths, sorted) and whether git chose them."""
    spec = ignore_spec(root)
    listed = git_files(root) if use_git else None
    if listed is None:
        return [p for p in walk_files(root, spec) if _packable(root / p, root)], False
    return [p for p in listed if not spec.match_file(p) and _packable(root / p, root)], True


def _packable(path: Path, root: Path) -> bool:
    """Regular files, and symlinks whose target is a regular file inside the tree."""
    if not path.is_symlink():
        return path.is_file()
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return False
    return target.is_file() and target.is_relative_to(root.resolve())


# --------------------------------------------------------------------------- project metadata


def normalize_name(name: str) -> str:
    """A distribution name safe for an sdist directory: runs of other characters become `_`."""
    cleaned = _NAME_RE.sub("_", name).strip("_.")
    return cleaned or "source"


def is_python_project(root: Path) -> bool:
    return (root / "pyproject.toml").is_file() or (root / "setup.py").is_file()


def project_identity(root: Path) -> tuple[str, str]:
    """`(name, version)` of the project at `root`, from static metadata where there is some.

    pyproject's `[project]`, then setup.cfg's `[metadata]`; a dynamic version, or a setup.py
    with no static metadata, falls back to the directory's name and 0.0.0. Only the archive's top
    directory uses these: pip builds the package from its own metadata, so a fallback never
    changes what gets installed. setup.py is never executed here.
    """
    name: str | None = None
    version: str | None = None
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            table = tomllib.loads(pyproject.read_text()).get("project", {})
        except tomllib.TOMLDecodeError as exc:
            raise SourceError(f"{pyproject} is not valid TOML: {exc}") from exc
        name = _str_or_none(table.get("name"))
        version = _str_or_none(table.get("version"))
    setup_cfg = root / "setup.cfg"
    if (name is None or version is None) and setup_cfg.is_file():
        parser = configparser.ConfigParser(interpolation=None)
        parser.read_string(setup_cfg.read_text())
        if parser.has_section("metadata"):
            name = name or parser.get("metadata", "name", fallback=None)
            raw = parser.get("metadata", "version", fallback=None)
            version = version or (raw if raw and not raw.startswith(("attr:", "file:")) else None)
    return normalize_name(name or root.resolve().name), normalize_name(version or DEFAULT_VERSION)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def read_requirements(root: Path) -> list[str]:
    """`requirements.txt` lines that are requirements (no comments, blanks or pip options)."""
    path = root / "requirements.txt"
    if not path.is_file():
        return []
    requirements = []
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):
            requirements.append(line)
    return requirements


def generated_setup_py(name: str, version: str, files: Iterable[str], requires: list[str]) -> str:
    """A setup.py for a bare directory: its packages, its top-level modules, its requirements.

    `find_packages()` only sees directories with `__init__.py`; top-level `*.py` files become
    `py_modules`, so `--module task` works for a single-file project too.
    """
    modules = sorted(
        Path(f).stem for f in files if "/" not in f and f.endswith(".py") and f != "setup.py"
    )
    return (
        "# Generated by launchq: this directory had no pyproject.toml or setup.py.\n"
        "from setuptools import find_packages, setup\n\n"
        "setup(\n"
        f"    name={name!r},\n"
        f"    version={version!r},\n"
        "    packages=find_packages(),\n"
        f"    py_modules={modules!r},\n"
        f"    install_requires={requires!r},\n"
        "    include_package_data=True,\n"
        ")\n"
    )


# --------------------------------------------------------------------------- the archive


def _tar_info(name: str, size: int, executable: bool) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = FIXED_MTIME
    info.mode = 0o755 if executable else 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def write_archive(
    root: Path, files: list[str], top: str, out: IO[bytes], generated: dict[str, bytes]
) -> list[str]:
    """Write the deterministic .tar.gz of `files` (plus `generated`) under `top/` to `out`."""
    listing = []
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=GZIP_LEVEL) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for rel in sorted({*files, *generated}):
            member = f"{top}/{rel}"
            if rel in generated:
                data = generated[rel]
                tar.addfile(_tar_info(member, len(data), False), io.BytesIO(data))
            else:
                path = root / rel
                st = path.stat()  # follows a symlink to its (in-tree) target
                executable = bool(st.st_mode & stat.S_IXUSR)
                with path.open("rb") as handle:
                    tar.addfile(_tar_info(member, st.st_size, executable), handle)
            listing.append(member)
    return listing


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def pack(root: Path, out_dir: Path, *, use_git: bool = True) -> PackedSource:
    """Pack `root` into `out_dir/<sha256>.tar.gz`; the same tree always gives the same bytes."""
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"{root} is not a directory")
    files, from_git = select_files(root, use_git=use_git)
    if not files:
        raise SourceError(f"{root} has no files to pack (all ignored?)")
    name, version = project_identity(root)
    generated: dict[str, bytes] = {}
    if not is_python_project(root):
        setup = generated_setup_py(name, version, files, read_requirements(root))
        generated["setup.py"] = setup.encode()
    top = f"{name}-{version}"
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / f".{top}.partial.tar.gz"
    with partial.open("wb") as handle:
        listing = write_archive(root, files, top, handle, generated)
    sha = file_sha256(partial)
    final = out_dir / f"{sha}.tar.gz"
    partial.replace(final)
    packed = PackedSource(
        path=final,
        sha256=sha,
        size=final.stat().st_size,
        top=top,
        listing=tuple(listing),
        generated_project=bool(generated),
        git=from_git,
    )
    log.debug("source packed", root=str(root), sha256=sha, files=len(listing), bytes=packed.size)
    return packed


# --------------------------------------------------------------------------- the upload

# What an upload reports its progress to: called with the archive's size and a label, it gives a
# context whose value is told each count of bytes handed to the storage client. The CLI draws a
# bar on stderr; scripts, tests and benchmarks pass none.
UploadProgress = Callable[[int, str], AbstractContextManager[Callable[[int], None]]]


@dataclass(frozen=True)
class UploadResult:
    uri: str
    sha256: str
    bytes_sent: int
    already_present: bool


class _CountingReader(io.RawIOBase):
    """A read-only file that counts the bytes handed to the client (re-reads on retry count)."""

    def __init__(self, inner: IO[bytes], on_read: Callable[[int], None]) -> None:
        self._inner = inner
        self._on_read = on_read
        self.count = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        data = self._inner.read(-1 if size is None else size)
        self.count += len(data)
        self._on_read(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()


class SourceUploader:
    """Uploads packed sources to `gs://<bucket>/launchq/sources/<sha256>.tar.gz`, once.

    The object is looked up first (metadata only): content addressing means an existing object
    with this sha256 in its metadata *is* this archive, so nothing is sent (one without that
    metadata is replaced, since the dispatcher checks it). Otherwise the upload carries
    `ifGenerationMatch=0` (or the replaced object's generation), and a 412 (someone uploaded
    the same archive in between) also counts as already there. The
    look-up is not redundant: GCS rejects a resumable upload at its start, but fake-gcs-server
    (the local emulator) enforces the precondition only on single-request uploads and lets a
    resumable one overwrite, which would resend every byte.
    """

    def __init__(
        self,
        client: Any,  # google.cloud.storage.Client; Any keeps an import light
        bucket: str,
        *,
        prefix: str = SOURCES_PREFIX,
        progress: UploadProgress | None = None,
        check_first: bool = True,
    ) -> None:
        self._bucket = client.bucket(bucket)
        self.bucket_name = bucket
        self.prefix = prefix
        self.progress = progress
        self.check_first = check_first

    def uri(self, packed: PackedSource) -> str:
        return f"gs://{self.bucket_name}/{packed.object_name(self.prefix)}"

    def upload(self, packed: PackedSource) -> UploadResult:
        from google.api_core import exceptions

        name = packed.object_name(self.prefix)
        uri = self.uri(packed)
        existing = self._bucket.get_blob(name) if self.check_first else None
        if existing is not None and (existing.metadata or {}).get("sha256") == packed.sha256:
            log.info("source already uploaded", uri=uri)
            return UploadResult(uri, packed.sha256, 0, already_present=True)
        # An object without our sha256 metadata (another tool put it there) is not known to be
        # this archive, and the dispatcher would reject it (launchq.builds.sources): replace it, but
        # only that generation of it.
        generation = existing.generation if existing is not None else 0
        blob = self._bucket.blob(name)
        blob.metadata = object_metadata(packed)
        reader: _CountingReader | None = None
        try:
            with packed.path.open("rb") as handle, self._progress(packed) as advance:
                reader = _CountingReader(handle, advance)
                blob.upload_from_file(
                    reader,
                    size=packed.size,
                    content_type="application/gzip",
                    if_generation_match=generation,
                )
        except exceptions.PreconditionFailed:
            sent = reader.count if reader is not None else 0
            log.info("source already uploaded (412)", uri=uri, bytes_sent=sent)
            return UploadResult(uri, packed.sha256, sent, already_present=True)
        log.info("source uploaded", uri=uri, bytes_sent=reader.count)
        return UploadResult(uri, packed.sha256, reader.count, already_present=False)

    def _progress(self, packed: PackedSource) -> AbstractContextManager[Callable[[int], None]]:
        if self.progress is None:
            return nullcontext(_ignore)
        return self.progress(packed.size, packed.sha256[:12])


def _ignore(_count: int) -> None:
    """No progress to report to."""
