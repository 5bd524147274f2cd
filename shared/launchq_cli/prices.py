"""`launchq prices`: the price table that estimates each attempt's cost and dollar budgets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from launchq.spec.validation import LaunchqValidationError
from launchq_cli.common import EXIT_USAGE, backend_command, console, emit_json, invalid, json_option
from launchq_client.backends import Backends

FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group("prices")
def prices() -> None:
    """The price table: USD per hour of each machine and accelerator (docs/budgets.md).

    launchq ships a table with the few rates it could read from Google's public pricing page,
    with that page and the date; apply your own (your region's and contract's rates) for
    dollar budgets and complete cost estimates.
    """


def _load(file: Path) -> dict[str, Any]:
    from launchq.spec.prices import PriceTableError
    from launchq_client.configs import load_mapping

    return load_mapping(file, "a price table", PriceTableError)


@prices.command("validate")
@click.argument("file", type=FILE)
def validate(file: Path) -> None:
    """Check a price table file offline; every error with its path (exit 2)."""
    from launchq.spec.prices import parse_price_table

    try:
        table = parse_price_table(_load(file))
    except LaunchqValidationError as exc:
        click.echo(f"error: {exc.render()}", err=True)
        raise SystemExit(EXIT_USAGE) from None
    click.echo(f"price table is valid: {len(table.rates)} rates from {table.source} "
               f"({table.retrieved})")  # fmt: skip


@prices.command("apply")
@click.argument("file", type=FILE)
@backend_command
def apply(backends: Backends, file: Path) -> None:
    """Store a price table for every admitter (validated first; in use within a minute)."""
    from launchq_client.budgets import apply_prices

    try:
        table = apply_prices(backends.store, _load(file))
    except LaunchqValidationError as exc:
        invalid(exc.render())
    click.echo(f"price table applied: {len(table.rates)} rates ({table.retrieved})")


@prices.command("show")
@json_option
@backend_command
def show(backends: Backends, as_json: bool) -> None:
    """The price table in use: its source and date, and every rate."""
    from rich.table import Table

    from launchq_client.budgets import current_prices, price_rows

    table, shipped = current_prices(backends.store)
    if as_json:
        emit_json({**table.model_dump(mode="json"), "shipped": shipped})
        return
    out = Table(caption=f"{table.source}, read {table.retrieved}"
                + (" (the table launchq ships)" if shipped else ""))  # fmt: skip
    for column in ("kind", "name", "region", "strategy", "usd/hour"):
        out.add_column(column)
    for row in price_rows(table):
        out.add_row(row["kind"], row["name"], row["region"], row["strategy"],
                    f"{row['usd_per_hour']:g}")  # fmt: skip
    console().print(out)
