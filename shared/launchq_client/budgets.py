"""Budgets and prices as platform engineers and operators see them: what a queue or a cohort
has spent this month against its budget (`launchq queue ls`, `cohort get`, the dashboard), and
the price table (`launchq prices show|validate|apply`).

The summaries are plain JSON-safe dicts: that dict *is* the documented `--json` shape
(docs/cli.md). Reading never writes: a month no attempt has reserved in yet reads as nothing
spent.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from launchq.model.budgets import Amount, Scope, ledger_id, period_of
from launchq.spec.budgets import Budget
from launchq.spec.prices import DEFAULT_PRICES, PriceTable, parse_price_table
from launchq.store import Store


def _figures(limit: float, spent: float, reserved: float) -> dict[str, float]:
    return {
        "limit": limit,
        "spent": round(spent, 4),
        "reserved": round(reserved, 4),
        "left": round(max(0.0, limit - spent - reserved), 4),
    }


def budget_summary(
    store: Store, scope: Scope, name: str, raw: Mapping[str, Any] | None, now: datetime
) -> dict[str, Any] | None:
    """A budget this month: per limit, what ended attempts spent, what running ones reserved
    and what is left; None without a budget."""
    if not raw:
        return None
    budget = Budget.model_validate(dict(raw))
    period = period_of(now)
    ledger = store.get_ledgers([ledger_id(scope, name, period)], create=False)[0]
    summary: dict[str, Any] = {"period": period, "on_exceed": budget.on_exceed}
    spent, reserved = ledger.spent, ledger.reserved
    if budget.gpu_hours is not None:
        summary["gpu_hours"] = _figures(budget.gpu_hours, spent.gpu_hours, reserved.gpu_hours)
    if budget.usd is not None:
        summary["usd"] = _figures(budget.usd, _usd(spent), _usd(reserved))
    return summary


def _usd(amount: Amount) -> float:
    return amount.usd or 0.0


def budget_text(summary: Mapping[str, Any] | None) -> str:
    """`3.5/10 GPU-h` or `$12/$100` (used, spent plus reserved, of the limit): the table cell."""
    if not summary:
        return "-"
    parts = []
    if "gpu_hours" in summary:
        figures = summary["gpu_hours"]
        parts.append(f"{figures['spent'] + figures['reserved']:g}/{figures['limit']:g} GPU-h")
    if "usd" in summary:
        figures = summary["usd"]
        parts.append(f"${figures['spent'] + figures['reserved']:,.2f}/${figures['limit']:,.2f}")
    return ", ".join(parts)


def current_prices(store: Store) -> tuple[PriceTable, bool]:
    """The price table admission uses, and whether it is the one launchq ships."""
    stored = store.get_prices()
    if not stored:
        return DEFAULT_PRICES, True
    return parse_price_table({k: v for k, v in stored.items() if k != "updated_at"}), False


def apply_prices(store: Store, raw: Mapping[str, Any]) -> PriceTable:
    """Validate a price table and store it for every admitter (read within a minute)."""
    table = parse_price_table(raw)
    store.put_prices(table.model_dump(mode="json"))
    return table


def price_rows(table: PriceTable) -> list[dict[str, Any]]:
    return [rate.model_dump(mode="json") for rate in table.rates]
