"""The HTTP server: Werkzeug routing, fault injection, error envelopes, and `StandinServer`.

Werkzeug (already a dependency) provides a threaded HTTP/1.1 server with keep-alive and URL
routing; the stand-in adds a `seg` converter because Google's custom methods put `:verb` right
after a path segment (`customJobs/123:cancel`), which Werkzeug's default converter would swallow.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter, Map, Rule
from werkzeug.wrappers import Request, Response

from launchq.log import get_logger
from launchq_local.httpserver import BackgroundServer
from launchq_local.standin import admin_api, api, cloudquotas
from launchq_local.standin.admin import AdminClient
from launchq_local.standin.admin_api import Defaults
from launchq_local.standin.execute import LineSink
from launchq_local.standin.faults import FaultBook
from launchq_local.standin.jobs import JobStore, Mode
from launchq_local.standin.lifecycle import Delays
from launchq_local.standin.limits import Limits
from launchq_local.standin.wire import ApiError

log = get_logger(__name__)


class _Segment(BaseConverter):
    """One path segment without ':' (so `{id}:cancel` splits into id and verb)."""

    regex = r"[^/:]+"


_JOBS = "/v1/projects/<seg:project>/locations/<seg:location>/customJobs"
# The generated client's operations mixin (get_operation, wait_operation) tries `/ui/...` first.
_UI_JOBS = "/ui/projects/<seg:project>/locations/<seg:location>/customJobs"
_ADMIN = "/emulator/v1"
# Cloud Quotas v1 (cloudquotas.py): read-only, built from the limits; no counters, no faults.
_QUOTA_INFOS = (
    "/v1/projects/<seg:project>/locations/<seg:location>/services/<seg:service>/quotaInfos"
)
_QUOTA_API: dict[str, Callable[..., Response]] = {
    "quota_info": cloudquotas.get,
    "quota_infos": cloudquotas.list_infos,
}
# endpoint → (Vertex method name for counters/faults, or None for admin; handler)
_API: dict[str, tuple[str, Callable[..., Response]]] = {
    "create": ("CreateCustomJob", api.create),
    "list": ("ListCustomJobs", api.list_jobs),
    "get": ("GetCustomJob", api.get),
    "delete": ("DeleteCustomJob", api.delete),
    "cancel": ("CancelCustomJob", api.cancel),
    "operation": ("GetOperation", api.get_operation),
    "wait": ("WaitOperation", api.wait_operation),
}
_ADMIN_HANDLERS: dict[str, Callable[..., Response]] = {
    "status": admin_api.status,
    "reset": admin_api.reset,
    "config": admin_api.get_config,
    "patch_config": admin_api.patch_config,
    "counters": admin_api.counters,
    "jobs": admin_api.jobs,
    "job": admin_api.job,
    "set_state": admin_api.set_state,
    "set_outcome": admin_api.set_outcome,
    "job_log": admin_api.job_log,
    "rules": admin_api.outcome_rules,
    "faults": admin_api.fault_list,
    "fault_delete": admin_api.fault_delete,
    "limits": admin_api.limits,
    "scarcity": admin_api.scarcity_rules,
    "scarcity_delete": admin_api.scarcity_delete,
}

URL_MAP = Map(
    [
        Rule(_JOBS, endpoint="create", methods=["POST"]),
        Rule(_JOBS, endpoint="list", methods=["GET"]),
        Rule(f"{_JOBS}/<seg:job>", endpoint="get", methods=["GET"]),
        Rule(f"{_JOBS}/<seg:job>", endpoint="delete", methods=["DELETE"]),
        Rule(f"{_JOBS}/<seg:job>:cancel", endpoint="cancel", methods=["POST"]),
        Rule(f"{_JOBS}/<seg:job>/operations/<seg:operation>", endpoint="operation"),
        Rule(f"{_UI_JOBS}/<seg:job>/operations/<seg:operation>", endpoint="operation"),
        Rule(f"{_JOBS}/<seg:job>/operations/<seg:operation>:wait", endpoint="wait"),
        Rule(f"{_UI_JOBS}/<seg:job>/operations/<seg:operation>:wait", endpoint="wait"),
        Rule(_QUOTA_INFOS, endpoint="quota_infos", methods=["GET"]),
        Rule(f"{_QUOTA_INFOS}/<seg:quota>", endpoint="quota_info", methods=["GET"]),
        Rule(f"{_ADMIN}/status", endpoint="status", methods=["GET"]),
        Rule(f"{_ADMIN}/reset", endpoint="reset", methods=["POST"]),
        Rule(f"{_ADMIN}/config", endpoint="config", methods=["GET"]),
        Rule(f"{_ADMIN}/config", endpoint="patch_config", methods=["PATCH"]),
        Rule(f"{_ADMIN}/counters", endpoint="counters", methods=["GET", "DELETE"]),
        Rule(f"{_ADMIN}/jobs", endpoint="jobs", methods=["GET"]),
        Rule(f"{_ADMIN}/jobs/<seg:job>", endpoint="job", methods=["GET"]),
        Rule(f"{_ADMIN}/jobs/<seg:job>:setState", endpoint="set_state", methods=["POST"]),
        Rule(f"{_ADMIN}/jobs/<seg:job>:setOutcome", endpoint="set_outcome", methods=["POST"]),
        Rule(f"{_ADMIN}/jobs/<seg:job>/log", endpoint="job_log", methods=["GET"]),
        Rule(f"{_ADMIN}/outcomeRules", endpoint="rules", methods=["GET", "POST", "DELETE"]),
        Rule(f"{_ADMIN}/faults", endpoint="faults", methods=["GET", "POST", "DELETE"]),
        Rule(f"{_ADMIN}/faults/<seg:fault>", endpoint="fault_delete", methods=["DELETE"]),
        Rule(f"{_ADMIN}/limits", endpoint="limits", methods=["GET", "PUT"]),
        Rule(f"{_ADMIN}/scarcity", endpoint="scarcity", methods=["GET", "POST", "DELETE"]),
        Rule(f"{_ADMIN}/scarcity/<seg:rule>", endpoint="scarcity_delete", methods=["DELETE"]),
    ],
    converters={"seg": _Segment},
    strict_slashes=False,
    merge_slashes=False,
)


def error_response(error: ApiError) -> Response:
    return admin_api.reply(error.envelope(), error.http)


class StandinApp:
    """The WSGI application: route, count, inject faults, handle, and map errors."""

    def __init__(self, store: JobStore, faults: FaultBook, defaults: Defaults) -> None:
        self.store = store
        self.faults = faults
        self.defaults = defaults

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        response = self.dispatch(request)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        adapter = URL_MAP.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except HTTPException:
            path = request.path
            return error_response(ApiError("NOT_FOUND", f"No such method: {request.method} {path}"))
        try:
            if endpoint in _API:
                return self._vertex(endpoint, request, dict(args))
            if endpoint in _QUOTA_API:
                return _QUOTA_API[endpoint](self.store, request, **args)
            return _ADMIN_HANDLERS[endpoint](
                self.store, self.faults, self.defaults, request, **args
            )
        except ApiError as error:
            return error_response(error)
        except Exception as exc:
            log.exception("stand-in handler failed", endpoint=endpoint)
            return error_response(ApiError("INTERNAL", f"Internal error: {exc!r}"))

    def _vertex(self, endpoint: str, request: Request, args: dict[str, Any]) -> Response:
        method, handler = _API[endpoint]
        draw = self.faults.on_call(method)
        if draw.latency_s:
            time.sleep(draw.latency_s)
        if draw.error is not None and draw.phase == "before":
            raise draw.error
        response = handler(self.store, request, **args)
        if draw.error is not None:
            raise draw.error  # phase "after": the call took effect, the answer is lost
        return response


class StandinServer(BackgroundServer):
    """The stand-in on a local port, in a background thread (`start`) or the foreground.

    >>> with StandinServer() as server:          # port 0: a free port is chosen
    ...     server.url                          # 'http://127.0.0.1:43567'
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        mode: Mode = "scripted",
        delays: Delays | None = None,
        work_dir: Path | None = None,
        kill_grace: float = 2.0,
        limits: Limits | None = None,
        line_sink: LineSink | None = None,
        scarcity: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """`scarcity`: rules in the admin API's JSON shape, in place from the start (a reset
        drops them, like every rule)."""
        delays = delays or Delays()
        limits = limits or Limits()
        if work_dir is not None:
            work_dir.mkdir(parents=True, exist_ok=True)
            self.store = JobStore(
                work_dir, mode=mode, delays=delays, kill_grace=kill_grace, limits=limits
            )
        else:
            self.store = JobStore(mode=mode, delays=delays, kill_grace=kill_grace, limits=limits)
        self.store.line_sink = line_sink
        for rule in scarcity:
            self.store.scarcity.add(dict(rule))  # ValueError on a bad rule, before serving
        self.faults = FaultBook()
        self.app = StandinApp(self.store, self.faults, Defaults(mode, delays, limits))
        super().__init__(self.app, host, port)
        self._admin: AdminClient | None = None

    @property
    def admin(self) -> AdminClient:
        """An admin client for this server (created on first use, closed by `stop`)."""
        if self._admin is None:
            self._admin = AdminClient(self.url)
        return self._admin

    title = "vertex stand-in"

    def _listening(self) -> dict[str, Any]:
        return {"mode": self.store.mode}

    def _close(self) -> None:
        """Kill every executed job's process group, and close the admin client."""
        self.store.close()
        if self._admin is not None:
            self._admin.close()
