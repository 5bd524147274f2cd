"""A queue config checked whole: every problem, in every layer, with its path.

`parse_queue_config` is how a config is read everywhere (the functions, the CLI, the tests): the
model's own checks (`launchq.spec.config.QueueConfig`), then declarations, template references, and
a render with the template defaults and a placeholder item (`launchq.spec.render`). It sits above
both the model and the renderer, so neither imports the other's checks (no import cycle:
tests/unit/test_architecture.py).
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from launchq.spec.config import TOP_HINTS, QueueConfig, unwrap
from launchq.spec.fields import is_unicode
from launchq.spec.ladder import placement_issues
from launchq.spec.render import placeholder_issues
from launchq.spec.templates import MACROS, Macro, TemplateVariable, declaration_issues, references
from launchq.spec.validation import (
    MISSING,
    TEMPLATE,
    UNKNOWN_KEY,
    ConfigError,
    Issue,
    issues_from_pydantic,
    join_path,
    last_key,
    parent_path,
)


def deep_issues(config: QueueConfig) -> list[Issue]:
    """Declarations, template references, then a render with defaults and a placeholder item.

    Every layer runs even when an earlier one found problems ("every problem, with its path"):
    the render checks a copy of the config without what the earlier layers rejected, so a broken
    `{{var}}` does not hide a pool without a container (see `_render_issues`).
    """
    issues: list[Issue] = []
    broken: set[str] = set()
    for name, decl in config.template_variables.items():
        found = declaration_issues(name, decl, join_path("template_variables", name))
        broken.update([name] if found else [])
        issues += found
    retry = config.retry
    if retry.backoff_max_seconds < retry.backoff_initial_seconds:
        issues.append(Issue("retry.backoff_max_seconds", "is below backoff_initial_seconds"))
    issues += reference_issues(config)
    source_problems = source_issues(config)
    issues += source_problems
    if source_problems:  # render the rest as if it had no source block (pruned like the rest)
        config = config.model_copy(update={"source": None})
    issues += reserved_env_issues(config)
    if not issues:
        # The common case (every dispatch cold start parses valid configs): render the config
        # itself. Copying it first, as `_render_issues` does, made this about twice as slow.
        found = placeholder_issues(config)
        if not any(_is_structural(issue) for issue in found):
            return found + placement_issues(config, placeholder_issues)
    return issues + _render_issues(config, broken)


def reserved_env_issues(config: QueueConfig) -> list[Issue]:
    """launchq sets LAUNCHQ_* in every pool of every attempt; a queue may not set them too."""
    pools = config.spec.get("worker_pool_specs")
    issues: list[Issue] = []
    for index, pool in enumerate(pools if isinstance(pools, list) else []):
        for task in ("container_spec", "python_package_spec"):
            spec = pool.get(task) if isinstance(pool, Mapping) else None
            env = spec.get("env") if isinstance(spec, Mapping) else None
            for position, entry in enumerate(env if isinstance(env, list) else []):
                name = entry.get("name") if isinstance(entry, Mapping) else None
                if isinstance(name, str) and name.upper().startswith("LAUNCHQ_"):
                    path = join_path("spec.worker_pool_specs", index, task, "env", position)
                    message = "LAUNCHQ_* variables are set by launchq (attempt, checkpoints)"
                    issues.append(Issue(join_path(path, "name"), message))
    return issues


# A render stops at its first failing layer: typed parse (unknown keys, wrong types, bad enum
# values), then the cross-field rules (a pool without a container, ...). Pruning what the typed
# parse rejected and rendering again reaches the next layer; the rounds are bounded because each
# one only removes keys, and two suffice for every layer the render has today.
_MAX_ROUNDS = 3
_PRUNED_TEXT = "launchq-pruned"  # stands in for a rejected string inside a list (keeps indices)
_STRUCTURAL_CODES = (UNKNOWN_KEY, MISSING)
_STRUCTURAL_PREFIXES = ("expected ", "invalid value ", "keys must be strings")
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _render_issues(config: QueueConfig, broken: set[str]) -> list[Issue]:
    """The placeholder render's problems, every layer of them.

    References the earlier checks rejected (unknown macros, undeclared or badly declared
    variables) are pruned before the first render; after a render the typed parse rejected, the
    keys it named are pruned and the render runs again, so the cross-field rules still run.
    A later round's issue is kept only when it is new and not about something pruned (or the key
    an unknown key's suggestion names: `image_url` pruned must not add "missing `image_uri`").
    """
    decls = {name: decl for name, decl in config.template_variables.items() if name not in broken}
    tree: dict[str, Any] = {"spec": copy.deepcopy(config.spec), "run": copy.deepcopy(config.run)}
    rejected = [
        path
        for section in ("spec", "run")
        for path, ref in references(tree[section], section)
        if (ref.name not in MACROS if isinstance(ref, Macro) else ref.name not in decls)
    ]
    covered = {path for path in rejected if _prune(tree, path)}
    reported: list[Issue] = []
    for _ in range(_MAX_ROUNDS):
        current = config.model_copy(
            update={"spec": tree["spec"], "run": tree["run"], "template_variables": decls}
        )
        found = placeholder_issues(current)
        reported += [i for i in found if i not in reported and not _is_covered(i.path, covered)]
        if not any(_is_structural(issue) for issue in found):
            return reported  # the cross-field rules ran: nothing further to reach
        fresh = [i for i in found if not _is_covered(i.path, covered)]
        newly = {i.path for i in fresh if _prune(tree, i.path, _meant_key(i))}
        if not newly:
            return reported
        covered |= newly | {_sibling(i.path, key) for i in fresh if (key := _meant_key(i))}
    return reported


def _is_structural(issue: Issue) -> bool:
    """An issue of the typed parse, which keeps the cross-field rules from running."""
    return issue.code in _STRUCTURAL_CODES or issue.message.startswith(_STRUCTURAL_PREFIXES)


def _meant_key(issue: Issue) -> str | None:
    """The key a misspelt key stands for, when its suggestion names one at the same place:
    `did you mean 'image_uri'?`, `use 'machine_type' (keys are snake_case)`. Not for a key that
    belongs elsewhere (`'timeout' goes under 'run'`, `set 'region' at the top level ...`)."""
    suggestion = issue.suggestion or ""
    if issue.code != UNKNOWN_KEY or not suggestion.startswith(("did you mean '", "use '")):
        return None
    meant = suggestion.split("'")[1]
    return meant if meant != last_key(issue.path) and re.fullmatch(r"\w+", meant) else None


def _sibling(path: str, key: str) -> str:
    return join_path(parent_path(path), key)


def _is_covered(path: str, covered: set[str]) -> bool:
    return any(path == root or path.startswith((f"{root}.", f"{root}[")) for root in covered)


def _prune(tree: dict[str, Any], path: str, meant: str | None = None) -> bool:
    """Take the value at `path` (`spec.worker_pool_specs[0].machine_spec.machineType`) out of
    `tree`: a misspelt key is renamed to the key it meant when that one is not set (so its value
    still counts: `image_url` pruned must not add "missing `image_uri`" and hide what follows),
    another mapping key is deleted, a string in a list is replaced (deleting it would shift the
    paths of its siblings). False when there is nothing there that can go."""
    parts = [int(index) if index else key for key, index in _PATH_PART.findall(path)]
    node: Any = tree
    for part in parts[:-1]:
        node = _child(node, part)
    last = parts[-1] if len(parts) > 1 else None
    if isinstance(last, str) and isinstance(node, dict) and last in node:
        value = node.pop(last)
        if meant is not None and meant not in node:
            node[meant] = value
        return True
    if isinstance(last, int) and isinstance(node, list) and isinstance(_child(node, last), str):
        node[last] = _PRUNED_TEXT
        return True
    return False


def _child(node: Any, part: str | int) -> Any:
    """`node[part]`, or None when `node` has no such element."""
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return None


def source_issues(config: QueueConfig) -> list[Issue]:
    """The `source` block against the pools it names (before any render)."""
    source = config.source
    if source is None:
        return []
    issues: list[Issue] = []
    if source.run_as == "python_package" and source.executor_image_uri is None:
        issues.append(Issue("source.executor_image_uri", "required when run_as is "
                            "python_package (e.g. us-docker.pkg.dev/vertex-ai/training/"
                            "pytorch-gpu.2-4.py310:latest)", code="missing_value"))  # fmt: skip
    if len(set(source.pools)) != len(source.pools):
        issues.append(Issue("source.pools", "lists a pool twice"))
    pools = config.spec.get("worker_pool_specs")
    count = len(pools) if isinstance(pools, list) else 0
    for position, index in enumerate(source.pools):
        path = join_path("source.pools", position)
        pool = pools[index] if isinstance(pools, list) and index < count else None
        if not isinstance(pool, Mapping) or not pool:
            issues.append(Issue(path, f"spec.worker_pool_specs has no pool {index} to run the "
                                "source in"))  # fmt: skip
        elif source.run_as == "container" and not isinstance(pool.get("container_spec"), Mapping):
            issues.append(Issue(path, f"run_as: container needs a container_spec in pool {index}"))
    return issues


def reference_issues(config: QueueConfig) -> list[Issue]:
    """Unknown macros and undeclared variables, wherever they appear in `spec`/`run`."""
    issues: list[Issue] = []
    declared = list(config.template_variables)
    for section, tree in (("spec", config.spec), ("run", config.run)):
        for path, ref in references(tree, section):
            if isinstance(ref, Macro):
                if ref.name not in MACROS:
                    close = difflib.get_close_matches(ref.name, list(MACROS), n=1)
                    hint = (
                        f"did you mean '${{{close[0]}}}'?"
                        if close
                        else "macros: " + ", ".join(MACROS) + "; write $${...} for a literal"
                    )
                    issues.append(Issue(path, f"unknown macro '${{{ref.name}}}'", hint, TEMPLATE))
            elif ref.name not in declared:
                close = difflib.get_close_matches(ref.name, declared, n=1)
                hint = (
                    f"did you mean '{close[0]}'?" if close else "declare it in template_variables"
                )
                message = f"template variable '{{{{{ref.name}}}}}' is not declared"
                issues.append(Issue(path, message, hint, TEMPLATE))
    return issues


def _best_effort_config(data: Mapping[str, Any]) -> QueueConfig | None:
    """When queue-level settings are wrong, still check `spec`/`run` so every error shows."""
    spec, run = data.get("spec"), data.get("run", {})
    if not isinstance(spec, dict) or not isinstance(run, dict):
        return None
    decls: dict[str, TemplateVariable] = {}
    raw_decls = data.get("template_variables")
    for name, raw in raw_decls.items() if isinstance(raw_decls, Mapping) else []:
        try:
            decls[str(name)] = TemplateVariable.model_validate(raw)
        except ValidationError:
            continue
    return QueueConfig.model_construct(spec=spec, run=run, template_variables=decls)


def _best_effort_issues(data: Mapping[str, Any]) -> list[Issue]:
    partial = _best_effort_config(data)
    if partial is None:
        return []
    raw = data.get("template_variables")
    broken = (
        {str(name) for name in raw} - set(partial.template_variables)
        if isinstance(raw, Mapping)
        else set()
    )
    return [
        issue
        for issue in deep_issues(partial)
        if not issue.path.startswith("retry")
        and not any(f"'{{{{{name}}}}}' is not declared" in issue.message for name in broken)
    ]


def parse_queue_config(data: object, *, name: str | None = None) -> QueueConfig:
    """Validate a queue config document (a parsed YAML/JSON mapping), reporting every problem.

    No `google.cloud.aiplatform` import: safe on the dispatch function's start-up path. `name`
    (e.g. the file name) is used when the document has none. Raises `ConfigError`.
    """
    if not isinstance(data, Mapping):
        raise ConfigError([Issue("", "a queue config is a mapping with at least 'spec'")])
    if not is_unicode(data):
        raise ConfigError([Issue("", "contains an unpaired surrogate (text is not valid Unicode)")])
    unwrapped, issues = unwrap(data)
    if name is not None and "name" not in unwrapped:
        unwrapped["name"] = name
    try:
        config = QueueConfig.model_validate(unwrapped)
    except ValidationError as exc:
        issues += issues_from_pydantic(exc, QueueConfig, "", TOP_HINTS)
        issues += _best_effort_issues(unwrapped)
        raise ConfigError(issues) from None
    issues += deep_issues(config)
    if issues:
        raise ConfigError(issues)
    return config
