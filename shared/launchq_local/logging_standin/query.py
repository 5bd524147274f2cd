"""The `entries.list` filter: the subset of the Logging query language that job logs need.

Why hand-written: no Python implementation of the Logging query language exists (the service
parses it server-side), and the part that `launchq logs`, `gcloud ai custom-jobs stream-logs`
and `gcloud logging read` send is small. Anything outside it is answered with a 400 naming the
construct, never silently matched or ignored.

Supported (https://cloud.google.com/logging/docs/view/logging-query-language):

    expression  = factor { ["AND"] factor }     # juxtaposition (or a newline) means AND
    factor      = term { "OR" term }            # OR binds tighter than AND, as documented
    term        = ["NOT" | "-"] simple
    simple      = "(" expression ")" | field comparator value

Fields: `resource.type`, `resource.labels.KEY`, `labels.KEY` (KEY bare or quoted, e.g.
`labels."ml.googleapis.com/task_name"`), `logName`, `insertId`, `textPayload`, `severity`
(ordered by level: `severity>=ERROR`), `timestamp` (RFC 3339, compared as instants).
Comparators: `=`, `!=`, `<`, `<=`, `>`, `>=` (ordered only for timestamp, severity, insertId)
and `:` (substring, case-insensitive, for strings). A missing label compares unequal.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from launchq_local.standin.wire import ApiError, invalid_argument

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
_COMPARATORS = ("<=", ">=", "!=", "=", "<", ">", ":")
_KEYWORDS = {"AND", "OR", "NOT"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FRACTION = re.compile(r"\.(\d+)")


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


def _error(message: str) -> ApiError:
    return invalid_argument("filter", f"Invalid filter: {message}")


@dataclass(frozen=True)
class _Token:
    kind: str  # ( ) AND OR NOT - CMP WORD STRING
    text: str
    pos: int


def _tokens(source: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(source):
        char = source[pos]
        if char.isspace():
            pos += 1
            continue
        if char in "()":
            out.append(_Token(char, char, pos))
            pos += 1
            continue
        op = next((op for op in _COMPARATORS if source.startswith(op, pos)), None)
        if op is not None:
            out.append(_Token("CMP", op, pos))
            pos += len(op)
            continue
        if char == '"':
            text, end = _string(source, pos)
            out.append(_Token("STRING", text, pos))
            pos = end
            continue
        if char == "-" and (not out or out[-1].kind != "CMP"):
            out.append(_Token("-", char, pos))
            pos += 1
            continue
        after_cmp = bool(out) and out[-1].kind == "CMP"
        start = pos
        # A field path may hold quoted segments: labels."ml.googleapis.com/task_name".
        word: list[str] = []
        while pos < len(source) and not source[pos].isspace() and source[pos] not in "()":
            if not after_cmp and source[pos] in "=!<>:":
                break
            if source[pos] == '"':
                text, pos = _string(source, pos)
                word.append(f'"{text}"')
                continue
            word.append(source[pos])
            pos += 1
        if not word:
            raise _error(f"unexpected character {char!r} at position {start}")
        text = "".join(word)
        kind = text if text in _KEYWORDS and not after_cmp else "WORD"
        out.append(_Token(kind, text, start))
    return out


def _string(source: str, start: int) -> tuple[str, int]:
    pos, out = start + 1, []
    while pos < len(source):
        char = source[pos]
        if char == "\\" and pos + 1 < len(source):
            out.append(source[pos + 1])
            pos += 2
            continue
        if char == '"':
            return "".join(out), pos + 1
        out.append(char)
        pos += 1
    raise _error(f"unterminated string starting at position {start}")


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.index = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise _error("unexpected end of filter")
        self.index += 1
        return token

    def parse(self) -> Predicate:
        predicate = self.expression()
        token = self.peek()
        if token is not None:
            raise _error(f"unexpected {token.text!r} at position {token.pos}")
        return predicate

    def expression(self) -> Predicate:
        parts = [self.factor()]
        while (token := self.peek()) is not None and token.kind != ")":
            if token.kind == "AND":
                self.take()
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else _all(parts)

    def factor(self) -> Predicate:
        parts = [self.term()]
        while (token := self.peek()) is not None and token.kind == "OR":
            self.take()
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else _any(parts)

    def term(self) -> Predicate:
        token = self.peek()
        if token is not None and token.kind in ("NOT", "-"):
            self.take()
            inner = self.simple()
            return lambda f: not inner(f)
        return self.simple()

    def simple(self) -> Predicate:
        token = self.take()
        if token.kind == "(":
            inner = self.expression()
            close = self.take()
            if close.kind != ")":
                raise _error(f"expected ')' at position {close.pos}")
            return inner
        if token.kind != "WORD":
            raise _error(f"expected a field at position {token.pos}, found {token.text!r}")
        op = self.peek()
        if op is None or op.kind != "CMP":
            # A bare word is a global text search in the real service: not supported here.
            raise _error(f"expected a comparator after {token.text!r} at position {token.pos}")
        self.take()
        value = self.take()
        if value.kind not in ("WORD", "STRING"):
            raise _error(f"expected a value at position {value.pos}, found {value.text!r}")
        return _restriction(token.text, op.text, value.text)


def _all(parts: list[Predicate]) -> Predicate:
    return lambda f: all(p(f) for p in parts)


def _any(parts: list[Predicate]) -> Predicate:
    return lambda f: any(p(f) for p in parts)


def _unquote(key: str) -> str:
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == '"' else key


def _restriction(member: str, op: str, value: str) -> Predicate:
    if member == "resource.type":
        return _text(member, op, value, lambda f: f.resource_type)
    if member.startswith("resource.labels.") and len(member) > len("resource.labels."):
        key = _unquote(member[len("resource.labels.") :])
        return _text(member, op, value, lambda f: f.resource_labels.get(key))
    if member.startswith("labels.") and len(member) > len("labels."):
        key = _unquote(member[len("labels.") :])
        return _text(member, op, value, lambda f: f.labels.get(key))
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
    raise _error(f"unsupported field {member!r}")


def _text(member: str, op: str, value: str, get: Callable[[Fields], str | None]) -> Predicate:
    if op == "=":
        return lambda f: get(f) == value
    if op == "!=":
        return lambda f: get(f) != value
    if op == ":":
        needle = value.lower()
        return lambda f: needle in (get(f) or "").lower()
    raise _error(f"operator {op!r} is not supported for {member}")


_ORDER: dict[str, Callable[[object, object], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,  # type: ignore[operator]
    "<=": lambda a, b: a <= b,  # type: ignore[operator]
    ">": lambda a, b: a > b,  # type: ignore[operator]
    ">=": lambda a, b: a >= b,  # type: ignore[operator]
}


def _ordered(member: str, op: str, bound: object, get: Callable[[Fields], object]) -> Predicate:
    compare = _ORDER.get(op)
    if compare is None:
        raise _error(f"operator {op!r} is not supported for {member}")
    return lambda f: compare(get(f), bound)


def severity_level(text: str) -> int:
    """A severity name (any case) or its number."""
    upper = text.upper()
    if upper in SEVERITIES:
        return SEVERITIES[upper]
    if text.isdigit():
        return int(text)
    raise _error(f"{text!r} is not a severity ({', '.join(SEVERITIES)})")


def parse_timestamp_us(text: str) -> int:
    """RFC 3339 with up to nanoseconds (truncated to microseconds); the offset is mandatory."""
    normalized = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)
    try:
        moment = datetime.fromisoformat(normalized.replace("z", "Z"))
    except ValueError:
        raise _error(f"{text!r} is not an RFC 3339 timestamp") from None
    if moment.tzinfo is None:
        raise _error(f"{text!r} has no UTC offset (RFC 3339 needs 'Z' or '+hh:mm')")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def compile_filter(source: str) -> Predicate:
    """Parse `source` into a predicate over `Fields`; an empty filter matches everything."""
    tokens = _tokens(source)
    if not tokens:
        return lambda _f: True
    return _Parser(tokens).parse()
