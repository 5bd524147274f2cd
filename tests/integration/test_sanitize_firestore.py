"""Each Firestore limit launchq.spec.sanitize relies on, measured on the real Firestore emulator.

For every limit: the largest value that should store does, the next one does not (so the limit
is where the module docstring says), and the sanitised form of the one that did not stores and
reads back as sanitised.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore

from launchq.spec import sanitize

pytestmark = pytest.mark.integration
_ids = itertools.count()


def nest(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = {"a": value}
    return value


def write(db: firestore.Client, fields: dict[str, Any]) -> str:
    """Create a document; "ok" or the name of the exception the real client raised."""
    ref = db.collection("limits").document(f"d{next(_ids)}")
    try:
        ref.create(fields)
    except (gexc.GoogleAPICallError, ValueError, UnicodeEncodeError) as exc:
        return type(exc).__name__
    assert ref.get().to_dict() == fields
    return "ok"


CASES: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    # (name, storable, one step over, the error the client raises for it)
    ("depth", {"f": nest(20)}, {"f": nest(21)}, "InvalidArgument"),
    ("depth via array", {"f": [nest(19)]}, {"f": [nest(20)]}, "InvalidArgument"),
    ("reserved name", {"p": {"___": 1}}, {"p": {"__x__": 1}}, "InvalidArgument"),
    ("reserved top-level name", {"___": 1}, {"_____": 1}, "InvalidArgument"),
    ("empty name", {"p": {" ": 1}}, {"p": {"": 1}}, "ValueError"),
    ("top-level path", {"k" * 1500: 1}, {"k" * 1501: 1}, "InvalidArgument"),
    ("nested path", {"p": {"k" * 1498: 1}}, {"p": {"k" * 1499: 1}}, "InvalidArgument"),
    ("int64", {"p": 2**63 - 1}, {"p": 2**63}, "ValueError"),
    ("negative int64", {"p": -(2**63)}, {"p": -(2**63) - 1}, "ValueError"),
    ("array in array", {"p": [{"a": ["a"]}]}, {"p": [["a"]]}, "InvalidArgument"),
    ("surrogate", {"p": "\U0001f600"}, {"p": "\ud800"}, "UnicodeEncodeError"),
    ("surrogate name", {"\U0001f600": 1}, {"\ud800": 1}, "UnicodeEncodeError"),
]


@pytest.mark.parametrize(("name", "ok", "over", "error"), CASES, ids=[c[0] for c in CASES])
def test_each_limit_is_where_sanitize_puts_it(
    firestore_db: firestore.Client,
    name: str,
    ok: dict[str, Any],
    over: dict[str, Any],
    error: str,
) -> None:
    assert sanitize.clean(ok, level=0).changes == ()
    assert write(firestore_db, ok) == "ok"
    cleaned = sanitize.clean(over, level=0)
    assert cleaned.changed, f"sanitize did not see the {name} limit"
    assert write(firestore_db, over) == error
    assert write(firestore_db, cleaned.value) == "ok"


def test_four_underscores_are_treated_as_reserved_although_the_emulator_stores_them(
    firestore_db: firestore.Client,
) -> None:
    """The documented pattern is `__.*__`, which `____` matches; the emulator only refuses
    `__.+__`. Production is what matters, so sanitize follows the documentation."""
    assert write(firestore_db, {"____": 1}) == "ok"
    assert sanitize.clean({"____": 1}, level=0).changes[0].code == sanitize.RESERVED_NAME


def test_the_document_size_formula_matches_the_1_mib_limit(
    firestore_db: firestore.Client,
) -> None:
    room = sanitize.MAX_DOCUMENT_BYTES
    name = "limits/sized"
    # Two strings (one value may not exceed 1 MiB - 89 bytes on its own).
    overhead = sanitize.document_size(name, {"a": "", "b": ""})
    half = (room - overhead) // 2
    fits = {"a": "x" * half, "b": "y" * (room - overhead - half)}
    assert sanitize.document_size(name, fits) == room
    firestore_db.document(name).create(fits)
    firestore_db.document(name).delete()
    over = {"a": "x" * half, "b": "y" * (room - overhead - half + 1)}
    with pytest.raises(gexc.InvalidArgument, match="maximum entity size"):
        firestore_db.document(name).create(over)
    # Integers take 8 bytes each, whatever their JSON length.
    ints = (room - sanitize.document_size(name, {"a": []})) // 8
    firestore_db.document(name).create({"a": [0] * ints})
    firestore_db.document(name).delete()
    with pytest.raises(gexc.InvalidArgument, match="maximum entity size"):
        firestore_db.document(name).create({"a": [0] * (ints + 1)})


def test_an_untrusted_record_of_the_worst_fields_stores(firestore_db: firestore.Client) -> None:
    worst: dict[str, Any] = {
        "payload": {"__x__": [[10**30]], "": "\ud800", "m": nest(30), "n": [0] * 200_000},
        "error": {"message": "quoted \udfff", "errors": [{"k" * 2000: 1}]},
        "attributes": {"__a__": "v", "k": "x" * 100_000},
        "received_raw": "z" * 50_000,
        "message_id": "m-1",
    }
    record = sanitize.untrusted_record(worst)
    assert {c["code"] for c in record["sanitized"]} >= {
        sanitize.RESERVED_NAME,
        sanitize.EMPTY_NAME,
        sanitize.SURROGATE,
        sanitize.TOO_LARGE,
        sanitize.LONG_NAME,
    }
    assert write(firestore_db, record) == "ok"


def test_the_emulator_does_not_enforce_the_20000_field_limit(
    firestore_db: firestore.Client,
) -> None:
    """Why `sanitize.field_count` exists: production refuses what the emulator stores."""
    wide = {f"k{n}": 0 for n in range(25_000)}
    assert sanitize.field_count({"p": wide}) > sanitize.MAX_FIELDS
    assert write(firestore_db, {"p": wide}) == "ok"
