"""The dispatcher's seam: a source item's build inputs judged, then its build claimed or joined."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from launchq.builds.builder import ImageBuilder
from launchq.builds.records import BuildState, item_fields_for
from launchq.model.reasons import ErrorRecord, RejectReason
from launchq.model.states import ItemState
from launchq.spec.buildplan import (
    TOP_METADATA,
    BuildPlan,
    destination_problem,
    dockerfile_problem,
)

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class Decision:
    """How the dispatcher records a source item on a building queue."""

    state: ItemState
    cause: str
    fields: dict[str, Any]
    problem: str | None = None


class BuildGate:
    """The dispatcher's seam: judge a source item's build inputs, then claim or join its build."""

    def __init__(self, builder: ImageBuilder, allowed_repository: str | None) -> None:
        self.builder = builder
        self.allowed_repository = allowed_repository

    def decide(
        self,
        plan: BuildPlan,
        waiter: str,
        metadata: Mapping[str, Any],
        body: Mapping[str, Any],
    ) -> Decision:
        refused = destination_problem(plan.settings, self.allowed_repository)
        if refused is not None:
            code = RejectReason.BUILD_DESTINATION_REFUSED
            error = ErrorRecord(code, refused, "builder.destination").document()
            return Decision(ItemState.REJECTED, f"rejected: {code}", {"error": error}, refused)
        missing = dockerfile_problem(plan, metadata)
        if missing is not None:
            code = RejectReason.DOCKERFILE_MISSING
            error = ErrorRecord(code, missing, "source.uri").document()
            return Decision(ItemState.REJECTED, f"rejected: {code}", {"error": error}, missing)
        record = self.builder.ensure(plan, waiter, str(metadata.get(TOP_METADATA, "")))
        fields = item_fields_for(record, body)
        if record.state == BuildState.SUCCESS:
            # Found in Artifact Registry, or built for an earlier item: no build for this one.
            return Decision(
                ItemState.QUEUED, f"accepted: image already built ({record.digest})", fields
            )
        if record.state == BuildState.FAILED:
            return Decision(ItemState.FAILED, "the image build failed", fields)
        return Decision(ItemState.BUILDING, f"accepted: building (build {record.build_id})", fields)
