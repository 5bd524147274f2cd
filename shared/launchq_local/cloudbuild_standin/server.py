"""The Cloud Build stand-in's HTTP server: Cloud Build v1 REST, the Artifact Registry tag GET,
and an admin API under `/emulator/v1`.

Requests are parsed strictly with `cloudbuild_v1`'s own messages (unknown fields and wrong types
are Google-worded 400s, through the Vertex stand-in's wire walker), errors use Google's envelope,
and answers honour `$alt=json;enum-encoding=int` as the generated REST client asks. Werkzeug
serves it, like the Vertex stand-in, on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from google.cloud.devtools.cloudbuild_v1.types import cloudbuild
from google.longrunning import operations_pb2  # type: ignore[import-untyped]
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter, Map, Rule
from werkzeug.wrappers import Request, Response

from launchq.log import get_logger
from launchq_local.cloudbuild_standin.builds import (
    TERMINAL,
    Build,
    BuildDelays,
    BuildStore,
    Outcome,
    Status,
)
from launchq_local.httpserver import BackgroundServer
from launchq_local.standin.wire import (
    ApiError,
    load_json_object,
    parse_message,
    to_json,
    wants_int_enums,
)

log = get_logger(__name__)


class _Segment(BaseConverter):
    """One path segment without ':' (so `{id}:cancel` splits into id and verb)."""

    regex = r"[^/:]+"


_LOC = "/v1/projects/<seg:project>/locations/<seg:location>"
# The generated client transcodes to the first matching rule: with `project_id` set, that is the
# global form, the location riding along in a `parent` / `name` query parameter.
_GLOBAL = "/v1/projects/<seg:project>"
_AR = f"{_LOC}/repositories/<seg:repo>/packages/<seg:package>/tags/<seg:tag>"
_ADMIN = "/emulator/v1"

URL_MAP = Map(
    [
        Rule(f"{_LOC}/builds", endpoint="CreateBuild", methods=["POST"]),
        Rule(f"{_LOC}/builds", endpoint="ListBuilds", methods=["GET"]),
        Rule(f"{_LOC}/builds/<seg:build>", endpoint="GetBuild", methods=["GET"]),
        Rule(f"{_LOC}/builds/<seg:build>:cancel", endpoint="CancelBuild", methods=["POST"]),
        Rule(f"{_LOC}/operations/<seg:operation>", endpoint="GetOperation", methods=["GET"]),
        Rule(f"{_GLOBAL}/builds", endpoint="CreateBuild", methods=["POST"]),
        Rule(f"{_GLOBAL}/builds", endpoint="ListBuilds", methods=["GET"]),
        Rule(f"{_GLOBAL}/builds/<seg:build>", endpoint="GetBuild", methods=["GET"]),
        Rule(f"{_GLOBAL}/builds/<seg:build>:cancel", endpoint="CancelBuild", methods=["POST"]),
        Rule(_AR, endpoint="GetTag", methods=["GET"]),
        Rule(f"{_ADMIN}/reset", endpoint="reset", methods=["POST"]),
        Rule(f"{_ADMIN}/config", endpoint="config", methods=["GET", "PATCH"]),
        Rule(f"{_ADMIN}/counters", endpoint="counters", methods=["GET"]),
        Rule(f"{_ADMIN}/builds", endpoint="builds", methods=["GET"]),
        Rule(f"{_ADMIN}/builds/<seg:build>/log", endpoint="build_log", methods=["GET"]),
        Rule(f"{_ADMIN}/builds/<seg:build>:setOutcome", endpoint="set_outcome", methods=["POST"]),
        Rule(f"{_ADMIN}/outcomes", endpoint="outcomes", methods=["POST"]),
        Rule(f"{_ADMIN}/images", endpoint="images", methods=["GET"]),
        Rule(f"{_ADMIN}/faults", endpoint="faults", methods=["POST", "DELETE"]),
    ],
    converters={"seg": _Segment},
    strict_slashes=False,
    merge_slashes=False,
)
API_METHODS = frozenset({"CreateBuild", "ListBuilds", "GetBuild", "CancelBuild", "GetOperation"})
_FILTER_TERM = re.compile(r'^\s*(tags|status|id|images)\s*=\s*"?([^"]*)"?\s*$')
_STATUS_BY_NAME: dict[str, int] = {
    value.name: value.number
    for value in cloudbuild.Build.pb().DESCRIPTOR.enum_types_by_name["Status"].values
}


def _reply(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, mimetype="application/json")


def _message_reply(message: Any, request: Request) -> Response:
    body = to_json(message, wants_int_enums(request.args.get("$alt")))
    return Response(body, status=200, mimetype="application/json")


def parse_filter(text: str) -> Callable[[Any], bool]:
    """Cloud Build's list filter, the part launchq uses: `key="value"` terms joined by AND/OR
    (AND binds tighter), on tags, status, id and images. Anything else is a 400, as on Google.
    """
    text = text.strip()
    if not text:
        return lambda _build: True
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    alternatives: list[list[tuple[str, str]]] = []
    for part in re.split(r"\s+OR\s+", text):
        terms = []
        for raw in re.split(r"\s+AND\s+", part):
            match = _FILTER_TERM.match(raw)
            if match is None:
                raise ApiError("INVALID_ARGUMENT", f"Invalid filter: {text!r}")
            key, value = match.groups()
            if key == "status" and value not in _STATUS_BY_NAME:
                raise ApiError("INVALID_ARGUMENT", f"Invalid status in filter: {value!r}")
            terms.append((key, value))
        alternatives.append(terms)

    def matches(build: Any) -> bool:
        return any(all(_term(build, k, v) for k, v in terms) for terms in alternatives)

    return matches


def _term(build: Any, key: str, value: str) -> bool:
    if key == "tags":
        return value in build.tags
    if key == "status":
        return bool(build.status == _STATUS_BY_NAME[value])
    if key == "id":
        return bool(build.id == value)
    return value in build.images


def operation_of(build: Build) -> Any:
    operation = operations_pb2.Operation(name=build.operation)
    metadata = cloudbuild.BuildOperationMetadata.pb(cloudbuild.BuildOperationMetadata())
    metadata.build.CopyFrom(build.pb)
    operation.metadata.Pack(metadata)
    if build.status in TERMINAL:
        operation.done = True
        if build.status == Status.SUCCESS:
            operation.response.Pack(build.pb)
        else:
            operation.error.code = 2  # UNKNOWN, what Cloud Build reports for a failed build
            operation.error.message = f"Build failed; status {Status(build.status).name}: " + (
                build.pb.status_detail or "check build logs for details"
            )
    return operation


class CloudBuildApp:
    def __init__(self, store: BuildStore) -> None:
        self.store = store
        self.counters: Counter[str] = Counter()
        self.faults: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        adapter = URL_MAP.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except HTTPException as exc:
            status = "NOT_FOUND" if exc.code == 404 else "INVALID_ARGUMENT"
            error = ApiError(status, f"{request.method} {request.path}: {exc.name}")
            return _reply(error.envelope(), exc.code or 400)
        try:
            if endpoint in API_METHODS or endpoint == "GetTag":
                self._count_and_fault(endpoint)
            args = dict(args)
            if endpoint in API_METHODS and "location" not in args:
                args["location"] = _location_of(request)
            handler: Callable[..., Response] = getattr(self, f"_{endpoint}")
            return handler(request, **args)
        except ApiError as error:
            return _reply(error.envelope(), error.http)
        except Exception as exc:
            log.exception("cloud build stand-in handler failed", endpoint=endpoint)
            return _reply(ApiError("INTERNAL", f"Internal error: {exc!r}").envelope(), 500)

    def _count_and_fault(self, method: str) -> None:
        with self._lock:
            self.counters[method] += 1
            for fault in self.faults:
                if method in fault["methods"] and fault["count"] > 0:
                    fault["count"] -= 1
                    raise ApiError(fault["status"], f"Injected fault: {fault['status']}.")

    # ------------------------------------------------------------------ Cloud Build v1
    def _CreateBuild(self, request: Request, project: str, location: str) -> Response:
        body = load_json_object(request.get_data(), "build")
        build = parse_message(body, cloudbuild.Build.pb(cloudbuild.Build()), "build")
        record = self.store.create(project, location, build)
        log.info("build created", build=record.pb.id, tags=list(record.pb.tags))
        return _message_reply(operation_of(record), request)

    def _ListBuilds(self, request: Request, project: str, location: str) -> Response:
        matches = parse_filter(request.args.get("filter", ""))
        try:
            size = int(request.args.get("pageSize", "0") or 0)
            offset = int(request.args.get("pageToken", "0") or 0)
        except ValueError:
            raise ApiError("INVALID_ARGUMENT", "Invalid pageSize or pageToken.") from None
        size = size if 0 < size <= 500 else 50
        found = [b for b in self.store.in_location(project, location) if matches(b.pb)]
        page = found[offset : offset + size]
        answer = cloudbuild.ListBuildsResponse.pb(cloudbuild.ListBuildsResponse())
        for build in page:
            answer.builds.add().CopyFrom(build.pb)
        if offset + size < len(found):
            answer.next_page_token = str(offset + size)
        return _message_reply(answer, request)

    def _GetBuild(self, request: Request, project: str, location: str, build: str) -> Response:
        return _message_reply(self.store.get(build).pb, request)

    def _CancelBuild(self, request: Request, project: str, location: str, build: str) -> Response:
        body = load_json_object(request.get_data(), "")
        parse_message(body, cloudbuild.CancelBuildRequest.pb(cloudbuild.CancelBuildRequest()), "")
        return _message_reply(self.store.cancel(build).pb, request)

    def _GetOperation(
        self, request: Request, project: str, location: str, operation: str
    ) -> Response:
        name = f"projects/{project}/locations/{location}/operations/{operation}"
        return _message_reply(operation_of(self.store.by_operation(name)), request)

    # ------------------------------------------------------------------ Artifact Registry
    def _GetTag(
        self, request: Request, project: str, location: str, repo: str, package: str, tag: str
    ) -> Response:
        repository = f"{location}-docker.pkg.dev/{project}/{repo}/{package}"
        image = self.store.tag(repository, tag)
        base = f"projects/{project}/locations/{location}/repositories/{repo}/packages/{package}"
        return _reply({"name": f"{base}/tags/{tag}", "version": f"{base}/versions/{image.digest}"})

    # ------------------------------------------------------------------ admin
    def _reset(self, request: Request) -> Response:
        self.store.reset()
        with self._lock:
            self.counters.clear()
            self.faults.clear()
        return _reply({})

    def _config(self, request: Request) -> Response:
        if request.method == "PATCH":
            body = load_json_object(request.get_data(), "")
            queued = float(body.get("queuedSeconds", self.store.delays.queued_s))
            working = float(body.get("workingSeconds", self.store.delays.working_s))
            if queued < 0 or working < 0:
                raise ApiError("INVALID_ARGUMENT", "delays must be >= 0")
            self.store.delays = BuildDelays(queued, working)
        delays = self.store.delays
        return _reply({"queuedSeconds": delays.queued_s, "workingSeconds": delays.working_s})

    def _counters(self, request: Request) -> Response:
        with self._lock:
            return _reply(dict(self.counters))

    def _builds(self, request: Request) -> Response:
        rows = []
        for project_builds in self.store.all():
            rows.append(
                {
                    "id": project_builds.pb.id,
                    "status": Status(project_builds.status).name,
                    "tags": list(project_builds.pb.tags),
                    "image": project_builds.image.uri if project_builds.image else None,
                }
            )
        return _reply({"builds": rows})

    def _build_log(self, request: Request, build: str) -> Response:
        return Response("\n".join(self.store.get(build).log) + "\n", mimetype="text/plain")

    def _set_outcome(self, request: Request, build: str) -> Response:
        self.store.set_outcome(build, _outcome(load_json_object(request.get_data(), "")))
        return _reply({})

    def _outcomes(self, request: Request) -> Response:
        body = load_json_object(request.get_data(), "")
        count = int(body.pop("count", 1))
        self.store.queue_outcome(_outcome(body), count)
        return _reply({})

    def _images(self, request: Request) -> Response:
        return _reply(
            {
                "images": [
                    {
                        "uri": image.uri,
                        "tag": f"{image.repository}:{image.tag}",
                        "command": list(image.command),
                        "entrypoint": list(image.entrypoint),
                        "source": image.source,
                    }
                    for image in self.store.images()
                ]
            }
        )

    def _faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            with self._lock:
                self.faults.clear()
            return _reply({})
        body = load_json_object(request.get_data(), "")
        methods = body.get("methods") or []
        if not methods or not set(methods) <= API_METHODS | {"GetTag"}:
            raise ApiError("INVALID_ARGUMENT", f"methods must be among {sorted(API_METHODS)}")
        fault = {
            "methods": frozenset(methods),
            "status": str(body.get("status", "UNAVAILABLE")),
            "count": int(body.get("count", 1)),
        }
        with self._lock:
            self.faults.append(fault)
        return _reply({"count": fault["count"]})


def _location_of(request: Request) -> str:
    """The location of a global-form request: from its `parent` or `name`, else `global`."""
    for key in ("parent", "name"):
        match = re.search(r"/locations/([^/]+)", request.args.get(key, ""))
        if match:
            return match.group(1)
    if request.method == "POST" and request.path.endswith(":cancel"):
        body = load_json_object(request.get_data(), "")
        match = re.search(r"/locations/([^/]+)", str(body.get("name", "")))
        if match:
            return match.group(1)
    return "global"


def _outcome(body: dict[str, Any]) -> Outcome:
    name = str(body.get("status", "SUCCESS"))
    if name not in _STATUS_BY_NAME or name in ("STATUS_UNKNOWN", "PENDING", "QUEUED", "WORKING"):
        raise ApiError("INVALID_ARGUMENT", f"status must be a final build status, not {name!r}")
    step = body.get("failingStep")
    return Outcome(
        _STATUS_BY_NAME[name],
        int(step) if step is not None else None,
        str(body.get("detail", "")),
    )


class CloudBuildStandin(BackgroundServer):
    """The stand-in on a 127.0.0.1 port, served from a background thread.

    `gcs_url` is the GCS emulator builds read their sources from (default: the
    `STORAGE_EMULATOR_HOST` of the moment a build starts). With `images_dir`, every successful
    build's source is unpacked there for the Vertex stand-in to run (`images`).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        delays: BuildDelays | None = None,
        gcs_url: str | None = None,
        images_dir: Path | None = None,
    ) -> None:
        self.store = BuildStore(
            delays,
            gcs_url=lambda: gcs_url or os.environ.get("STORAGE_EMULATOR_HOST"),
            images_dir=images_dir,
        )
        self.app = CloudBuildApp(self.store)
        super().__init__(self.app, host, port)

    title = "cloud build stand-in"

    def _close(self) -> None:
        self.store.close()
