"""Structured validation errors, shared by queue configs and queue items.

W&B Launch reports one problem per run, often only after the job reached Vertex. launchq collects
*every* problem of a document and reports them together, each with the path of the offending
value and, when we can guess it, the key that was meant. Pydantic's own error types stay inside
this module: the rest of launchq (and its callers) only see `Issue`, `ConfigError` and
`ItemError`.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from launchq.errors import LaunchqError

# Issue codes: stable strings a caller (or a test) can match on without parsing messages.
UNKNOWN_KEY = "unknown_key"
MISSING = "missing"
INVALID = "invalid"
TEMPLATE = "template"
CONFLICT = "conflict"
PARSE = "parse"

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])([A-Z])")


@dataclass(frozen=True)
class Issue:
    """One problem in a document.

    `path` points at the offending value (`spec.worker_pool_specs[0].machine_spec.machineType`);
    for unknown and missing keys the text names the key and is reported against its parent, which
    reads naturally: `spec.worker_pool_specs[0].machine_spec: unknown key 'machineType'; ...`.
    """

    path: str
    message: str
    suggestion: str | None = None
    code: str = INVALID

    def __str__(self) -> str:
        where = self.path
        if self.code in (UNKNOWN_KEY, MISSING):
            where = parent_path(self.path)
        text = f"{where}: {self.message}" if where else self.message
        return f"{text}; {self.suggestion}" if self.suggestion else text


class LaunchqValidationError(LaunchqError):
    """A document was rejected; `issues` lists every problem found, not only the first."""

    kind = "document"

    def __init__(self, issues: Iterable[Issue]) -> None:
        self.issues: tuple[Issue, ...] = tuple(issues)
        super().__init__(self.render())

    def render(self) -> str:
        noun = "error" if len(self.issues) == 1 else "errors"
        lines = [f"invalid {self.kind} ({len(self.issues)} {noun}):"]
        lines += [f"  - {issue}" for issue in self.issues]
        return "\n".join(lines)


class ConfigError(LaunchqValidationError):
    """The queue config (the admin's document) is invalid."""

    kind = "queue config"


class ItemError(LaunchqValidationError):
    """The queue item (the publisher's message) is invalid or not allowed by its queue."""

    kind = "queue item"


# ---------------------------------------------------------------------------------------------
# Paths and suggestions


def join_path(base: str, *parts: str | int) -> str:
    """`join_path("spec", "worker_pool_specs", 0)` -> `spec.worker_pool_specs[0]`."""
    out = base
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            text = str(part).lower() if isinstance(part, bool) else str(part)
            out = f"{out}.{text}" if out else text
    return out


def parent_path(path: str) -> str:
    """The path of the container holding the last element of `path`."""
    if path.endswith("]"):
        return path[: path.rindex("[")]
    return path.rpartition(".")[0]


def last_key(path: str) -> str:
    return path.rpartition(".")[2]


def snake_case(key: str) -> str:
    """`machineType` -> `machine_type`; used to tell camelCase users the key they meant."""
    return _CAMEL_BOUNDARY.sub(r"_\1", key).lower()


def suggest_key(
    key: str, valid: Iterable[str], hints: Mapping[str, str] | None = None
) -> str | None:
    """The most useful hint for an unknown key: a specific hint, the snake_case form, or a near
    miss. The camelCase hint wins over a generic near miss because it also teaches the rule."""
    valid = sorted(valid)
    if hints and key in hints:
        return hints[key]
    snake = snake_case(key)
    if snake != key and snake in valid:
        return f"use '{snake}' (keys are snake_case)"
    close = difflib.get_close_matches(snake, valid, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return None


def suggest_value(value: str, valid: Sequence[str]) -> str | None:
    """A hint for a bad enum name: case mistakes first, then near misses."""
    for name in valid:
        if name.lower() == value.lower():
            return f"did you mean '{name}'?"
    close = difflib.get_close_matches(value.upper(), list(valid), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def unknown_key(
    path: str, key: str, valid: Iterable[str], hints: Mapping[str, str] | None = None
) -> Issue:
    return Issue(
        join_path(path, key), f"unknown key '{key}'", suggest_key(key, valid, hints), UNKNOWN_KEY
    )


# ---------------------------------------------------------------------------------------------
# Pydantic conversion

_TYPE_NAMES = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "bool_type": "a boolean (true or false)",
    "bool_parsing": "a boolean (true or false)",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
}


def describe(value: Any) -> str:
    """A short, human description of a value for 'expected X, got Y' messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


Hints = Mapping[str, Mapping[str, str]]
"""Key hints by the path (relative to the model) of the mapping holding the key; `*` = anywhere."""


def issues_from_pydantic(
    exc: ValidationError, model: type[BaseModel], base: str = "", hints: Hints | None = None
) -> list[Issue]:
    """Turn pydantic's errors into `Issue`s with launchq paths, key suggestions and enum lists.

    A missing key whose misspelling is reported next to it (`image_url` -> `image_uri`) is dropped:
    one mistake, one message.
    """
    issues = [_convert(err, model, base, hints or {}) for err in exc.errors(include_url=False)]
    suggested = {
        join_path(parent_path(issue.path), key)
        for issue in issues
        if issue.code == UNKNOWN_KEY and issue.suggestion
        for key in re.findall(r"'(\w+)'", issue.suggestion)
    }
    return [i for i in issues if not (i.code == MISSING and i.path in suggested)]


def _convert(err: Mapping[str, Any], model: type[BaseModel], base: str, hints: Hints) -> Issue:
    loc = tuple(err["loc"])
    path = join_path(base, *loc)
    kind = err["type"]
    value = err.get("input")
    if kind == "extra_forbidden":
        key = str(loc[-1])
        valid = fields_at(model, loc[:-1])
        where = {**hints.get("*", {}), **hints.get(join_path("", *loc[:-1]), {})}
        return unknown_key(join_path(base, *loc[:-1]), key, valid, where)
    if kind == "invalid_key" or (loc and loc[-1] == "[key]"):
        return _bad_key(join_path(base, *loc[: -2 if loc[-1] == "[key]" else -1]), value)
    if kind == "missing":
        return Issue(path, f"missing required key '{loc[-1]}'", code=MISSING)
    if kind in ("literal_error", "enum"):
        expected = _literal_choices(err)
        suggestion = suggest_value(value, expected) if isinstance(value, str) else None
        shown = ", ".join(expected)
        return Issue(path, f"invalid value {value!r}; valid values: {shown}", suggestion)
    if kind in _TYPE_NAMES:
        return Issue(path, f"expected {_TYPE_NAMES[kind]}, got {describe(value)}")
    message = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return Issue(path, message[:1].lower() + message[1:])


def _bad_key(path: str, value: object) -> Issue:
    hint = None
    if isinstance(value, bool):
        hint = "YAML reads unquoted on/off/yes/no/true/false as booleans; quote the key"
    return Issue(path, f"keys must be strings, got {describe(value)}", hint)


def _literal_choices(err: Mapping[str, Any]) -> list[str]:
    expected = str(err.get("ctx", {}).get("expected", ""))
    return [part.strip().strip("'") for part in re.split(r",| or ", expected) if part.strip()]


def fields_at(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """The valid keys of the mapping at `loc` inside `model` (for 'did you mean' suggestions)."""
    target = _as_model(annotation_at(model, loc))
    return list(target.model_fields) if target is not None else []


def annotation_at(model: type[BaseModel], loc: Sequence[str | int]) -> Any:
    """The type annotation of the value at `loc` inside `model`, or None if `loc` is not valid."""
    current: Any = model
    for part in loc:
        current = _step(current, part)
        if current is None:
            return None
    return current


def is_text(annotation: Any) -> bool:
    """True if `annotation` is `str` (possibly Annotated, possibly `| None`)."""
    kinds = [kind for kind in _unwrap(annotation) if kind is not type(None)]
    return bool(kinds) and all(kind is str for kind in kinds)


def _step(annotation: Any, part: str | int) -> Any:
    model = _as_model(annotation)
    if model is not None:
        field = model.model_fields.get(str(part))
        return field.annotation if field is not None else None
    return _container_item(annotation)


def _unwrap(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            out += _unwrap(arg)
        return out
    return [annotation]


def _as_model(annotation: Any) -> type[BaseModel] | None:
    for candidate in _unwrap(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _container_item(annotation: Any) -> Any:
    for candidate in _unwrap(annotation):
        origin = typing.get_origin(candidate)
        if origin in (list, tuple):
            return typing.get_args(candidate)[0]
        if origin is dict:
            return typing.get_args(candidate)[1]
    return None
