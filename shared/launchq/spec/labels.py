"""Label rules, and the labels launchq puts on every job it submits.

Vertex's `CreateCustomJob` is not idempotent and launchq keeps no agent around, so the dispatcher
and the sweep find "the job for this item" by label (`labels.launchq-item="..."` in a List
filter). Those labels must therefore be deterministic, valid under GCP's label rules whatever the
item id looks like, and unique per item: an id that does not fit the rules as-is becomes a
readable prefix plus a hash of the *original* id, so `Run-1` and `run-1` never share a label.

We validate against the general GCP label rules (keys 1-63 characters starting with a lowercase
letter, values 0-63 characters, lowercase letters, digits, `_` and `-`, at most 64 labels), which
are stricter than the 64 characters in the CustomJob docs: anything passing here passes there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from launchq.spec.validation import Issue, join_path

QUEUE_LABEL = "launchq-queue"
"""Label key carrying the (sanitised) queue name on every job launchq submits."""
ITEM_LABEL = "launchq-item"
"""Label key carrying the (sanitised) item id on every job launchq submits."""
ATTEMPT_LABEL = "launchq-attempt"
"""Label key carrying the submission attempt (1, 2, ...): added by the dispatcher at submit time,
so it is not in the stored body, but it is in what Vertex receives and counts."""
LAUNCHQ_LABELS = (QUEUE_LABEL, ITEM_LABEL, ATTEMPT_LABEL)
"""Every label launchq puts on a job: a job's 64 labels include these three."""
RESERVED_PREFIX = "launchq-"
"""Label keys with this prefix belong to launchq; queue configs and items may not set them."""

MAX_LABELS = 64
MAX_KEY_LENGTH = 63
MAX_VALUE_LENGTH = 63
_HASH_LENGTH = 10


def _allowed_char(char: str) -> bool:
    """Lowercase letters (international ones too, as GCP allows), digits, `_` and `-`."""
    return char in "_-" or char.isdecimal() or (char.isalpha() and not char.isupper())


def _valid_text(text: str) -> bool:
    return all(_allowed_char(char) for char in text)


def key_problem(key: str) -> str | None:
    """Why `key` is not a valid label key, or None."""
    if not key:
        return "label keys cannot be empty"
    if len(key) > MAX_KEY_LENGTH:
        return f"label key is {len(key)} characters; label keys are at most {MAX_KEY_LENGTH}"
    if not (key[0].isalpha() and _allowed_char(key[0])):
        return "label keys must start with a lowercase letter"
    if not _valid_text(key):
        return "label keys may only contain lowercase letters, digits, '_' and '-'"
    return None


def value_problem(value: str) -> str | None:
    """Why `value` is not a valid label value, or None."""
    if len(value) > MAX_VALUE_LENGTH:
        return f"value is {len(value)} characters; label values are at most {MAX_VALUE_LENGTH}"
    if not _valid_text(value):
        return "label values may only contain lowercase letters, digits, '_' and '-'"
    return None


def validate_labels(
    labels: Mapping[str, str], path: str, *, allow_reserved: bool = False
) -> list[Issue]:
    """Every rule violation in `labels`, reported at `path.<key>`."""
    issues: list[Issue] = []
    for key, value in labels.items():
        where = join_path(path, key)
        problem = key_problem(key)
        if problem:
            issues.append(Issue(where, problem))
        elif not allow_reserved and key.startswith(RESERVED_PREFIX):
            issues.append(
                Issue(
                    where, f"label keys starting with '{RESERVED_PREFIX}' are reserved for launchq"
                )
            )
        problem = value_problem(value)
        if problem:
            issues.append(Issue(where, problem))
    if len(labels) > MAX_LABELS:
        issues.append(Issue(path, f"{len(labels)} labels; a job can carry at most {MAX_LABELS}"))
    return issues


def label_value(raw: str) -> str:
    """`raw` as a label value that is valid and unique per `raw`.

    A valid ASCII value is kept as is (readable, and easy to type in a filter); anything else
    becomes a sanitised prefix plus a hash of the original, which keeps distinct ids distinct.
    """
    if raw.isascii() and value_problem(raw) is None:
        return raw
    cleaned = "".join(
        char if char.isascii() and _allowed_char(char) else "-" for char in raw.lower()
    )
    digest = hashlib.sha256(raw.encode()).hexdigest()[:_HASH_LENGTH]
    prefix = cleaned[: MAX_VALUE_LENGTH - _HASH_LENGTH - 1].strip("-")
    return f"{prefix}-{digest}" if prefix else digest


def job_labels(queue: str, item_id: str) -> dict[str, str]:
    """The labels identifying a job's queue and item (the dispatcher's idempotency key)."""
    return {QUEUE_LABEL: label_value(queue), ITEM_LABEL: label_value(item_id)}


def item_filter(item_id: str) -> str:
    """A `ListCustomJobs` filter matching the job(s) launched for `item_id`."""
    return f'labels.{ITEM_LABEL}="{label_value(item_id)}"'


def queue_filter(queue: str) -> str:
    """A `ListCustomJobs` filter matching every job launched from `queue`."""
    return f'labels.{QUEUE_LABEL}="{label_value(queue)}"'
