"""Claims, creates and follows Cloud Builds: one build per key, ever (the three layers in
`launchq.builds`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from launchq.builds.records import BuildRecord, BuildState, build_record
from launchq.errors import Conflict
from launchq.gcp.cloudbuild import (
    FAILED_STATUSES,
    CloudBuildClient,
    CloudBuildError,
    status_name,
)
from launchq.log import get_logger
from launchq.spec.buildplan import (
    BuildPlan,
    ImageRef,
    build_request,
    build_tag,
)
from launchq.store import BuildStore

if TYPE_CHECKING:
    from launchq.store import Clock


log = get_logger(__name__)

LIST_CHUNK = 20  # tags OR-ed into one list filter
# A claim with no build id this old lost its builder (crash between claim and create).
CLAIM_REPAIR_SECONDS = 120.0
# Rebuilding a failed key races other new items; each lost race re-reads and joins the winner.
MAX_CLAIM_RACES = 5
# What a restart clears: the failed attempt's results (kept in `failed_attempts`).
_ATTEMPT_FIELDS = (
    "build_id", "log_url", "digest", "status", "failing_step", "detail", "started_at",
    "finished_at",
)  # fmt: skip


class ImageBuilder:
    """Claims, creates and follows builds. `client` is made on first use (no I/O at build)."""

    def __init__(
        self,
        store: BuildStore,
        client: Callable[[], CloudBuildClient],
        clock: Clock,
    ) -> None:
        self.store = store
        self._client = client
        self.clock = clock

    def get(self, key: str) -> BuildRecord | None:
        stored = self.store.get_build(key)
        return build_record(key, stored.data) if stored is not None else None

    # ------------------------------------------------------------------ one item arrives
    def ensure(self, plan: BuildPlan, waiter: str, top: str) -> BuildRecord:
        """The build of `plan`, claimed and started by this call or joined (`waiter` added).

        A FAILED build is joined only by the items that waited on it (a redelivery sees the
        failure again); a new item claims the key again and builds (see the module docstring).
        """
        claim = self._claim(plan, top, 1)
        if self.store.create_build(plan.key, {**claim, "waiting": [waiter]}):
            return self._start(plan.key, claim)
        for _ in range(MAX_CLAIM_RACES):
            stored = self.store.get_build(plan.key)
            assert stored is not None  # created above by someone, never deleted
            data = stored.data
            record = build_record(plan.key, data)
            if record.state != BuildState.FAILED or waiter in data.get("waiting", []):
                self.store.join_build(plan.key, waiter)
                joined = self.get(plan.key)
                assert joined is not None
                return joined
            again = self._claim(plan, top, record.attempt + 1)
            restarted = self.store.restart_build(
                plan.key,
                {**again, "skipped": False},
                _ATTEMPT_FIELDS,
                waiter,
                _attempt_summary(record),
                stored.version,
            )
            if not restarted:
                continue  # another new item restarted it first: join that build
            log.info(
                "building again after a failed build",
                build_key=plan.key,
                attempt=record.attempt + 1,
                previous_status=record.status,
            )
            return self._start(plan.key, {**data, **again})
        raise Conflict(f"build {plan.key} kept changing while claiming it")

    def _claim(self, plan: BuildPlan, top: str, attempt: int) -> dict[str, Any]:
        """The fields of a fresh claim on `plan`'s key, for build attempt `attempt`."""
        return {
            "state": BuildState.CLAIMED,
            "image": plan.image.uri,
            "tag_uri": plan.tag_uri,
            "project": plan.image.project,
            "location": plan.image.location,
            "created_at": self.clock(),
            "attempt": attempt,
            "request": json.dumps(build_request(plan, top, attempt), sort_keys=True),
        }

    def _start(self, key: str, claim: Mapping[str, Any]) -> BuildRecord:
        """We hold the claim: an image that exists needs no build; else create one."""
        client = self._client()
        image = ImageRef.parse(str(claim["image"]))
        digest = client.get_tag(image, key)
        now = self.clock()
        if digest is not None:
            done = {
                "state": BuildState.SUCCESS,
                "digest": digest,
                "skipped": True,
                "finished_at": now,
            }
            self.store.update_build(key, done)
            log.info("image already built", build_key=key, digest=digest)
            return build_record(key, {**claim, **done})
        request = json.loads(str(claim["request"]))
        try:
            operation = client.create_build(str(claim["project"]), str(claim["location"]), request)
        except CloudBuildError as exc:
            if exc.transient:
                raise  # the claim stays: a redelivery joins it, the sweep repairs it
            # Refused for good (a bad service account, a missing permission): the build
            # failed, once, for every item with this key; nothing retries it in a loop.
            refused = {
                "state": BuildState.FAILED,
                "status": exc.status,
                "detail": f"Cloud Build refused the build: {exc.http_status} {exc.message}",
                "finished_at": now,
            }
            self.store.update_build(key, refused)
            log.warning("build refused", build_key=key, error=str(exc))
            return build_record(key, {**claim, **refused})
        build = operation.get("metadata", {}).get("build", {})
        started = {
            "state": BuildState.BUILDING,
            "build_id": build.get("id"),
            "log_url": build.get("logUrl"),
            "started_at": now,
        }
        self.store.update_build(key, started)
        log.info("build started", build_key=key, build_id=started["build_id"])
        return build_record(key, {**claim, **started})

    # ------------------------------------------------------------------ the sweep
    def follow(self, keys: Iterable[str]) -> list[BuildRecord]:
        """Bring the `builds/{key}` documents of `keys` up to date; return every finished one.

        One `builds.list` per `LIST_CHUNK` keys (their tags OR-ed), whatever the number of items.
        """
        records = [r for r in (self.get(k) for k in sorted(set(keys))) if r is not None]
        finished = [r for r in records if r.finished]
        open_ = [r for r in records if not r.finished]
        by_place: dict[tuple[str, str], list[BuildRecord]] = {}
        for record in open_:
            by_place.setdefault((record.project, record.location), []).append(record)
        for (project, location), group in by_place.items():
            for start in range(0, len(group), LIST_CHUNK):
                chunk = group[start : start + LIST_CHUNK]
                finished += self._follow_chunk(project, location, chunk)
        return finished

    def _follow_chunk(
        self, project: str, location: str, chunk: list[BuildRecord]
    ) -> list[BuildRecord]:
        wanted = {build_tag(r.key, r.attempt): r for r in chunk}
        filter_ = " OR ".join(f'tags="{tag}"' for tag in wanted)
        seen: dict[str, dict[str, Any]] = {}
        for build in self._client().list_builds(project, location, filter_):
            for tag in build.get("tags", []):
                if tag in wanted and tag not in seen:  # newest first: the first is the latest
                    seen[tag] = build
        finished: list[BuildRecord] = []
        for tag, record in wanted.items():
            if tag not in seen:
                self._repair(record)
                continue
            updated = self._apply(record, seen[tag])
            if updated.finished:
                finished.append(updated)
        return finished

    def _repair(self, record: BuildRecord) -> None:
        """A claim with no build: its builder died before creating it. After a grace period,
        create it (the list just showed there is none under its tag)."""
        if record.state != BuildState.CLAIMED or record.created_at is None:
            return
        age = (self.clock() - record.created_at).total_seconds()
        if age < CLAIM_REPAIR_SECONDS:
            return
        stored = self.store.get_build(record.key)
        log.warning("repairing a build claim without a build", build_key=record.key)
        self._start(record.key, stored.data if stored is not None else {})

    def _apply(self, record: BuildRecord, build: Mapping[str, Any]) -> BuildRecord:
        status = status_name(build.get("status"))
        changes: dict[str, Any] = {
            "build_id": build.get("id"),
            "log_url": build.get("logUrl"),
            "status": status,
        }
        if status == "SUCCESS":
            images = build.get("results", {}).get("images", [])
            digest = next(
                (i.get("digest") for i in images if i.get("name") == record.tag_uri), None
            )
            if digest is None and images:
                digest = images[0].get("digest")
            changes.update(state=BuildState.SUCCESS, digest=digest, finished_at=self.clock())
        elif status in FAILED_STATUSES:
            step = _failing_step(build)
            changes.update(
                state=BuildState.FAILED,
                failing_step=step,
                detail=str(build.get("statusDetail") or build.get("failureInfo", {}).get("detail")
                           or f"the build ended {status}"),
                finished_at=self.clock(),
            )  # fmt: skip
        else:
            changes["state"] = BuildState.BUILDING
        if record.started_at is None:
            changes["started_at"] = self.clock()
        self.store.update_build(record.key, changes)
        merged = {
            name: getattr(record, name)
            for name in BuildRecord.__dataclass_fields__
            if name != "key"
        }
        return build_record(record.key, {**merged, **changes})

    # ------------------------------------------------------------------ cancel
    def waiters(self, key: str) -> list[str]:
        stored = self.store.get_build(key)
        waiting = stored.data.get("waiting", []) if stored is not None else []
        return [str(w) for w in waiting]

    def leave(self, key: str, waiter: str, still_waiting: Callable[[str], bool]) -> bool:
        """`waiter` no longer wants the image; cancel the build when nobody else does.

        `still_waiting(waiter)` says whether another waiter's item is still BUILDING. Returns
        whether the build was cancelled.
        """
        self.store.leave_build(key, waiter)
        record = self.get(key)
        if record is None or record.finished or record.build_id is None:
            return False
        if any(still_waiting(other) for other in self.waiters(key)):
            return False
        try:
            self._client().cancel_build(record.project, record.location, record.build_id)
        except CloudBuildError as exc:
            log.warning("cancelling a build failed", build_key=key, error=str(exc))
            return False
        log.info("build cancelled: no item waits on it", build_key=key, build_id=record.build_id)
        return True


def _attempt_summary(record: BuildRecord) -> dict[str, Any]:
    """What a restart keeps of the failed attempt it replaces."""
    return {
        "attempt": record.attempt,
        "build_id": record.build_id,
        "status": record.status,
        "detail": record.detail,
        "log_url": record.log_url,
        "finished_at": record.finished_at,
    }


def _failing_step(build: Mapping[str, Any]) -> int | None:
    for index, step in enumerate(build.get("steps", [])):
        if status_name(step.get("status")) in FAILED_STATUSES - {"CANCELLED"}:
            return index
    return None
