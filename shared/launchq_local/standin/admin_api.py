"""Handlers for the stand-in's own admin API under `/emulator/v1/` (JSON in, JSON out).

Documented endpoint by endpoint in docs/vertex-standin.md; `launchq_local.standin.admin` is the
typed client. Bad input is a 400 in the same Google envelope as the Vertex surface, so one error
path serves both.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Request, Response

from launchq_local.standin import lifecycle
from launchq_local.standin.faults import FaultBook
from launchq_local.standin.jobs import MODES, JobStore, Mode
from launchq_local.standin.lifecycle import Delays, Outcome
from launchq_local.standin.limits import Limits
from launchq_local.standin.wire import ApiError, load_json_object


@dataclass
class Defaults:
    """What `reset` returns the stand-in to: the mode, delays and limits it was started with."""

    mode: Mode
    delays: Delays
    limits: Limits = dataclasses.field(default_factory=Limits)


def reply(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload), status, content_type="application/json; charset=UTF-8")


def _body(request: Request) -> dict[str, Any]:
    return load_json_object(request.get_data(), "body")


def _bad(message: str) -> ApiError:
    return ApiError("INVALID_ARGUMENT", message)


def parse_delays(body: dict[str, Any], base: Delays) -> Delays:
    unknown = set(body) - {"queued", "pending", "running", "cancelling"}
    if unknown:
        raise _bad(f"unknown delay(s): {sorted(unknown)}")
    values: dict[str, Any] = {}
    for key, value in body.items():
        if value is not None and (not isinstance(value, int | float) or value < 0):
            raise _bad(f"delay {key!r} must be a non-negative number or null")
        if key == "cancelling" and value is None:
            raise _bad("the cancelling delay cannot be null")
        values[key] = None if value is None else float(value)
    return dataclasses.replace(base, **values)


def parse_mode(value: Any) -> Mode:
    for mode in MODES:
        if value == mode:
            return mode
    raise _bad(f"mode must be one of {list(MODES)}")


def parse_state(value: Any) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise _bad("state must be a JobState name or number")
    try:
        return lifecycle.state_name(value)
    except ValueError as exc:
        raise _bad(str(exc)) from None


def parse_error(value: Any) -> tuple[int, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("code"), int):
        raise _bad('error must look like {"code": 8, "message": "..."}')
    return value["code"], str(value.get("message", ""))


def parse_outcome(body: dict[str, Any]) -> Outcome:
    try:
        return Outcome(
            parse_state(body.get("state", lifecycle.SUCCEEDED)),
            parse_error(body.get("error")),
            parse_state(body.get("after", lifecycle.RUNNING)),
        )
    except ValueError as exc:
        raise _bad(str(exc)) from None


def parse_limits(value: Any) -> Limits:
    if not isinstance(value, dict):
        raise _bad('limits must look like {"quotas": {...}, "createRequestsPerMinute": 60}')
    try:
        return Limits.from_json(value)
    except ValueError as exc:
        raise _bad(str(exc)) from None


def limits_view(store: JobStore) -> dict[str, Any]:
    return {
        **store.limits.to_json(),
        "usage": store.usage(),
        "createsInWindow": store.rate.in_window(),
    }


def config_view(store: JobStore) -> dict[str, Any]:
    return {
        "mode": store.mode,
        "delays": store.delays.to_json(),
        "workDir": str(store.work_dir),
        "killGraceSeconds": store.kill_grace,
        "limits": store.limits.to_json(),
        "scarcity": [r.to_json() for r in store.scarcity.list()],
    }


def status(store: JobStore, faults: FaultBook, defaults: Defaults, request: Request) -> Response:
    return reply({"ok": True, "jobs": store.job_count(), **config_view(store)})


def reset(store: JobStore, faults: FaultBook, defaults: Defaults, request: Request) -> Response:
    body = _body(request)
    mode = parse_mode(body["mode"]) if "mode" in body else defaults.mode
    delays = parse_delays(body.get("delays") or {}, defaults.delays)
    new_limits = parse_limits(body["limits"]) if "limits" in body else defaults.limits
    seed = body.get("seed")
    seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else None
    store.reset(mode, delays, new_limits, seed)
    faults.reset(seed)
    return reply(config_view(store))


def get_config(
    store: JobStore, faults: FaultBook, defaults: Defaults, request: Request
) -> Response:
    return reply(config_view(store))


def patch_config(
    store: JobStore, faults: FaultBook, defaults: Defaults, request: Request
) -> Response:
    body = _body(request)
    unknown = set(body) - {"mode", "delays"}
    if unknown:
        raise _bad(f"unknown config field(s): {sorted(unknown)}")
    mode = parse_mode(body["mode"]) if "mode" in body else None
    delays = parse_delays(body["delays"], store.delays) if "delays" in body else None
    store.configure(mode, delays)
    return reply(config_view(store))


def counters(store: JobStore, faults: FaultBook, defaults: Defaults, request: Request) -> Response:
    if request.method == "DELETE":
        faults.reset_counts()
    return reply({"counts": faults.counts()})


def jobs(store: JobStore, faults: FaultBook, defaults: Defaults, request: Request) -> Response:
    return reply({"jobs": store.admin_jobs()})


def job(
    store: JobStore, faults: FaultBook, defaults: Defaults, request: Request, job: str
) -> Response:
    return reply(store.admin_job(job))


def set_state(
    store: JobStore, faults: FaultBook, defaults: Defaults, request: Request, job: str
) -> Response:
    body = _body(request)
    state = parse_state(body.get("state"))
    return reply(store.set_state(job, state, parse_error(body.get("error"))))


def set_outcome(
    store: JobStore, faults: FaultBook, defaults: Defaults, request: Request, job: str
) -> Response:
    return reply(store.set_outcome(job, parse_outcome(_body(request))))


def job_log(
    store: JobStore, faults: FaultBook, defaults: Defaults, request: Request, job: str
) -> Response:
    return reply(store.job_log(job))


def outcome_rules(
    store: JobStore, faults: FaultBook, defaults: Defaults, request: Request
) -> Response:
    if request.method == "DELETE":
        store.clear_rules()
    elif request.method == "POST":
        body = _body(request)
        match = body.get("match") or {}
        labels = match.get("labels") or {}
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise _bad("match.labels must map label keys to values (or '*')")
        name = match.get("displayName")
        count = body.get("count", 1)
        if count is not None and (not isinstance(count, int) or count < 1):
            raise _bad("count must be a positive integer or null (every matching job)")
        rule = store.add_rule(labels, name, parse_outcome(body), count)
        return reply(rule.to_json())
    return reply({"rules": [r.to_json() for r in store.rules()]})


def fault_list(
    store: JobStore, faults: FaultBook, defaults: Defaults, request: Request
) -> Response:
    if request.method == "DELETE":
        faults.clear()
    elif request.method == "POST":
        try:
            fault = faults.add(_body(request))
        except ValueError as exc:
            raise _bad(str(exc)) from None
        return reply(fault.to_json())
    return reply({"faults": [f.to_json() for f in faults.list()]})


def fault_delete(
    store: JobStore, faults: FaultBook, defaults: Defaults, request: Request, fault: str
) -> Response:
    if not faults.remove(fault):
        raise ApiError("NOT_FOUND", f"No fault with id {fault!r}.")
    return reply({})


def limits(store: JobStore, faults: FaultBook, defaults: Defaults, request: Request) -> Response:
    """GET: the limits, quota held by active jobs, creates in the current window. PUT: replace
    the limits (the window's history is kept, so lowering the rate applies at once)."""
    if request.method == "PUT":
        store.set_limits(parse_limits(_body(request)))
    return reply(limits_view(store))


def scarcity_rules(
    store: JobStore, faults: FaultBook, defaults: Defaults, request: Request
) -> Response:
    """POST: add a stockout, preempt or flex_expire rule. GET: list them (with how many jobs
    each matched and struck). DELETE: remove them all."""
    if request.method == "DELETE":
        store.scarcity.clear()
    elif request.method == "POST":
        try:
            rule = store.scarcity.add(_body(request))
        except ValueError as exc:
            raise _bad(str(exc)) from None
        return reply(rule.to_json())
    return reply({"rules": [r.to_json() for r in store.scarcity.list()]})


def scarcity_delete(
    store: JobStore, faults: FaultBook, defaults: Defaults, request: Request, rule: str
) -> Response:
    if not store.scarcity.remove(rule):
        raise ApiError("NOT_FOUND", f"No scarcity rule with id {rule!r}.")
    return reply({})
