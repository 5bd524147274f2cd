"""The queue config: the admin's document saying what jobs from one queue may look like.

Its Vertex part is exactly a W&B Launch Vertex queue config (`spec` = `aiplatform.CustomJob(...)`
arguments, `run` = `submit(...)` arguments, bare or wrapped in `vertex:` / `gcp-vertex:`), so a W&B
user pastes what they have. Beside it sit the queue-level settings W&B keeps elsewhere (agent
config, server): project, region, `max_jobs`, `paused`, default priority, template variable
declarations, and the retry / start-timeout policy the sweep applies.

Two entry points, because validation has two costs:

- `parse_queue_config` checks everything that can be checked without `google.cloud.aiplatform`
  (schema, unknown keys, template references, a render with template defaults). The dispatch
  function uses it on start-up: importing aiplatform costs seconds of cold start.
- `validate_queue_config` additionally parses that default render strictly as
  `aiplatform_v1.CustomJob`, so whatever passes is a body Vertex would parse. Run it when a
  config is written (CLI `validate`, `apply`).

Regenerate the JSON Schemas in docs/schemas with `python -m launchq.config --write-schemas`.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from launchq.templates import MACROS, Macro, TemplateVariable, declaration_issues, references
from launchq.validation import (
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

# ---------------------------------------------------------------------------------------------
# Priority: W&B's names, lower = more urgent

PRIORITY_NAMES: Mapping[str, int] = {"critical": 0, "high": 1, "medium": 2, "low": 3}
DEFAULT_PRIORITY = PRIORITY_NAMES["medium"]


def priority_rank(value: int | str | None, default: int = DEFAULT_PRIORITY) -> int:
    """The integer the dispatcher and sweep sort by, ascending: 0 (critical) runs first.

    Same direction as W&B (`--priority critical|high|medium|low` = 0..3). Integers >= 0 are
    accepted too, for finer ordering; ties are broken by publish time (FIFO).
    """
    if value is None:
        return default
    if isinstance(value, bool):
        raise ValueError("priority must be critical, high, medium, low or an integer >= 0")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("priority must be >= 0 (0 is the most urgent)")
        return value
    if isinstance(value, str) and value.strip().lower() in PRIORITY_NAMES:
        return PRIORITY_NAMES[value.strip().lower()]
    raise ValueError(
        f"invalid priority {value!r}; use critical, high, medium, low or an integer >= 0 "
        "(0 is the most urgent)"
    )


def _priority(value: object) -> object:
    if isinstance(value, str | int) and not isinstance(value, bool):
        return priority_rank(value)
    return value


Priority = Annotated[
    int,
    BeforeValidator(_priority),
    WithJsonSchema({
        "anyOf": [
            {"type": "integer", "minimum": 0},
            {"enum": list(PRIORITY_NAMES)},
        ],
        "description": "critical|high|medium|low (= 0..3) or an integer >= 0; lower runs first.",
    }),
]  # fmt: skip

# ---------------------------------------------------------------------------------------------
# Queue-level settings

RetryReason = Literal["no_capacity", "infrastructure", "quota", "preempted", "start_timeout"]
QUEUE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
QueueName = Annotated[str, Field(pattern=QUEUE_NAME_PATTERN)]
ProjectId = Annotated[
    str, Field(pattern=r"^(?:\d+|(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9])$")
]
Region = Annotated[str, Field(pattern=r"^[a-z]+(?:-[a-z]+)+\d+$")]


class RetryPolicy(BaseModel):
    """How the sweep retries a job that did not succeed (the sweep gives these behaviour)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    max_attempts: int = Field(default=3, ge=1, le=100, description="Attempts in total, >= 1.")
    reasons: list[RetryReason] = Field(
        default=["no_capacity", "infrastructure"],
        description="Failure classes that are retried.",
    )
    user_errors: bool = Field(default=False, description="Also retry failures of the user's code.")
    backoff_initial_seconds: int = Field(default=60, ge=0)
    backoff_max_seconds: int = Field(default=3600, ge=0)


_SHALLOW = "launchq.shallow"
WRAPPERS = ("vertex", "gcp-vertex")


class QueueConfig(BaseModel):
    """A validated queue config. Build it with `parse_queue_config`/`validate_queue_config`
    (they report every error at once); `QueueConfig.model_validate` also runs every check but
    stops at the first group of errors.

    `spec` and `run` are kept as written (templates unexpanded): rendering an item substitutes
    into them and validates the result with `launchq.mapping`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: QueueName | None = Field(default=None, description="Queue name (default: file name).")
    project: ProjectId | None = Field(default=None, description="GCP project of the jobs.")
    region: Region | None = Field(default=None, description="Vertex AI region of the jobs.")
    max_jobs: int = Field(default=1, description="Jobs running at once; -1 = unlimited.")
    paused: bool = Field(default=False, description="Keep items queued; launch nothing.")
    priority: Priority = Field(default=DEFAULT_PRIORITY, description="Default item priority.")
    template_variables: dict[str, TemplateVariable] = Field(
        default={}, description="`{{name}}` variables items may set."
    )
    retry: RetryPolicy = Field(default=RetryPolicy(), description="The sweep's retry policy.")
    start_timeout_seconds: int = Field(
        default=1800, ge=0, description="Cancel a job not running after this long; 0 = never."
    )
    spec: dict[str, Any] = Field(description="aiplatform.CustomJob(...) arguments (templated).")
    run: dict[str, Any] = Field(default={}, description="CustomJob.submit(...) arguments.")

    @model_validator(mode="before")
    @classmethod
    def _unwrap_vertex(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            unwrapped, issues = unwrap(data)
            if issues:
                raise ValueError("; ".join(str(issue) for issue in issues))
            return unwrapped
        return data

    @field_validator("max_jobs")
    @classmethod
    def _check_max_jobs(cls, value: int) -> int:
        if value == 0:
            raise ValueError("0 is not allowed: set paused: true to stop launching, -1 = unlimited")
        if value < -1:
            raise ValueError("must be -1 (unlimited) or at least 1")
        return value

    @model_validator(mode="after")
    def _deep_check(self, info: ValidationInfo) -> QueueConfig:
        if not (info.context or {}).get(_SHALLOW):
            issues = deep_issues(self)
            if issues:
                raise ConfigError(issues)
        return self

    @property
    def unlimited(self) -> bool:
        return self.max_jobs == -1


TOP_HINTS: Mapping[str, Mapping[str, str]] = {
    "": {
        "builder": "launchq does not build images: publish items with an image_uri",
        "location": "use 'region'",
        "queue": "use 'name'",
        "resource_args": "paste the contents of resource_args (its 'vertex' block)",
        "concurrency": "use 'max_jobs'",
        "start_timeout": "use 'start_timeout_seconds'",
    },
}


def unwrap(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[Issue]]:
    """Lift `vertex:`/`gcp-vertex:` (W&B's resource-args wrappers) to bare `spec`/`run`."""
    present = [key for key in WRAPPERS if key in data]
    if not present:
        return dict(data), []
    issues = []
    if len(present) > 1:  # keep checking with 'vertex' (the one W&B reads first)
        issues.append(Issue("", "use either 'vertex' or 'gcp-vertex', not both"))
        data = {key: value for key, value in data.items() if key != "gcp-vertex"}
    wrapper = present[0]
    block = data[wrapper]
    out = {key: value for key, value in data.items() if key != wrapper}
    if not isinstance(block, Mapping):
        return out, [*issues, Issue(wrapper, "expected a mapping with 'spec' and 'run'")]
    issues += [
        Issue(wrapper, f"'{key}' is set both inside '{wrapper}' and at the top level")
        for key in ("spec", "run")
        if key in block and key in data
    ]
    issues += [
        Issue(
            join_path(wrapper, key),
            f"unknown key '{key}'",
            "only 'spec' and 'run' go inside the wrapper; queue settings go beside it",
            "unknown_key",
        )
        for key in block
        if key not in ("spec", "run")
    ]
    out.update({key: value for key, value in block.items() if key in ("spec", "run")})
    return out, issues


# ---------------------------------------------------------------------------------------------
# Checks that need the whole document


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
    if not issues:
        # The common case (every dispatch cold start parses valid configs): render the config
        # itself. Copying it first, as `_render_issues` does, made this about twice as slow.
        from launchq.render import placeholder_issues  # render imports this module

        found = placeholder_issues(config)
        if not any(_is_structural(issue) for issue in found):
            return found
    return issues + _render_issues(config, broken)


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
    from launchq.render import placeholder_issues  # render imports this module

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
        config = QueueConfig.model_validate(unwrapped, context={_SHALLOW: True})
    except ValidationError as exc:
        issues += issues_from_pydantic(exc, QueueConfig, "", TOP_HINTS)
        issues += _best_effort_issues(unwrapped)
        raise ConfigError(issues) from None
    issues += deep_issues(config)
    if issues:
        raise ConfigError(issues)
    return config


def is_unicode(data: object) -> bool:
    """False if some string holds a lone surrogate (JSON allows it; protobuf and Vertex don't)."""
    try:
        json.dumps(data, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# JSON Schema

TEMPLATE_STRING = {"type": "string", "pattern": r"^\{\{\s*\w+\s*\}\}$"}


class _TemplatedSchema(GenerateJsonSchema):
    """In `spec`/`run`, any non-string value may also be a `{{var}}` template string."""

    def _relax(self, schema: JsonSchemaValue) -> JsonSchemaValue:
        return {"anyOf": [schema, TEMPLATE_STRING]}

    def int_schema(self, schema: core_schema.IntSchema) -> JsonSchemaValue:
        return self._relax(super().int_schema(schema))

    def float_schema(self, schema: core_schema.FloatSchema) -> JsonSchemaValue:
        return self._relax(super().float_schema(schema))

    def bool_schema(self, schema: core_schema.BoolSchema) -> JsonSchemaValue:
        return self._relax(super().bool_schema(schema))

    def literal_schema(self, schema: core_schema.LiteralSchema) -> JsonSchemaValue:
        return self._relax(super().literal_schema(schema))


def queue_config_json_schema() -> dict[str, Any]:
    """The queue config's JSON Schema (docs/schemas/queue-config.schema.json)."""
    from launchq.mapping import RunInput, SpecInput

    schema = QueueConfig.model_json_schema()
    defs = schema.setdefault("$defs", {})
    for key, model in (("spec", SpecInput), ("run", RunInput)):
        sub = model.model_json_schema(schema_generator=_TemplatedSchema)
        defs.update(sub.pop("$defs", {}))
        defs[model.__name__] = sub
        description = schema["properties"][key].get("description")
        schema["properties"][key] = {"$ref": f"#/$defs/{model.__name__}"}
        if description:
            schema["properties"][key]["description"] = description
    wrapper = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"spec": {"$ref": "#/$defs/SpecInput"}, "run": {"$ref": "#/$defs/RunInput"}},
        "description": "W&B resource-args wrapper; use instead of top-level spec/run.",
    }
    for key in WRAPPERS:
        schema["properties"][key] = wrapper
    schema.pop("required", None)
    schema["anyOf"] = [{"required": ["spec"]}, *({"required": [key]} for key in WRAPPERS)]
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "launchq queue config"
    return schema


def write_schemas(directory: Path) -> list[Path]:
    from launchq.item import queue_item_json_schema

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, schema in (
        ("queue-config.schema.json", queue_config_json_schema()),
        ("queue-item.schema.json", queue_item_json_schema()),
    ):
        path = directory / filename
        path.write_text(schema_text(schema), encoding="utf-8")
        written.append(path)
    return written


def schema_text(schema: Mapping[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m launchq.config")
    parser.add_argument("--schema", action="store_true", help="print the queue config schema")
    parser.add_argument("--write-schemas", metavar="DIR", nargs="?", const="docs/schemas")
    args = parser.parse_args(argv)
    if args.write_schemas:
        for path in write_schemas(Path(args.write_schemas)):
            sys.stderr.write(f"wrote {path}\n")
    else:
        sys.stdout.write(schema_text(queue_config_json_schema()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
