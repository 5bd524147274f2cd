"""A small typed client for the stand-in's admin API (`/emulator/v1/`).

Tests and benchmarks drive the stand-in through this instead of hand-written HTTP calls, so the
admin surface has one place that knows its JSON shapes. Jobs can be named by their full resource
name or by the bare id; states by `JOB_STATE_FAILED`, `FAILED` or `types.JobState.JOB_STATE_FAILED`.

    admin = AdminClient("http://127.0.0.1:8090")
    admin.reset()
    admin.add_fault(methods=["CreateCustomJob"], http_status=429, count=1)
    admin.add_outcome_rule(labels={"run": "r1"}, state="FAILED", error=(8, "resource exhausted"))
    admin.counters()["CreateCustomJob"]
    admin.add_scarcity("stockout", "us-central1", accelerator="NVIDIA_TESLA_A100")
    admin.add_scarcity("preempt", "*", fraction=0.3)  # a preemption storm on SPOT jobs
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import requests

from launchq_local.standin.faults import Method
from launchq_local.standin.lifecycle import state_name
from launchq_local.standin.scarcity import Kind as ScarcityKind

_UNSET: Any = object()


class AdminError(RuntimeError):
    """The admin API answered an error envelope."""

    def __init__(self, status_code: int, payload: Any) -> None:
        self.status_code = status_code
        self.payload = payload
        error = payload.get("error", {}) if isinstance(payload, dict) else {}
        super().__init__(
            f"{status_code} {error.get('status', '')}: {error.get('message', payload)}"
        )


def job_id(job: str) -> str:
    """`projects/…/customJobs/123` or `123` → `123`."""
    return job.rstrip("/").rsplit("/", 1)[-1]


def _limits_json(quotas: Mapping[str, int] | None, rpm: int | None) -> dict[str, Any]:
    return {"quotas": dict(quotas or {}), "createRequestsPerMinute": rpm}


def _error_json(error: tuple[int, str] | None) -> dict[str, Any] | None:
    return None if error is None else {"code": error[0], "message": error[1]}


class AdminClient:
    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()

    def close(self) -> None:
        self._session.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._session.request(
            method, f"{self.base_url}/emulator/v1/{path}", json=body, timeout=self.timeout
        )
        payload = response.json() if response.content else {}
        if response.status_code >= 400:
            raise AdminError(response.status_code, payload)
        return payload

    # ---- whole stand-in -----------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return dict(self._call("GET", "status"))

    def reset(
        self,
        mode: Literal["scripted", "execute"] | None = None,
        delays: dict[str, float | None] | None = None,
        seed: int | None = None,
        quotas: Mapping[str, int] | None = None,
        create_requests_per_minute: int | None = None,
    ) -> dict[str, Any]:
        """Drop jobs, rules, scarcity rules, faults and counters, kill processes; back to startup
        settings (or the given ones; passing quotas or a rate replaces the startup limits).
        `seed` seeds probabilistic faults and the scarcity rules added afterwards."""
        body: dict[str, Any] = {}
        if mode is not None:
            body["mode"] = mode
        if delays is not None:
            body["delays"] = delays
        if seed is not None:
            body["seed"] = seed
        if quotas is not None or create_requests_per_minute is not None:
            body["limits"] = _limits_json(quotas, create_requests_per_minute)
        return dict(self._call("POST", "reset", body))

    def config(self) -> dict[str, Any]:
        return dict(self._call("GET", "config"))

    def set_mode(self, mode: Literal["scripted", "execute"]) -> dict[str, Any]:
        """Applies to jobs created from now on."""
        return dict(self._call("PATCH", "config", {"mode": mode}))

    def set_delays(
        self,
        queued: float | None = _UNSET,
        pending: float | None = _UNSET,
        running: float | None = _UNSET,
        cancelling: float = _UNSET,
    ) -> dict[str, Any]:
        """Seconds per state for jobs created from now on; None = stay until told otherwise."""
        given = {"queued": queued, "pending": pending, "running": running}
        given["cancelling"] = cancelling
        delays = {k: v for k, v in given.items() if v is not _UNSET}
        return dict(self._call("PATCH", "config", {"delays": delays}))

    def limits(self) -> dict[str, Any]:
        """`{"quotas", "createRequestsPerMinute", "usage": {region: {metric: held}},
        "createsInWindow": {region: n}}`."""
        return dict(self._call("GET", "limits"))

    def set_limits(
        self,
        quotas: Mapping[str, int] | None = None,
        create_requests_per_minute: int | None = None,
    ) -> dict[str, Any]:
        """Replace the limits (nothing given: no limits). Quotas are per region, by metric
        (`custom_model_training_nvidia_a100_gpus`, with or without `aiplatform.googleapis.com/`)."""
        body = _limits_json(quotas, create_requests_per_minute)
        return dict(self._call("PUT", "limits", body))

    def counters(self) -> dict[str, int]:
        """Calls received per Vertex method since the last reset (faulted calls included)."""
        return {k: int(v) for k, v in self._call("GET", "counters")["counts"].items()}

    def reset_counters(self) -> None:
        self._call("DELETE", "counters")

    # ---- jobs ---------------------------------------------------------------------------

    def jobs(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "jobs")["jobs"])

    def job(self, job: str) -> dict[str, Any]:
        return dict(self._call("GET", f"jobs/{job_id(job)}"))

    def set_state(
        self, job: str, state: str | int, error: tuple[int, str] | None = None
    ) -> dict[str, Any]:
        """Pin the job to `state` now (its scripted future is dropped, its process killed)."""
        body = {"state": state_name(state), "error": _error_json(error)}
        return dict(self._call("POST", f"jobs/{job_id(job)}:setState", body))

    def set_outcome(
        self,
        job: str,
        state: str | int,
        error: tuple[int, str] | None = None,
        after: str | int = "JOB_STATE_RUNNING",
    ) -> dict[str, Any]:
        """Change how a scripted job ends, when its timeline gets there."""
        body = {"state": state_name(state), "error": _error_json(error), "after": state_name(after)}
        return dict(self._call("POST", f"jobs/{job_id(job)}:setOutcome", body))

    def job_log(self, job: str) -> dict[str, str]:
        """`{"stdout": …, "stderr": …}` of an executed job (empty strings when scripted)."""
        return dict(self._call("GET", f"jobs/{job_id(job)}/log"))

    # ---- outcome rules ------------------------------------------------------------------

    def add_outcome_rule(
        self,
        state: str | int,
        error: tuple[int, str] | None = None,
        labels: dict[str, str] | None = None,
        display_name: str | None = None,
        after: str | int = "JOB_STATE_RUNNING",
        count: int | None = 1,
    ) -> dict[str, Any]:
        """The next `count` jobs (None: all) matching labels (`"*"`: key exists) and a
        display-name glob end in `state` after `after`."""
        body = {
            "match": {"labels": labels or {}, "displayName": display_name},
            "state": state_name(state),
            "error": _error_json(error),
            "after": state_name(after),
            "count": count,
        }
        return dict(self._call("POST", "outcomeRules", body))

    def outcome_rules(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "outcomeRules")["rules"])

    def clear_outcome_rules(self) -> None:
        self._call("DELETE", "outcomeRules")

    # ---- faults -------------------------------------------------------------------------

    def add_fault(
        self,
        methods: Sequence[Method] = (),
        http_status: int | None = None,
        status: str | None = None,
        message: str = "",
        count: int | None = _UNSET,
        probability: float = _UNSET,
        latency_ms: int = 0,
        phase: Literal["before", "after"] = "before",
    ) -> dict[str, Any]:
        """Inject an error and/or latency into Vertex calls (`methods` empty: all of them).

        `count` defaults to 1, or to unlimited when a `probability` is given."""
        body: dict[str, Any] = {
            "methods": list(methods),
            "httpStatus": http_status,
            "status": status,
            "message": message,
            "latencyMs": latency_ms,
            "phase": phase,
        }
        if count is not _UNSET:
            body["count"] = count
        if probability is not _UNSET:
            body["probability"] = probability
        return dict(self._call("POST", "faults", body))

    def faults(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "faults")["faults"])

    def remove_fault(self, fault_id: str) -> None:
        self._call("DELETE", f"faults/{fault_id}")

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    # ---- scarcity -----------------------------------------------------------------------

    def add_scarcity(
        self,
        kind: ScarcityKind,
        region: str,
        accelerator: str = "*",
        strategy: str | None = None,
        count: int | None = None,
        fraction: float | None = None,
        delay_seconds: float | None = None,
        wait_scale: float | None = None,
        max_wait_seconds: float | None = _UNSET,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """A scripted shortage in `region` (`"*"`: any) for pool 0's `accelerator` (an
        AcceleratorType name, `"*"`: any, CPU-only jobs included):

        - `"stockout"`: matching jobs FAIL with Vertex's capacity error `delay_seconds` after
          PENDING (default 3), never running;
        - `"preempt"`: matching SPOT jobs FAIL as preempted `delay_seconds` after RUNNING;
        - `"flex_expire"`: matching FLEX_START jobs stay PENDING for their max_wait_duration
          times `wait_scale` (default 1), at most `max_wait_seconds` (default 5; None: no cap),
          then end EXPIRED.

        It strikes the next `count` matching jobs, a `fraction` of them (reproducible with
        `seed`, or with `reset(seed=…)` before adding), or (neither) all of them."""
        body: dict[str, Any] = {"kind": kind, "region": region, "accelerator": accelerator}
        optional = {
            "strategy": strategy,
            "count": count,
            "fraction": fraction,
            "delaySeconds": delay_seconds,
            "waitScale": wait_scale,
            "seed": seed,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        if max_wait_seconds is not _UNSET:
            body["maxWaitSeconds"] = max_wait_seconds
        return dict(self._call("POST", "scarcity", body))

    def scarcity(self) -> list[dict[str, Any]]:
        """The rules, each with `matched` (matching jobs seen) and `fired` (jobs struck)."""
        return list(self._call("GET", "scarcity")["rules"])

    def remove_scarcity(self, rule_id: str) -> None:
        self._call("DELETE", f"scarcity/{rule_id}")

    def clear_scarcity(self) -> None:
        self._call("DELETE", "scarcity")
