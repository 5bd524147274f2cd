"""The REST wire format of Vertex AI v1: strict request parsing, responses and error envelopes.

Why a hand-written walker in front of `json_format.Parse`: protobuf's strict parser does reject
unknown fields and wrong types (and stays the final authority here), but its messages are
inconsistent ("has no field named ... at CustomJob.jobSpec", sometimes no path at all). Google's
front end names the offending field in snake_case with indexes
(`custom_job.job_spec.worker_pool_specs[0].replica_count`) in both `message` and
`google.rpc.BadRequest.fieldViolations`. Code that logs or inspects those errors should see the
same shape locally, so the walker produces Google's wording from the message descriptors.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

# Canonical google.rpc.Code names and the HTTP status Google's front end maps each one to.
HTTP_FOR_STATUS: dict[str, int] = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}
RPC_CODE: dict[str, int] = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}
# The status Google uses for a bare HTTP status (used when a fault names only the HTTP code).
STATUS_FOR_HTTP: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

M = TypeVar("M", bound=Message)

_BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
_INT_TYPES = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_SFIXED64,
}
_FLOAT_TYPES = {FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE}
_TYPE_NAMES = {
    value: name for name, value in vars(FieldDescriptor).items() if name.startswith("TYPE_")
}
_INT_RE = re.compile(r"-?[0-9]+")


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


@dataclass
class ApiError(Exception):
    """An error answered in Google's envelope; raised anywhere below the HTTP layer."""

    status: str
    message: str
    violations: list[FieldViolation] = field(default_factory=list)
    http_status: int | None = None
    # Further google.rpc detail messages in their JSON form (`{"@type": ..., ...}`).
    details: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def http(self) -> int:
        return self.http_status or HTTP_FOR_STATUS.get(self.status, 500)

    def envelope(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.http, "message": self.message, "status": self.status}
        if self.violations:
            body["details"] = [
                {
                    "@type": _BAD_REQUEST_TYPE,
                    "fieldViolations": [
                        {"field": v.field, "description": v.description} for v in self.violations
                    ],
                }
            ]
        if self.details:
            body.setdefault("details", []).extend(self.details)
        return {"error": body}


def invalid_argument(path: str, message: str) -> ApiError:
    """A 400 naming one field, the way Google reports a validation failure."""
    return ApiError("INVALID_ARGUMENT", message, [FieldViolation(path, message)])


def to_json(message: Message, int_enums: bool) -> str:
    """Serialize a response the way the client asked (`$alt=json;enum-encoding=int` or names)."""
    return str(json_format.MessageToJson(message, use_integers_for_enums=int_enums, indent=None))


def wants_int_enums(alt: str | None) -> bool:
    return alt is not None and "enum-encoding=int" in alt


def load_json_object(raw: bytes, root: str) -> dict[str, Any]:
    """Decode a request body; an empty body counts as `{}` (what Cancel sends)."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise invalid_argument(
            root, f"Invalid JSON payload received. Unexpected token. {exc}"
        ) from None
    if not isinstance(value, dict):
        raise invalid_argument(
            root, f"Invalid JSON payload received. Expected an object at '{root}'."
        )
    return value


def parse_message(body: dict[str, Any], message: M, root: str) -> M:
    """Strictly parse `body` into `message`: Google-worded 400s, then protobuf as the backstop."""
    _walk_message(body, message.DESCRIPTOR, root)
    try:
        json_format.ParseDict(body, message)
    except json_format.ParseError as exc:
        text = f"Invalid JSON payload received at '{root}'. {exc}"
        raise invalid_argument(root, text) from None
    return message


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _unknown(name: str, path: str) -> ApiError:
    text = f"Invalid JSON payload received. Unknown name \"{name}\" at '{path}': Cannot find field."
    return invalid_argument(path, text)


def _invalid_value(path: str, type_label: str, value: Any) -> ApiError:
    text = f"Invalid value at '{path}' ({type_label}), {json.dumps(value)}"
    return invalid_argument(path, text)


def _fields_by_json_name(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    found: dict[str, FieldDescriptor] = {}
    for fd in descriptor.fields:
        found[fd.name] = fd
        found[fd.json_name] = fd
    return found


def _walk_well_known(value: Any, descriptor: Descriptor, path: str) -> None:
    """Timestamp, Duration, Struct...: special JSON forms, so let protobuf judge the value."""
    try:
        json_format.ParseDict(value, message_factory.GetMessageClass(descriptor)())
    except json_format.ParseError:
        raise _invalid_value(path, f"type.googleapis.com/{descriptor.full_name}", value) from None


def _walk_message(value: Any, descriptor: Descriptor, path: str) -> None:
    if descriptor.full_name.startswith("google.protobuf."):
        _walk_well_known(value, descriptor, path)
        return
    if not isinstance(value, dict):
        raise _invalid_value(path, f"type.googleapis.com/{descriptor.full_name}", value)
    fields = _fields_by_json_name(descriptor)
    for key, item in value.items():
        fd = fields.get(key)
        if fd is None:
            raise _unknown(key, path)
        _walk_field(item, fd, f"{path}.{_snake(fd.name)}" if path else fd.name)


def _walk_field(value: Any, fd: FieldDescriptor, path: str) -> None:
    if value is None:
        return  # JSON null means "default" in proto3 JSON
    if _is_map(fd):
        if not isinstance(value, dict):
            raise _invalid_value(path, "map", value)
        value_fd = fd.message_type.fields_by_name["value"]
        for key, item in value.items():
            _walk_single(item, value_fd, f"{path}[{key}]")
        return
    if fd.is_repeated:
        if not isinstance(value, list):
            raise _invalid_value(path, _type_label(fd), value)
        for index, item in enumerate(value):
            _walk_single(item, fd, f"{path}[{index}]")
        return
    _walk_single(value, fd, path)


def _is_map(fd: FieldDescriptor) -> bool:
    return (
        fd.type == FieldDescriptor.TYPE_MESSAGE
        and fd.is_repeated
        and bool(fd.message_type.GetOptions().map_entry)
    )


def _type_label(fd: FieldDescriptor) -> str:
    if fd.type == FieldDescriptor.TYPE_ENUM:
        return f"type.googleapis.com/{fd.enum_type.full_name}"
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        return f"type.googleapis.com/{fd.message_type.full_name}"
    return str(_TYPE_NAMES.get(fd.type, "TYPE_UNKNOWN"))


def _walk_single(value: Any, fd: FieldDescriptor, path: str) -> None:
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        _walk_message(value, fd.message_type, path)
    elif not _scalar_ok(value, fd):
        raise _invalid_value(path, _type_label(fd), value)


def _scalar_ok(value: Any, fd: FieldDescriptor) -> bool:
    if value is None:
        return True
    kind = fd.type
    if kind in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
        return isinstance(value, str)
    if kind == FieldDescriptor.TYPE_BOOL:
        return isinstance(value, bool)
    if kind in _INT_TYPES:
        if isinstance(value, bool):
            return False
        if isinstance(value, int):
            return True
        if isinstance(value, float):
            return value.is_integer()
        return isinstance(value, str) and _INT_RE.fullmatch(value) is not None
    if kind in _FLOAT_TYPES:
        if isinstance(value, str):
            return value in ("NaN", "Infinity", "-Infinity") or _is_number(value)
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == FieldDescriptor.TYPE_ENUM:
        return _enum_ok(value, fd.enum_type)
    return True


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _enum_ok(value: Any, enum: EnumDescriptor) -> bool:
    if isinstance(value, str):
        return value in enum.values_by_name
    return isinstance(value, int) and not isinstance(value, bool)
