"""Sweeps in W&B's syntax: which configs launchq accepts, and the runs they expand into.

A sweep item will carry W&B's sweep config (`method`, `parameters`, `run_cap`) plus launchq's
`max_parallel`; the dispatcher expands it into children (issue 25). This module is the pure half:
validation with every problem and its path, and a deterministic expansion, the same children
for the same config and seed, child by child (`child(n)`), so a crashed or redelivered expansion
can re-create any child exactly.

What W&B defines (wandb/sweeps: `config/schema.json`, `params.py` `HyperParameter.ppf`,
`grid_search.py`), and what launchq does with it:

- `method: grid`: every combination of the parameters, in W&B's order (parameters sorted by
  name, values in their given order, the last parameter fastest), each once. Allowed parameter
  kinds are W&B's: `value`, `values` (without `probabilities`), `int_uniform` (every integer
  from min to max) and `q_uniform` (min, min+q, ... below max). `run_cap` truncates.
- `method: random`: each child draws every parameter independently, from a generator seeded by
  the sweep's `seed` and the child's number. `run_cap` is required (W&B's random sweep runs until
  stopped; an item must say how many children it makes).
- `method: bayes` is refused: it chooses each run from the metrics of the runs before it, which a
  sweep expanded at enqueue cannot know. `early_terminate` is refused for the same reason.
- Distributions, as W&B's `ppf`: `constant`, `categorical`, `categorical_w_probabilities`,
  `int_uniform` (min..max inclusive), `uniform`, `q_uniform` (round(U/q)*q; an int when q is),
  `log_uniform` (exp(U(min, max)): min and max are exponents), `log_uniform_values`
  (exp(U(ln min, ln max))), `q_log_uniform`, `q_log_uniform_values`, `inv_log_uniform`
  (exp(-U(min, max))), `normal` (mu, sigma), `q_normal`, `log_normal` (exp(N(mu, sigma))),
  `q_log_normal`, `beta` (a, b), `q_beta`. Without `distribution`, W&B infers it: `value`
  constant, `values` categorical, integer min and max int_uniform, other min and max uniform.
  `inv_log_uniform_values` is refused: its definition could not be checked here.
- Nested parameters (`{parameters: {...}}`) give nested dicts, as W&B's run config has them.
"""

from __future__ import annotations

import difflib
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from launchq.spec.validation import Issue, ItemError

MAX_CHILDREN = 10_000
NAME_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
DISTRIBUTIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # name: (required keys, allowed keys) besides `distribution`
    "constant": (frozenset({"value"}), frozenset({"value"})),
    "categorical": (frozenset({"values"}), frozenset({"values"})),
    "categorical_w_probabilities": (
        frozenset({"values", "probabilities"}), frozenset({"values", "probabilities"})
    ),
    "int_uniform": (frozenset({"min", "max"}), frozenset({"min", "max"})),
    "uniform": (frozenset({"min", "max"}), frozenset({"min", "max"})),
    "q_uniform": (frozenset({"min", "max"}), frozenset({"min", "max", "q"})),
    "log_uniform": (frozenset({"min", "max"}), frozenset({"min", "max"})),
    "log_uniform_values": (frozenset({"min", "max"}), frozenset({"min", "max"})),
    "q_log_uniform": (frozenset({"min", "max"}), frozenset({"min", "max", "q"})),
    "q_log_uniform_values": (frozenset({"min", "max"}), frozenset({"min", "max", "q"})),
    "inv_log_uniform": (frozenset({"min", "max"}), frozenset({"min", "max"})),
    "normal": (frozenset(), frozenset({"mu", "sigma"})),
    "q_normal": (frozenset(), frozenset({"mu", "sigma", "q"})),
    "log_normal": (frozenset(), frozenset({"mu", "sigma"})),
    "q_log_normal": (frozenset(), frozenset({"mu", "sigma", "q"})),
    "beta": (frozenset(), frozenset({"a", "b"})),
    "q_beta": (frozenset(), frozenset({"a", "b", "q"})),
}  # fmt: skip
GRID_KINDS = frozenset({"constant", "categorical", "int_uniform", "q_uniform"})
REFUSED_DISTRIBUTIONS = {
    "inv_log_uniform_values": "its definition in W&B could not be checked; use inv_log_uniform "
    "with exponents, or log_uniform_values",
}
REFUSED_METHODS = {
    "bayes": "a bayes sweep picks each run from the metrics of the runs before it, which a "
    "sweep expanded when it is enqueued cannot know: use random or grid (or run W&B's own "
    "sweep controller and enqueue its suggestions)",
}
# W&B keys launchq accepts and does not use (the W&B side of a sweep: names, the metric the UI
# plots, the program a W&B agent would run).
IGNORED_KEYS = frozenset({"name", "description", "metric", "program", "command", "project",
                          "entity", "controller"})  # fmt: skip
# launchq's own keys beside W&B's (docs/sweeps.md): how many children hold slots at once, the
# random sweep's seed, and where each child's parameters go.
PARAMETERS_TO = ("args", "template_variables", "run_config")
LAUNCHQ_KEYS = frozenset({"max_parallel", "seed", "parameters_to"})
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Param:
    """One leaf parameter: its dotted path, W&B distribution and its settings."""

    path: tuple[str, ...]
    kind: str
    spec: Mapping[str, Any]

    def grid_values(self) -> list[Any]:
        if self.kind == "constant":
            return [self.spec["value"]]
        if self.kind == "categorical":
            return list(self.spec["values"])
        low, high = self.spec["min"], self.spec["max"]
        if self.kind == "int_uniform":
            return list(range(int(low), int(high) + 1))
        q = self.spec.get("q", 1.0)
        count = max(0, math.ceil((high - low) / q))  # numpy.arange(min, max, q)
        values = [low + i * q for i in range(count)]
        return [int(v) for v in values] if _ints(low, q) else values

    def sample(self, rng: random.Random) -> Any:
        s = self.spec
        kind = self.kind
        if kind == "constant":
            return s["value"]
        if kind == "categorical":
            return s["values"][rng.randrange(len(s["values"]))]
        if kind == "categorical_w_probabilities":
            return rng.choices(list(s["values"]), weights=list(s["probabilities"]))[0]
        if kind == "int_uniform":
            return rng.randint(int(s["min"]), int(s["max"]))
        q = s.get("q", 1.0)
        value: float
        if kind in ("uniform", "q_uniform"):
            value = rng.uniform(s["min"], s["max"])
        elif kind in ("log_uniform", "q_log_uniform"):
            value = math.exp(rng.uniform(s["min"], s["max"]))
        elif kind in ("log_uniform_values", "q_log_uniform_values"):
            value = math.exp(rng.uniform(math.log(s["min"]), math.log(s["max"])))
        elif kind == "inv_log_uniform":
            value = math.exp(-rng.uniform(s["min"], s["max"]))
        elif kind in ("normal", "q_normal"):
            value = rng.gauss(s.get("mu", 0.0), s.get("sigma", 1.0))
        elif kind in ("log_normal", "q_log_normal"):
            value = math.exp(rng.gauss(s.get("mu", 0.0), s.get("sigma", 1.0)))
        else:  # beta, q_beta
            value = rng.betavariate(s.get("a", 1.0), s.get("b", 1.0))
        if not kind.startswith("q_"):
            return value
        rounded = round(value / q) * q
        return int(rounded) if isinstance(q, int) and not isinstance(q, bool) else rounded


def _ints(*values: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: its method, leaf parameters (sorted by path), how many children."""

    method: str
    params: tuple[Param, ...]
    count: int
    seed: int
    max_parallel: int | None = None
    parameters_to: str = "args"

    def child(self, number: int) -> dict[str, Any]:
        """The parameters of child `number` (1-based), as W&B's nested run config."""
        if not 1 <= number <= self.count:
            raise IndexError(f"child {number} of {self.count}")
        if self.method == "grid":
            values = self._grid_point(number - 1)
        else:
            rng = random.Random(f"{self.seed}:{number}")  # child n is the same whoever draws it
            values = tuple(param.sample(rng) for param in self.params)
        out: dict[str, Any] = {}
        for param, value in zip(self.params, values, strict=True):
            node = out
            for key in param.path[:-1]:
                node = node.setdefault(key, {})
            node[param.path[-1]] = value
        return out

    def children(self) -> Iterator[dict[str, Any]]:
        for number in range(1, self.count + 1):
            yield self.child(number)

    def _grid_point(self, index: int) -> tuple[Any, ...]:
        """The index-th combination in itertools.product's order (the last parameter fastest),
        computed directly: child n costs the same whatever n."""
        axes = [param.grid_values() for param in self.params]
        picked: list[Any] = []
        for axis in reversed(axes):
            index, at = divmod(index, len(axis))
            picked.append(axis[at])
        return tuple(reversed(picked))


def parse_sweep(config: object, seed: int = 0, path: str = "sweep") -> Sweep:
    """Validate a W&B sweep config; raises ItemError with every problem and its path.

    `seed` is the random sweep's seed when the config sets none (the dispatcher passes one
    derived from the item, so a redelivery draws the same children)."""
    issues: list[Issue] = []
    if not isinstance(config, Mapping):
        raise ItemError([Issue(path, "a sweep is a mapping with method and parameters")])
    method = config.get("method")
    if method in REFUSED_METHODS:
        issues.append(
            Issue(f"{path}.method", f"{method!r} is not supported: {REFUSED_METHODS[method]}")
        )
    elif method not in ("grid", "random"):
        issues.append(Issue(f"{path}.method", "method is grid or random"))
    if "early_terminate" in config:
        issues.append(Issue(f"{path}.early_terminate", "stopping runs early needs their metrics "
                            "while they run, which launchq does not read"))  # fmt: skip
    known = IGNORED_KEYS | LAUNCHQ_KEYS | {"method", "parameters", "run_cap", "early_terminate"}
    for key in config:
        if key not in known:
            near = difflib.get_close_matches(str(key), sorted(known), 1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            issues.append(Issue(f"{path}.{key}", f"unknown key{hint}"))
    params: list[Param] = []
    raw = config.get("parameters")
    if not isinstance(raw, Mapping) or not raw:
        issues.append(Issue(f"{path}.parameters", "at least one parameter"))
    else:
        _collect(raw, (), f"{path}.parameters", params, issues)
    run_cap = config.get("run_cap")
    if run_cap is not None and (not _ints(run_cap) or not 1 <= run_cap <= MAX_CHILDREN):
        issues.append(Issue(f"{path}.run_cap", f"a whole number from 1 to {MAX_CHILDREN}"))
        run_cap = None
    params.sort(key=lambda p: p.path)
    ours, max_parallel, given_seed, parameters_to = _launchq_keys(config, params, path)
    issues += ours
    count = 0
    if method == "grid" and not issues:
        for param in params:
            if param.kind not in GRID_KINDS:
                where = f"{path}.parameters.{'.'.join(param.path)}"
                issues.append(Issue(where, f"a grid takes value, values, int_uniform or "
                                    f"q_uniform, not {param.kind} (as W&B's grid)"))  # fmt: skip
        if not issues:
            count = math.prod(len(param.grid_values()) for param in params)
            count = min(count, run_cap) if run_cap is not None else count
            if count > MAX_CHILDREN:
                issues.append(Issue(f"{path}", f"the grid has {count:,} runs; at most "
                                    f"{MAX_CHILDREN:,} (set run_cap)"))  # fmt: skip
            elif count == 0:
                issues.append(Issue(f"{path}.parameters", "the grid is empty"))
    elif method == "random":
        if run_cap is None and "run_cap" not in config:
            issues.append(Issue(f"{path}.run_cap", "a random sweep needs run_cap: how many "
                                "runs it makes"))  # fmt: skip
        count = run_cap or 0
    if issues:
        raise ItemError(issues)
    return Sweep(
        str(method),
        tuple(params),
        count,
        seed if given_seed is None else given_seed,
        max_parallel,
        str(parameters_to),
    )


def _launchq_keys(
    config: Mapping[str, Any], params: list[Param], path: str
) -> tuple[list[Issue], Any, Any, Any]:
    """launchq's keys beside W&B's: their problems, max_parallel, seed and parameters_to."""
    issues: list[Issue] = []
    max_parallel = config.get("max_parallel")
    if max_parallel is not None and (not _ints(max_parallel) or not max_parallel >= 1):
        issues.append(Issue(f"{path}.max_parallel", "a whole number, 1 or more"))
    given_seed = config.get("seed")
    if given_seed is not None and (not _ints(given_seed) or not 0 <= given_seed <= MAX_SEED):
        issues.append(Issue(f"{path}.seed", f"a whole number from 0 to {MAX_SEED}"))
    parameters_to = config.get("parameters_to", "args")
    if parameters_to not in PARAMETERS_TO:
        issues.append(Issue(f"{path}.parameters_to", f"one of {', '.join(PARAMETERS_TO)}"))
    elif parameters_to == "template_variables":
        issues += [
            Issue(f"{path}.parameters.{param.path[0]}", "nested parameters cannot be template "
                  "variables (a variable has one name): use parameters_to run_config")
            for param in params if len(param.path) > 1
        ][:1]  # fmt: skip
    return issues, max_parallel, given_seed, parameters_to


def _collect(raw: Mapping[str, Any], prefix: tuple[str, ...], where: str,
             params: list[Param], issues: list[Issue]) -> None:  # fmt: skip
    for name, spec in raw.items():
        at = f"{where}.{name}"
        if (
            not isinstance(name, str)
            or not name
            or not set(name) <= NAME_CHARS
            or name[0].isdigit()
        ):
            issues.append(Issue(at, "a parameter name is letters, digits, _ . -, not starting "
                                "with a digit"))  # fmt: skip
            continue
        if not isinstance(spec, Mapping):
            issues.append(Issue(at, "a parameter is a mapping (value, values, distribution...)"))
            continue
        if "parameters" in spec:
            extra = set(spec) - {"parameters"}
            if extra or not isinstance(spec["parameters"], Mapping) or not spec["parameters"]:
                issues.append(Issue(at, "nested parameters are {parameters: {...}} alone"))
                continue
            _collect(spec["parameters"], (*prefix, name), f"{at}.parameters", params, issues)
            continue
        kind = _kind(spec)
        if kind in REFUSED_DISTRIBUTIONS:
            issues.append(Issue(f"{at}.distribution", f"{kind!r} is not supported: "
                                f"{REFUSED_DISTRIBUTIONS[kind]}"))  # fmt: skip
            continue
        if kind not in DISTRIBUTIONS:
            near = difflib.get_close_matches(str(kind), sorted(DISTRIBUTIONS), 1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            issues.append(Issue(f"{at}.distribution", f"unknown distribution {kind!r}{hint}"))
            continue
        required, allowed = DISTRIBUTIONS[kind]
        keys = set(spec) - {"distribution"}
        for key in sorted(required - keys):
            issues.append(Issue(f"{at}.{key}", f"{kind} needs {key}"))
        for key in sorted(keys - allowed):
            issues.append(Issue(f"{at}.{key}", f"{kind} takes {', '.join(sorted(allowed))}"))
        problem = _values_problem(kind, spec) if keys <= allowed and required <= keys else None
        if problem is not None:
            issues.append(Issue(at, problem))
            continue
        if keys <= allowed and required <= keys:
            params.append(Param((*prefix, name), kind, dict(spec)))


def _kind(spec: Mapping[str, Any]) -> str:
    """W&B's `distribution`, given or inferred as W&B infers it."""
    given = spec.get("distribution")
    if given is not None:
        return str(given)
    if "value" in spec:
        return "constant"
    if "values" in spec:
        return "categorical_w_probabilities" if "probabilities" in spec else "categorical"
    if _ints(spec.get("min"), spec.get("max")):
        return "int_uniform"
    return "uniform"


def _values_problem(kind: str, spec: Mapping[str, Any]) -> str | None:
    if kind in ("categorical", "categorical_w_probabilities"):
        values = spec["values"]
        if not isinstance(values, Sequence) or isinstance(values, str) or not values:
            return "values is a non-empty list"
        if kind == "categorical_w_probabilities":
            weights = spec["probabilities"]
            valid = isinstance(weights, Sequence) and all(_number(w) and w >= 0 for w in weights)
            if not valid or len(weights) != len(values) or not sum(weights):
                return "probabilities are as many non-negative numbers as values, not all 0"
        return None
    numbers = {k: v for k, v in spec.items() if k != "distribution"}
    if kind == "constant":
        return None
    if not all(_number(v) for v in numbers.values()):
        return f"{kind}: {', '.join(sorted(numbers))} are numbers"
    if kind == "int_uniform" and not _ints(spec["min"], spec["max"]):
        return "int_uniform: min and max are integers"
    if "min" in spec and spec["min"] > spec["max"]:
        return "min is above max"
    if kind.endswith("_values") and spec["min"] <= 0:
        return f"{kind}: min and max are values above 0 (their logarithms are sampled)"
    if "q" in spec and spec["q"] <= 0:
        return "q is above 0"
    if "sigma" in spec and spec["sigma"] < 0:
        return "sigma is 0 or more"
    if any(spec.get(k, 1) <= 0 for k in ("a", "b")):
        return "a and b are above 0"
    return None
