"""The `builds/{key}` document, typed, and what an item records of its build."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from launchq.model.reasons import ErrorRecord, FailureReason
from launchq.spec.buildplan import (
    pin_image,
)
from launchq.spec.render import content_hash

if TYPE_CHECKING:
    pass


class BuildState:
    CLAIMED = "CLAIMED"  # the key is taken; the build is being created
    BUILDING = "BUILDING"  # a Cloud Build exists (build_id set)
    SUCCESS = "SUCCESS"  # the image exists (digest set)
    FAILED = "FAILED"  # the build ended otherwise (status, step, detail, log_url)


@dataclass(frozen=True)
class BuildRecord:
    """The `builds/{key}` document, typed."""

    key: str
    state: str
    image: str  # DESTINATION (no tag)
    tag_uri: str
    project: str
    location: str
    build_id: str | None = None
    log_url: str | None = None
    digest: str | None = None
    status: str | None = None
    failing_step: int | None = None
    detail: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    skipped: bool = False  # the image already existed: nothing was built
    attempt: int = 1  # which build of this key (a new item after a failure builds again)

    @property
    def pinned_uri(self) -> str | None:
        return f"{self.image}@{self.digest}" if self.digest else None

    @property
    def finished(self) -> bool:
        return self.state in (BuildState.SUCCESS, BuildState.FAILED)

    def details(self) -> dict[str, Any]:
        """What an item's history entry says about its build."""
        found: dict[str, Any] = {"build_key": self.key, "build_state": self.state}
        for name in ("build_id", "log_url", "digest", "status", "failing_step", "detail"):
            value = getattr(self, name)
            if value is not None:
                found[name] = value
        if self.skipped:
            found["build_skipped"] = True
        if self.attempt > 1:
            found["build_attempt"] = self.attempt
        if self.started_at and self.finished_at:
            found["build_seconds"] = round((self.finished_at - self.started_at).total_seconds(), 3)
        return found


def build_record(key: str, data: Mapping[str, Any]) -> BuildRecord:
    fields: dict[str, Any] = {
        name: data.get(name) for name in BuildRecord.__dataclass_fields__ if name != "key"
    }
    fields["skipped"] = bool(fields.get("skipped"))
    fields["attempt"] = int(fields.get("attempt") or 1)
    return BuildRecord(key=key, **fields)


def build_field(record: BuildRecord) -> dict[str, Any]:
    """The item's `build` field: which build it waits on, and what is known of it."""
    return {"tag_uri": record.tag_uri, **record.details()}


def item_fields_for(record: BuildRecord, body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields an item gets from its build: `build`, and once built the pinned job body."""
    fields: dict[str, Any] = {"build": build_field(record)}
    if record.state == BuildState.SUCCESS and record.pinned_uri is not None:
        pinned = pin_image(dict(body), record.tag_uri, record.pinned_uri)
        fields.update(job_body=pinned, body_hash=content_hash(pinned))
    if record.state == BuildState.FAILED:
        fields["error"] = build_error(record)
    return fields


def build_error(record: BuildRecord) -> dict[str, Any]:
    step = f" at step {record.failing_step}" if record.failing_step is not None else ""
    return ErrorRecord(
        FailureReason.BUILD_FAILED,
        f"the image build ended {record.status}{step}: {record.detail} (log: {record.log_url})",
        "source",
        details={
            "status": record.status,
            "failing_step": record.failing_step,
            "log_url": record.log_url,
            "build_id": record.build_id,
        },
    ).document()
