"""`${macro}` and `{{var}}` templates: an allowlist, typed variables, one structural pass.

Why not W&B's approach: W&B runs a regex over every string and merges the agent's whole
`os.environ` into the macro values, so a queue config can read any secret of the agent and an
environment variable named `image_uri` silently replaces the image. Here:

- macros come from a fixed allowlist (`MACROS`), filled from the item and the render context only;
  the process environment is never consulted;
- `{{var}}` template variables are declared by the queue with a type, and an item can only set
  declared ones with values of that type (checked against enum/minimum/maximum);
- substitution walks the parsed tree (dict/list/str), never JSON text, so no value can change a key
  or the structure; a string that is exactly `{{var}}` takes the typed value;
- it is single-pass: substituted text is never scanned again, so `${x}` or `{{x}}` inside an item
  value comes out literally;
- `$${x}` is the escape for a literal `${x}`.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from launchq.spec.validation import TEMPLATE, Issue, join_path

Scalar = str | int | float | bool
VarType = Literal["string", "integer", "number", "boolean"]

MACROS: Mapping[str, str] = {
    "image_uri": "the item's `image_uri`",
    "item_id": "the item's id (its `item_id`, or the id the dispatcher assigned)",
    "queue": "the queue name",
    "project": "the GCP project the job runs in",
    "region": "the Vertex AI region the job runs in",
    "display_name": "the item's `display_name` (default: `{queue}-{item_id}`)",
    "run_id": "W&B name for `item_id`",
    "run_name": "W&B name for `display_name`",
    "project_name": "W&B name; the item's `metadata.project_name`",
    "entity_name": "W&B name; the item's `metadata.entity_name`",
    "author": "W&B name; the item's `metadata.author`",
}
"""Every macro a queue config may use, with where its value comes from."""

VARIABLE_NAME = re.compile(r"^[A-Za-z_]\w*$")
_TOKEN = re.compile(r"\$\$\{|\$\{(\w+)\}|\{\{\s*(\w+)\s*\}\}")
_WHOLE_VAR = re.compile(r"^\{\{\s*(\w+)\s*\}\}$")


@dataclass(frozen=True)
class Macro:
    name: str


@dataclass(frozen=True)
class Var:
    name: str


Segment = str | Macro | Var


def parse(text: str) -> tuple[Segment, ...]:
    """Split a template string into literal text, macros and variables (`$${` -> literal `${`)."""
    out: list[Segment] = []
    literal = ""
    pos = 0
    for match in _TOKEN.finditer(text):
        literal += text[pos : match.start()]
        pos = match.end()
        if match.group(0) == "$${":
            literal += "${"
            continue
        if literal:
            out.append(literal)
            literal = ""
        out.append(Macro(match.group(1)) if match.group(1) else Var(match.group(2)))
    literal += text[pos:]
    if literal:
        out.append(literal)
    return tuple(out)


def references(tree: Any, path: str) -> Iterator[tuple[str, Macro | Var]]:
    """Every macro and variable used in the string values of `tree`, with its path."""
    if isinstance(tree, str):
        for segment in parse(tree):
            if not isinstance(segment, str):
                yield path, segment
    elif isinstance(tree, Mapping):
        for key, value in tree.items():
            yield from references(value, join_path(path, str(key)))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from references(value, join_path(path, index))


def format_scalar(value: Scalar) -> str:
    """How a typed value reads inside a longer string (JSON spelling: true, 3, 0.5)."""
    return value if isinstance(value, str) else json.dumps(value)


Loc = tuple[str | int, ...]


def substitute(
    tree: Any,
    macros: Mapping[str, str],
    variables: Mapping[str, Scalar],
    wants_text: Callable[[Loc], bool] | None = None,
    loc: Loc = (),
) -> Any:
    """A new tree with every macro and variable replaced; keys and non-strings are left alone.

    A string that is exactly `{{var}}` becomes the typed value, unless `wants_text(loc)` says the
    field there is a string (`args: ["{{epochs}}"]`), where it becomes its text. Callers check
    `references` first: a name missing from `macros`/`variables` is a bug here.
    """
    if isinstance(tree, str):
        whole = _WHOLE_VAR.match(tree)
        if whole:
            value = variables[whole.group(1)]
            return format_scalar(value) if wants_text and wants_text(loc) else value
        parts: list[str] = []
        for segment in parse(tree):
            if isinstance(segment, Macro):
                parts.append(macros[segment.name])
            elif isinstance(segment, Var):
                parts.append(format_scalar(variables[segment.name]))
            else:
                parts.append(segment)
        return "".join(parts)
    if isinstance(tree, Mapping):
        return {
            key: substitute(value, macros, variables, wants_text, (*loc, key))
            for key, value in tree.items()
        }
    if isinstance(tree, list):
        return [
            substitute(value, macros, variables, wants_text, (*loc, index))
            for index, value in enumerate(tree)
        ]
    return tree


# ---------------------------------------------------------------------------------------------
# Template variable declarations


class TemplateVariable(BaseModel):
    """A `{{name}}` variable a queue lets items set, with its type and constraints."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    type: VarType = Field(description="string, integer, number or boolean.")
    description: str | None = Field(default=None, description="Shown to whoever sets it.")
    default: Scalar | None = Field(default=None, description="Used when the item does not set it.")
    enum: list[Scalar] | None = Field(default=None, description="The only values allowed.")
    minimum: int | float | None = Field(default=None, description="Inclusive lower bound.")
    maximum: int | float | None = Field(default=None, description="Inclusive upper bound.")
    required: bool = Field(default=False, description="The item must set it (no default).")


_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
}


def _has_type(kind: VarType, value: object) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "integer":
        return isinstance(value, int)
    if kind == "number":
        return isinstance(value, int | float) and math.isfinite(value)
    return isinstance(value, str)


def value_problem(decl: TemplateVariable, value: object) -> str | None:
    """Why `value` is not acceptable for `decl`, or None."""
    if not _has_type(decl.type, value):
        return f"must be {_TYPE_NAMES[decl.type]}, got {json.dumps(value)}"
    if decl.enum is not None and value not in decl.enum:
        allowed = ", ".join(json.dumps(choice) for choice in decl.enum)
        return f"{json.dumps(value)} is not one of the allowed values: {allowed}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if decl.minimum is not None and value < decl.minimum:
            return f"{value} is below the minimum {decl.minimum}"
        if decl.maximum is not None and value > decl.maximum:
            return f"{value} is above the maximum {decl.maximum}"
    return None


def declaration_issues(name: str, decl: TemplateVariable, path: str) -> list[Issue]:
    """Inconsistent declarations are the admin's bug; catch them when the queue is written."""
    issues: list[Issue] = []
    if not VARIABLE_NAME.match(name):
        issues.append(Issue(path, "template variable names are letters, digits and '_'"))
    numeric = decl.type in ("integer", "number")
    if not numeric and (decl.minimum is not None or decl.maximum is not None):
        issues.append(Issue(path, "minimum/maximum only apply to integer and number variables"))
    low, high = decl.minimum, decl.maximum
    if numeric and low is not None and high is not None and low > high:
        issues.append(Issue(path, "minimum is greater than maximum"))
    for index, choice in enumerate(decl.enum or []):
        if not _has_type(decl.type, choice):
            issues.append(
                Issue(join_path(path, "enum", index), f"must be {_TYPE_NAMES[decl.type]}")
            )
    if decl.required and decl.default is not None:
        issues.append(
            Issue(join_path(path, "default"), "a required variable cannot have a default")
        )
    elif not decl.required and decl.default is None:
        issues.append(
            Issue(path, "give the variable a default or mark it required: true", code=TEMPLATE)
        )
    elif decl.default is not None:
        problem = value_problem(decl, decl.default)
        if problem:
            issues.append(Issue(join_path(path, "default"), problem))
    return issues


def resolve(
    decls: Mapping[str, TemplateVariable], provided: Mapping[str, object], path: str
) -> tuple[dict[str, Scalar], list[Issue]]:
    """The value of every declared variable: provided (checked) or the default."""
    issues: list[Issue] = []
    values: dict[str, Scalar] = {}
    for name, value in provided.items():
        where = join_path(path, name)
        decl = decls.get(name)
        if decl is None:
            close = difflib.get_close_matches(name, list(decls), n=1)
            hint = f"did you mean '{close[0]}'?" if close else _declared_hint(decls)
            issues.append(Issue(where, f"the queue declares no template variable '{name}'", hint))
            continue
        problem = value_problem(decl, value)
        if problem:
            issues.append(Issue(where, problem))
        else:
            values[name] = value  # type: ignore[assignment]  # checked by value_problem
    for name, decl in decls.items():
        if name in values or name in provided:
            continue
        if decl.default is not None:
            values[name] = decl.default
        else:
            issues.append(Issue(join_path(path, name), "required template variable is not set"))
    return values, issues


def _declared_hint(decls: Mapping[str, TemplateVariable]) -> str:
    if not decls:
        return "this queue declares no template variables"
    return "declared: " + ", ".join(sorted(decls))


def sample_value(decl: TemplateVariable) -> Scalar:
    """A valid stand-in for a required variable, used to check a queue renders before any item."""
    if decl.enum:
        return decl.enum[0]
    if decl.type == "boolean":
        return False
    if decl.type == "string":
        return "placeholder"
    if decl.minimum is not None:
        low = decl.minimum
        return math.ceil(low) if decl.type == "integer" else low
    if decl.maximum is not None:
        high = min(decl.maximum, 1)
        return math.floor(high) if decl.type == "integer" else high
    return 1


def coerce_cli_value(decl: TemplateVariable, text: str) -> Scalar:
    """`--set-var k=v` gives text; read it as the declared type (ValueError if it is not)."""
    if decl.type == "string":
        return text
    if decl.type == "integer":
        return int(text)
    if decl.type == "number":
        number = float(text)
        return (
            int(number)
            if number.is_integer() and "." not in text and "e" not in text.lower()
            else number
        )
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(f"{text!r} is not a boolean (use true or false)")
