"""Build the Cloud Functions source archives Terraform deploys: build/functions/<name>.zip.

Each archive holds, at its root:

- the function's own directory (`functions/<name>/`: at least `main.py` with the entry point),
- the runtime core, the packages named in `[tool.launchq].function-packages` of pyproject.toml
  (today only `launchq`, copied from `shared/launchq/`; no `__pycache__`, no `*.pyc`). The other
  packages (`launchq_client`, `launchq_cli`, `launchq_ui`, `launchq_local`, `launchq_demo`) are
  never shipped;
- `requirements.txt`: the distributions named in `[tool.launchq].function-requirements` (an
  allow-list: the core's own imports) and everything they pull in, each pinned (`==`) to the
  version installed in the environment running this script (`importlib.metadata`), under the
  version constraint `[project].dependencies` gives it. The CLI's dependencies (click, rich,
  PyYAML, Pub/Sub, aiplatform) and the dev extra are not part of it. The Cloud Functions Python
  buildpack installs exactly these versions, so production runs what the tests ran.

The archives are reproducible: entries are sorted, every timestamp is 1980-01-01 00:00, modes
and compression are fixed, so building twice from the same tree and environment gives
byte-identical files (and Terraform, which names the uploaded object after the archive's hash,
redeploys a function only when its archive really changed).

    python scripts/package_functions.py [--out build/functions] [NAME ...]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tomllib
import zipfile
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ("dispatch", "sweep", "notify")
DISTRIBUTION = "launchq"
PYPROJECT = ROOT / "pyproject.toml"
SHARED = ROOT / "shared"
DEFAULT_OUT = ROOT / "build" / "functions"

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644  # regular file, rw-r--r--
SKIPPED_DIRS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}


class PackagingError(RuntimeError):
    """The tree or the environment cannot produce a correct archive."""


# -- requirements -------------------------------------------------------------------------------


def _marker_holds(marker: Marker | None, extras: Iterable[str]) -> bool:
    if marker is None:
        return True
    extras = list(extras) or [""]
    return any(marker.evaluate({"extra": extra}) for extra in extras)


def _pyproject(pyproject: Path = PYPROJECT) -> dict[str, object]:
    with pyproject.open("rb") as f:
        return tomllib.load(f)


def function_packages(pyproject: Path = PYPROJECT) -> list[str]:
    """The import packages a function archive contains (`[tool.launchq].function-packages`)."""
    table = _pyproject(pyproject)["tool"]["launchq"]  # type: ignore[index]
    return list(table["function-packages"])


def project_dependencies(pyproject: Path = PYPROJECT) -> list[Requirement]:
    """The runtime core's requirements: the allow-listed names, with pyproject's constraints.

    Every name in `[tool.launchq].function-requirements` must be one of `[project].dependencies`
    (so the version constraint is written once); an unknown name is an error, not a silent pin.
    """
    data = _pyproject(pyproject)
    declared = {
        canonicalize_name(req.name): req
        for req in map(Requirement, data["project"]["dependencies"])  # type: ignore[index]
    }
    wanted = data["tool"]["launchq"]["function-requirements"]  # type: ignore[index]
    missing = [name for name in wanted if canonicalize_name(name) not in declared]
    if missing:
        raise PackagingError(
            f"function-requirements {missing} are not in [project].dependencies of {pyproject}"
        )
    return [declared[canonicalize_name(name)] for name in wanted]


def runtime_requirements(roots: Iterable[Requirement] | None = None) -> list[str]:
    """`name==version` for every distribution launchq needs at run time, sorted by name.

    Starts from pyproject.toml's dependencies (the `dev` extra is not followed), walks the
    installed dependency graph evaluating environment markers for the running interpreter, and
    pins each distribution reached to its installed version.
    """
    pins: dict[str, str] = {}
    start = project_dependencies() if roots is None else roots
    pending = [req for req in start if _marker_holds(req.marker, [])]
    own = canonicalize_name(DISTRIBUTION)
    while pending:
        req = pending.pop()
        name = canonicalize_name(req.name)
        if name == own or name in pins:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            raise PackagingError(
                f"{req.name} is required but not installed in {sys.prefix}: run `make bootstrap`"
            ) from None
        version = dist.version
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            raise PackagingError(
                f"installed {req.name} {version} does not satisfy {req}: run `make bootstrap`"
            )
        pins[name] = version
        for raw in dist.requires or []:
            child = Requirement(raw)
            if _marker_holds(child.marker, req.extras):
                pending.append(child)
    return [f"{name}=={pins[name]}" for name in sorted(pins)]


def requirements_txt(pins: list[str]) -> bytes:
    header = [
        "# Generated by scripts/package_functions.py: launchq's runtime dependencies, pinned to",
        f"# the versions installed in the build environment (Python "
        f"{sys.version_info.major}.{sys.version_info.minor}). Do not edit.",
    ]
    return ("\n".join([*header, *pins]) + "\n").encode()


# -- archive ------------------------------------------------------------------------------------


def _tree(base: Path, prefix: str) -> Iterator[tuple[str, Path]]:
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            if path.suffix in SKIPPED_SUFFIXES:
                continue
            rel = path.relative_to(base).as_posix()
            yield (f"{prefix}{rel}", path)


def archive_entries(name: str, requirements: bytes) -> dict[str, bytes]:
    """Archive path -> content for function `name`."""
    function_dir = ROOT / "functions" / name
    if not (function_dir / "main.py").is_file():
        raise PackagingError(f"{function_dir / 'main.py'} does not exist")
    entries: dict[str, bytes] = {}
    for arcname, path in _tree(function_dir, ""):
        if arcname == "requirements.txt":
            raise PackagingError(
                f"{path}: requirements are generated from pyproject.toml, remove this file"
            )
        entries[arcname] = path.read_bytes()
    for package in function_packages():
        for arcname, path in _tree(SHARED / package, f"{package}/"):
            if arcname in entries:
                raise PackagingError(f"{function_dir} and shared/{package} both provide {arcname}")
            entries[arcname] = path.read_bytes()
    entries["requirements.txt"] = requirements
    return entries


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for arcname in sorted(entries):
            info = zipfile.ZipInfo(arcname, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so external_attr carries the mode everywhere
            info.external_attr = FILE_MODE << 16
            archive.writestr(info, entries[arcname], compresslevel=9)
    return buffer.getvalue()


def build(out: Path, names: Iterable[str] = FUNCTIONS) -> list[Path]:
    """Write `<out>/<name>.zip` for each function; returns the paths written."""
    requirements = requirements_txt(runtime_requirements())
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        data = zip_bytes(archive_entries(name, requirements))
        target = out / f"{name}.zip"
        partial = target.with_suffix(".zip.partial")
        partial.write_bytes(data)
        partial.replace(target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", default=list(FUNCTIONS), metavar="NAME")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(FUNCTIONS))
    if unknown:
        parser.error(f"unknown function(s) {', '.join(unknown)}; known: {', '.join(FUNCTIONS)}")
    try:
        paths = build(args.out, args.names)
    except PackagingError as exc:
        print(f"package_functions: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"{path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
