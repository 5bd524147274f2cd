"""GPU scarcity: scripted stockouts, SPOT preemptions and FLEX_START expiries, per region.

Outcome rules (`jobs.OutcomeRule`) script a job by its labels; scarcity rules script the cloud
instead: "A100s are out in us-central1", "30% of SPOT jobs get preempted", "FLEX_START jobs in
europe-west4 wait out their max_wait_duration". They match what the real service keys capacity
on (the request's region, pool 0's accelerator type, the scheduling strategy), so a test or a
person at `launchq dev` can watch a failover happen without touching the jobs themselves.

- **stockout**: the job is created, goes QUEUED → PENDING, and FAILS `delaySeconds` after
  entering PENDING with Vertex's capacity error (`STOCKOUT_CODE`, `stockout_message`). It never
  reaches RUNNING, so in execute mode its process never starts.
- **preempt** (SPOT jobs only): the job runs; `delaySeconds` after RUNNING it FAILS with the
  preemption error (`PREEMPTED_CODE`, `PREEMPTED_MESSAGE`). In execute mode the process group gets
  SIGTERM (then SIGKILL after the kill grace), as a reclaimed Spot VM's workload would.
- **flex_expire** (FLEX_START jobs only): the job stays PENDING for its
  `scheduling.max_wait_duration` (24 h when unset, never when 0) times `waitScale`, capped at
  `maxWaitSeconds`, then ends EXPIRED.

A rule fires for the next `count` matching jobs, for a `fraction` of them (each matching job
draws from the rule's own seeded random source, so a run is reproducible), both (a fraction
until `count` have fired) or, with neither, for every matching job. The first rule that fires
wins. The error shapes and what is confirmed about them are in docs/vertex-standin.md
("Scarcity").
"""

from __future__ import annotations

import itertools
import random
import threading
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from google.cloud.aiplatform_v1 import types

Kind = Literal["stockout", "preempt", "flex_expire"]
KINDS: tuple[str, ...] = get_args(Kind)
ANY = "*"

# Stockout: the message is Vertex's own (see docs/vertex-standin.md, "Scarcity", for the
# sources); the code is google.rpc.Code RESOURCE_EXHAUSTED, which the job's `error` carries.
STOCKOUT_CODE = 8
_STOCKOUT_TEMPLATE = (
    "Resources are insufficient in region: {region}. Please try a different region. "
    "If you use K80, please consider using P100 or V100 instead."
)
# Preemption: no public report shows the exact text Vertex puts in a preempted training job's
# error, so this wording is the stand-in's own; it contains "preempted" so that classifiers that
# look for the word (launchq's does) see a preemption. UNAVAILABLE: the VM went away under the job.
PREEMPTED_CODE = 14
PREEMPTED_MESSAGE = (
    "The replica workerpool0-0 was preempted: Compute Engine reclaimed the Spot VM it ran on. "
    "Retry the job, or use the STANDARD or FLEX_START strategy for work that must not be "
    "interrupted."
)

DEFAULT_DELAY_SECONDS = 3.0
DEFAULT_MAX_WAIT_SECONDS: float | None = 5.0
UNSET_MAX_WAIT_SECONDS = 24 * 3600.0  # Vertex's default max_wait_duration for FLEX_START

_ACCELERATOR_TYPE: Any = types.AcceleratorType  # proto-plus enums are not typed as iterable
_STRATEGY: Any = types.Scheduling.Strategy
ACCELERATOR_NAMES: frozenset[str] = frozenset(a.name for a in _ACCELERATOR_TYPE)
STRATEGY_NAMES: frozenset[str] = frozenset(s.name for s in _STRATEGY)
_REQUIRED_STRATEGY: dict[str, str] = {"preempt": "SPOT", "flex_expire": "FLEX_START"}


def stockout_message(region: str) -> str:
    return _STOCKOUT_TEMPLATE.format(region=region)


def stockout_error(region: str) -> tuple[int, str]:
    return STOCKOUT_CODE, stockout_message(region)


PREEMPTED_ERROR: tuple[int, str] = (PREEMPTED_CODE, PREEMPTED_MESSAGE)


@dataclass(frozen=True)
class JobTraits:
    """What scarcity rules look at in a CustomJob: where it runs, on what, how scheduled."""

    region: str
    accelerator: str  # AcceleratorType name of pool 0; ACCELERATOR_TYPE_UNSPECIFIED for CPU
    strategy: str  # Scheduling.Strategy name
    max_wait_seconds: float | None  # FLEX_START's wait; None: wait indefinitely (0 in the API)

    @classmethod
    def of(cls, region: str, job: Any) -> JobTraits:
        """From a raw CustomJob protobuf (already validated, so pool 0 exists)."""
        spec = job.job_spec
        pools = spec.worker_pool_specs
        accelerator = pools[0].machine_spec.accelerator_type if pools else 0
        scheduling = spec.scheduling
        wait: float | None = UNSET_MAX_WAIT_SECONDS
        if scheduling.HasField("max_wait_duration"):
            duration = scheduling.max_wait_duration
            seconds = duration.seconds + duration.nanos / 1e9
            wait = seconds if seconds > 0 else None
        return cls(
            region=region,
            accelerator=_enum_name(_ACCELERATOR_TYPE, accelerator),
            strategy=_enum_name(_STRATEGY, scheduling.strategy),
            max_wait_seconds=wait,
        )


def _enum_name(enum: Any, value: int) -> str:
    try:
        return str(enum(value).name)
    except ValueError:
        return str(value)  # a value newer than this client: matches only "*"


@dataclass
class ScarcityRule:
    """One scripted shortage; `count=None` means unlimited, `fraction=None` means every job."""

    id: str
    kind: Kind
    region: str
    accelerator: str
    strategy: str | None
    count: int | None
    fraction: float | None
    delay_seconds: float
    wait_scale: float
    max_wait_seconds: float | None
    seed: int | None
    rng: random.Random
    matched: int = 0  # matching jobs seen
    fired: int = 0  # of which the rule struck

    def matches(self, job: JobTraits) -> bool:
        return (
            self.region in (ANY, job.region)
            and self.accelerator in (ANY, job.accelerator)
            and (self.strategy is None or self.strategy == job.strategy)
        )

    def draw(self) -> bool:
        """Whether the rule strikes the matching job at hand (counted either way)."""
        self.matched += 1
        if self.count is not None and self.count <= 0:
            return False
        if self.fraction is not None and self.rng.random() >= self.fraction:
            return False
        self.fired += 1
        if self.count is not None:
            self.count -= 1
        return True

    def expiry_wait(self, job: JobTraits) -> float | None:
        """Seconds a FLEX_START job stays PENDING before EXPIRED; None: it waits forever."""
        if job.max_wait_seconds is None:
            return None
        wait = job.max_wait_seconds * self.wait_scale
        return wait if self.max_wait_seconds is None else min(wait, self.max_wait_seconds)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "region": self.region,
            "accelerator": self.accelerator,
            "strategy": self.strategy,
            "count": self.count,
            "fraction": self.fraction,
            "delaySeconds": self.delay_seconds,
            "waitScale": self.wait_scale,
            "maxWaitSeconds": self.max_wait_seconds,
            "seed": self.seed,
            "matched": self.matched,
            "fired": self.fired,
        }


_FIELDS = frozenset(
    {
        "kind",
        "region",
        "accelerator",
        "strategy",
        "count",
        "fraction",
        "delaySeconds",
        "waitScale",
        "maxWaitSeconds",
        "seed",
    }
)


def _number(body: dict[str, Any], key: str, default: float | None) -> float | None:
    """A non-negative number, or None where null is allowed (the default is None)."""
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{key} must be a non-negative number")
    return float(value)


def _given_number(body: dict[str, Any], key: str, default: float) -> float:
    value = _number(body, key, default)
    if value is None:
        raise ValueError(f"{key} must be a non-negative number, not null")
    return value


def _name(value: Any, key: str, known: frozenset[str], prefix: str = "") -> str:
    """`"*"`, a full enum name, or a short one (`A100` is not guessed: names must be exact,
    except for the optional `prefix` such as `NVIDIA_`)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key} must be a non-empty string")
    text = value.strip()
    if text == ANY:
        return ANY
    upper = text.upper()
    for candidate in (upper, prefix + upper):
        if candidate in known:
            return candidate
    raise ValueError(f"unknown {key} {value!r}; expected '*' or one of {sorted(known)}")


def rule_from_json(body: dict[str, Any], rule_id: str, seed_source: random.Random) -> ScarcityRule:
    """Validate an admin request body; raises ValueError with a readable message."""
    unknown = set(body) - _FIELDS
    if unknown:
        raise ValueError(f"unknown scarcity field(s): {sorted(unknown)}")
    kind = body.get("kind")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}")
    region = body.get("region")
    if not isinstance(region, str) or not region.strip() or "/" in region:
        raise ValueError("region must be a location such as 'us-central1', or '*'")
    accelerator = _name(body.get("accelerator", ANY), "accelerator", ACCELERATOR_NAMES, "NVIDIA_")
    strategy_value = body.get("strategy")
    strategy = None
    if strategy_value is not None:
        strategy = _name(strategy_value, "strategy", STRATEGY_NAMES)
        strategy = None if strategy == ANY else strategy
    required = _REQUIRED_STRATEGY.get(str(kind))
    if required is not None:
        if strategy not in (None, required):
            raise ValueError(f"a {kind} rule applies to {required} jobs only, not {strategy}")
        strategy = required
    count = body.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ValueError("count must be a positive integer or null (unlimited)")
    fraction = _number(body, "fraction", None)
    if fraction is not None and fraction > 1.0:
        raise ValueError("fraction must be between 0 and 1")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError("seed must be an integer or null")
    return ScarcityRule(
        id=rule_id,
        kind=kind,
        region=region.strip(),
        accelerator=accelerator,
        strategy=strategy,
        count=count,
        fraction=fraction,
        delay_seconds=_given_number(body, "delaySeconds", DEFAULT_DELAY_SECONDS),
        wait_scale=_given_number(body, "waitScale", 1.0),
        max_wait_seconds=_number(body, "maxWaitSeconds", DEFAULT_MAX_WAIT_SECONDS),
        seed=seed,
        # A rule without a seed draws its seed from the book, which `reset(seed)` seeds: rules
        # added in the same order after the same reset strike the same jobs.
        rng=random.Random(seed if seed is not None else seed_source.getrandbits(64)),
    )


@dataclass
class ScarcityBook:
    """The scarcity rules, behind their own lock (the job store asks it once per create)."""

    _rules: list[ScarcityRule] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _random: random.Random = field(default_factory=random.Random)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, body: dict[str, Any]) -> ScarcityRule:
        with self._lock:
            rule = rule_from_json(body, f"scarcity-{next(self._ids)}", self._random)
            self._rules.append(rule)
            return rule

    def list(self) -> list[ScarcityRule]:
        with self._lock:
            return list(self._rules)

    def remove(self, rule_id: str) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            return len(self._rules) != before

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def reset(self, seed: int | None = None) -> None:
        with self._lock:
            self._rules.clear()
            self._random.seed(seed)

    def strike(self, job: JobTraits) -> ScarcityRule | None:
        """The first matching rule that strikes this job; every matching rule before it drew."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(job) and rule.draw():
                    return rule
            return None
