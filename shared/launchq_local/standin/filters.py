"""The ListCustomJobs `filter` language: which fields Vertex documents for CustomJob, and what
each restriction on them matches.

Why hand-written: no maintained AIP-160 implementation for Python turned up (the ones found are
Go and Rust crates), the subset Vertex documents for CustomJob is small, and a ~250-line parser
with exact error positions beats a grammar dependency for a test tool. That parser is
`launchq_local.filtering`, shared with the Logging stand-in; it owns the grammar (precedence
NOT > OR > AND, juxtaposition means AND, keywords case-sensitive) and the syntax errors. This
module owns the AIP-160 dialect (values quoted "..." or '...', or bare), the fields, and their
types.

Fields (snake_case or camelCase): `display_name` (=, !=, `:` glob with `*`), `state` (=, !=,
a JobState name), `create_time` (=, !=, <, <=, >, >=, RFC 3339), `labels.KEY` (=, !=, `:*`
exists, `:value` equals). Anything else is a 400.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from launchq_local.filtering import (
    ORDERED,
    Dialect,
    Restriction,
    compile_tree,
    filter_error,
    parse,
    rfc3339_us,
    unsupported_operator,
)
from launchq_local.standin.lifecycle import STATE_NAMES

AIP160 = Dialect(quotes="\"'")


@dataclass(frozen=True)
class Subject:
    """What a filter sees of a job (built once per job per List call)."""

    display_name: str
    state: str
    create_time_us: int
    labels: Mapping[str, str]


Predicate = Callable[[Subject], bool]


def compile_filter(source: str) -> Predicate:
    """Parse `source` into a predicate over `Subject`; an empty filter matches everything."""
    return compile_tree(parse(source, AIP160), _restriction)


def parse_rfc3339_us(text: str) -> int:
    """Microseconds since the epoch; the offset is mandatory, as RFC 3339 says."""
    return rfc3339_us(text)


def _restriction(restriction: Restriction) -> Predicate:
    member, op, value = restriction.field.text, restriction.comparator, restriction.value
    if member in ("display_name", "displayName"):
        return _display_name(op, value)
    if member == "state":
        return _state(op, value)
    if member in ("create_time", "createTime"):
        return _create_time(op, value)
    key = restriction.field.key_after("labels")
    if key is not None:
        return _label(key, op, value)
    raise filter_error(f"unsupported field {member!r}")


def _glob(pattern: str) -> re.Pattern[str]:
    """`*` is the only wildcard; every other character matches itself."""
    return re.compile(".*".join(re.escape(chunk) for chunk in pattern.split("*")), re.DOTALL)


def _display_name(op: str, value: str) -> Predicate:
    if op == "=":
        return lambda s: s.display_name == value
    if op == "!=":
        return lambda s: s.display_name != value
    if op == ":":
        pattern = _glob(value)
        return lambda s: pattern.fullmatch(s.display_name) is not None
    raise unsupported_operator("display_name", op)


def _state(op: str, value: str) -> Predicate:
    if value not in STATE_NAMES:
        raise filter_error(f"{value!r} is not a JobState (e.g. JOB_STATE_RUNNING)")
    if op == "=":
        return lambda s: s.state == value
    if op == "!=":
        return lambda s: s.state != value
    raise unsupported_operator("state", op)


def _create_time(op: str, value: str) -> Predicate:
    compare = ORDERED.get(op)
    if compare is None:
        raise unsupported_operator("create_time", op)
    bound = rfc3339_us(value)
    return lambda s: compare(s.create_time_us, bound)


def _label(key: str, op: str, value: str) -> Predicate:
    if op == ":" and value == "*":
        return lambda s: key in s.labels
    if op in ("=", ":"):
        return lambda s: s.labels.get(key) == value
    if op == "!=":
        return lambda s: s.labels.get(key) != value
    raise unsupported_operator(f"labels.{key}", op)
