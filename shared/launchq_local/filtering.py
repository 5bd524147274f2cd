"""The filter grammar the local stand-ins share: AIP-160's boolean structure, parsed once.

Why hand-written: no maintained AIP-160 implementation for Python turned up (the ones found are
Go and Rust crates), and no Python implementation of the Cloud Logging query language exists
(the service parses it server-side). The subsets Vertex documents for CustomJob and that job
logs need are small, and a ~250-line parser with exact error positions beats a grammar
dependency for a test tool.

What this module owns: the tokens, the recursive-descent parser, the typed tree it produces
(`Restriction`, `And`, `Or`, `Not`), the 400 `invalid_argument` errors with positions, compiling
a tree to a predicate, and the value types both stand-ins read (RFC 3339 instants, ordered
comparators). What it does not own: which fields exist, which comparators each field allows, how
a value is typed for a field, and what a restriction matches. Each stand-in supplies those:
`launchq_local.standin.filters` (Vertex ListCustomJobs) and `launchq_local.logging_standin.query`
(Cloud Logging `entries.list`).

Grammar (AIP-160, https://google.aip.dev/assets/misc/ebnf-filtering.txt), keywords
case-sensitive in both languages::

    expression  = sequence { "AND" sequence }
    sequence    = factor { factor }            # juxtaposition (or a newline) means AND
    factor      = term { "OR" term }
    term        = [ "NOT" | "-" ] simple
    simple      = restriction | "(" expression ")"
    restriction = member comparator value

So precedence is NOT > OR > AND: `a AND b OR c` means `a AND (b OR c)`. That is AIP-160's rule
and the Logging query language's (OR binds tighter than AND), the opposite of SQL and most
programming languages. An explicit AND and juxtaposition mean the same, so the parser folds
`expression` and `sequence` into one `And` node.

Where the two languages differ, a `Dialect` says so: which characters quote a string (Vertex
takes "..." and '...', Logging only "..."), whether a field path may hold quoted segments
(Logging's labels."ml.googleapis.com/task_name"), and which comparators exist (Logging's regex
`=~` and `!~` are tokens, so a stand-in can refuse them by name).

Tokens are context-sensitive: right after a comparator a bare value may contain ':' and the
other operator characters (timestamps), and AND/OR/NOT there are values, not keywords.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeAlias, TypeVar

from launchq_local.standin.wire import ApiError, invalid_argument

T = TypeVar("T")

AIP160_COMPARATORS: tuple[str, ...] = ("<=", ">=", "!=", "=", "<", ">", ":")
KEYWORDS = frozenset({"AND", "OR", "NOT"})
# Before a comparator these end a bare word (`labels.team=x`); after one they are value text.
_OPERATOR_CHARS = frozenset("=!<>:")
_TERM_STARTS = frozenset({"(", "NOT", "-", "WORD"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FRACTION = re.compile(r"\.(\d+)")


@dataclass(frozen=True)
class Dialect:
    """What one filter language adds to, or takes from, the shared grammar."""

    quotes: str = "\"'"
    """Characters that open (and close) a quoted string."""
    quoted_segments: bool = False
    """Whether a bare word may hold quoted segments: `labels."a.b/c"` is (labels, a.b/c)."""
    comparators: tuple[str, ...] = AIP160_COMPARATORS
    """Longest first where one is a prefix of another ("<=" before "<")."""


def filter_error(message: str) -> ApiError:
    """The 400 every malformed or unsupported filter gets, on the request's `filter` field."""
    return invalid_argument("filter", f"Invalid filter: {message}")


def unsupported_operator(member: str, op: str) -> ApiError:
    return filter_error(f"operator {op!r} is not supported for {member}")


# ---- tokens ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str  # "(" ")" AND OR NOT - CMP WORD STRING
    text: str  # a STRING's content unescaped; a WORD as written
    pos: int
    segments: tuple[str, ...] = ()  # a WORD split at unquoted dots, quoted segments unquoted


def tokenize(source: str, dialect: Dialect) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(source):
        char = source[pos]
        if char.isspace():
            pos += 1
            continue
        after_cmp = bool(tokens) and tokens[-1].kind == "CMP"
        if char in "()":
            tokens.append(Token(char, char, pos))
            pos += 1
            continue
        op = next((op for op in dialect.comparators if source.startswith(op, pos)), None)
        if op is not None:
            tokens.append(Token("CMP", op, pos))
            pos += len(op)
            continue
        if char in dialect.quotes:
            text, end = _string(source, pos)
            tokens.append(Token("STRING", text, pos))
            pos = end
            continue
        if char == "-" and not after_cmp:
            tokens.append(Token("-", char, pos))
            pos += 1
            continue
        token, pos = _word(source, pos, dialect, after_cmp=after_cmp)
        tokens.append(token)
    return tokens


def _word(source: str, start: int, dialect: Dialect, *, after_cmp: bool) -> tuple[Token, int]:
    pos = start
    written: list[str] = []
    segments: list[str] = []
    segment: list[str] = []
    while pos < len(source) and not source[pos].isspace() and source[pos] not in "()":
        char = source[pos]
        if char in dialect.quotes:
            if dialect.quoted_segments:
                text, pos = _string(source, pos)
                written.append(f"{char}{text}{char}")
                segment.append(text)
                continue
            if not after_cmp:
                break
        elif char in _OPERATOR_CHARS and not after_cmp:
            break
        if char == ".":
            segments.append("".join(segment))
            segment = []
        else:
            segment.append(char)
        written.append(char)
        pos += 1
    if pos == start:
        raise filter_error(f"unexpected character {source[start]!r} at position {start}")
    text = "".join(written)
    kind = text if text in KEYWORDS and not after_cmp else "WORD"
    return Token(kind, text, start, (*segments, "".join(segment))), pos


def _string(source: str, start: int) -> tuple[str, int]:
    """The content of the string opening at `start` (a backslash escapes any character)."""
    quote, pos, out = source[start], start + 1, []
    while pos < len(source):
        char = source[pos]
        if char == "\\" and pos + 1 < len(source):
            out.append(source[pos + 1])
            pos += 2
            continue
        if char == quote:
            return "".join(out), pos + 1
        out.append(char)
        pos += 1
    raise filter_error(f"unterminated string starting at position {start}")


# ---- the tree -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldPath:
    text: str  # as written, quoted segments with their quotes: labels."ml.googleapis.com/x"
    segments: tuple[str, ...]  # ("labels", "ml.googleapis.com/x")

    def key_after(self, *prefix: str) -> str | None:
        """What follows `prefix` as one key (`labels.a.b` after labels is "a.b"), or None when
        the path does not start with `prefix` or nothing follows it."""
        n = len(prefix)
        if self.segments[:n] != prefix or len(self.segments) <= n:
            return None
        return ".".join(self.segments[n:]) or None


@dataclass(frozen=True)
class Restriction:
    field: FieldPath
    comparator: str
    value: str  # unquoted; a bare value as written
    pos: int  # where the field starts in the source


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]  # at least two


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]  # at least two


@dataclass(frozen=True)
class Not:
    operand: Node


Node: TypeAlias = Restriction | And | Or | Not


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.index = 0

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise filter_error("unexpected end of filter")
        self.index += 1
        return token

    def parse(self) -> Node:
        node = self.expression()
        token = self.peek()
        if token is not None:
            raise filter_error(f"unexpected {token.text!r} at position {token.pos}")
        return node

    def expression(self) -> Node:
        """Sequences joined by AND, and the factors of each sequence, as one conjunction."""
        parts = [self.factor()]
        while (token := self.peek()) is not None:
            if token.kind == "AND":
                self.take()
            elif token.kind not in _TERM_STARTS:
                break
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def factor(self) -> Node:
        parts = [self.term()]
        while (token := self.peek()) is not None and token.kind == "OR":
            self.take()
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def term(self) -> Node:
        token = self.peek()
        if token is not None and token.kind in ("NOT", "-"):
            self.take()
            return Not(self.simple())
        return self.simple()

    def simple(self) -> Node:
        token = self.take()
        if token.kind == "(":
            inner = self.expression()
            close = self.take()
            if close.kind != ")":
                raise filter_error(f"expected ')' at position {close.pos}, found {close.text!r}")
            return inner
        if token.kind != "WORD":
            raise filter_error(
                f"expected a field name at position {token.pos}, found {token.text!r}"
            )
        op = self.peek()
        if op is None or op.kind != "CMP":
            # A bare word is a global text search in Logging, a bare value in AIP-160: neither
            # is supported.
            raise filter_error(
                f"expected a comparator after {token.text!r} at position {token.pos}"
            )
        self.take()
        value = self.take()
        if value.kind not in ("WORD", "STRING"):
            raise filter_error(f"expected a value at position {value.pos}, found {value.text!r}")
        return Restriction(FieldPath(token.text, token.segments), op.text, value.text, token.pos)


def parse(source: str, dialect: Dialect) -> Node | None:
    """The tree of `source`, or None for an empty (all-whitespace) filter."""
    tokens = tokenize(source, dialect)
    return _Parser(tokens).parse() if tokens else None


# ---- compiling ------------------------------------------------------------------------------


def compile_tree(
    tree: Node | None, restriction: Callable[[Restriction], Callable[[T], bool]]
) -> Callable[[T], bool]:
    """A predicate for `tree` (None matches everything). `restriction` types and checks each
    restriction, left to right, and raises `filter_error` for what its language lacks."""
    if tree is None:
        return lambda _subject: True
    return _compile(tree, restriction)


def _compile(
    node: Node, restriction: Callable[[Restriction], Callable[[T], bool]]
) -> Callable[[T], bool]:
    if isinstance(node, Restriction):
        return restriction(node)
    if isinstance(node, Not):
        inner = _compile(node.operand, restriction)
        return lambda subject: not inner(subject)
    parts = tuple(_compile(operand, restriction) for operand in node.operands)
    if isinstance(node, And):
        return lambda subject: all(part(subject) for part in parts)
    return lambda subject: any(part(subject) for part in parts)


# ---- values ---------------------------------------------------------------------------------

ORDERED: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
"""The comparators of an ordered value (a time, a level, a string), by token."""


def rfc3339_us(text: str) -> int:
    """Microseconds since the epoch. Up to nanoseconds (truncated to microseconds), 'Z' or 'z';
    the offset is mandatory, as RFC 3339 says."""
    normalized = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)
    try:
        moment = datetime.fromisoformat(normalized.replace("z", "Z"))
    except ValueError:
        raise filter_error(f"{text!r} is not an RFC 3339 timestamp") from None
    if moment.tzinfo is None:
        raise filter_error(f"{text!r} has no UTC offset (RFC 3339 needs 'Z' or '+hh:mm')")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
