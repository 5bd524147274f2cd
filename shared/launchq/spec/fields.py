"""Field types shared by the queue config and the queue item: a leaf module, imports nothing of
launchq, so the models that use these types never import each other for them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Annotated

from pydantic import BeforeValidator, Field, WithJsonSchema

QUEUE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
QueueName = Annotated[str, Field(pattern=QUEUE_NAME_PATTERN)]

ITEM_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
ItemId = Annotated[str, Field(pattern=ITEM_ID_PATTERN)]
"""Letters, digits and `._:@-`, 1-128 characters: safe as a Firestore document id and a
Pub/Sub ordering key, and turned into a label value by `launchq.spec.labels.label_value`."""

# ---------------------------------------------------------------------------------------------
# Priority: W&B's names, lower = more urgent

PRIORITY_NAMES: Mapping[str, int] = {"critical": 0, "high": 1, "medium": 2, "low": 3}
DEFAULT_PRIORITY = PRIORITY_NAMES["medium"]


def priority_rank(value: int | str | None, default: int = DEFAULT_PRIORITY) -> int:
    """The integer the dispatcher and sweep sort by, ascending: 0 (critical) runs first.

    Same direction as W&B (`--priority critical|high|medium|low` = 0..3). Integers >= 0 are
    accepted too, for finer ordering; ties are broken by publish time (FIFO).
    """
    if value is None:
        return default
    if isinstance(value, bool):
        raise ValueError("priority must be critical, high, medium, low or an integer >= 0")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("priority must be >= 0 (0 is the most urgent)")
        return value
    if isinstance(value, str) and value.strip().lower() in PRIORITY_NAMES:
        return PRIORITY_NAMES[value.strip().lower()]
    raise ValueError(
        f"invalid priority {value!r}; use critical, high, medium, low or an integer >= 0 "
        "(0 is the most urgent)"
    )


def _priority(value: object) -> object:
    if isinstance(value, str | int) and not isinstance(value, bool):
        return priority_rank(value)
    return value


Priority = Annotated[
    int,
    BeforeValidator(_priority),
    WithJsonSchema({
        "anyOf": [
            {"type": "integer", "minimum": 0},
            {"enum": list(PRIORITY_NAMES)},
        ],
        "description": "critical|high|medium|low (= 0..3) or an integer >= 0; lower runs first.",
    }),
]  # fmt: skip


def is_unicode(data: object) -> bool:
    """False if some string holds a lone surrogate (JSON allows it; protobuf and Vertex don't)."""
    try:
        json.dumps(data, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def canonical_hash(data: object) -> str:
    """sha256 of the canonical JSON of `data` (sorted keys, no spaces, ASCII escapes).

    What identifies an item's payload: the same item published twice has the same hash, whatever
    the publisher's key order or whitespace; a lone surrogate is escaped, never an error.
    """
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode("ascii")).hexdigest()
