"""Builds, their lifecycle, the "registry" they push to, and the source check they run.

A build's status is computed from the time since it was created (QUEUED for `queued_s`, WORKING
for `working_s`, then its outcome), the way the Vertex stand-in's jobs move: no background
thread, so a paused test or a slow machine never races a timer. The work itself (fetch the
tarball, find the Dockerfile, compute the digest) runs once, when the build is created; its
result is only revealed when the build reaches its end.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import tarfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from google.cloud.devtools.cloudbuild_v1.types import cloudbuild
from google.protobuf import timestamp_pb2

from launchq_local.cloudbuild_standin import images
from launchq_local.standin.wire import ApiError

BuildPb = Any  # google.devtools.cloudbuild.v1.Build, the raw protobuf message
Status = cloudbuild.Build.Status
FailureType = cloudbuild.Build.FailureInfo.FailureType
TERMINAL = frozenset(
    {
        Status.SUCCESS,
        Status.FAILURE,
        Status.INTERNAL_ERROR,
        Status.TIMEOUT,
        Status.CANCELLED,
        Status.EXPIRED,
    }
)
DOCKER_BUILDERS = ("gcr.io/cloud-builders/docker", "docker")


@dataclass(frozen=True)
class BuildDelays:
    """Seconds a build spends QUEUED, then WORKING, before its outcome shows."""

    queued_s: float = 0.2
    working_s: float = 0.5


@dataclass(frozen=True)
class Outcome:
    """How a build ends: its final status, and for a failure the step and detail."""

    status: int = Status.SUCCESS
    failing_step: int | None = None
    detail: str = ""
    failure_type: int = FailureType.FAILURE_TYPE_UNSPECIFIED


@dataclass(frozen=True)
class Image:
    """What a successful build pushed: `REGION-docker.pkg.dev/P/R/IMAGE`, one tag, a digest."""

    repository: str
    tag: str
    digest: str
    command: tuple[str, ...]
    entrypoint: tuple[str, ...]
    source: str  # gs://bucket/object the image was built from
    context: str = "."  # the build context in the workspace (the job's working directory)

    @property
    def uri(self) -> str:
        return f"{self.repository}@{self.digest}"


@dataclass
class Build:
    pb: BuildPb
    created: float
    operation: str
    outcome: Outcome
    image: Image | None
    log: list[str] = field(default_factory=list)
    cancelled_at: float | None = None

    @property
    def status(self) -> int:
        return int(self.pb.status)


def _stamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(datetime.fromtimestamp(seconds, UTC))
    return stamp


def log_url(project: str, location: str, build_id: str) -> str:
    return (
        f"https://console.cloud.google.com/cloud-build/builds;region={location}/{build_id}"
        f"?project={project}"
    )


class BuildStore:
    """Every build and every pushed image, guarded by one lock."""

    def __init__(
        self,
        delays: BuildDelays | None = None,
        gcs_url: Callable[[], str | None] | None = None,
        clock: Callable[[], float] = time.time,
        images_dir: Path | None = None,
    ) -> None:
        self.delays = delays or BuildDelays()
        self.images_dir = images_dir
        self._tarballs: dict[str, bytes] = {}  # build id -> source, until the image is saved
        self._gcs_url = gcs_url or (lambda: None)
        self._clock = clock
        self._lock = threading.Lock()
        self._builds: dict[str, Build] = {}
        self._operations: dict[str, str] = {}  # operation name -> build id
        self._images: dict[tuple[str, str], Image] = {}  # (repository, tag) -> image
        self._next_outcomes: list[Outcome] = []
        self._http = requests.Session()
        self._http.trust_env = False

    # ------------------------------------------------------------------ admin
    def reset(self) -> None:
        with self._lock:
            self._builds.clear()
            self._operations.clear()
            self._images.clear()
            self._next_outcomes.clear()

    def queue_outcome(self, outcome: Outcome, count: int = 1) -> None:
        """The next `count` builds end with `outcome` (unless their own work fails first)."""
        with self._lock:
            self._next_outcomes.extend([outcome] * count)

    def set_outcome(self, build_id: str, outcome: Outcome) -> None:
        with self._lock:
            build = self._get(build_id)
            if build.status in TERMINAL:
                raise ApiError("FAILED_PRECONDITION", f"Build {build_id} has already ended.")
            build.outcome = outcome

    def images(self) -> list[Image]:
        with self._lock:
            return list(self._images.values())

    def all(self) -> list[Build]:
        with self._lock:
            for build in self._builds.values():
                self._advance(build)
            return sorted(self._builds.values(), key=lambda b: b.created)

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------ API
    def create(self, project: str, location: str, build: BuildPb) -> Build:
        if not build.steps:
            raise ApiError("INVALID_ARGUMENT", "Request contains an invalid argument: no steps.")
        build_id = str(uuid.uuid4())
        now = self._clock()
        build.id = build_id
        build.name = f"projects/{project}/locations/{location}/builds/{build_id}"
        build.project_id = project
        build.status = Status.QUEUED
        build.create_time.CopyFrom(_stamp(now))
        build.log_url = log_url(project, location, build_id)
        if not build.HasField("timeout"):
            build.timeout.FromSeconds(600)
        operation = f"projects/{project}/locations/{location}/operations/{uuid.uuid4()}"
        outcome, image, lines = self._run(build)
        with self._lock:
            if self._next_outcomes and outcome.status == Status.SUCCESS:
                outcome = self._next_outcomes.pop(0)
                if outcome.status != Status.SUCCESS:
                    image = None
            record = Build(build, now, operation, outcome, image, lines)
            self._builds[build_id] = record
            self._operations[operation] = build_id
            return record

    def get(self, build_id: str) -> Build:
        with self._lock:
            build = self._get(build_id)
            self._advance(build)
            return build

    def by_operation(self, operation: str) -> Build:
        with self._lock:
            build_id = self._operations.get(operation)
            if build_id is None:
                raise ApiError("NOT_FOUND", f"Operation {operation} not found.")
            build = self._builds[build_id]
            self._advance(build)
            return build

    def in_location(self, project: str, location: str) -> list[Build]:
        """Every build of one project and location, newest first (as Cloud Build lists them)."""
        with self._lock:
            found = [
                b
                for b in self._builds.values()
                if b.pb.project_id == project and f"/locations/{location}/" in b.pb.name
            ]
            for build in found:
                self._advance(build)
            return sorted(found, key=lambda b: (-b.created, b.pb.id))

    def cancel(self, build_id: str) -> Build:
        with self._lock:
            build = self._get(build_id)
            self._advance(build)
            if build.status not in TERMINAL:
                build.cancelled_at = self._clock()
                self._finish(build, Outcome(Status.CANCELLED), build.cancelled_at)
            return build

    def tag(self, repository: str, tag: str) -> Image:
        with self._lock:
            image = self._images.get((repository, tag))
            if image is None:
                raise ApiError("NOT_FOUND", f"Requested entity was not found: tag {tag!r}.")
            return image

    # ------------------------------------------------------------------ lifecycle
    def _get(self, build_id: str) -> Build:
        build = self._builds.get(build_id)
        if build is None:
            raise ApiError("NOT_FOUND", f"Build {build_id!r} not found.")
        return build

    def _advance(self, build: Build) -> None:
        """Move a build to where its age puts it (caller holds the lock)."""
        if build.status in TERMINAL:
            return
        age = self._clock() - build.created
        started = build.created + self.delays.queued_s
        if age < self.delays.queued_s:
            return
        if build.status == Status.QUEUED:
            build.pb.status = Status.WORKING
            build.pb.start_time.CopyFrom(_stamp(started))
        done = self.delays.queued_s + self.delays.working_s
        limit = build.pb.timeout.ToTimedelta().total_seconds()
        if self.delays.working_s > limit and age >= self.delays.queued_s + limit:
            detail = f"Build timeout of {limit:g}s exceeded."
            self._finish(build, Outcome(Status.TIMEOUT, detail=detail), started + limit)
        elif age >= done:
            self._finish(build, build.outcome, build.created + done)

    def _finish(self, build: Build, outcome: Outcome, at: float) -> None:
        pb = build.pb
        pb.status = outcome.status
        pb.finish_time.CopyFrom(_stamp(at))
        if not pb.HasField("start_time"):
            pb.start_time.CopyFrom(_stamp(at))
        pb.timing["BUILD"].start_time.CopyFrom(pb.start_time)
        pb.timing["BUILD"].end_time.CopyFrom(pb.finish_time)
        for index, step in enumerate(pb.steps):
            before_failure = outcome.failing_step is not None and index < outcome.failing_step
            if outcome.status == Status.SUCCESS or before_failure:
                step.status = Status.SUCCESS
            elif index == outcome.failing_step:
                step.status = outcome.status
                step.exit_code = 1
            else:
                step.status = Status.CANCELLED if outcome.status == Status.CANCELLED else 0
        if outcome.status == Status.SUCCESS and build.image is not None:
            image = build.image
            built = pb.results.images.add()
            built.name = f"{image.repository}:{image.tag}"
            built.digest = image.digest
            self._images[(image.repository, image.tag)] = image
            tarball = self._tarballs.pop(pb.id, None)
            if self.images_dir is not None and tarball is not None:
                images.save(
                    self.images_dir,
                    image.uri,
                    tarball,
                    image.context,
                    image.command,
                    image.entrypoint,
                )
        elif outcome.status != Status.SUCCESS:
            pb.status_detail = outcome.detail or _default_detail(outcome, pb)
            if outcome.status == Status.FAILURE:
                pb.failure_info.type_ = outcome.failure_type or FailureType.USER_BUILD_STEP
                pb.failure_info.detail = pb.status_detail
            build.log.append(f"ERROR: {pb.status_detail}")

    # ------------------------------------------------------------------ the build's work
    def _run(self, build: BuildPb) -> tuple[Outcome, Image | None, list[str]]:
        """Fetch the source and check the docker step; the outcome is revealed later."""
        lines = [f"starting build {build.id!r}"]
        source = build.source.storage_source
        if not source.bucket or not source.object_:
            return Outcome(Status.SUCCESS), None, [*lines, "no source; nothing to build"]
        where = f"gs://{source.bucket}/{source.object_}"
        lines.append(f"Fetching storage object: {where}")
        try:
            data = self._fetch(source.bucket, source.object_)
        except (OSError, requests.RequestException, ApiError) as exc:
            detail = f"failed to fetch source {where}: {exc}"
            outcome = Outcome(Status.FAILURE, None, detail, FailureType.FETCH_SOURCE_FAILED)
            return outcome, None, [*lines, detail]
        try:
            members = _members(data)
        except (tarfile.TarError, OSError, EOFError) as exc:
            detail = f"failed to unpack source {where}: {exc}"
            outcome = Outcome(Status.FAILURE, None, detail, FailureType.FETCH_SOURCE_FAILED)
            return outcome, None, [*lines, detail]
        for index, step in enumerate(build.steps):
            if step.name not in DOCKER_BUILDERS or not step.args or step.args[0] != "build":
                continue
            tag, dockerfile, context = _docker_args(list(step.args), step.dir_)
            lines.append(f"Step #{index}: docker build -t {tag} -f {dockerfile or '?'}")
            if dockerfile is None or dockerfile not in members:
                missing = dockerfile or "Dockerfile"
                detail = (
                    f'Build step {index} "{step.name}" failed: step exited with non-zero status: '
                    f"1 (unable to prepare context: lstat /workspace/{missing}: no such file "
                    "or directory)"
                )
                outcome = Outcome(Status.FAILURE, index, detail, FailureType.USER_BUILD_STEP)
                return outcome, None, [*lines, detail]
            repository, _, image_tag = tag.rpartition(":")
            if not repository or "/" in image_tag:
                repository, image_tag = tag, "latest"
            if image_tag not in {"latest"} and f"{repository}:{image_tag}" not in build.images:
                lines.append(f"warning: {tag} is built but not listed in images")
            command, entrypoint = _image_config(members[dockerfile])
            digest = hashlib.sha256()
            digest.update(hashlib.sha256(data).digest())
            digest.update(dockerfile.encode())
            digest.update(members[dockerfile])
            image = Image(
                repository,
                image_tag,
                f"sha256:{digest.hexdigest()}",
                command,
                entrypoint,
                where,
                context,
            )
            if self.images_dir is not None:
                self._tarballs[build.id] = data
            lines.append(f"pushed {repository}:{image_tag} {image.digest}")
            return Outcome(Status.SUCCESS), image, lines
        return Outcome(Status.SUCCESS), None, [*lines, "no docker build step"]

    def _fetch(self, bucket: str, name: str) -> bytes:
        base = self._gcs_url()
        if not base:
            raise ApiError("FAILED_PRECONDITION", "no GCS emulator configured (gcs_url)")
        url = f"{base.rstrip('/')}/download/storage/v1/b/{bucket}/o/{quote(name, safe='')}"
        response = self._http.get(url, params={"alt": "media"}, timeout=30)
        if response.status_code != 200:
            raise ApiError("NOT_FOUND", f"{response.status_code} reading gs://{bucket}/{name}")
        return response.content


def _default_detail(outcome: Outcome, pb: BuildPb) -> str:
    if outcome.status == Status.CANCELLED:
        return "Build was cancelled."
    if outcome.failing_step is not None and outcome.failing_step < len(pb.steps):
        step = pb.steps[outcome.failing_step]
        return (
            f'Build step {outcome.failing_step} "{step.name}" failed: step exited with '
            "non-zero status: 1"
        )
    return f"Build ended with {Status(outcome.status).name}."


def _members(data: bytes) -> dict[str, bytes]:
    """Regular files of a .tar.gz, by normalized path (as /workspace would hold them)."""
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            handle = tar.extractfile(member)
            if handle is not None:
                found[posixpath.normpath(member.name)] = handle.read()
    return found


def _docker_args(args: list[str], step_dir: str) -> tuple[str, str | None, str]:
    """`(tag, dockerfile path, context dir)` in the workspace from `docker build` arguments."""
    tag, dockerfile, context = "", "", "."
    rest = iter(args[1:])
    for arg in rest:
        if arg in ("-t", "--tag"):
            tag = next(rest, "")
        elif arg in ("-f", "--file"):
            dockerfile = next(rest, "")
        elif arg.startswith("--tag="):
            tag = arg.split("=", 1)[1]
        elif arg.startswith("--file="):
            dockerfile = arg.split("=", 1)[1]
        elif arg.startswith("-"):
            continue
        else:
            context = arg
    base = step_dir or "."
    where = posixpath.normpath(posixpath.join(base, context))
    if dockerfile:
        path = posixpath.normpath(posixpath.join(base, dockerfile))
    else:
        path = posixpath.normpath(posixpath.join(where, "Dockerfile"))
    if path.startswith("..") or path.startswith("/") or where.startswith(".."):
        return tag, None, where
    return tag, path, where


def _image_config(dockerfile: bytes) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The last CMD and ENTRYPOINT of a Dockerfile (exec form, or shell form via /bin/sh -c)."""
    command: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    for raw in dockerfile.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        word, _, rest = line.partition(" ")
        if word.upper() not in ("CMD", "ENTRYPOINT"):
            continue
        rest = rest.strip()
        try:
            value = json.loads(rest)
            parsed = tuple(str(v) for v in value) if isinstance(value, list) else None
        except json.JSONDecodeError:
            parsed = None
        if parsed is None:
            parsed = ("/bin/sh", "-c", rest) if rest else ()
        if word.upper() == "CMD":
            command = parsed
        else:
            entrypoint = parsed
    return command, entrypoint
