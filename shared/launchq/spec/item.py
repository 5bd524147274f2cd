"""The queue item: the JSON message a publisher sends to run one job on a queue.

An item says *what* to run (image, command, args, a few env vars and labels, template variable
values); the queue says *where and how* (project, region, machines, service account, network,
encryption, staging). The model here only checks the item on its own; what the item may do on a
particular queue (declared variables, reserved env names, label clashes) is checked by
`launchq.spec.render.render`, which knows both.
"""

from __future__ import annotations

import json
import keyword
from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from launchq.spec import sanitize
from launchq.spec.config import QueueConfig
from launchq.spec.fields import ITEM_ID_PATTERN, ItemId, Priority, canonical_hash
from launchq.spec.sweeps import MAX_CHILDREN, parse_sweep
from launchq.spec.templates import Scalar
from launchq.spec.validation import Issue, ItemError, issues_from_pydantic
from launchq.spec.wandb import ItemWandb

__all__ = [
    "ITEM_ID_PATTERN",
    "ItemArray",
    "ItemSource",
    "QueueItem",
    "canonical_hash",
    "item_hash",
    "parse_item",
    "payload_hash",
]

PAYLOAD_FIELD = "payload"
"""The record field that stores the item as received (docs/data-model.md)."""
SOURCES_PREFIX = "launchq/sources"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
# gs://BUCKET/launchq/sources/<sha256>.tar.gz: where `launchq source push` puts an archive, named
# by its content. Bucket names as GCS allows them (3-222 characters; dots for domain buckets).
SOURCE_URI_PATTERN = (
    r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]/launchq/sources/[0-9a-f]{64}\.tar\.gz$"
)
MODULE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$"


class GitOrigin(BaseModel):
    """Where a source archive came from when `enqueue --git` packed it: the repository, the commit
    the ref named when it was resolved (never the ref itself), and the subdirectory."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    url: Annotated[str, Field(min_length=1, max_length=500, pattern=r"^\S+$")]
    commit: Annotated[str, Field(pattern=r"^[0-9a-f]{40}$")] = Field(
        description="The full commit id (40 hex digits)."
    )
    subdir: Annotated[str, Field(max_length=500)] = Field(
        default="", description="A path inside the repository ('' for its root)."
    )

    @field_validator("subdir")
    @classmethod
    def _inside(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError("is not a path inside the repository")
        return value

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.password or (parts.username and parts.scheme in ("http", "https")):
            raise ValueError("holds credentials; a git URL on an item must not")
        return value


class ItemSource(BaseModel):
    """Code to run instead of an image: an archive uploaded by `launchq source push`/`enqueue
    --source`, and the module Vertex runs with `python -m`."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    uri: Annotated[str, Field(pattern=SOURCE_URI_PATTERN, max_length=300)] = Field(
        description="gs://BUCKET/launchq/sources/<sha256>.tar.gz"
    )
    sha256: Annotated[str, Field(pattern=SHA256_PATTERN)] = Field(
        description="sha256 of the archive (64 lowercase hex digits); also in the uri."
    )
    module: Annotated[str, Field(pattern=MODULE_PATTERN, max_length=200)] = Field(
        description="Dotted Python module to run (`python -m MODULE`), e.g. trainer.task."
    )
    git: GitOrigin | None = Field(
        default=None,
        description="The repository, commit and subdirectory the archive was packed from "
        "(`enqueue --git`); a record of provenance, not a second source.",
    )

    @field_validator("sha256")
    @classmethod
    def _matches_uri(cls, value: str, info: ValidationInfo) -> str:
        uri = info.data.get("uri")
        if isinstance(uri, str) and not uri.endswith(f"/{value}.tar.gz"):
            raise ValueError("is not the sha256 the uri names (…/launchq/sources/<sha256>.tar.gz)")
        return value

    @field_validator("module")
    @classmethod
    def _not_keywords(cls, value: str) -> str:
        # The regex cannot say "not a keyword": `python -m trainer.class` is a SyntaxError.
        bad = [part for part in value.split(".") if keyword.iskeyword(part)]
        if bad:
            raise ValueError(f"{bad[0]!r} is a Python keyword, not a module name")
        return value

    @property
    def bucket(self) -> str:
        return self.uri.removeprefix("gs://").split("/", 1)[0]

    @property
    def object_name(self) -> str:
        return self.uri.removeprefix("gs://").split("/", 1)[1]


class ItemArray(BaseModel):
    """A job array: `count` children of the same item, told apart by LAUNCHQ_ARRAY_INDEX."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    count: Annotated[int, Field(ge=1, le=MAX_CHILDREN)] = Field(
        description=f"How many children (1-{MAX_CHILDREN:,}); child n gets LAUNCHQ_ARRAY_INDEX=n-1."
    )
    max_parallel: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="At most this many children hold slots at once."
    )


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
    source: ItemSource | None = Field(
        default=None,
        description="Run this uploaded code instead of an image (a queue with a source block).",
    )
    wandb: ItemWandb | None = Field(
        default=None,
        description="The W&B run's project, entity, name, run config and sweep, as the queue's "
        "wandb.item_may_set allows (docs/wandb.md).",
    )
    sweep: dict[str, Any] | None = Field(
        default=None,
        description="A W&B sweep config (method grid or random, parameters, run_cap) plus "
        "launchq's max_parallel, seed and parameters_to: the item expands into one child per "
        "run (docs/sweeps.md).",
    )
    array: ItemArray | None = Field(
        default=None, description="A job array: count children of this item (docs/sweeps.md)."
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
    else:
        issues += _family_issues(item)
    if issues:
        raise ItemError(issues)
    return item


def _family_issues(item: QueueItem) -> list[Issue]:
    """What is wrong with the item's sweep or array on its own (its children are checked
    against the queue by the dispatcher)."""
    if item.sweep is not None and item.array is not None:
        return [Issue("array", "an item is a sweep or an array, not both")]
    if item.sweep is None:
        return []
    try:
        parse_sweep(item.sweep)
    except ItemError as exc:
        return list(exc.issues)
    return []


def storage_issues(data: dict[str, Any]) -> list[Issue]:
    """Why the item, stored as the record's `payload` field, would not be stored as sent.

    An accepted item is stored exactly as received (docs/data-model.md): a value Firestore
    cannot hold (a `__reserved__` or empty name, an integer beyond int64, a lone surrogate,
    nesting deeper than 20) would have to be altered, so it is the item's error, with its path.
    """
    checked = sanitize.clean(data, level=1, under=PAYLOAD_FIELD)
    return [Issue(change.path, change.message, code=change.code) for change in checked.changes]


def payload_hash(item: QueueItem) -> str:
    """What identifies an item's payload: the canonical JSON of the validated item.

    Not the rendered body, which holds a render-time timestamp. The dispatcher stores it; a
    message reusing an item id with another hash is a conflict, not a redelivery, and
    `launchq enqueue` computes the same hash to refuse such a reuse before publishing.
    """
    # An item without `source` (or `sweep`, `array`) hashes as it did before the field
    # existed, so a redelivery across an upgrade is still recognised as the same item.
    absent = {name for name in _LATER_FIELDS if getattr(item, name) is None}
    return canonical_hash(item.model_dump(mode="json", exclude=absent or None))


_LATER_FIELDS = ("source", "sweep", "array")


def item_hash(payload: Mapping[str, Any], queue: str, item_id: str) -> str:
    """THE hash of a message's item, whatever becomes of it: what `payload_hash` stores.

    An item that validates on its own hashes as the validated item (`payload_hash`), with the
    queue and item id it was routed by filled in where the payload leaves them out, exactly as
    an accepted item does, whether it is accepted or rejected (unknown queue, a variable its
    queue does not declare, a source not found ...). So an item rejected once and sent again
    after its queue exists is a duplicate, not a conflict. Only an item that cannot be
    validated at all, which no queue would ever accept, hashes as its raw payload.
    """
    routed = dict(payload)
    for key, value in (("queue", queue), ("item_id", item_id)):
        if routed.get(key) is None:
            routed[key] = value
    try:
        return payload_hash(parse_item(routed))
    except ItemError:
        return canonical_hash(payload)


def queue_item_json_schema() -> dict[str, Any]:
    """The queue item's JSON Schema (docs/schemas/queue-item.schema.json)."""
    schema = QueueItem.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "launchq queue item"
    return schema
