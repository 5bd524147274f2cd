"""The queue item: the JSON message a publisher sends to run one job on a queue.

An item says *what* to run (image, command, args, a few env vars and labels, template variable
values); the queue says *where and how* (project, region, machines, service account, network,
encryption, staging). The model here only checks the item on its own; what the item may do on a
particular queue (declared variables, reserved env names, label clashes) is checked by
`launchq.render.render`, which knows both.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from launchq import sanitize
from launchq.config import Priority, QueueConfig
from launchq.templates import Scalar
from launchq.validation import Issue, ItemError, issues_from_pydantic

ITEM_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
PAYLOAD_FIELD = "payload"
"""The record field that stores the item as received (docs/data-model.md)."""
ItemId = Annotated[str, Field(pattern=ITEM_ID_PATTERN)]
"""Letters, digits and `._:@-`, 1-128 characters: safe as a Firestore document id and a
Pub/Sub ordering key, and turned into a label value by `launchq.labels.label_value`."""


class QueueItem(BaseModel):
    """A request to run one job on a queue. Unknown fields are rejected, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    queue: str | None = Field(default=None, description="Target queue name.")
    item_id: ItemId | None = Field(
        default=None, description="Idempotency key: publishing it twice runs one job."
    )
    image_uri: Annotated[str, Field(min_length=1, pattern=r"^\S+$")] | None = Field(
        default=None, description="Fills ${image_uri}."
    )
    display_name: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        default=None, description="Job display name; fills ${display_name} / ${run_name}."
    )
    command: list[str] | None = Field(
        default=None, description="Replaces the container command (entrypoint)."
    )
    args: list[str] | None = Field(default=None, description="Replaces the container args.")
    env: dict[str, str] = Field(default={}, description="Environment variables to add.")
    labels: dict[str, str] = Field(default={}, description="Job labels to add.")
    template_variables: dict[str, Scalar] = Field(
        default={}, description="Values of the queue's declared {{variables}}."
    )
    priority: Priority | None = Field(
        default=None, description="critical|high|medium|low or an integer; lower runs first."
    )
    metadata: dict[str, Any] = Field(
        default={}, description="Stored with the item, never rendered (except the W&B macros)."
    )

    def priority_rank(self, config: QueueConfig) -> int:
        """The rank to sort by (ascending, 0 = most urgent): the item's, else the queue's."""
        return self.priority if self.priority is not None else config.priority


def parse_item(raw: str | bytes | dict[str, Any]) -> QueueItem:
    """Validate a queue item from a Pub/Sub payload (JSON text/bytes) or a parsed mapping.

    Raises `ItemError` listing every problem.
    """
    data: object = raw
    if isinstance(raw, str | bytes):
        try:
            data = json.loads(raw)
        except ValueError as exc:  # not UTF-8, not JSON, an integer of over 4,300 digits
            raise ItemError([Issue("", f"not valid JSON: {exc}")]) from None
        except RecursionError:
            raise ItemError([Issue("", "not valid JSON: nested too deeply to parse")]) from None
    if not isinstance(data, dict):
        raise ItemError([Issue("", "a queue item is a JSON object")])
    issues = storage_issues(data)
    if any(issue.code == sanitize.TOO_DEEP for issue in issues):
        raise ItemError(issues)  # validating it further would only recurse as deep
    try:
        item = QueueItem.model_validate(data)
    except ValidationError as exc:
        issues += issues_from_pydantic(exc, QueueItem)
    if issues:
        raise ItemError(issues)
    return item


def storage_issues(data: dict[str, Any]) -> list[Issue]:
    """Why the item, stored as the record's `payload` field, would not be stored as sent.

    An accepted item is stored exactly as received (docs/data-model.md): a value Firestore
    cannot hold (a `__reserved__` or empty name, an integer beyond int64, a lone surrogate,
    nesting deeper than 20) would have to be altered, so it is the item's error, with its path.
    """
    checked = sanitize.clean(data, level=1, under=PAYLOAD_FIELD)
    return [Issue(change.path, change.message, code=change.code) for change in checked.changes]


def queue_item_json_schema() -> dict[str, Any]:
    """The queue item's JSON Schema (docs/schemas/queue-item.schema.json)."""
    schema = QueueItem.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "launchq queue item"
    return schema
