"""The List filter parser/evaluator, without a server."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from launchq_local.standin.filters import Subject, compile_filter, parse_rfc3339_us
from launchq_local.standin.wire import ApiError

JOB = Subject(
    display_name="train-resnet",
    state="JOB_STATE_RUNNING",
    create_time_us=parse_rfc3339_us("2025-05-18T12:00:00Z"),
    labels={"team": "vision", "run_id": "r-1", "empty": ""},
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ("labels.team=vision", True),
        ('labels.team="vision"', True),
        ("labels.team='vision'", True),
        ("labels.team = vision", True),
        ("labels.team=nlp", False),
        ("labels.run_id=r-1", True),
        ("labels.team:*", True),
        ("labels.missing:*", False),
        ("labels.empty:*", True),
        ('labels.empty=""', True),
        ("labels.team:vision", True),
        ("labels.team!=nlp", True),
        ("labels.missing!=x", True),
        ("state=JOB_STATE_RUNNING", True),
        ('state="JOB_STATE_RUNNING"', True),
        ("state!=JOB_STATE_RUNNING", False),
        ("display_name=train-resnet", True),
        ('displayName="train-resnet"', True),
        ("display_name!=train-resnet", False),
        ('display_name:"train-*"', True),
        ("display_name:*resnet", True),
        ("display_name:*res*", True),
        ("display_name:train", False),  # ':' matches the whole name; use '*' for parts
        ("display_name:train?resnet", False),  # only '*' is a wildcard
        ('create_time="2025-05-18T12:00:00Z"', True),
        ('create_time="2025-05-18T14:00:00+02:00"', True),
        ("create_time>2025-05-18T11:59:59.999999Z", True),
        ('create_time>"2025-05-18T12:00:00Z"', False),
        ('create_time>="2025-05-18T12:00:00Z"', True),
        ('create_time<"2025-05-18T12:00:00.000001Z"', True),
        ('create_time<="2025-05-18T11:00:00Z"', False),
        ('createTime!="2025-05-18T12:00:00Z"', False),
        ("labels.team=vision AND state=JOB_STATE_RUNNING", True),
        ("labels.team=vision AND state=JOB_STATE_FAILED", False),
        ("labels.team=nlp OR state=JOB_STATE_RUNNING", True),
        ("NOT labels.team=nlp", True),
        ("NOT(labels.team=vision)", False),
        ("-labels.team=vision", False),
        ("labels.team=vision labels.run_id=r-1", True),
        ("labels.team=vision labels.run_id=r-2", False),
        # AIP-160: OR binds tighter than AND.  false AND (false OR true) → false
        ("labels.team=nlp AND labels.team=nlp OR labels.team=vision", False),
        # ... whereas SQL precedence would have given (false AND false) OR true → true
        ("(labels.team=nlp AND labels.team=nlp) OR labels.team=vision", True),
        # NOT binds tighter than OR: (NOT true) OR true → true
        ("NOT labels.team=vision OR labels.run_id=r-1", True),
        ("NOT (labels.team=vision OR labels.run_id=r-1)", False),
        ('labels.team="vi\\"sion"', False),
    ],
)
def test_evaluation(text: str, expected: bool) -> None:
    assert compile_filter(text)(JOB) is expected


@pytest.mark.parametrize(
    "text",
    [
        "labels.team",
        "labels.team=",
        "labels.=x",
        "labels=x",
        "owner=me",
        "state=RUNNING",
        "state<JOB_STATE_RUNNING",
        "display_name>a",
        "labels.team>a",
        "create_time:2025-01-01T00:00:00Z",
        "create_time>2025-01-01",
        "create_time>2025-01-01T00:00:00",
        "create_time>soon",
        "(labels.team=vision",
        "labels.team=vision)",
        "()",
        "AND labels.team=vision",
        "labels.team=vision AND",
        "labels.team=vision and state=JOB_STATE_RUNNING",
        "NOT",
        '"quoted"=x',
        "labels.team='unterminated",
        "labels.team=vision OR OR labels.team=x",
    ],
)
def test_invalid_filters_are_invalid_argument(text: str) -> None:
    with pytest.raises(ApiError) as caught:
        compile_filter(text)
    assert caught.value.status == "INVALID_ARGUMENT"
    assert caught.value.http == 400
    assert caught.value.violations[0].field == "filter"


# ---- property: the parser agrees with a reference evaluator of AIP-160 precedence ----------

ATOMS: dict[str, bool] = {
    "labels.team=vision": True,
    "labels.team=nlp": False,
    "state=JOB_STATE_RUNNING": True,
    'display_name:"x*"': False,
}

Tree = tuple[str, ...] | tuple[str, "Tree"] | tuple[str, "Tree", "Tree"]
trees = st.recursive(
    st.sampled_from(sorted(ATOMS)).map(lambda a: ("atom", a)),
    lambda inner: st.one_of(
        st.tuples(st.just("not"), inner),
        st.tuples(st.sampled_from(["and", "or"]), inner, inner),
    ),
    max_leaves=8,
)


def _render(tree: Tree) -> str:
    """Fully parenthesized, so the source's meaning does not depend on precedence."""
    kind = tree[0]
    if kind == "atom":
        return str(tree[1])
    if kind == "not":
        return f"NOT ({_render(tree[1])})"  # type: ignore[arg-type]
    return f"({_render(tree[1])}) {kind.upper()} ({_render(tree[2])})"  # type: ignore[arg-type, misc]


def _truth(tree: Tree) -> bool:
    kind = tree[0]
    if kind == "atom":
        return ATOMS[str(tree[1])]
    if kind == "not":
        return not _truth(tree[1])  # type: ignore[arg-type]
    ops: dict[str, Callable[[bool, bool], bool]] = {
        "and": lambda a, b: a and b,
        "or": lambda a, b: a or b,
    }
    return ops[kind](_truth(tree[1]), _truth(tree[2]))  # type: ignore[arg-type, misc]


@given(trees)
def test_parenthesized_expressions_match_reference(tree: Tree) -> None:
    assert compile_filter(_render(tree))(JOB) is _truth(tree)


@given(st.lists(st.sampled_from(sorted(ATOMS)), min_size=1, max_size=6), st.data())
def test_unparenthesized_or_binds_tighter_than_and(atoms: list[str], data: st.DataObject) -> None:
    """`a AND b OR c ...` groups as AND-of-ORs (AIP-160), whatever the operator mix."""
    ops = [data.draw(st.sampled_from(["AND", "OR"])) for _ in atoms[1:]]
    text = atoms[0] + "".join(f" {op} {atom}" for op, atom in zip(ops, atoms[1:], strict=True))
    groups: list[list[str]] = [[atoms[0]]]
    for op, atom in zip(ops, atoms[1:], strict=True):
        if op == "OR":
            groups[-1].append(atom)
        else:
            groups.append([atom])
    expected = all(any(ATOMS[a] for a in group) for group in groups)
    assert compile_filter(text)(JOB) is expected
