"""Budgets at admission: what an attempt may cost, and whether its queue's and its cohort's
budgets have room for it (`launchq.model.budgets` has the arithmetic, docs/budgets.md the rules).

Every claim gets a `Charge`: the attempt's rates (accelerators, estimated dollars an hour, from
the price table), so each attempt's cost is recorded when it ends whether or not a budget
applies. A queue with a `budget`, or in a cohort with one, also reserves the attempt's most
(its rates for the job's whole timeout) in the month's ledger of each budget, in the claim's
write; an item that does not fit is held back with reason `budget`, or failed at once
(`over_budget`) when the budget says `on_exceed: reject`.

The price table is the one applied with `launchq prices apply` (`settings/prices`), else the one
launchq ships (`launchq.spec.prices.DEFAULT_PRICES`); it is read at most once a minute per
process. A budgeted admission reads its ledgers (one batched read of at most two documents)
on every claim: the decision must be made on their current version.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from launchq.cohorts import CohortState
from launchq.log import get_logger
from launchq.model.budgets import Charge, Ledger, ledger_id, period_of, rates, shortfall
from launchq.model.records import ItemRecord
from launchq.spec.budgets import Budget
from launchq.spec.prices import DEFAULT_PRICES, PriceTable, PriceTableError, parse_price_table
from launchq.spec.validation import ConfigError
from launchq.store import Store

log = get_logger(__name__)

PRICES_FRESH_SECONDS = 60.0


@dataclass(frozen=True)
class Held:
    """An attempt that does not fit in a budget: why, and what the budget says to do."""

    message: str
    reject: bool


@dataclass(frozen=True)
class Reservation:
    """An attempt's charge and the ledgers (at the versions read) it reserves in."""

    charge: Charge
    ledgers: Sequence[Ledger] = ()


def budgets_of(runtime_budget: Budget | None, cohort: CohortState | None) -> bool:
    """True if an item of this queue is admitted against a budget."""
    return runtime_budget is not None or (cohort is not None and cohort.config.budget is not None)


class Budgets:
    """The price table (cached) and the budget check every claim goes through."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.clock = clock
        self._lock = threading.Lock()
        self._prices: tuple[float, PriceTable] | None = None

    def prices(self) -> PriceTable:
        with self._lock:
            if self._prices is not None and self.clock() - self._prices[0] < PRICES_FRESH_SECONDS:
                return self._prices[1]
        table = DEFAULT_PRICES
        stored = self.store.get_prices()
        if stored:
            document = {k: v for k, v in stored.items() if k != "updated_at"}
            try:
                table = parse_price_table(document)
            except (PriceTableError, ConfigError) as exc:  # applied tables are validated first
                log.error("stored price table is invalid; using launchq's", error=str(exc))
        with self._lock:
            self._prices = (self.clock(), table)
        return table

    def charge(self, body: Mapping[str, Any], region: object) -> Charge:
        """An attempt's rates, reserving nothing (a queue without a budget)."""
        return Charge(rates(body, str(region), self.prices()))

    def reserve(
        self,
        item: ItemRecord,
        queue_budget: Budget | None,
        cohort: CohortState | None,
    ) -> Reservation | Held:
        """The item's attempt's charge, reserved in its budgets' ledgers if any; or why the
        attempt does not fit."""
        charge = self.charge(item.job_body or {}, item.region)
        scopes: list[tuple[str, Budget, str]] = []
        now = self.store.clock()
        period = period_of(now)
        if queue_budget is not None:
            scopes.append((ledger_id("queue", item.queue, period), queue_budget, "queue"))
        if cohort is not None and cohort.config.budget is not None:
            label = f"cohort {cohort.name}"
            scopes.append((ledger_id("cohort", cohort.name, period), cohort.config.budget, label))
        if not scopes:
            return Reservation(charge)
        need = charge.rates.most
        ledgers = self.store.get_ledgers([scope[0] for scope in scopes])
        for (_, budget, label), ledger in zip(scopes, ledgers, strict=True):
            why = shortfall(budget, ledger, need, label)
            if why is not None:
                if charge.rates.missing and budget.usd is not None:
                    why += f" ({', '.join(charge.rates.missing)})"
                return Held(why, budget.on_exceed == "reject")
        reserved = Charge(charge.rates, tuple(scope[0] for scope in scopes), need)
        return Reservation(reserved, ledgers)
