"""`launchq cohort ...`: share a project's accelerator quota in a region between queues.

`validate` needs no cloud access; `apply`, `ls`, `get` and `delete` work on the cohorts stored in
Firestore.
docs/cohorts.md explains the rules with worked examples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from launchq.spec.validation import LaunchqValidationError
from launchq_cli.common import EXIT_USAGE, backend_command, console, emit_json, invalid, json_option
from launchq_client.backends import Backends

FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group("cohort")
def cohort() -> None:
    """Share a project's accelerator quotas in a region between queues (docs/cohorts.md).

    A cohort declares the quotas launchq keeps its jobs within, and each member queue's share
    and borrowing limit; admission then starts the next item of the member furthest below its
    share.
    """


def _load(file: Path, name: str | None) -> dict[str, Any]:
    from launchq.spec.cohorts import CohortConfigError
    from launchq_client.configs import load_mapping, name_from_path

    raw = load_mapping(file, "a cohort config", CohortConfigError)
    return {**raw, "name": name or raw.get("name") or name_from_path(file)}


@cohort.command("validate")
@click.argument("file", type=FILE)
@click.option("--name", help="Cohort name when the file has none (default: the file name).")
def validate(file: Path, name: str | None) -> None:
    """Check a cohort file offline; every error with its path (exit 2)."""
    from launchq.spec.cohorts import parse_cohort_config

    try:
        config = parse_cohort_config(_load(file, name))
    except LaunchqValidationError as exc:
        click.echo(f"error: {exc.render()}", err=True)
        raise SystemExit(EXIT_USAGE) from None
    members = ", ".join(m.queue for m in config.members)
    click.echo(f"cohort '{config.name}' is valid ({config.project}, {config.region}: {members})")


@cohort.command("apply")
@click.argument("file", type=FILE)
@click.option("--name", help="Cohort name (default: the file's `name:`, else its stem).")
@json_option
@backend_command
def apply(backends: Backends, file: Path, name: str | None, as_json: bool) -> None:
    """Create or update a cohort from a file, validated first (every error, exit 2)."""
    from launchq_client.cohorts import apply_cohort, cohort_detail

    try:
        config = apply_cohort(backends.store, _load(file, name))
    except LaunchqValidationError as exc:
        invalid(exc.render())
    detail = cohort_detail(backends.store, config.name)
    if as_json:
        emit_json(detail)
        return
    quotas = ", ".join(f"{m} {n}" for m, n in config.quotas.items())
    click.echo(f"cohort '{config.name}' applied ({config.region}: {quotas})")


@cohort.command("delete")
@click.argument("name")
@json_option
@backend_command
def delete(backends: Backends, name: str, as_json: bool) -> None:
    """Remove a cohort: its queues are admitted on their own again; running jobs go on."""
    from launchq_client.cohorts import delete_cohort

    config = delete_cohort(backends.store, name)
    if as_json:
        emit_json({"name": config.name, "deleted": True})
        return
    click.echo(f"cohort '{config.name}' deleted ({', '.join(m.queue for m in config.members)})")


@cohort.command("ls")
@json_option
@backend_command
def ls(backends: Backends, as_json: bool) -> None:
    """Each cohort's quotas: held / limit, and every member's share, holding and usage."""
    from launchq_client.cohorts import list_cohort_summaries

    rows = list_cohort_summaries(backends.store)
    if as_json:
        emit_json(rows)
        return
    _print(rows)


@cohort.command("get")
@click.argument("name")
@json_option
@backend_command
def get(backends: Backends, name: str, as_json: bool) -> None:
    """One cohort: its quotas and members as `ls` shows them, and its config as applied."""
    import yaml

    from launchq_client.cohorts import cohort_detail

    detail = cohort_detail(backends.store, name)
    if as_json:
        emit_json(detail)
        return
    _print([detail])
    click.echo(yaml.safe_dump(detail["config"], sort_keys=False).rstrip())


def _print(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from launchq_client.budgets import budget_text

    table = Table()
    for column in ("cohort", "quota", "member", "share", "held", "borrowed", "usage", "waiting"):
        table.add_column(column)
    for row in rows:
        for quota in row["quotas"]:
            limit = f"{quota['held']}/{quota['limit']}"
            if quota["read"] is not None and quota["read"] < quota["declared"]:
                limit += f" (declared {quota['declared']}; Google enforces {quota['read']})"
            elif quota["read_why"]:
                limit += f" (not read: {quota['read_why']})"
            if quota["lowered_until"]:
                limit += f" (lowered until {quota['lowered_until']})"
            for index, member in enumerate(quota["members"]):
                usage = row["members"][member["queue"]]
                cap = member["borrowing_limit"]
                table.add_row(
                    row["name"] if index == 0 else "",
                    f"{quota['metric'].removeprefix('custom_model_training_')} {limit}"
                    if index == 0
                    else "",
                    member["queue"],
                    f"{member['share']:g} ({member['nominal']:g})",
                    str(member["held"]),
                    f"{member['borrowed']:g}" + ("" if cap is None else f"/{cap}"),
                    f"{usage['accelerator_hours']:g} h",
                    str(usage["waiting"]),
                )
    if not rows:
        table.caption = "no cohorts: apply one with `launchq cohort apply FILE`"
    spends = [f"{row['name']}: {budget_text(row['budget'])}" for row in rows if row["budget"]]
    if spends:
        table.caption = "budget this month (spent + reserved / limit): " + "; ".join(spends)
    console().print(table)
