"""Vertex's admission limits: per-region compute quotas and the job-creation rate limit.

Both are off unless configured, and both answer HTTP 429 `RESOURCE_EXHAUSTED` the way the real
service does, so code that must cope with quota (the dispatcher's admission, retries) can be
tested against the behaviour instead of a hand-injected fault.

- **Compute quotas** (`custom_model_training_nvidia_a100_gpus: 16`, ...) are concurrent: usage is
  the sum over the region's ACTIVE jobs (any state but a terminal one) of
  `accelerator_count * replica_count` per accelerator metric, and `vCPUs * replica_count` for
  `custom_model_training_cpus`. A job releases its usage when it reaches a terminal state. The
  check runs under the job store's lock together with the insert, so concurrent creates never
  overshoot a limit.
- **The creation rate limit** counts CreateCustomJob requests per project and region over a
  sliding 60 s window, charged before the body is parsed (Google's front end meters requests,
  not successes); a request refused by the limit is not charged.

The wording of both errors, and what is confirmed about it, is in docs/vertex-standin.md
("Quotas and rate limits"). In short: the compute-quota message and its bare envelope (no
`details`) are copied from real answers; the rate-limit message follows the format Google's API
front end uses for every rate quota (with `ErrorInfo` and `Help` details), but the metric and
limit names for Vertex job submission are inferred, not seen.
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.cloud.aiplatform_v1 import types

from launchq.spec.accelerators import ACCELERATOR_METRICS, SERVICE, preemptible
from launchq_local.standin.wire import ApiError

CPU_METRIC = "custom_model_training_cpus"
WINDOW_SECONDS = 60.0

_ACCELERATOR_TYPE: Any = types.AcceleratorType  # proto-plus enums are not typed as iterable
_SPOT = int(types.Scheduling.Strategy.SPOT)


KNOWN_METRICS: frozenset[str] = frozenset(
    {CPU_METRIC}
    | {metric for metric, _ in ACCELERATOR_METRICS.values()}
    | {preemptible(metric) for metric, _ in ACCELERATOR_METRICS.values()}
)

# Rate-limit naming (see the module docstring): the limit's display name is the one Vertex's
# quota page lists; the metric id is inferred from its non-regional sibling in Cloud Monitoring
# (`aiplatform.googleapis.com/non_regional_job_or_lro_submission_requests`).
RATE_METRIC = f"{SERVICE}/job_or_lro_submission_requests"
RATE_METRIC_DISPLAY = "Job or LRO submission requests"
RATE_LIMIT_DISPLAY = "Job or LRO submission requests per minute per region"
RATE_LIMIT_NAME = "JobOrLroSubmissionRequestsPerMinutePerProjectPerRegion"
QUOTA_HELP_URL = "https://cloud.google.com/docs/quota#requesting_higher_quota"

_VCPUS_RE = re.compile(r"[a-z][a-z0-9]*-[a-z]+-([0-9]+)")


def metric_name(name: str) -> str:
    """`aiplatform.googleapis.com/custom_model_training_cpus` or the bare name → the bare name;
    anything that is not a known compute metric is a ValueError."""
    bare = name.strip().removeprefix(f"{SERVICE}/")
    if bare not in KNOWN_METRICS:
        raise ValueError(
            f"unknown quota metric {name!r}; expected {CPU_METRIC} or a "
            "custom_model_training_[preemptible_]<accelerator> metric such as "
            "custom_model_training_nvidia_a100_gpus (docs/vertex-standin.md lists them)"
        )
    return bare


def machine_vcpus(machine_type: str) -> int | None:
    """vCPUs of `n1-standard-8`-style names (the trailing number); None for the others
    (`a2-highgpu-1g`, `cloud-tpu`), which then count against no CPU quota."""
    match = _VCPUS_RE.fullmatch(machine_type)
    return int(match.group(1)) if match else None


def accelerator_metric(accelerator_type: int, spot: bool) -> str | None:
    try:
        name = str(_ACCELERATOR_TYPE(accelerator_type).name)
    except ValueError:
        return None
    entry = ACCELERATOR_METRICS.get(name)
    if entry is None:
        return None
    return preemptible(entry[0]) if spot else entry[0]


def demand(job: Any) -> dict[str, int]:
    """What a CustomJob (raw protobuf) holds while it is active, per metric."""
    spec = job.job_spec
    spot = spec.scheduling.strategy == _SPOT
    need: dict[str, int] = defaultdict(int)
    for pool in spec.worker_pool_specs:
        replicas = pool.replica_count
        machine = pool.machine_spec
        if replicas <= 0 or not machine.machine_type:
            continue  # an empty placeholder pool holds nothing
        if machine.accelerator_count > 0:
            metric = accelerator_metric(machine.accelerator_type, spot)
            if metric is not None:
                need[metric] += machine.accelerator_count * replicas
        vcpus = machine_vcpus(machine.machine_type)
        if vcpus is not None:
            need[CPU_METRIC] += vcpus * replicas
    return dict(need)


def quota_exceeded(metrics: Iterable[str]) -> ApiError:
    """The compute-quota 429, worded and shaped (no `details`) as Vertex answers it."""
    listed = ", ".join(f"{SERVICE}/{metric}" for metric in metrics)
    return ApiError(
        "RESOURCE_EXHAUSTED", f"The following quota metrics exceed quota limits: {listed}"
    )


def rate_exceeded(project_number: str, location: str, limit: int) -> ApiError:
    """The rate-limit 429 in the format of Google's API front end (ErrorInfo + Help)."""
    message = (
        f"Quota exceeded for quota metric '{RATE_METRIC_DISPLAY}' and limit "
        f"'{RATE_LIMIT_DISPLAY}' of service '{SERVICE}' for consumer "
        f"'project_number:{project_number}'."
    )
    details: list[dict[str, Any]] = [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "RATE_LIMIT_EXCEEDED",
            "domain": "googleapis.com",
            "metadata": {
                "service": SERVICE,
                "quota_metric": RATE_METRIC,
                "quota_location": location,
                "quota_limit": RATE_LIMIT_NAME,
                "quota_limit_value": str(limit),
                "consumer": f"projects/{project_number}",
            },
        },
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [{"description": "Request a higher quota limit.", "url": QUOTA_HELP_URL}],
        },
    ]
    return ApiError("RESOURCE_EXHAUSTED", message, details=details)


@dataclass(frozen=True)
class Limits:
    """Per-region compute quotas (bare metric → limit) and creates per minute per region."""

    quotas: Mapping[str, int] = field(default_factory=dict)
    create_requests_per_minute: int | None = None

    def __post_init__(self) -> None:
        for metric, limit in self.quotas.items():
            metric_name(metric)
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
                raise ValueError(f"quota {metric} must be a non-negative integer")
        rpm = self.create_requests_per_minute
        if rpm is not None and (not isinstance(rpm, int) or isinstance(rpm, bool) or rpm < 1):
            raise ValueError("createRequestsPerMinute must be a positive integer or null")

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Limits:
        """`{"quotas": {"custom_model_training_nvidia_a100_gpus": 16},
        "createRequestsPerMinute": 60}`; raises ValueError with a readable message."""
        unknown = set(body) - {"quotas", "createRequestsPerMinute"}
        if unknown:
            raise ValueError(f"unknown limits field(s): {sorted(unknown)}")
        quotas = body.get("quotas")
        quotas = {} if quotas is None else quotas
        if not isinstance(quotas, dict):
            raise ValueError('quotas must map metric names to limits: {"metric": 16}')
        rpm = body.get("createRequestsPerMinute")
        return cls({metric_name(k): v for k, v in quotas.items()}, rpm)

    def to_json(self) -> dict[str, Any]:
        return {
            "quotas": dict(sorted(self.quotas.items())),
            "createRequestsPerMinute": self.create_requests_per_minute,
        }

    @property
    def active(self) -> bool:
        return bool(self.quotas) or self.create_requests_per_minute is not None


@dataclass
class RateWindow:
    """Sliding-window counters of admitted creates per (project number, location).

    `clock` is monotonic seconds; tests swap it for a fake to move the window without waiting.
    """

    clock: Callable[[], float] = time.monotonic
    _calls: dict[tuple[str, str], deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def admit(self, key: tuple[str, str], limit: int | None, now: float | None = None) -> bool:
        """Charge one request if `limit` allows it; refused requests are not charged."""
        if limit is None:
            return True
        now = self.clock() if now is None else now
        with self._lock:
            calls = self._calls.setdefault(key, deque())
            while calls and calls[0] <= now - WINDOW_SECONDS:
                calls.popleft()
            if len(calls) >= limit:
                return False
            calls.append(now)
            return True

    def in_window(self, now: float | None = None) -> dict[str, int]:
        now = self.clock() if now is None else now
        with self._lock:
            return {
                f"projects/{number}/locations/{location}": sum(
                    1 for t in calls if t > now - WINDOW_SECONDS
                )
                for (number, location), calls in sorted(self._calls.items())
                if any(t > now - WINDOW_SECONDS for t in calls)
            }

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()
