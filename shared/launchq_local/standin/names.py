"""Resource names: project id → project number, and server-assigned 19-digit ids.

The real service answers with `projects/{number}/...` even when the request used the project id,
and accepts either form afterwards. Code that compares names (dedup by name, Firestore keys) must
cope with that, so the stand-in reproduces it with a stable fake number per project id.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from launchq_local.standin.wire import ApiError, invalid_argument

_MIN_ID = 10**18  # 19 digits, below the int64 maximum of 9223372036854775807
_ID_SPAN = 9 * 10**18 - _MIN_ID
_PROJECT_RE = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,20}|[a-z][a-z0-9.:-]*")
_SEGMENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
_ID_RE = re.compile(r"[0-9]{1,19}")


def project_number(project: str) -> str:
    """A stable fake 12-digit number for a project id; a number stays as it is."""
    if project.isdigit():
        return project
    digest = int(hashlib.sha256(project.encode()).hexdigest(), 16)
    return str(100_000_000_000 + digest % 900_000_000_000)


def new_id() -> str:
    return str(_MIN_ID + secrets.randbelow(_ID_SPAN))


@dataclass(frozen=True)
class Parent:
    """`projects/{number}/locations/{location}` with the project already mapped to its number."""

    number: str
    location: str

    @property
    def name(self) -> str:
        return f"projects/{self.number}/locations/{self.location}"


def parent_from(project: str, location: str, field: str = "parent") -> Parent:
    if not _PROJECT_RE.fullmatch(project) or not _SEGMENT_RE.fullmatch(location):
        raise invalid_argument(
            field, f"Invalid resource name: projects/{project}/locations/{location}"
        )
    return Parent(project_number(project), location)


def job_id_from(parent: Parent, job: str) -> str:
    """Validate the `{id}` segment of a job name: the service only assigns int64 decimals."""
    if not _ID_RE.fullmatch(job):
        raise invalid_argument(
            "name", f"Invalid resource name: {parent.name}/customJobs/{job}. Expected an int64 id."
        )
    return job


def not_found(name: str) -> ApiError:
    return ApiError("NOT_FOUND", f'The CustomJob "{name}" does not exist.')
