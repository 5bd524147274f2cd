"""The runtime core ships alone: what `shared/launchq` imports is what the archives pin.

The Cloud Functions archives contain `shared/launchq` and the distributions allow-listed in
`[tool.launchq].function-requirements` (scripts/package_functions.py). These tests read the
core's imports from its source (nothing is imported or run), so a new import of a CLI-only
library or of the local stack fails here, before a deployment fails to start.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "shared" / "launchq"
SCRIPT = ROOT / "scripts" / "package_functions.py"


def _packager():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("package_functions", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["package_functions"] = module
    spec.loader.exec_module(module)
    return module


def _imports(path: Path) -> set[str]:
    """Top-level names of every module `path` imports, at any depth (lazy imports count)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from google.cloud import firestore` imports `google.cloud.firestore`, which is
            # what tells the distribution (`google.cloud` is a namespace many share).
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _core_imports() -> dict[str, set[Path]]:
    found: dict[str, set[Path]] = {}
    for path in sorted(CORE.rglob("*.py")):
        for name in _imports(path):
            found.setdefault(name, set()).add(path.relative_to(ROOT))
    return found


# Every package beside the core: none of them is in a function's archive.
NOT_SHIPPED = {"launchq_client", "launchq_cli", "launchq_ui", "launchq_local", "launchq_demo"}


def test_the_core_never_imports_a_package_it_does_not_ship() -> None:
    offenders = {
        name: sorted(map(str, paths))
        for name, paths in _core_imports().items()
        if name.split(".")[0] in NOT_SHIPPED
    }
    assert not offenders, f"the runtime core imports tools it does not ship: {offenders}"


def _owner_of_files() -> dict[Path, str]:
    owners: dict[Path, str] = {}
    for dist in metadata.distributions():
        for file in dist.files or []:
            owners[Path(str(dist.locate_file(file))).resolve()] = dist.metadata["Name"]
    return owners


def _origin(name: str) -> Path | None:
    """The file that defines the longest importable prefix of `name`."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        try:
            spec = importlib.util.find_spec(".".join(parts[:end]))
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.origin not in (None, "built-in", "frozen"):
            return Path(str(spec.origin)).resolve()
    return None


def test_every_third_party_import_of_the_core_is_pinned_in_the_archives() -> None:
    packager = _packager()
    pinned = {line.split("==")[0] for line in packager.runtime_requirements()}
    owners = _owner_of_files()
    missing: dict[str, list[str]] = {}
    for name, paths in _core_imports().items():
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top == "launchq":
            continue
        origin = _origin(name)
        assert origin is not None, (
            f"{name} (imported by {sorted(map(str, paths))}) is not installed"
        )
        owner = owners.get(origin)
        assert owner is not None, f"no installed distribution owns {origin}"
        if packager.canonicalize_name(owner) not in pinned:
            missing[f"{name} ({owner})"] = sorted(str(p) for p in paths)
    assert not missing, f"imported by the core but not in function-requirements: {missing}"


def test_an_allow_listed_requirement_missing_from_the_project_is_an_error(tmp_path: Path) -> None:
    packager = _packager()
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "x"\ndependencies = ["requests>=2"]\n'
        '[tool.launchq]\nfunction-packages = ["launchq"]\n'
        'function-requirements = ["requests", "left-pad"]\n'
    )
    with pytest.raises(packager.PackagingError, match="left-pad"):
        packager.project_dependencies(pyproject)
    pyproject.write_text(pyproject.read_text().replace(', "left-pad"', ""))
    assert [str(r) for r in packager.project_dependencies(pyproject)] == ["requests>=2"]
