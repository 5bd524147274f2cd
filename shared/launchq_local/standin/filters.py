"""The ListCustomJobs `filter` language: an AIP-160 subset, parsed by recursive descent.

Why hand-written: no maintained AIP-160 implementation for Python turned up (the ones found are
Go and Rust crates), the subset Vertex documents for CustomJob is small, and a ~250-line parser
with exact error positions beats a grammar dependency for a test tool.

Grammar (AIP-160, https://google.aip.dev/assets/misc/ebnf-filtering.txt), keywords
case-sensitive::

    expression  = sequence { "AND" sequence }
    sequence    = factor { factor }            # juxtaposition means AND (exact-match services)
    factor      = term { "OR" term }
    term        = [ "NOT" | "-" ] simple
    simple      = restriction | "(" expression ")"
    restriction = member comparator value

So precedence is NOT > OR > AND: `a AND b OR c` means `a AND (b OR c)`. That is AIP-160's rule
(OR binds tighter than AND), the opposite of SQL and most programming languages.

Fields (snake_case or camelCase): `display_name` (=, !=, `:` glob with `*`), `state` (=, !=,
a JobState name), `create_time` (=, !=, <, <=, >, >=, RFC 3339), `labels.KEY` (=, !=, `:*`
exists, `:value` equals). Values may be quoted ("..." or '...') or bare. Anything else is a 400.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from launchq_local.standin.lifecycle import STATE_NAMES
from launchq_local.standin.wire import ApiError, invalid_argument

_COMPARATORS = ("<=", ">=", "!=", "=", "<", ">", ":")
_KEYWORDS = {"AND", "OR", "NOT"}
_BARE_STOP = set(" \t\r\n()=!<>:\"'")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Subject:
    """What a filter sees of a job (built once per job per List call)."""

    display_name: str
    state: str
    create_time_us: int
    labels: Mapping[str, str]


Predicate = Callable[[Subject], bool]


@dataclass(frozen=True)
class Token:
    kind: str  # "(" ")" AND OR NOT - CMP TEXT STRING
    text: str
    pos: int


def _error(message: str) -> ApiError:
    return invalid_argument("filter", f"Invalid filter: {message}")


class _Lexer:
    """Context-sensitive: right after a comparator a bare value may contain ':' (timestamps)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.pos = 0
        self.tokens: list[Token] = []

    def run(self) -> list[Token]:
        while self._skip_ws():
            self.tokens.append(self._next())
        return self.tokens

    def _skip_ws(self) -> bool:
        while self.pos < len(self.source) and self.source[self.pos].isspace():
            self.pos += 1
        return self.pos < len(self.source)

    def _next(self) -> Token:
        src, start = self.source, self.pos
        char = src[start]
        if char in "()":
            self.pos += 1
            return Token(char, char, start)
        for op in _COMPARATORS:
            if src.startswith(op, start):
                self.pos += len(op)
                return Token("CMP", op, start)
        if char in "\"'":
            return self._string(char)
        if char == "-" and (not self.tokens or self.tokens[-1].kind != "CMP"):
            self.pos += 1
            return Token("-", "-", start)
        after_cmp = bool(self.tokens) and self.tokens[-1].kind == "CMP"
        stop = set(" \t\r\n()") if after_cmp else _BARE_STOP
        while self.pos < len(src) and src[self.pos] not in stop:
            self.pos += 1
        if self.pos == start:
            raise _error(f"unexpected character {char!r} at position {start}")
        text = src[start : self.pos]
        kind = text if text in _KEYWORDS and not after_cmp else "TEXT"
        return Token(kind, text, start)

    def _string(self, quote: str) -> Token:
        start, out = self.pos, []
        self.pos += 1
        while self.pos < len(self.source):
            char = self.source[self.pos]
            if char == "\\" and self.pos + 1 < len(self.source):
                out.append(self.source[self.pos + 1])
                self.pos += 2
                continue
            self.pos += 1
            if char == quote:
                return Token("STRING", "".join(out), start)
            out.append(char)
        raise _error(f"unterminated string starting at position {start}")


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.index = 0

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, kind: str | None = None) -> Token:
        token = self.peek()
        if token is None:
            raise _error("unexpected end of filter")
        if kind is not None and token.kind != kind:
            raise _error(f"expected {kind} at position {token.pos}, found {token.text!r}")
        self.index += 1
        return token

    def parse(self) -> Predicate:
        predicate = self.expression()
        token = self.peek()
        if token is not None:
            raise _error(f"unexpected {token.text!r} at position {token.pos}")
        return predicate

    def expression(self) -> Predicate:
        parts = [self.sequence()]
        while (token := self.peek()) is not None and token.kind == "AND":
            self.take()
            parts.append(self.sequence())
        return _all(parts)

    def sequence(self) -> Predicate:
        parts = [self.factor()]
        while (token := self.peek()) is not None and token.kind in ("(", "NOT", "-", "TEXT"):
            parts.append(self.factor())
        return _all(parts)

    def factor(self) -> Predicate:
        parts = [self.term()]
        while (token := self.peek()) is not None and token.kind == "OR":
            self.take()
            parts.append(self.term())
        return _any(parts)

    def term(self) -> Predicate:
        token = self.peek()
        if token is not None and token.kind in ("NOT", "-"):
            self.take()
            inner = self.simple()
            return lambda s: not inner(s)
        return self.simple()

    def simple(self) -> Predicate:
        token = self.take()
        if token.kind == "(":
            inner = self.expression()
            self.take(")")
            return inner
        if token.kind != "TEXT":
            raise _error(f"expected a field name at position {token.pos}, found {token.text!r}")
        op = self.peek()
        if op is None or op.kind != "CMP":
            raise _error(f"expected a comparator after {token.text!r} at position {token.pos}")
        self.take()
        value = self.take()
        if value.kind not in ("TEXT", "STRING"):
            raise _error(f"expected a value at position {value.pos}, found {value.text!r}")
        return _restriction(token.text, op.text, value.text)


def _all(parts: list[Predicate]) -> Predicate:
    if len(parts) == 1:
        return parts[0]
    return lambda s: all(p(s) for p in parts)


def _any(parts: list[Predicate]) -> Predicate:
    if len(parts) == 1:
        return parts[0]
    return lambda s: any(p(s) for p in parts)


def _restriction(member: str, op: str, value: str) -> Predicate:
    if member in ("display_name", "displayName"):
        return _display_name(op, value)
    if member == "state":
        return _state(op, value)
    if member in ("create_time", "createTime"):
        return _create_time(op, value)
    if member.startswith("labels.") and len(member) > len("labels."):
        return _label(member[len("labels.") :], op, value)
    raise _error(f"unsupported field {member!r}")


def _unsupported(member: str, op: str) -> ApiError:
    return _error(f"operator {op!r} is not supported for {member}")


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
    raise _unsupported("display_name", op)


def _state(op: str, value: str) -> Predicate:
    if value not in STATE_NAMES:
        raise _error(f"{value!r} is not a JobState (e.g. JOB_STATE_RUNNING)")
    if op == "=":
        return lambda s: s.state == value
    if op == "!=":
        return lambda s: s.state != value
    raise _unsupported("state", op)


def parse_rfc3339_us(text: str) -> int:
    """Microseconds since the epoch; the offset is mandatory, as RFC 3339 says."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _error(f"{text!r} is not an RFC 3339 timestamp") from None
    if moment.tzinfo is None:
        raise _error(f"{text!r} has no UTC offset (RFC 3339 needs 'Z' or '+hh:mm')")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_TIME_OPS: dict[str, Callable[[int, int], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _create_time(op: str, value: str) -> Predicate:
    compare = _TIME_OPS.get(op)
    if compare is None:
        raise _unsupported("create_time", op)
    bound = parse_rfc3339_us(value)
    return lambda s: compare(s.create_time_us, bound)


def _label(key: str, op: str, value: str) -> Predicate:
    if op == ":" and value == "*":
        return lambda s: key in s.labels
    if op in ("=", ":"):
        return lambda s: s.labels.get(key) == value
    if op == "!=":
        return lambda s: s.labels.get(key) != value
    raise _unsupported(f"labels.{key}", op)


def compile_filter(source: str) -> Predicate:
    """Parse `source` into a predicate over `Subject`; an empty filter matches everything."""
    tokens = _Lexer(source).run()
    if not tokens:
        return lambda _s: True
    return _Parser(tokens).parse()
