"""The sweep's build step: every BUILDING item's build followed in bulk, finished ones settled."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from launchq.builds.builder import ImageBuilder
from launchq.builds.records import BuildRecord, BuildState, item_fields_for
from launchq.errors import Conflict
from launchq.log import get_logger
from launchq.model.reasons import WaitReason
from launchq.model.records import Changes, ItemRecord
from launchq.model.states import ItemState
from launchq.recorder import Recorder
from launchq.store import Store, Transition

if TYPE_CHECKING:
    pass


log = get_logger(__name__)


def settle_building(
    builder: ImageBuilder, store: Store, recorder: Recorder
) -> tuple[int, list[str]]:
    """The sweep's build step: follow every BUILDING item's build (in bulk), then move the items
    whose build finished: built -> QUEUED with the digest-pinned body (admitted by the sweep's
    admission right after), failed -> FAILED `build_failed`. Returns (items moved, errors)."""
    building = list(store.items_in_states([ItemState.BUILDING]))
    keys = {_build_key(item) for item in building} - {None}
    if not keys:
        return 0, []
    try:
        finished = {r.key: r for r in builder.follow(k for k in keys if k is not None)}
    except Exception as exc:  # Cloud Build trouble must not stop the rest of the sweep
        log.exception("following builds failed")
        return 0, [f"following builds: {exc}"]
    moved, errors = 0, []
    for item in building:
        record = finished.get(_build_key(item) or "")
        if record is None:
            continue
        fields = item_fields_for(record, item.job_body or {})
        changes: Changes = {"build": fields["build"]}
        if record.state == BuildState.SUCCESS:
            changes["job_body"] = fields["job_body"]
            changes["body_hash"] = fields["body_hash"]
            if item.placements:  # every rung of the ladder runs the built image
                changes["placements"] = [
                    {**placed, **_pinned(record, placed["body"])} for placed in item.placements
                ]
            changes["reason"] = WaitReason.FREE_SLOT
            change = Transition(ItemState.QUEUED, "image built", record.details())
        else:
            changes["error"] = fields["error"]
            change = Transition(ItemState.FAILED, "the image build failed", record.details())
        try:
            recorder.transition(item, change, changes)
            moved += 1
        except Conflict:
            continue  # changed meanwhile (cancelled): the next sweep sees it as it is now
        except Exception as exc:
            errors.append(f"settling build of {item.doc_id}: {exc}")
            log.exception("settling a built item failed", item_id=item.item_id)
    return moved, errors


def _pinned(record: BuildRecord, body: Mapping[str, Any]) -> dict[str, Any]:
    fields = item_fields_for(record, body)
    return {"body": fields["job_body"], "body_hash": fields["body_hash"]}


def _build_key(item: ItemRecord) -> str | None:
    build = item.stored.get("build")
    key = build.get("build_key") if isinstance(build, Mapping) else None
    return str(key) if key else None
