"""launchq.spec.sanitize: untrusted JSON made storable, every change reported with its path."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from launchq.spec import sanitize
from launchq.spec.sanitize import (
    ARRAY_KEY,
    EMPTY_NAME,
    INT_RANGE,
    LONG_NAME,
    MAX_DEPTH,
    MAX_FIELD_PATH_BYTES,
    NESTED_ARRAY,
    RESERVED_NAME,
    SURROGATE,
    TOO_DEEP,
    TOO_LARGE,
)


def nest(levels: int, leaf: Any = "x") -> Any:
    value = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


def depth(value: Any) -> int:
    """Containers nested in `value` (a scalar is 0, `{}` is 1)."""
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def storable_problems(value: Any, path_bytes: int = 0, top: bool = True) -> list[str]:
    """An independent statement of Firestore's rules (see the module docstring), for checking."""
    problems: list[str] = []
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return problems
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            problems.append(f"int {value}")
    elif isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            problems.append("surrogate")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                problems.append("empty name")
                continue
            if len(key) >= 4 and key.startswith("__") and key.endswith("__"):
                problems.append(f"reserved {key}")
            try:
                key_bytes = len(key.encode("utf-8"))
            except UnicodeEncodeError:
                problems.append("surrogate name")
                key_bytes = len(key)
            own = path_bytes + (0 if top else 1) + key_bytes
            if own > MAX_FIELD_PATH_BYTES:
                problems.append("long path")
            problems += storable_problems(item, own, top=False)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, list):
                problems.append("array in array")
            problems += storable_problems(item, path_bytes, top=False)
    else:
        problems.append(f"type {type(value).__name__}")
    return problems


def test_storable_values_pass_unchanged() -> None:
    value = {"a": [1, "two", 3.5, None, True, {"b": -(2**63)}], "c": {"d": 2**63 - 1}, "__": 1}
    result = sanitize.clean(value)
    assert result.value == value
    assert result.changes == ()
    assert not result.changed


@pytest.mark.parametrize(
    ("value", "path", "code", "stored"),
    [
        ({"__x__": 1}, "__x__", RESERVED_NAME, {"~__x__": 1}),
        ({"m": {"____": 1}}, "m.____", RESERVED_NAME, {"m": {"~____": 1}}),
        ({"": 1}, '""', EMPTY_NAME, {"~": 1}),
        ({"env": {"": "v"}}, 'env.""', EMPTY_NAME, {"env": {"~": "v"}}),
        ({"p": 10**30}, "p", INT_RANGE, {"p": str(10**30)}),
        ({"p": [-(2**63) - 1]}, "p[0]", INT_RANGE, {"p": [str(-(2**63) - 1)]}),
        ({"d": "a\ud800b"}, "d", SURROGATE, {"d": "a\ufffdb"}),
        ({"\udc00": 1}, "\ufffd", SURROGATE, {"\ufffd": 1}),
        ({"command": [["a"]]}, "command[0]", NESTED_ARRAY, {"command": [{ARRAY_KEY: ["a"]}]}),
    ],
)
def test_each_unstorable_value_is_changed_and_reported(
    value: dict[str, Any], path: str, code: str, stored: dict[str, Any]
) -> None:
    result = sanitize.clean(value)
    assert result.value == stored
    assert [(c.path, c.code) for c in result.changes] == [(path, code)]
    assert storable_problems(result.value) == []


def test_an_escaped_name_never_overwrites_an_existing_one() -> None:
    result = sanitize.clean({"__x__": 1, "~__x__": 2, "": 3, "~": 4})
    assert sorted(result.value.values()) == [1, 2, 3, 4]
    assert set(result.value) == {"~__x__", "~~__x__", "~", "~~"}


def test_nesting_is_cut_at_firestores_depth_with_a_text_of_the_rest() -> None:
    result = sanitize.clean({"m": nest(25)}, level=0)  # a document's fields
    assert depth(result.value) == MAX_DEPTH + 1  # the document's own level plus 20
    assert [c.code for c in result.changes] == [TOO_DEEP]
    assert result.changes[0].path == "m" + ".a" * MAX_DEPTH
    innermost: Any = result.value["m"]
    for _ in range(MAX_DEPTH):
        innermost = innermost["a"]
    assert json.loads(innermost) == nest(5)  # what was cut is kept, as JSON text


def test_exactly_twenty_levels_are_kept() -> None:
    assert sanitize.clean({"m": nest(MAX_DEPTH)}, level=0).changes == ()
    assert sanitize.clean({"m": nest(MAX_DEPTH + 1)}, level=0).changes[0].code == TOO_DEEP
    # As a field's value (level 1, the default) the map itself is the first level.
    assert sanitize.clean(nest(MAX_DEPTH)).changes == ()
    assert sanitize.clean(nest(MAX_DEPTH + 1)).changes[0].code == TOO_DEEP


def test_a_deep_value_can_be_cleaned_without_recursing_through_it() -> None:
    deep: Any = "x"
    for _ in range(50_000):
        deep = [deep]
    result = sanitize.clean({"m": deep})
    assert storable_problems(result.value) == []
    assert {c.code for c in result.changes} == {NESTED_ARRAY, TOO_DEEP}


def test_field_paths_longer_than_firestore_allows_are_cut_but_stay_distinct() -> None:
    long_a, long_b = "k" * 1600 + "a", "k" * 1600 + "b"
    result = sanitize.clean({"p": {long_a: 1, long_b: 2}})
    names = list(result.value["p"])
    assert len(names) == 2
    assert all(len(f"p.{name}".encode()) <= MAX_FIELD_PATH_BYTES for name in names)
    assert [c.code for c in result.changes] == [LONG_NAME, LONG_NAME]


def test_the_path_a_value_is_stored_under_counts() -> None:
    name = "k" * (MAX_FIELD_PATH_BYTES - len("payload."))
    assert sanitize.clean({name: 1}, under="payload").changes == ()
    assert sanitize.clean({name + "k": 1}, under="payload").changes[0].code == LONG_NAME


def test_a_value_over_its_budget_becomes_a_text_that_fits() -> None:
    result = sanitize.clean({"a": "x" * 5000}, "payload", max_bytes=1000)
    assert isinstance(result.value, str)
    assert sanitize.firestore_size(result.value) <= 1000
    assert result.value.startswith('{"a": "xxx')
    assert [(c.path, c.code) for c in result.changes] == [("payload", TOO_LARGE)]


def test_firestore_size_follows_the_documented_rules() -> None:
    assert sanitize.firestore_size("abc") == 4
    assert sanitize.firestore_size("é") == 3
    assert sanitize.firestore_size(7) == 8
    assert sanitize.firestore_size(1.5) == 8
    assert sanitize.firestore_size(None) == 1
    assert sanitize.firestore_size(True) == 1
    assert sanitize.firestore_size({"ab": [1, "x"]}) == 3 + 8 + 2
    # items/d1: "items" + 1, "d1" + 1, + 16; the fields; + 32
    assert sanitize.document_size("items/d1", {"s": "xy"}) == (6 + 3 + 16) + (2 + 3) + 32


def test_text_replaces_surrogates_and_cuts_on_a_character_boundary() -> None:
    assert sanitize.text("a\ud800") == "a\ufffd"
    assert sanitize.text("ééé", 5) == "éé"


def test_untrusted_record_lists_what_changed() -> None:
    record = sanitize.untrusted_record(
        {"payload": {"__x__": 1}, "error": {"message": "bad \ud800"}, "message_id": "m"}
    )
    assert record["payload"] == {"~__x__": 1}
    assert record["error"] == {"message": "bad \ufffd"}
    assert [(c["path"], c["code"]) for c in record["sanitized"]] == [
        ("payload.__x__", RESERVED_NAME),
        ("error.message", SURROGATE),
    ]
    assert "sanitized" not in sanitize.untrusted_record({"payload": {"ok": 1}})


def test_untrusted_record_stays_under_the_record_limit() -> None:
    huge = {name: [0] * 200_000 for name in sanitize.FIELD_BYTES}
    record = sanitize.untrusted_record(huge)
    assert sanitize.firestore_size(record) < sanitize.RECORD_BYTES


def test_field_count_counts_every_map_name_at_every_depth() -> None:
    assert sanitize.field_count({}) == 0
    assert sanitize.field_count({"a": 1, "b": "x"}) == 2
    assert sanitize.field_count({"a": {"b": {"c": 1}}}) == 3
    # Names inside maps inside arrays count too (the conservative reading of the limit).
    assert sanitize.field_count({"a": [{"b": 1, "c": 2}, 3, [{"d": 4}]]}) == 4
    assert sanitize.field_count(["x", 1]) == 0


def test_a_value_with_too_many_names_becomes_a_text() -> None:
    wide = {f"k{n}": 0 for n in range(100)}
    cleaned = sanitize.clean(wide, "payload", max_fields=99)
    assert isinstance(cleaned.value, str)
    assert [c.code for c in cleaned.changes] == [sanitize.TOO_MANY_FIELDS]
    assert sanitize.clean(wide, "payload", max_fields=100).value == wide


def test_untrusted_record_stays_under_the_field_limit() -> None:
    wide = {f"k{n}": 0 for n in range(sanitize.MAX_FIELDS)}
    record = sanitize.untrusted_record(dict.fromkeys([*sanitize.FIELD_COUNTS, "x"], wide))
    assert sanitize.field_count(record) < sanitize.RECORD_FIELDS
    codes = {change["code"] for change in record["sanitized"]}
    assert codes == {sanitize.TOO_MANY_FIELDS}
    # A payload within its budget is kept as a map.
    kept = sanitize.untrusted_record({"payload": {f"k{n}": 0 for n in range(10_000)}})
    assert isinstance(kept["payload"], dict)
    assert "sanitized" not in kept


json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.sampled_from(["\ud800", "a\udfffb"])
)
json_names = st.one_of(
    st.text(max_size=6), st.sampled_from(["", "__x__", "____", "~", "\ud800", "k" * 1499])
)
json_values = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(json_names, children, max_size=4)
    ),
    max_leaves=40,
)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(json_values)
def test_whatever_comes_in_is_storable_and_cleaning_twice_changes_nothing(value: Any) -> None:
    first = sanitize.clean({"v": value}, level=0)
    assert storable_problems(first.value) == []
    assert depth(first.value) <= MAX_DEPTH + 1
    again = sanitize.clean(first.value, level=0)
    assert again.changes == ()
    assert again.value == first.value
    # Nothing changed means nothing was reported, and the other way round.
    assert (first.value == {"v": value}) == (not first.changed)


@pytest.mark.parametrize(
    ("item", "path", "code"),
    [
        ({"metadata": {"__x__": 1}}, "metadata.__x__", RESERVED_NAME),
        ({"priority": 10**30}, "priority", INT_RANGE),
        ({"display_name": "\ud800"}, "display_name", SURROGATE),
        ({"metadata": {"a": [[1]]}}, "metadata.a[0]", NESTED_ARRAY),
        ({"metadata": nest(25)}, "metadata" + ".a" * (MAX_DEPTH - 1), TOO_DEEP),
        ({"env": {"": "v"}}, 'env.""', EMPTY_NAME),
    ],
)
def test_an_item_firestore_could_not_store_as_sent_is_invalid(
    item: dict[str, Any], path: str, code: str
) -> None:
    from launchq.spec.item import parse_item
    from launchq.spec.validation import ItemError

    with pytest.raises(ItemError) as info:
        parse_item({"image_uri": "i", **item})
    assert (path, code) in [(issue.path, issue.code) for issue in info.value.issues]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"[" * 100_000, "nested too deeply"),
        (b'{"a": ' + b"1" * 5000 + b"}", "4300 digits"),
        (b"\xff", "not valid JSON"),
    ],
)
def test_parse_item_reports_whatever_the_decoder_raises(raw: bytes, problem: str) -> None:
    from launchq.spec.item import parse_item
    from launchq.spec.validation import ItemError

    with pytest.raises(ItemError, match=problem):
        parse_item(raw)


def test_an_error_quoting_a_huge_value_keeps_its_structure() -> None:
    error = {
        "reason": "invalid_item",
        "message": "command: expected a list, got string 'xxx" + "x" * 300_000 + "'",
        "errors": [{"path": "command", "message": "y" * 300_000}] * 100,
    }
    record = sanitize.untrusted_record({"error": error})
    assert record["error"]["reason"] == "invalid_item"
    assert record["error"]["message"].startswith("command: expected a list")
    assert len(record["error"]["errors"]) == 100
    assert sanitize.firestore_size(record["error"]) <= sanitize.FIELD_BYTES["error"]
    assert TOO_LARGE in {c["code"] for c in record["sanitized"]}
