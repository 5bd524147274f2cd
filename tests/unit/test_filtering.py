"""The shared filter grammar (launchq_local.filtering): tokens, precedence, the tree, positions."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from launchq_local.filtering import (
    AIP160_COMPARATORS,
    And,
    Dialect,
    FieldPath,
    Node,
    Not,
    Or,
    Restriction,
    compile_tree,
    parse,
    rfc3339_us,
    tokenize,
)
from launchq_local.standin.wire import ApiError

AIP160 = Dialect()
LOGGING = Dialect(quotes='"', quoted_segments=True, comparators=("=~", "!~", *AIP160_COMPARATORS))


def shape(node: Node | None) -> object:
    """A tree as nested tuples of restriction sources: easy to write down in a test."""
    if node is None:
        return None
    if isinstance(node, Restriction):
        return f"{node.field.text}{node.comparator}{node.value}"
    if isinstance(node, Not):
        return ("NOT", shape(node.operand))
    return (type(node).__name__.upper(), *(shape(operand) for operand in node.operands))


def error(source: str, dialect: Dialect = AIP160) -> str:
    with pytest.raises(ApiError) as caught:
        parse(source, dialect)
    assert caught.value.status == "INVALID_ARGUMENT"
    assert caught.value.http == 400
    assert caught.value.violations[0].field == "filter"
    assert caught.value.message.startswith("Invalid filter: ")
    return caught.value.message.removeprefix("Invalid filter: ")


@pytest.mark.parametrize("dialect", [AIP160, LOGGING], ids=["aip160", "logging"])
@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("", None),
        (" \n\t", None),
        ("a=1", "a=1"),
        ("a=1 b=2", ("AND", "a=1", "b=2")),
        ("a=1 AND b=2", ("AND", "a=1", "b=2")),
        ("a=1\nb=2", ("AND", "a=1", "b=2")),
        # An explicit AND and juxtaposition are one conjunction, not nested ones.
        ("a=1 b=2 AND c=3 d=4", ("AND", "a=1", "b=2", "c=3", "d=4")),
        # OR binds tighter than AND (AIP-160 and the Logging language agree; SQL does not).
        ("a=1 AND b=2 OR c=3", ("AND", "a=1", ("OR", "b=2", "c=3"))),
        ("a=1 OR b=2 c=3 OR d=4", ("AND", ("OR", "a=1", "b=2"), ("OR", "c=3", "d=4"))),
        ("(a=1 AND b=2) OR c=3", ("OR", ("AND", "a=1", "b=2"), "c=3")),
        # NOT binds tighter than OR, and applies to one simple.
        ("NOT a=1 OR b=2", ("OR", ("NOT", "a=1"), "b=2")),
        ("-a=1 b=2", ("AND", ("NOT", "a=1"), "b=2")),
        ("NOT (a=1 OR b=2)", ("NOT", ("OR", "a=1", "b=2"))),
        ("NOT(a=1)", ("NOT", "a=1")),
        ("((a=1))", "a=1"),
        # After a comparator, keywords, '-' and operator characters are value text.
        ("a=AND", "a=AND"),
        ("a=-1", "a=-1"),
        ("t>=2025-05-18T12:00:00Z", "t>=2025-05-18T12:00:00Z"),
        ("a=b=c", "a=b=c"),
        ("a = b", "a=b"),
        ("run_id=r-1", "run_id=r-1"),
    ],
)
def test_tree(source: str, expected: object, dialect: Dialect) -> None:
    assert shape(parse(source, dialect)) == expected


def test_restriction_carries_its_field_path_comparator_value_and_position() -> None:
    tree = parse('  labels.team = "vi sion"', AIP160)
    assert tree == Restriction(FieldPath("labels.team", ("labels", "team")), "=", "vi sion", 2)


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ('a="x y"', "x y"),
        ("a='x y'", "x y"),
        ('a="it\'s"', "it's"),
        ("a='say \"hi\"'", 'say "hi"'),
        ('a="back\\"slash\\\\"', 'back"slash\\'),
        ('a=""', ""),
        ('a="AND"', "AND"),
    ],
)
def test_aip160_values_may_be_double_or_single_quoted(source: str, value: str) -> None:
    tree = parse(source, AIP160)
    assert isinstance(tree, Restriction)
    assert tree.value == value


def test_logging_quotes_only_with_double_quotes() -> None:
    tree = parse("a='x'", LOGGING)
    assert isinstance(tree, Restriction)
    assert tree.value == "'x'"
    assert error("a='x y'", LOGGING) == 'expected a comparator after "y\'" at position 5'


def test_logging_field_paths_may_hold_quoted_segments() -> None:
    tree = parse('labels."ml.googleapis.com/task_name"="workerpool0-0"', LOGGING)
    assert isinstance(tree, Restriction)
    assert tree.field.text == 'labels."ml.googleapis.com/task_name"'
    assert tree.field.segments == ("labels", "ml.googleapis.com/task_name")
    assert tree.field.key_after("labels") == "ml.googleapis.com/task_name"
    assert tree.value == "workerpool0-0"
    # In AIP-160 the quote ends the field name, so a comparator is missing.
    assert (
        error('labels."a.b"="x"', AIP160) == "expected a comparator after 'labels.' at position 0"
    )


def test_logging_tokenizes_regex_comparators_so_they_can_be_refused() -> None:
    tree = parse('textPayload=~"lo+s"', LOGGING)
    assert isinstance(tree, Restriction)
    assert (tree.comparator, tree.value) == ("=~", "lo+s")
    # AIP-160 has no `=~`: the '~' is the start of a bare value.
    tree = parse('display_name=~"x"', AIP160)
    assert isinstance(tree, Restriction)
    assert (tree.comparator, tree.value) == ("=", '~"x"')


@pytest.mark.parametrize(
    ("path", "prefix", "key"),
    [
        ("labels.team", ("labels",), "team"),
        ("labels.a.b", ("labels",), "a.b"),
        ("labels..", ("labels",), "."),
        ("labels.", ("labels",), None),
        ("labels", ("labels",), None),
        ("labelsx.a", ("labels",), None),
        ("resource.labels.job_id", ("resource", "labels"), "job_id"),
        ("resource.labels.job_id", ("labels",), None),
    ],
)
def test_key_after(path: str, prefix: tuple[str, ...], key: str | None) -> None:
    [token] = tokenize(path, AIP160)
    assert FieldPath(token.text, token.segments).key_after(*prefix) == key


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("a", "expected a comparator after 'a' at position 0"),
        ("a b=1", "expected a comparator after 'a' at position 0"),
        ("a=", "unexpected end of filter"),
        ("a=1 AND", "unexpected end of filter"),
        ("NOT", "unexpected end of filter"),
        ("(a=1", "unexpected end of filter"),
        ("a=1)", "unexpected ')' at position 3"),
        ("(a=1 'x'", "expected ')' at position 5, found 'x'"),
        ("a=1 'x'", "unexpected 'x' at position 4"),
        ("()", "expected a field name at position 1, found ')'"),
        ("AND a=1", "expected a field name at position 0, found 'AND'"),
        ("a=1 OR OR b=1", "expected a field name at position 7, found 'OR'"),
        ("NOT NOT a=1", "expected a field name at position 4, found 'NOT'"),
        ('"a"=1', "expected a field name at position 0, found 'a'"),
        ("a==1", "expected a value at position 2, found '='"),
        ("a=(", "expected a value at position 2, found '('"),
        ("!a=1", "unexpected character '!' at position 0"),
        ("a=1 b!", "unexpected character '!' at position 5"),
        ("a='open", "unterminated string starting at position 2"),
        ('a="open\\"', "unterminated string starting at position 2"),
        # Keywords are case-sensitive: a lower-case `and` is a field name without a comparator.
        ("a=1 and b=2", "expected a comparator after 'and' at position 4"),
        ("a=1 or b=2", "expected a comparator after 'or' at position 4"),
    ],
)
def test_syntax_errors_name_the_position(source: str, message: str) -> None:
    assert error(source) == message


def test_logging_errors_name_positions_past_quoted_segments() -> None:
    assert (
        error('labels."a b" x', LOGGING)
        == "expected a comparator after 'labels.\"a b\"' at position 0"
    )
    assert error('labels."a b"=1 )', LOGGING) == "unexpected ')' at position 15"
    assert error('labels."open=1', LOGGING) == "unterminated string starting at position 7"


def test_compile_tree_evaluates_and_or_not_and_checks_restrictions_left_to_right() -> None:
    seen: list[str] = []

    def restriction(node: Restriction) -> Callable[[str], bool]:
        """`NAME=yes` matches the subject NAME, `NAME=no` every other subject."""
        seen.append(node.field.text)
        wanted = node.value == "yes"
        return lambda subject: (subject == node.field.text) is wanted

    def matches(source: str, subject: str) -> bool:
        return compile_tree(parse(source, AIP160), restriction)(subject)

    assert matches("", "anything")
    assert matches("a=yes OR b=yes", "b")
    assert not matches("a=yes b=yes", "b")
    assert matches("NOT a=yes", "b")
    assert not matches("a=no AND b=no OR a=yes", "a")
    seen.clear()
    compile_tree(parse("a=1 (b=1 OR NOT c=1) d=1", AIP160), restriction)
    assert seen == ["a", "b", "c", "d"]


def test_trees_are_hashable_values() -> None:
    tree = parse("a=1 OR NOT b=2 c=3", AIP160)
    assert isinstance(tree, And)
    assert isinstance(tree.operands[0], Or)
    assert tree == parse("a=1 OR NOT b=2 c=3", LOGGING)
    assert hash(tree) == hash(parse("a=1 OR NOT b=2 c=3", AIP160))
    # The same meaning written elsewhere in the source is another tree: positions differ.
    assert tree != parse(" a=1 OR NOT b=2 c=3", AIP160)


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("1970-01-01T00:00:01Z", 1_000_000),
        ("1970-01-01T00:00:01.5Z", 1_500_000),
        ("1970-01-01T00:00:01.123456789Z", 1_123_456),
        ("1970-01-01T00:00:01z", 1_000_000),
        ("1970-01-01T02:00:00+02:00", 0),
        ("1969-12-31T23:59:59Z", -1_000_000),
    ],
)
def test_rfc3339_us(text: str, micros: int) -> None:
    assert rfc3339_us(text) == micros


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("yesterday", "'yesterday' is not an RFC 3339 timestamp"),
        ("2025-05-18T12:00:00", "has no UTC offset"),
        ("2025-05-18", "has no UTC offset"),
    ],
)
def test_rfc3339_us_rejects(text: str, fragment: str) -> None:
    with pytest.raises(ApiError) as caught:
        rfc3339_us(text)
    assert fragment in caught.value.message
