"""Before a source item is accepted: is its archive where the queue's jobs may read it, and is it
the archive the item names?

The dispatcher calls `SourceChecker.check` after an item is validated and rendered, before it is
recorded QUEUED; a problem is recorded REJECTED with its `launchq.model.reasons.RejectReason` and
the message acknowledged (a redelivery cannot fix it). It costs one metadata GET
(`launchq.gcp.gcs`).

What "the archive matches" means with one GET: Cloud Storage's own checksums are MD5 (not for
composite objects) and CRC32C, neither of which is the sha256 the item carries, and reading the
bytes to hash them would cost the archive's size per item. The uploader (`launchq source push`,
`enqueue --source`) writes the sha256 it computed from the bytes it sent into the object's
custom metadata (`sha256`), and the object's name carries it too. So the check is: the object
exists, is not empty, and its `metadata.sha256` equals the item's `sha256`. An object put there
by another tool (no such metadata), or overwritten with other bytes by one, is `source_mismatch`:
push it again with `launchq source push`, which re-uploads an object whose metadata is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from launchq.model.reasons import RejectReason
from launchq.spec.item import ItemSource

SHA256_METADATA = "sha256"


class ObjectReader(Protocol):
    def get_object(self, bucket: str, name: str) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class SourceProblem:
    reason: RejectReason
    message: str
    path: str = "source.uri"


def job_bucket(body: Mapping[str, Any]) -> str | None:
    """The bucket of the job's output directory (from `spec.base_output_dir`, else
    `spec.staging_bucket`): the queue's staging bucket, where its sources must live."""
    prefix = body.get("jobSpec", {}).get("baseOutputDirectory", {}).get("outputUriPrefix")
    if not isinstance(prefix, str) or not prefix.startswith("gs://"):
        return None
    return prefix.removeprefix("gs://").split("/", 1)[0]


def bucket_problem(source: ItemSource, body: Mapping[str, Any]) -> SourceProblem | None:
    bucket = job_bucket(body)
    if bucket is None or source.bucket == bucket:
        return None
    return SourceProblem(
        RejectReason.SOURCE_OUTSIDE_BUCKET,
        f"the source is in gs://{source.bucket}, not in the queue's staging bucket "
        f"gs://{bucket}: the queue's jobs may only read sources there "
        f"(launchq source push --bucket gs://{bucket})",
    )


def object_problem(source: ItemSource, resource: Mapping[str, Any] | None) -> SourceProblem | None:
    """Judge the object's metadata resource (None: it does not exist)."""
    if resource is None:
        return SourceProblem(
            RejectReason.SOURCE_MISSING,
            f"{source.uri} does not exist: upload it with launchq source push",
        )
    metadata = resource.get("metadata")
    stored = metadata.get(SHA256_METADATA) if isinstance(metadata, Mapping) else None
    size = str(resource.get("size", "0"))
    if size == "0":
        return SourceProblem(
            RejectReason.SOURCE_MISMATCH, f"{source.uri} is empty, not a source archive"
        )
    if stored != source.sha256:
        found = f"sha256 {stored}" if stored else "no sha256 metadata"
        return SourceProblem(
            RejectReason.SOURCE_MISMATCH,
            f"{source.uri} is not the archive the item names: the object has {found}, the "
            f"item {source.sha256} (push it again with launchq source push)",
        )
    return None


class SourceChecker:
    """The dispatcher's seam to Cloud Storage; `reader` is made on first use (no I/O at build)."""

    def __init__(self, reader: Callable[[], ObjectReader]) -> None:
        self._reader = reader

    def check(self, source: ItemSource, body: Mapping[str, Any]) -> SourceProblem | None:
        """The first problem, or None. Raises `InfrastructureError` if Storage cannot answer."""
        return self.inspect(source, body)[0]

    def inspect(
        self, source: ItemSource, body: Mapping[str, Any]
    ) -> tuple[SourceProblem | None, Mapping[str, Any]]:
        """`check`, and the object's custom metadata (the uploader's listing of Dockerfiles,
        which the image builder judges with this same GET)."""
        problem = bucket_problem(source, body)
        if problem is not None:
            return problem, {}
        resource = self._reader().get_object(source.bucket, source.object_name)
        metadata = resource.get("metadata") if resource is not None else None
        return object_problem(source, resource), metadata if isinstance(metadata, Mapping) else {}
