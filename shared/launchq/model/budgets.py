"""What an attempt costs, and whether it fits in a budget: pure arithmetic, no I/O.

Every claim computes the attempt's *rates* from its job body: accelerators held (every
accelerator of every replica, `launchq.spec.accelerators.job_demand`) and estimated US dollars
per hour (each replica's machine plus its accelerators, from the price table,
`launchq.spec.prices`). They are stored on the item as its `charge`. When the attempt ends, its
cost is the rates times its run time as Vertex reports it (the job's `startTime` to `endTime`;
an attempt whose job never started costs nothing), recorded on the attempt and added up on the
item.

A budget (`launchq.spec.budgets`) is kept in one ledger document per scope and month
(`budgets/{queue|cohort}~{name}~{YYYY-MM}`): what ended attempts spent, and what running ones
have *reserved*. A claim reserves the most its attempt can cost (the rates for the job's whole
`timeout`, which Vertex enforces) in the claim's own write, under the ledger's update-time
precondition, and only if `spent + reserved + reservation <= limit`; the write that ends the
attempt turns its reservation into what it really cost (never more). So `spent + reserved`
never exceeds a limit, whatever the number of concurrent admitters, and no attempt can spend
past it. Amounts are integers (accelerator-milliseconds, micro-dollars, each attempt's rounded
up) so the ledger's atomic increments add up exactly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from launchq.spec.accelerators import job_demand
from launchq.spec.budgets import Budget
from launchq.spec.prices import PriceTable

# Vertex's default `scheduling.timeout` ("The default is 7 days"): what a job may run for when
# the queue sets no timeout, so what its reservation must cover.
DEFAULT_TIMEOUT_SECONDS = 7 * 86400
MICRO = 1_000_000
MS_PER_HOUR = 3_600_000
Scope = Literal["queue", "cohort"]
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")


@dataclass(frozen=True)
class Amount:
    """Accelerator-milliseconds and micro-dollars (None: the price is unknown)."""

    gpu_ms: int = 0
    micro_usd: int | None = 0

    @property
    def gpu_hours(self) -> float:
        return self.gpu_ms / MS_PER_HOUR

    @property
    def usd(self) -> float | None:
        return None if self.micro_usd is None else self.micro_usd / MICRO


@dataclass(frozen=True)
class Rates:
    """What an attempt costs per second of run time, and the most it can run."""

    accelerators: int
    micro_usd_per_hour: int | None
    timeout_seconds: int
    missing: tuple[str, ...] = ()  # parts without a price (why micro_usd_per_hour is None)
    standard_micro_usd_per_hour: int | None = None  # the same job on demand (SPOT's saving)

    def cost(self, seconds: float) -> Amount:
        seconds = max(0.0, min(float(seconds), float(self.timeout_seconds)))
        usd = None
        if self.micro_usd_per_hour is not None:
            usd = math.ceil(self.micro_usd_per_hour * seconds / 3600)
        return Amount(math.ceil(self.accelerators * seconds * 1000), usd)

    @property
    def most(self) -> Amount:
        """The reservation: the attempt running for its whole timeout."""
        return self.cost(self.timeout_seconds)


def timeout_seconds(body: Mapping[str, Any]) -> int:
    """The job's `scheduling.timeout` (a Duration, "3600s" in REST JSON); Vertex's default."""
    raw = ((body.get("jobSpec") or {}).get("scheduling") or {}).get("timeout")
    if isinstance(raw, int | float) and raw > 0:
        return math.ceil(raw)
    match = _DURATION.match(str(raw or ""))
    return math.ceil(float(match.group(1))) if match else DEFAULT_TIMEOUT_SECONDS


def _usd_per_hour(
    spec: Mapping[str, Any], region: str, strategy: str, prices: PriceTable
) -> tuple[float, list[str]]:
    """Dollars an hour of a job spec's machines and accelerators, and the parts unpriced."""
    usd = 0.0
    missing: list[str] = []
    for pool in spec.get("workerPoolSpecs") or []:
        machine = pool.get("machineSpec") or {}
        replicas = int(pool.get("replicaCount") or 0)
        machine_type = str(machine.get("machineType") or "")
        if replicas <= 0 or not machine_type:
            continue
        rate = prices.hourly("machine", machine_type, region, strategy)
        if rate is None:
            missing.append(machine_type)
        else:
            usd += rate * replicas
        count = int(machine.get("acceleratorCount") or 0)
        accelerator = str(machine.get("acceleratorType") or "")
        if count > 0 and accelerator:
            rate = prices.hourly("accelerator", accelerator, region, strategy)
            if rate is None:
                missing.append(accelerator)
            else:
                usd += rate * count * replicas
    return usd, missing


def rates(body: Mapping[str, Any], region: str, prices: PriceTable) -> Rates:
    """The attempt's rates for a job body (REST form, as stored on an item) in `region`."""
    spec = body.get("jobSpec") or {}
    strategy = str((spec.get("scheduling") or {}).get("strategy") or "STANDARD")
    usd, missing = _usd_per_hour(spec, region, strategy, prices)
    micro = None if missing else round(usd * MICRO)
    standard = micro
    if strategy == "SPOT":  # what the same job would cost on demand: what SPOT saves
        on_demand, unpriced = _usd_per_hour(spec, region, "STANDARD", prices)
        standard = None if unpriced else round(on_demand * MICRO)
    unique = tuple(dict.fromkeys(f"{name} ({strategy}, {region})" for name in missing))
    accelerators = sum(job_demand(body).values())
    return Rates(accelerators, micro, timeout_seconds(body), unique, standard)


def period_of(now: datetime) -> str:
    """The budget month of an instant (UTC): `2026-12`."""
    return f"{now.year:04d}-{now.month:02d}"


def ledger_id(scope: Scope, name: str, period: str) -> str:
    """The ledger document of one budget for one month: `queue~team-a~2026-12`."""
    return f"{scope}~{name}~{period}"


@dataclass(frozen=True)
class Ledger:
    """A budget's month as stored: ended attempts' cost and running ones' reservations."""

    id: str
    spent: Amount = Amount()
    reserved: Amount = Amount()
    attempts: int = 0
    version: datetime | None = None

    @property
    def used(self) -> Amount:
        """Spent plus reserved: what the budget can no longer give."""
        return Amount(
            self.spent.gpu_ms + self.reserved.gpu_ms,
            (self.spent.micro_usd or 0) + (self.reserved.micro_usd or 0),
        )

    @classmethod
    def from_document(cls, ledger: str, data: Mapping[str, Any] | None, version: Any) -> Ledger:
        data = data or {}
        return cls(
            id=ledger,
            spent=Amount(int(data.get("spent_gpu_ms") or 0), int(data.get("spent_micro_usd") or 0)),
            reserved=Amount(
                int(data.get("reserved_gpu_ms") or 0), int(data.get("reserved_micro_usd") or 0)
            ),
            attempts=int(data.get("attempts") or 0),
            version=version,
        )


def shortfall(budget: Budget, ledger: Ledger, need: Amount, label: str) -> str | None:
    """Why an attempt needing `need` does not fit in `budget` (what a person reads), or None."""
    used = ledger.used
    if budget.gpu_hours is not None:
        limit = round(budget.gpu_hours * MS_PER_HOUR)
        if used.gpu_ms + need.gpu_ms > limit:
            return (
                f"{label} budget: {need.gpu_hours:.1f} accelerator-hours needed (the job's "
                f"timeout), {max(0, limit - used.gpu_ms) / MS_PER_HOUR:.1f} of "
                f"{budget.gpu_hours:g} left this month"
            )
    if budget.usd is not None:
        if need.micro_usd is None:
            return f"{label} budget: no price for part of the job in the price table"
        limit = round(budget.usd * MICRO)
        if (used.micro_usd or 0) + need.micro_usd > limit:
            left = max(0, limit - (used.micro_usd or 0)) / MICRO
            return (
                f"{label} budget: ${need.micro_usd / MICRO:,.2f} needed (the job's timeout), "
                f"${left:,.2f} of ${budget.usd:,.2f} left this month"
            )
    return None


@dataclass(frozen=True)
class Charge:
    """An attempt's `charge` on its item: its rates, and what it reserved in which ledgers."""

    rates: Rates
    ledgers: tuple[str, ...] = ()
    reserved: Amount = Amount()

    def document(self) -> dict[str, Any]:
        return {
            "accelerators": self.rates.accelerators,
            "micro_usd_per_hour": self.rates.micro_usd_per_hour,
            "timeout_seconds": self.rates.timeout_seconds,
            "missing_prices": list(self.rates.missing),
            "standard_micro_usd_per_hour": self.rates.standard_micro_usd_per_hour,
            "ledgers": list(self.ledgers),
            "reserved_gpu_ms": self.reserved.gpu_ms,
            "reserved_micro_usd": self.reserved.micro_usd or 0,
        }

    @classmethod
    def from_document(cls, data: Mapping[str, Any] | None) -> Charge | None:
        if not data:
            return None
        hourly, standard = data.get("micro_usd_per_hour"), data.get("standard_micro_usd_per_hour")
        return cls(
            Rates(
                int(data.get("accelerators") or 0),
                None if hourly is None else int(hourly),
                int(data.get("timeout_seconds") or DEFAULT_TIMEOUT_SECONDS),
                tuple(data.get("missing_prices") or ()),
                None if standard is None else int(standard),
            ),
            tuple(data.get("ledgers") or ()),
            Amount(int(data.get("reserved_gpu_ms") or 0), int(data.get("reserved_micro_usd") or 0)),
        )


def parse_time(value: object) -> datetime | None:
    """Vertex times arrive as RFC 3339 strings; Firestore times as datetimes."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def run_seconds(attempt: Mapping[str, Any] | None) -> float:
    """How long an attempt's job ran, as Vertex reports it (0 if it never started)."""
    if not attempt:
        return 0.0
    start, end = parse_time(attempt.get("start_time")), parse_time(attempt.get("end_time"))
    if start is None or end is None:
        return 0.0
    return max(0.0, (end - start).total_seconds())


def attempt_cost(charge: Charge, attempt: Mapping[str, Any] | None) -> Amount:
    """What an ended attempt cost: its rates over its run time, capped at its timeout."""
    return charge.rates.cost(run_seconds(attempt))


def cost_fields(charge: Charge | None, attempt: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fields an ended attempt's record gets: run time and estimated cost."""
    if charge is None:
        return {}
    cost = attempt_cost(charge, attempt)
    fields: dict[str, Any] = {
        "run_seconds": round(run_seconds(attempt), 3),
        "gpu_hours": round(cost.gpu_hours, 6),
        "usd": None if cost.usd is None else round(cost.usd, 6),
    }
    standard = charge.rates.standard_micro_usd_per_hour
    if (
        cost.usd is not None
        and standard is not None
        and standard != charge.rates.micro_usd_per_hour
    ):
        on_demand = math.ceil(
            standard * min(run_seconds(attempt), charge.rates.timeout_seconds) / 3600
        )
        fields["usd_saved"] = round(max(0.0, on_demand / MICRO - cost.usd), 6)
    return fields


def ended_attempt(
    attempt_number: int, attempts: Sequence[Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    """The record of attempt `attempt_number` among `attempts` (the newest such), if any."""
    found: Mapping[str, Any] | None = None
    for attempt in attempts:
        if int(attempt.get("n") or 0) == attempt_number:
            found = attempt
    return found


@dataclass(frozen=True)
class Settlement:
    """What the write ending an attempt does to its item and its ledgers."""

    ledgers: tuple[str, ...]
    returned: Amount  # the reservation given back
    cost: Amount  # what the attempt cost (at most its reservation)


def settlement(
    stored_charge: Mapping[str, Any] | None,
    attempt_number: int,
    attempts: Sequence[Mapping[str, Any]],
) -> Settlement | None:
    """The settlement of an item's attempt as it releases its slot; None if it has no charge
    (claimed before budgets existed, or already settled)."""
    charge = Charge.from_document(stored_charge)
    if charge is None:
        return None
    # Rates x run time, the run capped at the timeout the reservation covered: never more
    # than was reserved, so spent + reserved stays within the limit.
    cost = attempt_cost(charge, ended_attempt(attempt_number, attempts))
    return Settlement(charge.ledgers, charge.reserved, cost)


def ledger_deltas(settled: Settlement) -> dict[str, int]:
    """The increments one ledger gets when an attempt ends."""
    return {
        "reserved_gpu_ms": -settled.returned.gpu_ms,
        "reserved_micro_usd": -(settled.returned.micro_usd or 0),
        "spent_gpu_ms": settled.cost.gpu_ms,
        "spent_micro_usd": settled.cost.micro_usd or 0,
    }


def reservation_deltas(charge: Charge) -> dict[str, int]:
    """The increments each of a claim's ledgers gets."""
    return {
        "reserved_gpu_ms": charge.reserved.gpu_ms,
        "reserved_micro_usd": charge.reserved.micro_usd or 0,
        "attempts": 1,
    }
