"""The `entries.list` filter: the fields of the Logging query language that job logs need, and
what each restriction on them matches.

Why hand-written: no Python implementation of the Logging query language exists (the service
parses it server-side), and the part that `launchq logs`, `gcloud ai custom-jobs stream-logs`
and `gcloud logging read` send is small. Anything outside it is answered with a 400 naming the
construct, never silently matched or ignored.

The grammar is `launchq_local.filtering`'s, shared with the Vertex stand-in: OR binds tighter
than AND, as documented; juxtaposition (or a newline) means AND; NOT or `-` negates. This
module owns the Logging dialect (strings only "...", quoted field path segments, regex
comparators as tokens so they can be refused), the fields and their types.

Supported (https://cloud.google.com/logging/docs/view/logging-query-language):
`resource.type`, `resource.labels.KEY`, `labels.KEY` (KEY bare or quoted, e.g.
`labels."ml.googleapis.com/task_name"`), `logName`, `insertId`, `textPayload`, `severity`
(ordered by level: `severity>=ERROR`), `timestamp` (RFC 3339, compared as instants).
Comparators: `=`, `!=`, `<`, `<=`, `>`, `>=` (ordered only for timestamp, severity, insertId)
and `:` (substring, case-insensitive, for strings). A missing label compares unequal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from launchq_local.filtering import (
    AIP160_COMPARATORS,
    ORDERED,
    Dialect,
    Restriction,
    compile_tree,
    filter_error,
    parse,
    rfc3339_us,
    unsupported_operator,
)

SEVERITIES: dict[str, int] = {
    "DEFAULT": 0,
    "DEBUG": 100,
    "INFO": 200,
    "NOTICE": 300,
    "WARNING": 400,
    "ERROR": 500,
    "CRITICAL": 600,
    "ALERT": 700,
    "EMERGENCY": 800,
}
LOGGING = Dialect(quotes='"', quoted_segments=True, comparators=("=~", "!~", *AIP160_COMPARATORS))


@dataclass(frozen=True)
class Fields:
    """What a filter sees of one entry."""

    resource_type: str
    resource_labels: Mapping[str, str]
    labels: Mapping[str, str]
    log_name: str
    insert_id: str
    text: str
    severity: int
    timestamp_us: int


Predicate = Callable[[Fields], bool]


def compile_filter(source: str) -> Predicate:
    """Parse `source` into a predicate over `Fields`; an empty filter matches everything."""
    return compile_tree(parse(source, LOGGING), _restriction)


def _restriction(restriction: Restriction) -> Predicate:
    path, op, value = restriction.field, restriction.comparator, restriction.value
    member = path.text
    if path.segments == ("resource", "type"):
        return _text(member, op, value, lambda f: f.resource_type)
    if (resource_key := path.key_after("resource", "labels")) is not None:
        return _text(member, op, value, lambda f: f.resource_labels.get(resource_key))
    if (label_key := path.key_after("labels")) is not None:
        return _text(member, op, value, lambda f: f.labels.get(label_key))
    if member in ("logName", "log_name"):
        return _text(member, op, value, lambda f: f.log_name)
    if member in ("textPayload", "text_payload"):
        return _text(member, op, value, lambda f: f.text)
    if member in ("insertId", "insert_id"):
        return _ordered(member, op, value, lambda f: f.insert_id)
    if member == "severity":
        level = severity_level(value)
        return _ordered(member, op, level, lambda f: f.severity)
    if member == "timestamp":
        bound = parse_timestamp_us(value)
        return _ordered(member, op, bound, lambda f: f.timestamp_us)
    raise filter_error(f"unsupported field {member!r}")


def _text(member: str, op: str, value: str, get: Callable[[Fields], str | None]) -> Predicate:
    if op == "=":
        return lambda f: get(f) == value
    if op == "!=":
        return lambda f: get(f) != value
    if op == ":":
        needle = value.lower()
        return lambda f: needle in (get(f) or "").lower()
    raise unsupported_operator(member, op)


def _ordered(member: str, op: str, bound: object, get: Callable[[Fields], object]) -> Predicate:
    compare = ORDERED.get(op)
    if compare is None:
        raise unsupported_operator(member, op)
    return lambda f: compare(get(f), bound)


def severity_level(text: str) -> int:
    """A severity name (any case) or its number."""
    upper = text.upper()
    if upper in SEVERITIES:
        return SEVERITIES[upper]
    if text.isdigit():
        return int(text)
    raise filter_error(f"{text!r} is not a severity ({', '.join(SEVERITIES)})")


def parse_timestamp_us(text: str) -> int:
    """RFC 3339 with up to nanoseconds (truncated to microseconds); the offset is mandatory."""
    return rfc3339_us(text)
