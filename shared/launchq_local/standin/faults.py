"""Injected faults and per-method call counters for the Vertex API surface.

Faults exist to test retries and idempotency: a status (HTTP code and google.rpc status), the
method(s) it hits, how many times (`count`) or how often (`probability`), and added latency. A
fault with `phase="after"` lets the call take effect and then answers the error, which is how a
lost response looks to a client (Create is not idempotent: a retry makes a duplicate job).
"""

from __future__ import annotations

import itertools
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from launchq_local.standin.wire import HTTP_FOR_STATUS, STATUS_FOR_HTTP, ApiError

Method = Literal[
    "CreateCustomJob",
    "GetCustomJob",
    "ListCustomJobs",
    "CancelCustomJob",
    "DeleteCustomJob",
    "GetOperation",
    "WaitOperation",
]
METHODS: tuple[str, ...] = get_args(Method)
Phase = Literal["before", "after"]


@dataclass
class Fault:
    """One injection rule; `count=None` means unlimited."""

    id: str
    methods: frozenset[str]
    http_status: int | None
    status: str | None
    message: str
    count: int | None
    probability: float
    latency_ms: int
    phase: Phase
    fired: int = 0

    def error(self) -> ApiError | None:
        if self.http_status is None and self.status is None:
            return None  # a latency-only fault
        status = self.status or STATUS_FOR_HTTP.get(self.http_status or 500, "UNKNOWN")
        http = self.http_status or HTTP_FOR_STATUS.get(status, 500)
        message = self.message or f"Injected fault {self.id}: {status}."
        return ApiError(status, message, http_status=http)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "methods": sorted(self.methods),
            "httpStatus": self.http_status,
            "status": self.status,
            "message": self.message,
            "count": self.count,
            "probability": self.probability,
            "latencyMs": self.latency_ms,
            "phase": self.phase,
            "fired": self.fired,
        }


def fault_from_json(body: dict[str, Any], fault_id: str) -> Fault:
    """Validate an admin request body; raises ValueError with a readable message."""
    known = {"methods", "httpStatus", "status", "message", "count", "probability", "latencyMs"}
    unknown = set(body) - known - {"phase"}
    if unknown:
        raise ValueError(f"unknown fault field(s): {sorted(unknown)}")
    methods = frozenset(body.get("methods") or [])
    if not methods <= set(METHODS):
        raise ValueError(f"methods must be among {list(METHODS)}")
    status = body.get("status")
    if status is not None and status not in HTTP_FOR_STATUS:
        raise ValueError(f"unknown google.rpc status {status!r}")
    http = body.get("httpStatus")
    if http is not None and not (isinstance(http, int) and 400 <= http <= 599):
        raise ValueError("httpStatus must be an integer between 400 and 599")
    probability = float(body.get("probability", 1.0))
    if not 0.0 <= probability <= 1.0:
        raise ValueError("probability must be between 0 and 1")
    count = body.get("count", None if "probability" in body else 1)
    if count is not None and (not isinstance(count, int) or count < 1):
        raise ValueError("count must be a positive integer or null (unlimited)")
    phase = body.get("phase", "before")
    if phase not in ("before", "after"):
        raise ValueError("phase must be 'before' or 'after'")
    return Fault(
        id=fault_id,
        methods=methods,
        http_status=http,
        status=status,
        message=str(body.get("message", "")),
        count=count,
        probability=probability,
        latency_ms=int(body.get("latencyMs", 0)),
        phase=phase,
    )


@dataclass
class Draw:
    """What the faults decided for one call."""

    latency_s: float = 0.0
    error: ApiError | None = None
    phase: Phase = "before"


@dataclass
class FaultBook:
    """Faults and counters behind their own lock (cheap, and independent of the job store)."""

    _faults: list[Fault] = field(default_factory=list)
    _counts: Counter[str] = field(default_factory=Counter)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _random: random.Random = field(default_factory=random.Random)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, body: dict[str, Any]) -> Fault:
        with self._lock:
            fault = fault_from_json(body, f"fault-{next(self._ids)}")
            self._faults.append(fault)
            return fault

    def list(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def remove(self, fault_id: str) -> bool:
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.id != fault_id]
            return len(self._faults) != before

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {method: self._counts.get(method, 0) for method in METHODS}

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()

    def reset(self, seed: int | None = None) -> None:
        with self._lock:
            self._faults.clear()
            self._counts.clear()
            self._random.seed(seed)

    def on_call(self, method: str) -> Draw:
        """Count the call, then let every matching fault fire (first error wins).

        Spent faults stay listed (with `count` 0) so tests can read how often each fired.
        """
        draw = Draw()
        with self._lock:
            self._counts[method] += 1
            for fault in self._faults:
                if not self._fires(fault, method):
                    continue
                draw.latency_s += fault.latency_ms / 1000
                error = fault.error()
                if error is not None and draw.error is None:
                    draw.error, draw.phase = error, fault.phase
        return draw

    def _fires(self, fault: Fault, method: str) -> bool:
        if fault.methods and method not in fault.methods:
            return False
        if fault.count is not None and fault.count <= 0:
            return False
        if fault.probability < 1.0 and self._random.random() >= fault.probability:
            return False
        fault.fired += 1
        if fault.count is not None:
            fault.count -= 1
        return True
