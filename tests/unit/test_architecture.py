"""The code's shape, checked from its source: packages in layers, no import cycle anywhere.

Two graphs. Between the packages under `shared/` (the core `launchq`, `launchq_client`,
`launchq_local`, `launchq_ui`, `launchq_cli`, `launchq_demo`): no cycle, and every arrow points
down the layering docs/architecture.md ("Packages") describes. Inside the core: no cycle between
modules, the units' dependencies one way.

Every `import`/`from ... import` counts, at any depth (a lazy import in a function, or one under
TYPE_CHECKING, is still a dependency, it only moves the cost). `python -m
tests.unit.test_architecture [SHARED_DIR]` prints both graphs (of another checkout's `shared/`
when given one).
"""

from __future__ import annotations

import ast
import inspect
import itertools
import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
CORE = SHARED / "launchq"
RECORDER = CORE / "recorder.py"
# The store's item writes: a state change (or a new item) written anywhere else would commit
# without its history's log line and CloudEvent.
STORE_WRITES = frozenset({"transition", "transition_many", "create_item", "touch", "expand"})
# What each package under shared/ may import besides itself: the layering, bottom up. The core
# is what the functions ship, so it imports none of the rest; the client is what every front end
# shares, so it stands on the core alone; the dashboard is deployed without the CLI and the local
# stack; the local stack hosts the demo and the CLI drives it, so it imports neither; the demo sits
# on top, and nothing imports it.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "launchq": frozenset(),
    "launchq_client": frozenset({"launchq"}),
    "launchq_local": frozenset({"launchq", "launchq_client"}),
    "launchq_ui": frozenset({"launchq", "launchq_client"}),
    "launchq_cli": frozenset({"launchq", "launchq_client", "launchq_local", "launchq_ui"}),
    "launchq_demo": frozenset(
        {"launchq", "launchq_client", "launchq_local", "launchq_ui", "launchq_cli"}
    ),
}
PACKAGES = tuple(MAY_IMPORT)
# The store package is the only place that may talk to Firestore (docs/architecture.md).
STORE = CORE / "store"


def module_name(path: Path) -> str:
    parts = path.relative_to(SHARED).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(CORE.rglob("*.py")):
        name = module_name(path)
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


# -- between packages ----------------------------------------------------------------------


def imported_modules(source: str, filename: str = "<source>") -> set[str]:
    """The absolute module names `source` imports, at any depth (`from a import b` names `a.b`
    too: `b` may be a module). Relative imports stay inside their package: not counted."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def package_graph(
    root: Path = SHARED, packages: tuple[str, ...] | None = None
) -> dict[str, dict[str, list[str]]]:
    """`{package: {imported package: [modules of package that import it]}}` for the top-level
    packages under `root` (every directory with an `__init__.py`, unless `packages` names them)."""
    names = packages or tuple(sorted(p.parent.name for p in root.glob("*/__init__.py")))
    graph: dict[str, dict[str, list[str]]] = {}
    for package in names:
        edges: dict[str, list[str]] = {}
        for path in sorted((root / package).rglob("*.py")):
            module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(
                ".__init__"
            )
            targets = {name.split(".")[0] for name in imported_modules(path.read_text(), str(path))}
            for target in sorted((targets & set(names)) - {package}):
                edges.setdefault(target, []).append(module)
        graph[package] = edges
    return graph


def package_problems(
    graph: dict[str, dict[str, list[str]]], may_import: dict[str, frozenset[str]]
) -> list[str]:
    """Every import cycle between packages, named with the modules that close it, and every
    import the layering does not allow; [] when the graph is sound."""
    problems = []
    for cycle in cycles({package: set(edges) for package, edges in graph.items()}):
        hops = "; ".join(f"{graph[a][b][0]} imports {b}" for a, b in itertools.pairwise(cycle))
        problems.append(f"import cycle {' -> '.join(cycle)} ({hops})")
    for package, edges in sorted(graph.items()):
        allowed = may_import.get(package)
        if allowed is None:
            problems.append(f"{package} is in no layer: place it in MAY_IMPORT")
            continue
        for target, modules in sorted(edges.items()):
            if target not in allowed:
                problems.append(f"{package} may not import {target} ({', '.join(modules)})")
    return problems


def test_the_packages_import_one_way() -> None:
    graph = package_graph()
    assert sorted(graph) == sorted(PACKAGES), "every package under shared/ has its layer"
    assert package_problems(graph, MAY_IMPORT) == []


def test_the_layering_says_what_the_packages_may_import() -> None:
    """The rules docs/architecture.md states, read off the table the check uses."""
    others = set(PACKAGES) - {"launchq"}
    assert not MAY_IMPORT["launchq"]
    assert MAY_IMPORT["launchq_client"] == {"launchq"}
    assert not MAY_IMPORT["launchq_ui"] & {"launchq_cli", "launchq_local", "launchq_demo"}
    assert not MAY_IMPORT["launchq_local"] & {"launchq_cli", "launchq_ui", "launchq_demo"}
    assert all("launchq_demo" not in MAY_IMPORT[p] for p in PACKAGES)
    # The allowed arrows alone already make no cycle.
    assert cycles({p: set(MAY_IMPORT[p]) for p in PACKAGES}) == []
    assert others <= {p for p in PACKAGES if "launchq" in MAY_IMPORT[p]}


def test_the_package_check_names_a_cycle_and_a_wrong_arrow() -> None:
    graph = {
        "core": {},
        "cli": {"core": ["cli.main"], "local": ["cli.dev"]},
        "local": {"cli": ["local.demo"], "core": ["local.stack"]},
    }
    rules = {
        "core": frozenset(),
        "cli": frozenset({"core", "local"}),
        "local": frozenset({"core"}),
    }
    assert package_problems(graph, rules) == [
        "import cycle cli -> local -> cli (cli.dev imports local; local.demo imports cli)",
        "local may not import cli (local.demo)",
    ]
    del graph["local"]["cli"]
    assert package_problems(graph, rules) == []
    assert package_problems({**graph, "new": {}}, rules) == [
        "new is in no layer: place it in MAY_IMPORT"
    ]


def test_the_package_graph_sees_lazy_imports_in_a_package_tree(tmp_path: Path) -> None:
    """Parsed from files, as the real check is: a cycle closed by an import inside a function
    (and a `from pkg import module`) is found and named."""
    for name, source in {
        "low/__init__.py": "",
        "low/store.py": "def load():\n    from high.views import page\n    return page\n",
        "high/__init__.py": "",
        "high/views.py": "from low import store\nimport low.store as again\n",
        "high/rel.py": "from . import views\n",
        "loose.py": "import high\n",
    }.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(source)
    graph = package_graph(tmp_path)
    assert graph == {"high": {"low": ["high.views"]}, "low": {"high": ["low.store"]}}
    rules = {"low": frozenset(), "high": frozenset({"low"})}
    assert package_problems(graph, rules) == [
        "import cycle high -> low -> high (high.views imports low; low.store imports high)",
        "low may not import high (low.store)",
    ]


# -- inside the core ------------------------------------------------------------------------


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
    for leaf in ("launchq.spec.fields", "launchq.errors", "launchq.log", "launchq.model.reasons"):
        assert graph[leaf] <= {"launchq.errors"}, f"{leaf} imports {graph[leaf]}"


# The core's groups (docs/architecture.md), each allowed to import only what is listed: the
# specification is pure, the record's vocabulary builds on it, the API clients and the store
# build on those. `launchq.builds` records through the recorder, so it sits with the runtime
# units at the top of `launchq`, which may import any group.
GROUPS: dict[str, frozenset[str]] = {
    "launchq.spec": frozenset({"launchq.errors"}),
    "launchq.model": frozenset({"launchq.spec", "launchq.errors"}),
    "launchq.gcp": frozenset({"launchq.spec", "launchq.log", "launchq.errors"}),
    "launchq.store": frozenset({"launchq.model", "launchq.errors"}),
    "launchq.builds": frozenset(
        {
            "launchq.spec",
            "launchq.model",
            "launchq.gcp",
            "launchq.store",
            "launchq.recorder",
            "launchq.log",
            "launchq.errors",
        }
    ),
}


def group_of(module: str) -> str:
    """The group a module belongs to; a runtime unit at the top of `launchq` is its own."""
    for group in GROUPS:
        if module == group or module.startswith(group + "."):
            return group
    return module


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """`module -> dependency` for every import a module's group does not allow."""
    found = []
    for module, deps in sorted(graph.items()):
        allowed = GROUPS.get(group_of(module))
        if allowed is None:
            continue  # a runtime unit
        for dep in sorted(deps):
            target = group_of(dep)
            if target != group_of(module) and target not in allowed:
                found.append(f"{module} -> {dep}")
    return found


def test_the_core_groups_import_downwards() -> None:
    assert layer_violations(import_graph()) == []


def test_the_layer_check_finds_an_upward_import() -> None:
    graph = {
        "launchq.spec.render": {"launchq.spec.config", "launchq.model.states"},
        "launchq.model.states": {"launchq.errors"},
        "launchq.store.items": {"launchq.model.records", "launchq.admission"},
        "launchq.admission": {"launchq.store", "launchq.spec.config"},
    }
    assert layer_violations(graph) == [
        "launchq.spec.render -> launchq.model.states",
        "launchq.store.items -> launchq.admission",
    ]


def test_the_top_of_the_core_holds_only_the_runtime_units() -> None:
    """What `ls shared/launchq` shows: the runtime units and the groups, nothing else."""
    top = sorted(p.stem for p in CORE.glob("*.py") if p.stem != "__init__")
    groups = sorted(p.name for p in CORE.iterdir() if (p / "__init__.py").exists())
    assert groups == ["builds", "gcp", "model", "spec", "store"]
    assert top == [
        "admission",
        "budgets",
        "cancel",
        "capacity",
        "cohorts",
        "dispatch",
        "errors",
        "expansion",
        "functions",
        "log",
        "notices",
        "notify",
        "queues",
        "recorder",
        "settings",
        "submission",
        "sweep",
        "wiring",
    ]


def _receiver(node: ast.expr) -> str:
    """The last name of a call's receiver: `self.submitter.recorder` -> `recorder`."""
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def item_writes_outside_the_recorder(root: Path = SHARED) -> list[str]:
    """`file:line call` of every store item write, and every `.transition`/`.create_item` call
    on anything but a recorder, in the shipped packages outside `launchq/recorder.py`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if path == RECORDER:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            method, receiver = node.func.attr, _receiver(node.func.value).lower()
            on_store = method in STORE_WRITES and "store" in receiver
            unrecorded = method in {"transition", "create_item"} and receiver != "recorder"
            if on_store or unrecorded:
                where = path.relative_to(root)
                found.append(f"{where}:{node.lineno} {receiver}.{method}")
    return found


def test_every_item_write_goes_through_the_recorder() -> None:
    """The recorder is the one path of a state change (history + log + event): the repair's
    takeover once wrote to the store directly and published nothing."""
    assert item_writes_outside_the_recorder() == []


def test_the_write_check_finds_a_direct_store_write(tmp_path: Path) -> None:
    (tmp_path / "unit.py").write_text(
        "def repair(self, item):\n"
        "    self.store.transition(item, change)\n"
        "    self.recorder.transition(item, change)\n"
        "    store.touch(item, {})\n"
        "    writer.create_item(item)\n"
    )
    assert item_writes_outside_the_recorder(tmp_path) == [
        "unit.py:2 store.transition",
        "unit.py:4 store.touch",
        "unit.py:5 writer.create_item",
    ]


def test_a_new_item_travels_as_one_value() -> None:
    """Dispatcher -> admission -> submission -> recorder: one `NewItem` (and one `Admit`), not
    the queue, id, fields, cause, claim, slot, token ... passed again at every step."""
    from launchq.admission import Admission
    from launchq.recorder import Recorder
    from launchq.submission import Submitter

    for method in (Admission.admit_new, Submitter.create_claimed, Recorder.create):
        parameters = list(inspect.signature(method).parameters.values())[1:]
        assert parameters[0].annotation == "NewItem", method.__qualname__
        assert len(parameters) <= 4, method.__qualname__
    assert [p.annotation for p in inspect.signature(Recorder.create).parameters.values()] == [
        inspect.Parameter.empty,
        "NewItem",
        "Admit | None",
    ]


def firestore_imports(source: str, filename: str = "<source>") -> list[str]:
    """The Firestore modules `source` imports, at any depth (a lazy import or one under
    TYPE_CHECKING is still a dependency on the client library)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if _is_firestore(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if _is_firestore(node.module):
                found.append(node.module)
            elif node.module in ("google.cloud", "google"):
                found += [
                    f"{node.module}.{a.name}"
                    for a in node.names
                    if _is_firestore(f"{node.module}.{a.name}")
                ]
    return found


def _is_firestore(module: str) -> bool:
    # google.cloud.firestore, firestore_v1, firestore_admin_v1, firestore_bundle, ...
    return module.startswith("google.cloud.firestore")


def test_only_the_store_imports_firestore() -> None:
    offenders = {}
    for package in PACKAGES:
        for path in sorted((SHARED / package).rglob("*.py")):
            if path.is_relative_to(STORE):
                continue
            found = firestore_imports(path.read_text(), str(path))
            if found:
                offenders[module_name(path)] = found
    assert offenders == {}, "only launchq.store may import Firestore"


def test_the_firestore_import_check_sees_every_spelling() -> None:
    for source in (
        "from google.cloud import firestore",
        "import google.cloud.firestore",
        "from google.cloud.firestore_v1.base_document import DocumentSnapshot",
        "from google.cloud import storage, firestore_v1",
        "def f():\n    from google.cloud import firestore\n",
        "if TYPE_CHECKING:\n    import google.cloud.firestore_admin_v1\n",
    ):
        assert firestore_imports(source), source
    assert firestore_imports("from google.cloud import storage\nimport google.auth") == []


def test_the_store_package_is_in_the_graph() -> None:
    graph = import_graph()
    assert "launchq.store.firestore" in graph
    assert "launchq.store.memory" in graph
    # The protocols and the memory store stand without Firestore: unit tests never load it.
    for module in ("launchq.store", "launchq.store.protocols", "launchq.store.memory"):
        path = STORE / ("__init__.py" if module == "launchq.store" else f"{module[14:]}.py")
        assert firestore_imports(path.read_text()) == [], module
        assert not {d for d in graph[module] if d.startswith("launchq.store.")} & FIRESTORE_PARTS


FIRESTORE_PARTS = {
    "launchq.store.client",
    "launchq.store.firestore",
    "launchq.store.items",
    "launchq.store.queues",
    "launchq.store.capacity",
    "launchq.store.builds",
    "launchq.store.leader",
}


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def print_graphs(root: Path = SHARED) -> None:
    """The package graph (each arrow with how many modules import across it), its problems,
    then the core's module graph."""
    graph = package_graph(root)
    sys.stdout.write(f"packages under {root}:\n")
    for package, edges in sorted(graph.items()):
        arrows = ", ".join(
            f"{target} ({len(modules)})" for target, modules in sorted(edges.items())
        )
        sys.stdout.write(f"  {package} -> {arrows or '-'}\n")
    problems = package_problems(graph, MAY_IMPORT)
    sys.stdout.write("problems:\n" if problems else "no cycle, every arrow down the layers\n")
    for problem in problems:
        sys.stdout.write(f"  {problem}\n")
    if root == SHARED:
        sys.stdout.write("the core's modules:\n")
        for module, deps in sorted(import_graph().items()):
            sys.stdout.write(f"  {module}: {', '.join(sorted(deps)) or '-'}\n")


if __name__ == "__main__":
    print_graphs(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else SHARED)
