"""Images built from source by Cloud Build: content-addressed, built once, followed in bulk.

The image of a source item on a queue with a `builder` block is
`DESTINATION:<source sha256>-<8 hex of the builder settings>`: the same source with the same
settings is the same tag, so it is built once, ever. Three layers keep it once:

1. Artifact Registry: before building, one tag GET; a tag that exists is a finished build.
2. Firestore: one document per build key, `builds/{key}`, made with `create()` (fails if it
   exists, like the item claims in `launchq.store`). The delivery that creates it builds; every
   other delivery of an item with the same key joins it (`waiting`, an array union) and does not.
3. Cloud Build tags: the build carries `launchq-<key>`, so a claim whose builder died between
   claiming and creating is repaired by a list on that tag before a second create.

A failed build fails the items that waited on it, and a redelivery of one of them, but it does
not poison the key: a NEW item with the same source and settings builds again (attempt N+1,
tagged `launchq-<key>-rN+1`). Without that, a transient Cloud Build failure, or a permission
fixed after a refusal, would fail every later item of that source until someone deleted the
document by hand. The restart is a compare-and-swap on the failed document (`last_update_time`
precondition), so items arriving together after a failure still start one build, and each
rebuild needs a new item, so nothing loops.

The sweep follows every open build with ONE `builds.list` per 20 keys (a filter OR-ing their
tags), not a GET per build, and turns each finished one into the states of the items waiting on
it (`launchq.sweep` calls `BuildFollower.follow`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from launchq.buildplan import (
    TOP_METADATA,
    BuildPlan,
    ImageRef,
    build_request,
    build_tag,
    destination_problem,
    dockerfile_problem,
    pin_image,
)
from launchq.cloudbuild import (
    FAILED_STATUSES,
    CloudBuildClient,
    CloudBuildError,
    status_name,
)
from launchq.errors import Conflict
from launchq.log import get_logger
from launchq.reasons import ErrorRecord, FailureReason, RejectReason, WaitReason
from launchq.recorder import Recorder
from launchq.records import Changes, ItemRecord
from launchq.render import content_hash
from launchq.states import ItemState
from launchq.store import BuildStore, Store, Transition

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


def _record(key: str, data: Mapping[str, Any]) -> BuildRecord:
    fields: dict[str, Any] = {
        name: data.get(name) for name in BuildRecord.__dataclass_fields__ if name != "key"
    }
    fields["skipped"] = bool(fields.get("skipped"))
    fields["attempt"] = int(fields.get("attempt") or 1)
    return BuildRecord(key=key, **fields)


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
        return _record(key, stored.data) if stored is not None else None

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
            record = _record(plan.key, data)
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
            return _record(key, {**claim, **done})
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
            return _record(key, {**claim, **refused})
        build = operation.get("metadata", {}).get("build", {})
        started = {
            "state": BuildState.BUILDING,
            "build_id": build.get("id"),
            "log_url": build.get("logUrl"),
            "started_at": now,
        }
        self.store.update_build(key, started)
        log.info("build started", build_key=key, build_id=started["build_id"])
        return _record(key, {**claim, **started})

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
        return _record(record.key, {**merged, **changes})

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


@dataclass(frozen=True)
class Decision:
    """How the dispatcher records a source item on a building queue."""

    state: ItemState
    cause: str
    fields: dict[str, Any]
    problem: str | None = None


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


def _build_key(item: ItemRecord) -> str | None:
    build = item.stored.get("build")
    key = build.get("build_key") if isinstance(build, Mapping) else None
    return str(key) if key else None
