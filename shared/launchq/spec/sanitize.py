"""Untrusted JSON-ish data made into something Firestore always stores, saying what changed.

Everything launchq stores from a Pub/Sub message (the payload, the raw text, the attributes, error
messages that quote the input) goes through `clean`. Before it existed, the dispatcher wrote the
payload as received; a payload Firestore refuses made even the REJECTED record fail, the function
answered 500, and Pub/Sub redelivered the message until it was dead-lettered with no record.

Firestore's limits, each measured against the Firestore emulator (tests/integration/
test_sanitize_firestore.py writes each side of each limit) and matching the documented ones
(cloud.google.com/firestore/quotas, and the REST `Document.fields` reference):

- Field names matching `__.*__` are reserved (`__x__`, `_____`; not `__` or `___`): 400. The
  emulator stores `____`, which the documented pattern matches: it is escaped here all the same.
- Empty field names: the Python client refuses them before sending (ValueError).
- A field *path* (names joined with `.`; array elements add nothing) is at most 1,500 UTF-8
  bytes: `{"p": {"k" * 1498: 1}}` stores, `"k" * 1499` is "an invalid nested entity".
- Maps and arrays nest at most 20 deep counting from a top-level field's value: 20 maps store,
  21 do not. An array cannot hold an array ("Cannot convert an array value in an array value").
- Integers are int64: 2**63 is refused by the client (ValueError: Value out of range).
- Text is UTF-8: a lone surrogate (`"\\ud800"`, valid JSON) fails with UnicodeEncodeError.
- A document is at most 1,048,576 bytes, computed as documented: string = UTF-8 bytes + 1,
  int/double/timestamp 8, bool/null 1, map = its names (bytes + 1) plus values, array = its
  values, plus the document name and 32. Two strings of 524,250 characters store, and 1,048,530
  characters in total do not (the 1 MiB boundary within 6 bytes of the formula); 130,000
  integers store and 131,100 do not (8 bytes each).
- A document holds at most 20,000 fields, every map's names counted at every depth. The
  emulator does not enforce it (`{"p": {"k0": 0, ..., "k24999": 0}}` stores there), so it is
  checked here against the documented figure, counting names inside maps in arrays as well
  (the conservative reading). A 256 KiB message can carry ~43,000 names (`"kN":0,` is 6-8
  bytes), and a new record stores the payload's `metadata` twice (in `payload` and in
  `metadata`), so a valid message could make a record production refuses.

Records are checked whole, not only messages (`RECORD_BYTES` and `RECORD_FIELDS`, used by the
dispatcher): an item is stored once as received and once rendered per pool running
`${image_uri}`, so a message under the 256 KiB limit can make a record over 1 MiB; such records
are REJECTED (`record_too_large`) with the size in the message rather than stored differently
from what is sent, which `body_hash` and the repair's lookup rely on. The sizes measured, and
what the checks cost: docs/performance.md#the-cost-of-storability-checks.

How each is made storable (and reported as a `Change` with the path and a code):
reserved and empty names get a `~` prefix (then more `~` until unique in their map); names too
long for their path are cut, with a hash of the whole name kept so distinct names stay
distinct; integers outside int64 become their decimal text; lone surrogates become U+FFFD;
an array inside an array becomes the map `{"~array": [...]}`; anything deeper than 20 levels,
or larger than a caller's byte limit, becomes a short JSON text of it. Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 20
MAX_FIELD_PATH_BYTES = 1500
MAX_DOCUMENT_BYTES = 1_048_576
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
SUMMARY_BYTES = 1024
"""How much of a replaced value (too deep, too large) is kept, as JSON text."""
ARRAY_KEY = "~array"
RECORD_BYTES = MAX_DOCUMENT_BYTES - 64 * 1024
"""What a new item record's own fields may take. The rest is headroom for what the store adds
(the document name, timestamps, the first history entry) and for every later transition's
history entry, attempt and job details: each is under 1 KiB, so this leaves room for ~60."""
FIELD_BYTES: Mapping[str, int] = {
    "payload": 384 * 1024,
    "error": 256 * 1024,
    "attributes": 64 * 1024,
    "received_raw": 8 * 1024,
}
"""Per-field byte limits of a REJECTED record's untrusted fields (others: `DEFAULT_FIELD_BYTES`).
The payload's is over 256 KiB because a payload under the 256 KiB message limit can take more
stored than sent (an integer is 2 bytes of JSON, 8 stored); together they stay under
`RECORD_BYTES`."""
MAX_FIELDS = 20_000
RECORD_FIELDS = MAX_FIELDS - 1_000
"""What a new item record's own fields may count. History entries (maps in an array, ~8 names
each) and job details come later: 1,000 leaves room for over 100 transitions."""
FIELD_COUNTS: Mapping[str, int] = {"payload": 15_000, "attributes": 200}
"""Per-field name byte limits of a REJECTED record's untrusted fields (others:
`DEFAULT_FIELD_COUNT`): together under `RECORD_FIELDS`. Pub/Sub allows 100 attributes."""
DEFAULT_FIELD_COUNT = 500
DEFAULT_FIELD_BYTES = 16 * 1024
TEXT_BYTES: Mapping[str, int] = {"error": 512}
"""Fields whose every string is cut to this many bytes, so that the field keeps its structure
within its byte limit: an `error` quoting a 200 KiB value in its message, or listing 100 errors,
stays a map whose `reason` a reader can rely on, rather than becoming a text."""
MAX_CHANGES_KEPT = 50

_RESERVED = re.compile(r"__.*__", re.DOTALL)
_ESCAPE = "~"

# Change codes: stable strings a caller or a test can match on.
RESERVED_NAME = "reserved_name"
EMPTY_NAME = "empty_name"
LONG_NAME = "long_name"
INT_RANGE = "int_range"
SURROGATE = "surrogate"
NESTED_ARRAY = "nested_array"
TOO_DEEP = "too_deep"
TOO_LARGE = "too_large"
TOO_MANY_FIELDS = "too_many_fields"
UNSUPPORTED = "unsupported_type"


@dataclass(frozen=True)
class Change:
    """One thing changed to make a value storable: where, why (`code`), and in words."""

    path: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class Sanitized:
    value: Any
    changes: tuple[Change, ...]

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def clean(
    value: Any,
    path: str = "",
    *,
    level: int = 1,
    max_bytes: int | None = None,
    under: str = "",
    max_text_bytes: int | None = None,
    max_fields: int | None = None,
) -> Sanitized:
    """`value` made storable as the value of a Firestore field at `path`.

    `level` is how deep a map or array `value` would sit (1 = the value of a top-level field,
    0 = `value` is a whole document's fields). `max_bytes` bounds its stored size: a larger
    value is replaced by a JSON text of it, cut to fit. `under` is the field path `value` will
    be stored under when `path` (which the changes report) does not include it: it counts
    toward the 1,500 bytes of every field path inside. `max_text_bytes` cuts every string.
    `max_fields` bounds how many field names it holds (`field_count`), the same way.
    """
    changes: list[Change] = []
    walker = _Walker(changes, max_text_bytes)
    prefix = len(under.encode("utf-8")) + 1 if under else 0
    out = walker.value(value, path, prefix + _path_bytes(path), level)
    if max_fields is not None and (count := field_count(out)) > max_fields:
        out = summary(out, SUMMARY_BYTES)
        changes.append(
            Change(
                path, TOO_MANY_FIELDS, f"{count} field names; at most {max_fields} are kept here"
            )
        )
    if max_bytes is not None and firestore_size(out) > max_bytes:
        size = firestore_size(out)
        out = summary(out, max(max_bytes - 1, 0))
        changes.append(
            Change(path, TOO_LARGE, f"{size} bytes when stored; at most {max_bytes} are kept here")
        )
    return Sanitized(out, tuple(changes))


def clean_fields(fields: Mapping[str, Any], limits: Mapping[str, int] = FIELD_BYTES) -> Sanitized:
    """A document's fields made storable, each within its budget (else `DEFAULT_FIELD_BYTES`)."""
    out: dict[str, Any] = {}
    changes: list[Change] = []
    walker = _Walker(changes)
    for raw_name, raw_value in fields.items():
        name = walker.name(raw_name, "", 0, out)
        one = clean(
            raw_value,
            name,
            max_bytes=limits.get(name, DEFAULT_FIELD_BYTES),
            max_text_bytes=TEXT_BYTES.get(name),
            max_fields=FIELD_COUNTS.get(name, DEFAULT_FIELD_COUNT),
        )
        out[name] = one.value
        changes.extend(one.changes)
    return Sanitized(out, tuple(changes))


def untrusted_record(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a record built from untrusted input (a REJECTED item, an unroutable
    message): always storable, and if anything had to change, `sanitized` lists what."""
    checked = clean_fields(fields)
    out = dict(checked.value)
    if checked.changes:
        out["sanitized"] = [change.as_dict() for change in checked.changes[:MAX_CHANGES_KEPT]]
    return out


def text(value: str, max_bytes: int | None = None) -> str:
    """`value` with lone surrogates replaced, cut to at most `max_bytes` UTF-8 bytes."""
    fixed = _fix_text(value)
    if max_bytes is None:
        return fixed
    encoded = fixed.encode("utf-8")
    if len(encoded) <= max_bytes:
        return fixed
    return encoded[:max_bytes].decode("utf-8", errors="ignore")


def summary(value: Any, max_bytes: int = SUMMARY_BYTES) -> str:
    """A JSON text of `value` in at most `max_bytes` bytes (what replaces an unstorable value)."""
    try:
        rendered = json.dumps(value, ensure_ascii=False, default=repr)
    except (RecursionError, ValueError, TypeError):
        rendered = f"<{type(value).__name__} that cannot be shown>"
    return text(rendered, max_bytes)


def firestore_size(value: Any) -> int:
    """Firestore's storage size of a value (documented rules; see the module docstring)."""
    # Exact types first: this runs over every new record (bench/sanitize_cost.py).
    kind = type(value)
    if kind is str:
        return _text_bytes(value) + 1
    if kind is dict:
        return sum(_text_bytes(str(k)) + 1 + firestore_size(v) for k, v in value.items())
    if kind is list:
        return sum(firestore_size(v) for v in value)
    if value is None or kind is bool:
        return 1
    if kind is int or kind is float:
        return 8
    if isinstance(value, str):
        return _text_bytes(value) + 1
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, Mapping):
        return sum(_text_bytes(str(k)) + 1 + firestore_size(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return sum(firestore_size(v) for v in value)
    return 8  # ints and floats of other types, timestamps, references: 8 bytes


def field_count(value: Any) -> int:
    """How many fields Firestore counts in a value: every map name, at every depth."""
    kind = type(value)
    if kind is dict or isinstance(value, Mapping):
        return len(value) + sum(field_count(v) for v in value.values() if _nests(v))
    if kind is list or isinstance(value, tuple):
        return sum(field_count(v) for v in value if _nests(v))
    return 0


def _nests(value: Any) -> bool:
    return isinstance(value, Mapping | list | tuple)


def _text_bytes(value: str) -> int:
    return len(value) if value.isascii() else len(value.encode("utf-8", errors="surrogatepass"))


def document_size(name: str, fields: Mapping[str, Any]) -> int:
    """The stored size of the document at `name` (`items/q~id`) holding `fields`."""
    name_size = sum(len(part.encode("utf-8")) + 1 for part in name.split("/")) + 16
    return name_size + firestore_size(fields) + 32


def _fix_text(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in value)
    return value


def _path_bytes(path: str) -> int:
    return len(path.encode("utf-8", errors="replace"))


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _shown(path: str) -> str:
    """A path as reported: readable length (the path of a long name would be kilobytes)."""
    return path if len(path) <= 200 else f"{path[:197]}..."


@dataclass
class _Walker:
    """One pass over a value: what `clean` returns, with each change recorded in `changes`."""

    changes: list[Change]
    max_text_bytes: int | None = None

    def value(self, value: Any, path: str, path_bytes: int, level: int) -> Any:
        if self.max_text_bytes is not None and isinstance(value, str):
            cut = text(value, self.max_text_bytes)
            if len(cut) < len(value):
                self._note(path, TOO_LARGE, f"text over {self.max_text_bytes} bytes, cut")
                return cut
        if type(value) is str and value.isascii():  # the common case, and always storable
            return value
        if value is None or isinstance(value, bool | float):
            return value
        if isinstance(value, int):
            if INT64_MIN <= value <= INT64_MAX:
                return value
            self._note(path, INT_RANGE, "integer outside the 64-bit range Firestore stores")
            return summary(value, SUMMARY_BYTES)
        if isinstance(value, str):
            fixed = _fix_text(value)
            if fixed is not value:
                self._note(path, SURROGATE, "text with a lone surrogate (not valid Unicode)")
            return fixed
        if isinstance(value, Mapping | list | tuple):
            if level > MAX_DEPTH:
                self._note(
                    path, TOO_DEEP, f"nested deeper than the {MAX_DEPTH} levels Firestore stores"
                )
                return summary(value, SUMMARY_BYTES)
            if isinstance(value, Mapping):
                return self.mapping(value, path, path_bytes, level)
            return self.array(value, path, path_bytes, level)
        self._note(path, UNSUPPORTED, f"a {type(value).__name__} is not a JSON value")
        return summary(value, SUMMARY_BYTES)

    def mapping(
        self, value: Mapping[Any, Any], path: str, path_bytes: int, level: int
    ) -> dict[str, Any] | str:
        out: dict[str, Any] = {}
        room = MAX_FIELD_PATH_BYTES - path_bytes - (1 if path else 0)
        if value and room < 32:  # no name fits under this path: keep the map as text
            self._note(
                path,
                LONG_NAME,
                f"field names too long: a field path is at most {MAX_FIELD_PATH_BYTES} bytes",
            )
            return summary(value, SUMMARY_BYTES)
        for raw_name, item in value.items():
            name = self.name(raw_name, path, path_bytes, out)
            child = _join(path, name)
            child_bytes = path_bytes + (1 if path else 0) + len(name.encode("utf-8"))
            out[name] = self.value(item, child, child_bytes, level + 1)
        return out

    def array(self, value: Any, path: str, path_bytes: int, level: int) -> list[Any]:
        out: list[Any] = []
        for index, item in enumerate(value):
            where = f"{path}[{index}]"
            if isinstance(item, list | tuple):
                self._note(
                    where, NESTED_ARRAY, "an array directly in an array (Firestore cannot store it)"
                )
            value_here = {ARRAY_KEY: item} if isinstance(item, list | tuple) else item
            out.append(self.value(value_here, where, path_bytes, level + 1))
        return out

    def name(self, raw: Any, path: str, path_bytes: int, taken: Mapping[str, Any]) -> str:
        name = raw if isinstance(raw, str) else str(raw)
        if (
            name.isascii()
            and name
            and not (name[:2] == "__" == name[-2:] and len(name) >= 4)
            and len(name) <= MAX_FIELD_PATH_BYTES - path_bytes - 1
            and name not in taken
        ):
            return name  # the common case: nothing to change, nothing to report
        shown = _join(path, _fix_text(name)[:60])
        fixed = _fix_text(name)
        if fixed is not name:
            self._note(shown, SURROGATE, "field name with a lone surrogate (not valid Unicode)")
        if not fixed:
            self._note(
                _join(path, '""'), EMPTY_NAME, "empty field name (Firestore cannot store it)"
            )
        elif _RESERVED.fullmatch(fixed):
            self._note(
                shown,
                RESERVED_NAME,
                "field names like __this__ are reserved by Firestore",
            )
        if not fixed or _RESERVED.fullmatch(fixed):
            fixed = _ESCAPE + fixed
        room = MAX_FIELD_PATH_BYTES - path_bytes - (1 if path else 0)
        if len(fixed.encode("utf-8")) > room:
            self._note(
                shown,
                LONG_NAME,
                f"field path over the {MAX_FIELD_PATH_BYTES} bytes Firestore stores",
            )
            digest = hashlib.sha256(fixed.encode("utf-8")).hexdigest()[:12]
            fixed = f"{text(fixed, room - 16)}~{digest}"
        while fixed in taken:
            fixed = _ESCAPE + fixed
        return fixed

    def _note(self, path: str, code: str, message: str) -> None:
        self.changes.append(Change(_shown(path), code, message))
