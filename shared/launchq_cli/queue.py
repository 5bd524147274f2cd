"""`launchq queue ...`: define and operate queues; validate and render configs offline.

`validate` and `render` need no cloud access: they are what an admin runs before writing a queue
config, and what a researcher runs to see the exact job an item would become. `apply`, `get`,
`ls`, `pending`, `pause` and `resume` work on the queues stored in Firestore.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from launchq.spec.validation import Issue, LaunchqValidationError
from launchq_cli.common import (
    EXIT_USAGE,
    backend_command,
    console,
    emit_json,
    invalid,
    json_option,
    parse_pairs,
)
from launchq_client.backends import Backends
from launchq_client.values import duration

if TYPE_CHECKING:  # imported lazily at run time: `launchq --help` should not load pydantic
    from launchq.spec.config import QueueConfig
    from launchq.spec.item import QueueItem

FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group("queue")
def queue() -> None:
    """Define and operate queues; validate and render configs offline.

    W&B Launch Vertex queue configs are accepted as is.
    """


def fail(exc: LaunchqValidationError) -> NoReturn:
    """Print every issue on stderr, one per line, and exit 2: an invalid file is a validation
    error, the same exit code as `queue apply` of that file and as click's usage errors."""
    click.echo(f"error: {exc.render()}", err=True)
    raise SystemExit(EXIT_USAGE)


def load_config(path: Path, name: str | None = None, *, strict: bool = True) -> QueueConfig:
    """Read and validate a queue config file; exit 2 listing every error when it is invalid.

    `strict` also parses the default render as `aiplatform_v1.CustomJob` (imports aiplatform).
    """
    from launchq.spec.checks import parse_queue_config
    from launchq_client.configs import load_document, name_from_path
    from launchq_client.configs import validate_queue_config as validate_config

    check = validate_config if strict else parse_queue_config
    try:
        data = load_document(path.read_text(encoding="utf-8"), str(path))
        return check(data, name=name or name_from_path(path))
    except LaunchqValidationError as exc:
        fail(exc)


@queue.command("validate")
@click.argument("file", type=FILE)
@click.option("--name", help="Queue name when the file has none (default: the file name).")
def validate(file: Path, name: str | None) -> None:
    """Check a queue config: schema, templates, and a strict Vertex parse of its default render.

    Exits 0 when valid; otherwise prints every error (path, message, suggestion) and exits 2.
    """
    config = load_config(file, name)
    limit = "unlimited" if config.unlimited else str(config.max_jobs)
    state = ", paused" if config.paused else ""
    click.echo(f"{file}: valid queue '{config.name}' (max_jobs {limit}{state})")


@queue.command("render")
@click.argument("file", type=FILE)
@click.option("--item", "item_file", type=FILE, required=True, help="Queue item JSON file.")
@click.option(
    "--set-var",
    "set_vars",
    multiple=True,
    metavar="NAME=VALUE",
    help="Set a template variable (repeatable); overrides the item's value.",
)
@click.option(
    "--project",
    help="GCP project when the queue config sets none (default: $GOOGLE_CLOUD_PROJECT, "
    "$CLOUDSDK_CORE_PROJECT, else gcloud's core/project).",
)
@click.option(
    "--region",
    help="Vertex AI region when the queue config sets none (default: $CLOUDSDK_AI_REGION, "
    "$CLOUDSDK_COMPUTE_REGION, else gcloud's ai/region, else compute/region).",
)
@click.option("--item-id", help="Item id when the item has none (default: 'local-render').")
@click.option(
    "--now",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f"]),
    help="Render time, UTC (default: now); fixes the output directory's timestamp.",
)
@click.option("--name", help="Queue name when the file has none (default: the file name).")
@click.option(
    "--placement",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Which placement of the queue's capacity ladder to render (0 = the first).",
)
def render_command(
    file: Path, item_file: Path, set_vars: tuple[str, ...], project: str | None,
    region: str | None, item_id: str | None, now: datetime | None, name: str | None,
    placement: int,
) -> None:  # fmt: skip
    """Print the CustomJob JSON an item would be submitted as (REST form, exactly as sent).

    Project and region come from the queue config, else the flags, else where gcloud finds them
    (environment, then gcloud's active configuration, read offline); a default taken from there
    is named on stderr. On a queue with placements, `--placement N` renders the job as it would
    run on placement N (its region, strategy, machines, bucket, images).
    """
    from launchq.spec.render import RenderContext, render_placements

    config = load_config(file, name)
    try:
        project, region = _job_location(config, project, region)
        item = _load_item(item_file, config, parse_pairs(set_vars, "--set-var", "NAME=VALUE"))
        context = RenderContext(
            now=(now or datetime.now(UTC)).replace(tzinfo=UTC),
            item_id=item.item_id or item_id or "local-render",
            queue=config.name or "queue",
            project=project,
            region=region,
        )
        jobs = render_placements(config, item, context)
    except LaunchqValidationError as exc:
        fail(exc)
    if placement >= len(jobs):
        have = f"placements 0-{len(jobs) - 1}" if config.placements else "no placements (only 0)"
        raise click.BadParameter(f"{placement}: the queue has {have}", param_hint="--placement")
    placed_name, job = jobs[placement]
    if config.placements:
        click.echo(f"# placement {placement}: {placed_name}", err=True)
    click.echo(f"# POST https://{job.region}-aiplatform.googleapis.com/v1/{job.parent}/customJobs",
               err=True)  # fmt: skip
    click.echo(job.to_json())


def _job_location(
    config: QueueConfig, project: str | None, region: str | None
) -> tuple[str | None, str | None]:
    """The render's default project and region: flags, else gcloud's defaults (noted on stderr).

    Looked up only when the config and the flags leave them open: the config always wins, as it
    does in the dispatcher. Raises ConfigError naming every place that was looked at.
    """
    from launchq.spec.validation import ConfigError
    from launchq_client.gcloud_defaults import default_project, default_region, where_to_set

    issues: list[Issue] = []
    chosen: dict[str, str | None] = {}
    for kind, configured, flag, lookup in (
        ("project", config.project, project, default_project),
        ("region", config.region, region, default_region),
    ):
        chosen[kind] = flag
        if configured or flag:
            continue
        found = lookup()
        if found is None:
            issues.append(Issue(kind, "not set in the queue config, and no default was found",
                                where_to_set(kind)))  # fmt: skip
            continue
        chosen[kind] = found.value
        click.echo(f"# {kind} {found.value} (from {found.source})", err=True)
    if issues:
        raise ConfigError(issues)
    return chosen["project"], chosen["region"]


def _load_item(path: Path, config: QueueConfig, set_vars: dict[str, str]) -> QueueItem:
    """The item file with `--set-var` values (typed by the queue's declarations) merged in."""
    from launchq.spec.item import parse_item
    from launchq.spec.templates import coerce_cli_value
    from launchq.spec.validation import Issue, ItemError

    item = parse_item(path.read_bytes())
    if not set_vars:
        return item
    values = dict(item.template_variables)
    issues: list[Issue] = []
    for key, text in set_vars.items():
        decl = config.template_variables.get(key)
        if decl is None:
            declared = ", ".join(sorted(config.template_variables)) or "none"
            issues.append(Issue(f"--set-var {key}", f"queue does not declare it (declared: "
                                f"{declared})"))  # fmt: skip
            continue
        try:
            values[key] = coerce_cli_value(decl, text)
        except ValueError:
            issues.append(Issue(f"--set-var {key}", f"value must be of type {decl.type}"))
    if issues:
        raise ItemError(issues)
    return item.model_copy(update={"template_variables": values})


# -- queues in Firestore: apply, get, ls, pending, pause, resume --------------------------------
# These talk to launchq's Firestore (flags in launchq_cli.common, settings in
# launchq_client.backends); validate/render above stay offline. An invalid file exits 2
# everywhere (`validate`, `render`, `apply`): a validation error, like click's usage errors.


def _local_topic(backends: Backends, queue: str) -> None:
    """Against `launchq dev`, the queue's topic now (in Google Cloud, Terraform makes it)."""
    import os

    from launchq_local.queue_topics import DISPATCHER_URL_VARIABLE, ensure_push_topic

    dispatcher = os.environ.get(DISPATCHER_URL_VARIABLE)
    if dispatcher and os.environ.get("PUBSUB_EMULATOR_HOST"):
        from launchq.spec.topics import queue_topic

        ensure_push_topic(backends.settings.project, queue_topic(queue), dispatcher)


@queue.command("apply")
@click.argument("file", type=FILE)
@click.option("--name", help="Queue name (default: the file's `name:`, else its stem).")
@click.option(
    "--skip-secret-check",
    is_flag=True,
    help="Do not check that wandb.api_key_secret's version exists (its jobs will find out).",
)
@json_option
@backend_command
def apply(
    backends: Backends, file: Path, name: str | None, skip_secret_check: bool, as_json: bool
) -> None:
    """Create or update a queue from a config file, validated first (every error, exit 2).

    A queue that names a secret version (wandb.api_key_secret, a notification rule's webhook
    URL or signing key) that does not exist, or is disabled or destroyed, is refused (Secret
    Manager's metadata only: never the value)."""
    from launchq.spec.validation import ConfigError
    from launchq_client.configs import (
        apply_queue,
        load_mapping,
        name_from_path,
        validate_queue_config,
    )
    from launchq_client.queues import queue_detail
    from launchq_client.secrets import check_version, queue_secrets

    try:
        raw = load_mapping(file, "a queue config")
        queue_name = name or raw.get("name") or name_from_path(file)
        checked = validate_queue_config(raw, name=str(queue_name))
        for where, secret in [] if skip_secret_check else queue_secrets(checked):
            found = check_version(secret, where=where)
            if found.problem is not None:
                raise ConfigError([Issue(where, found.problem)])
            if found.warning is not None:
                click.echo(f"warning: {found.warning}", err=True)
        config = apply_queue(backends.store, str(queue_name), raw)
    except LaunchqValidationError as exc:
        invalid(exc.render())
    for warning in _unpriced(backends, config):
        click.echo(f"warning: {warning}", err=True)
    _local_topic(backends, str(queue_name))
    detail = queue_detail(backends.store, str(queue_name))
    if as_json:
        emit_json(detail)
        return
    limit = "unlimited" if config.unlimited else str(config.max_jobs)
    paused = ", paused" if detail["paused"] else ""
    click.echo(f"queue '{queue_name}' applied (max_jobs {limit}{paused})")


def _unpriced(backends: Backends, config: QueueConfig) -> list[str]:
    """A dollar budget on a queue whose jobs have no price in the table in use: its items would
    wait, saying so; the platform admin hears it now (the table may be applied after)."""
    if config.budget is None or config.budget.usd is None:
        return []
    from launchq.model.budgets import rates
    from launchq.spec.render import render_all_placeholders
    from launchq_client.budgets import current_prices

    table, _ = current_prices(backends.store)
    missing: list[str] = []
    for job in render_all_placeholders(config):
        missing += [m for m in rates(job.body, job.region, table).missing if m not in missing]
    if not missing:
        return []
    return [
        f"budget.usd: the price table has no rate for {', '.join(missing)}: its items will wait "
        "with reason budget until it has (launchq prices apply)"
    ]


@queue.command("get")
@click.argument("name")
@json_option
@backend_command
def get(backends: Backends, name: str, as_json: bool) -> None:
    """Show a queue: running / max_jobs, waiting, paused, and its config as applied."""
    import yaml

    from launchq_client.queues import queue_detail

    detail = queue_detail(backends.store, name)
    if as_json:
        emit_json(detail)
        return
    click.echo(
        f"queue {detail['name']}: {detail['running']}/{_limit(detail['max_jobs'])} running, "
        f"{detail['waiting']} waiting{', paused' if detail['paused'] else ''} "
        f"(applied {detail['updated_at']})"
    )
    click.echo(yaml.safe_dump(detail["config"], sort_keys=False).rstrip())


@queue.command("ls")
@json_option
@backend_command
def ls(backends: Backends, as_json: bool) -> None:
    """List queues: running / max_jobs, waiting, paused, and this month's spend against the
    queue's budget (spent plus reserved by running jobs, of the limit)."""
    from rich.table import Table

    from launchq_client.budgets import budget_text
    from launchq_client.queues import list_queue_summaries

    rows = list_queue_summaries(backends.store)
    if as_json:
        emit_json(rows)
        return
    table = Table()
    budgets = any(row["budget"] for row in rows)
    for column in ("queue", "running", "waiting", "paused", *(("budget",) if budgets else ())):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            f"{row['running']}/{_limit(row['max_jobs'])}",
            str(row["waiting"]),
            "[yellow]paused[/yellow]" if row["paused"] else "no",
            *((budget_text(row["budget"]),) if budgets else ()),
        )
    if not rows:
        table.caption = "no queues: apply one with `launchq queue apply FILE`"
    console().print(table)


@queue.command("pending")
@click.argument("name")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@json_option
@backend_command
def pending(backends: Backends, name: str, limit: int, as_json: bool) -> None:
    """Waiting items with their position (1 starts next), as admission will take them."""
    from launchq_cli.tables import Column, fitted_table, priority, submitter, text
    from launchq_client.reads import pending_items

    rows = pending_items(backends.store, name, limit)
    if as_json:
        emit_json(rows)
        return

    def why(row: dict[str, Any]) -> str:
        from rich.markup import escape

        reason = row["reason"] or (
            f"backs off until {row['not_before']}" if row["not_before"] else ""
        )
        return escape(reason) or "-"

    columns = [
        Column("position", lambda row: "-" if row["position"] is None else str(row["position"])),
        Column("name", text("display_name"), flexible=True, minimum=16),
        Column("item", text("item_id")),
        Column("priority", priority, give_way=5),
        Column("waiting", lambda row: duration(row["waiting_s"]), give_way=4),
        Column("reason", why, flexible=True, minimum=12),
        Column("submitter", submitter, give_way=3, flexible=True, minimum=9),
        Column("ran", text("ran"), give_way=2, flexible=True, minimum=12),
        Column("attempts", lambda row: str(row["attempts"]), give_way=1),
    ]
    if any(row["cohort_position"] is not None for row in rows):
        # Where it stands among all its cohort's waiting items (docs/cohorts.md).
        columns.insert(
            1,
            Column(
                "in cohort",
                lambda row: "-" if row["cohort_position"] is None else str(row["cohort_position"]),
                give_way=6,
            ),
        )
    out = console()
    title = f"queue {name}: {len(rows)} waiting"
    out.print(fitted_table(columns, rows, out.width, title=title))


@queue.command("pause")
@click.argument("name")
@json_option
@backend_command
def pause(backends: Backends, name: str, as_json: bool) -> None:
    """Stop admitting items (running jobs continue; items are still accepted)."""
    _set_paused(backends, name, True, as_json)


@queue.command("resume")
@click.argument("name")
@json_option
@backend_command
def resume(backends: Backends, name: str, as_json: bool) -> None:
    """Admit items again (the next dispatch or sweep starts what waits)."""
    _set_paused(backends, name, False, as_json)


def _set_paused(backends: Backends, name: str, paused: bool, as_json: bool) -> None:
    from launchq_client.queues import set_paused

    summary = set_paused(backends.store, name, paused)
    if as_json:
        emit_json(summary)
    else:
        click.echo(f"queue '{name}' {'paused' if paused else 'resumed'}")


def _limit(max_jobs: object) -> str:
    return "∞" if max_jobs == -1 else str(max_jobs)
