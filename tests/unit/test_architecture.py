"""The core's shape, checked from its source: no import cycle, the units' dependencies one way.

Every `import`/`from ... import` of a `launchq` module counts, at any depth (a lazy import in a
function is still a dependency, it only moves the cost). `python -m tests.unit.test_architecture`
prints the graph.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "shared" / "launchq"


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(CORE.glob("*.py")):
        name = f"launchq.{path.stem}" if path.stem != "__init__" else "launchq"
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module == "launchq":
                    deps.update(f"launchq.{alias.name}" for alias in node.names)
                elif node.module.startswith("launchq."):
                    deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("launchq."))
        graph[name] = deps - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle's first sighting, by depth-first search (the graph is small)."""
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def visit(node: str, path: list[str]) -> None:
        for dep in sorted(graph.get(node, ())):
            if dep in path:
                cycle = path[path.index(dep) :]
                key = frozenset(cycle)
                if key not in seen:
                    seen.add(key)
                    found.append([*cycle, dep])
            elif dep in graph:
                visit(dep, [*path, dep])

    for start in sorted(graph):
        visit(start, [start])
    return found


def test_the_core_has_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_the_sweep_and_the_dispatcher_are_siblings() -> None:
    graph = import_graph()
    assert "launchq.dispatch" not in graph["launchq.sweep"]
    assert "launchq.sweep" not in graph["launchq.dispatch"]
    # Both build on the same units.
    units = {"launchq.admission", "launchq.submission", "launchq.recorder"}
    assert units <= graph["launchq.sweep"] | {"launchq.admission"}
    assert {"launchq.admission", "launchq.recorder"} <= graph["launchq.dispatch"]


def test_leaf_modules_import_nothing_of_launchq_but_the_errors() -> None:
    graph = import_graph()
    for leaf in ("launchq.fields", "launchq.errors", "launchq.log"):
        assert graph[leaf] <= {"launchq.errors"}, f"{leaf} imports {graph[leaf]}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


if __name__ == "__main__":
    for module, deps in sorted(import_graph().items()):
        sys.stdout.write(f"{module}: {', '.join(sorted(deps)) or '-'}\n")
