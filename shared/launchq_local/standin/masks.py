"""`readMask` on ListCustomJobs: parse a FieldMask from the query string and trim each job.

Why not `FieldMask.FromJsonString`: protobuf's Python parser accepts only lowerCamelCase paths
and raises on any `_`, while Google's REST front end (a C++ transcoder that converts each path
to snake_case) also takes `create_time`. Paths are checked against the CustomJob descriptor the
way `FieldMask.IsValidForDescriptor` does (a path may only descend through singular message
fields; a repeated or map field must be last), and an unknown path is a 400 instead of a silent
no-op. Trimming itself is protobuf's `FieldMask.MergeMessage` into an empty job.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from google.protobuf import field_mask_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from launchq_local.standin.wire import invalid_argument

_CAMEL_RE = re.compile(r"(?<!^)(?=[A-Z])")


def _snake(segment: str) -> str:
    return _CAMEL_RE.sub("_", segment).lower()


def _check_path(path: str, original: str, descriptor: Descriptor) -> None:
    parts = path.split(".")
    current: Descriptor | None = descriptor
    for index, part in enumerate(parts):
        fd = current.fields_by_name.get(part) if current is not None else None
        if fd is None:
            raise _bad_path(original, descriptor)
        last = index == len(parts) - 1
        if not last and (fd.type != FieldDescriptor.TYPE_MESSAGE or fd.is_repeated):
            raise _bad_path(original, descriptor)
        current = fd.message_type if fd.type == FieldDescriptor.TYPE_MESSAGE else None


def _bad_path(path: str, descriptor: Descriptor) -> Exception:
    message = (
        f'Invalid field mask path "{path}" in read_mask: no such field in '
        f"{descriptor.full_name} (a path may only descend through singular message fields)."
    )
    return invalid_argument("read_mask", message)


def parse_read_mask(values: Iterable[str], descriptor: Descriptor) -> Any | None:
    """A FieldMask from `readMask` values (`name,state,createTime` or snake_case); None when
    no path is given, which means the whole resource (AIP-157)."""
    paths: list[str] = []
    for value in values:
        for raw in value.split(","):
            original = raw.strip()
            if not original:
                continue
            path = ".".join(_snake(segment) for segment in original.split("."))
            _check_path(path, original, descriptor)
            if path not in paths:
                paths.append(path)
    if not paths:
        return None
    return field_mask_pb2.FieldMask(paths=paths)


def trim(message: Any, mask: Any) -> Any:
    """A new message holding only the fields of `message` that `mask` names."""
    trimmed = type(message)()
    mask.MergeMessage(message, trimmed)
    return trimmed
