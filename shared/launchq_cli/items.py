"""`launchq enqueue | ls | status | cancel | watch`: the researcher's side of the queue.

`enqueue` publishes with the real Pub/Sub client, exactly what any other publisher does; the
dispatcher decides. Before publishing it reads the queue from Firestore to type `--set-var`
values by the queue's declarations and to check the item, so a typo costs an immediate exit 2
instead of a REJECTED item (`--no-check` skips the check and lets the dispatcher judge).
Everything else reads Firestore (`launchq_client.reads`), the source of truth for items;
enqueue and cancel publish through `launchq_client.publish`.
"""

from __future__ import annotations

import json
import os
import posixpath
import secrets
import shlex
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from launchq_cli.common import (
    EXIT_FAILURE,
    CliError,
    backend_command,
    console,
    emit_json,
    invalid,
    json_option,
    parse_pairs,
    styled_state,
)
from launchq_client.backends import Backends
from launchq_client.values import duration

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from launchq.queues import QueueRuntime
    from launchq.spec.validation import Issue

PRIORITIES = ("critical", "high", "medium", "low")


def new_item_id() -> str:
    """Always set one: a publisher retry re-sends with a *new* message id, never a new item id."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


# -- enqueue -------------------------------------------------------------------------------


@click.command("enqueue")
@click.option("--queue", "-q", "queue_name", help="Queue to run on (else the file's `queue`).")
@click.option("--image", help="Container image (fills ${image_uri}).")
@click.option(
    "--set-var",
    "set_vars",
    multiple=True,
    metavar="NAME=VALUE",
    help="Template variable, typed by the queue's declaration (repeatable).",
)
@click.option("--priority", help="critical, high, medium, low or an integer (lower runs first).")
@click.option("--item-id", help="Idempotency key (default: a new unique id).")
@click.option("--display-name", help="The job's display name.")
@click.option("--command", "command_line", help="Container command, shell-split: 'python t.py'.")
@click.option("--args", "args_line", help="Container args, shell-split: '--lr 0.1'.")
@click.option("--env", "env_pairs", multiple=True, metavar="K=V", help="Env var (repeatable).")
@click.option("--label", "label_pairs", multiple=True, metavar="k=v", help="Label (repeatable).")
@click.option(
    "--from-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Queue item JSON; flags override its fields.",
)
@click.option(
    "--source",
    "source_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Run this directory's code: packed, uploaded once, sent as the item's `source`.",
)
@click.option(
    "--git",
    "git_url",
    metavar="URL",
    help="Run code from this git repository: --ref resolved to a commit, checked out and packed "
    "like --source (docs/source-jobs.md).",
)
@click.option("--ref", "git_ref", help="With --git: branch, tag or commit (default HEAD).")
@click.option("--subdir", "git_subdir", help="With --git: the directory to pack (default: root).")
@click.option(
    "--module", help="With --source or --git: the module Vertex runs (`python -m MODULE`)."
)
@click.option(
    "--source-bucket",
    help="With --source: bucket for the archive (else $LAUNCHQ_SOURCE_BUCKET, else the "
    "queue's spec.staging_bucket).",
)
@click.option(
    "--array",
    "array_count",
    type=click.IntRange(1, 10_000),
    help="A job array: N children of this item, each with LAUNCHQ_ARRAY_INDEX 0..N-1.",
)
@click.option(
    "--sweep",
    "sweep_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A W&B sweep config (YAML or JSON, grid or random): one child per run (docs/sweeps.md).",
)
@click.option(
    "--max-parallel",
    type=click.IntRange(1),
    help="With --array or --sweep: at most this many children wait or run at once.",
)
@click.option("--no-check", is_flag=True, help="Publish without checking against the queue.")
@click.option("--wait", is_flag=True, help="Follow the item; exit 1 unless it SUCCEEDED.")
@click.option("--timeout", type=float, default=3600, show_default=True, help="--wait limit, s.")
@json_option
@backend_command
def enqueue(
    backends: Backends,
    queue_name: str | None,
    image: str | None,
    set_vars: tuple[str, ...],
    priority: str | None,
    item_id: str | None,
    display_name: str | None,
    command_line: str | None,
    args_line: str | None,
    env_pairs: tuple[str, ...],
    label_pairs: tuple[str, ...],
    from_file: Path | None,
    source_dir: Path | None,
    git_url: str | None,
    git_ref: str | None,
    git_subdir: str | None,
    module: str | None,
    source_bucket: str | None,
    array_count: int | None,
    sweep_file: Path | None,
    max_parallel: int | None,
    no_check: bool,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Publish a queue item to the queue topic and print its id.

    The item is checked against the queue first (declared variables, types, what the queue
    allows; for --array and --sweep, every child); an invalid item exits 2 with every problem.
    With --wait, follows it to the end (a sweep: until its last child ends).
    """
    payload = _load_item_file(from_file) if from_file else {}
    flags: dict[str, Any] = {
        "image_uri": image,
        "display_name": display_name,
        "command": _split(command_line, "--command"),
        "args": _split(args_line, "--args"),
    }
    payload.update({k: v for k, v in flags.items() if v is not None})
    if env_pairs:
        payload["env"] = {**payload.get("env", {}), **parse_pairs(env_pairs, "--env")}
    if label_pairs:
        payload["labels"] = {**payload.get("labels", {}), **parse_pairs(label_pairs, "--label")}
    if priority is not None:
        payload["priority"] = _priority(priority)
    queue = queue_name or payload.get("queue")
    if not isinstance(queue, str) or not queue:
        invalid('no queue: pass --queue, or set "queue" in the --from-file item')
    payload["queue"] = queue
    item_id = item_id or payload.get("item_id") or new_item_id()
    payload["item_id"] = item_id
    runtime = _queue_runtime(backends, queue)
    if source_dir is not None and git_url is not None:
        invalid("--source and --git are two ways to give the code: pass one")
    if git_url is None and (git_ref or git_subdir):
        invalid("--ref and --subdir only go with --git")
    if source_dir is None and git_url is None and (module or source_bucket):
        invalid("--module and --source-bucket only go with --source or --git")
    _with_family(payload, array_count, sweep_file, max_parallel)
    if set_vars:
        payload["template_variables"] = {
            **payload.get("template_variables", {}),
            **_typed_vars(runtime, set_vars),
        }

    def check() -> None:
        if not no_check:
            _check(runtime, payload, str(item_id))
            _refuse_reuse(backends, queue, str(item_id), payload)

    if source_dir is not None:
        _with_source(runtime, payload, source_dir, module, source_bucket, as_json, check, no_check)
    elif git_url is not None:
        _with_git(runtime, payload, (git_url, git_ref or "HEAD", git_subdir or ""), module,
                  source_bucket, as_json, check, no_check)  # fmt: skip
    else:
        check()
    from launchq_client.publish import publish

    message_id = publish(backends, payload)
    if as_json:
        emit_json(
            {
                "item_id": item_id,
                "queue": queue,
                "message_id": message_id,
                "topic": backends.topic_path_for(queue),
            }
        )
    else:
        click.echo(item_id)
    if wait:
        final = follow(backends, queue, str(item_id), timeout)
        if final != "SUCCEEDED":
            raise click.exceptions.Exit(EXIT_FAILURE)


def _with_git(
    runtime: QueueRuntime,
    payload: dict[str, Any],
    where: tuple[str, str, str],
    module: str | None,
    bucket: str | None,
    quiet: bool,
    check: Callable[[], None],
    no_check: bool,
) -> None:
    """Resolve the ref to a commit, check it out, and go on as --source with its subdir; the
    item records the repository, the commit and the subdir (`source.git`)."""
    from launchq_client.git import GitError, checkout

    url, ref, subdir = where
    with tempfile.TemporaryDirectory(prefix="launchq-git-") as scratch:
        try:
            found = checkout(url, ref, subdir, Path(scratch))
        except GitError as exc:
            invalid(f"--git: {exc}")
        if not quiet:
            click.echo(f"git {url} {ref} -> {found.commit}", err=True)
        _with_source(runtime, payload, found.directory, module, bucket, quiet, check, no_check,
                     origin=found.origin())  # fmt: skip


def _with_source(
    runtime: QueueRuntime,
    payload: dict[str, Any],
    directory: Path,
    module: str | None,
    bucket: str | None,
    quiet: bool,
    check: Callable[[], None],
    no_check: bool,
    origin: dict[str, str] | None = None,
) -> None:
    """Pack `directory`, set the item's `{uri, sha256, module}` source block, check the item,
    then upload the archive (once). Whatever would refuse the item refuses it before a byte is
    uploaded: a queue that runs no source items, a module that is no file in the archive, a
    Dockerfile the queue's builder names that is not in it, and the usual item check."""
    from launchq_cli.progress import UploadBar
    from launchq_cli.source_cli import storage_client
    from launchq_client.source import SourceError, SourceUploader, module_problem, pack

    if not module:
        invalid("--source needs --module: the module Vertex runs, e.g. trainer.task")
    from launchq.spec.render import staging_bucket_of

    config = runtime.config
    if not no_check and config.source is None and config.builder is None:
        invalid(
            f"--source: queue {runtime.name!r} does not run source items (its config has no "
            "source or builder block); nothing was uploaded. Enqueue an --image, or use a "
            "queue with a source block"
        )
    staging = staging_bucket_of(config)  # where the dispatcher expects sources
    chosen = bucket or os.environ.get("LAUNCHQ_SOURCE_BUCKET") or staging
    if not isinstance(chosen, str) or not chosen:
        invalid(
            f"--source: no bucket; pass --source-bucket, set LAUNCHQ_SOURCE_BUCKET, or give "
            f"queue {runtime.name!r} a spec.staging_bucket"
        )
    with tempfile.TemporaryDirectory(prefix="launchq-source-") as scratch:
        try:
            packed = pack(directory, Path(scratch))
        except SourceError as exc:
            invalid(f"--source: {exc}")
        name = chosen.removeprefix("gs://").split("/", 1)[0]
        uploader = SourceUploader(storage_client(None), name, progress=None if quiet else UploadBar)
        payload["source"] = {"uri": uploader.uri(packed), "sha256": packed.sha256, "module": module}
        if origin is not None:
            payload["source"]["git"] = origin
        if not no_check:
            # A module from a dependency is no file here: --no-check lets it through.
            problem = module_problem(packed, module)
            if problem is not None:
                invalid(f"{problem} (nothing was uploaded; --no-check skips this check)")
            dockerfile = config.builder.dockerfile if config.builder is not None else None
            if dockerfile is not None and posixpath.normpath(dockerfile) not in packed.files:
                invalid(
                    f"--source: queue {runtime.name!r} builds from {dockerfile}, "
                    f"which is not in the packed source (nothing was uploaded)"
                )
        check()
        result = uploader.upload(packed)
    if not quiet:
        sent = "already uploaded" if result.already_present else f"{result.bytes_sent:,} bytes sent"
        click.echo(f"source {result.uri} ({sent})", err=True)


def _load_item_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        invalid(f"{path} is not valid JSON: {exc}")
    if not isinstance(data, dict):
        invalid(f"{path} must hold a JSON object (a queue item), not {type(data).__name__}")
    return data


def _split(line: str | None, option: str) -> list[str] | None:
    if line is None:
        return None
    try:
        return shlex.split(line)
    except ValueError as exc:
        invalid(f"{option} {line!r}: {exc}")


def _priority(text: str) -> str | int:
    lowered = text.strip().lower()
    if lowered in PRIORITIES:
        return lowered
    if lowered.isdigit():
        return int(lowered)
    return invalid(f"--priority {text!r}: use critical, high, medium, low or an integer >= 0")


def _queue_runtime(backends: Backends, queue: str) -> QueueRuntime:
    from launchq_client.queues import unknown_queue_message

    runtime = backends.app.queues.get(queue, fresh=True)
    if runtime is None:
        invalid(unknown_queue_message(backends.store, queue))
    return runtime


def _typed_vars(runtime: QueueRuntime, pairs: tuple[str, ...]) -> dict[str, Any]:
    """`--set-var k=v` read as the declared type; an undeclared name names the declared ones."""
    from launchq.spec.templates import coerce_cli_value, value_problem

    declared = runtime.config.template_variables
    names = ", ".join(sorted(declared)) or "none"
    values: dict[str, Any] = {}
    for key, text in parse_pairs(pairs, "--set-var").items():
        decl = declared.get(key)
        if decl is None:
            invalid(
                f"--set-var {key}: queue {runtime.name!r} declares no template variable "
                f"{key!r} (declared: {names})"
            )
        try:
            value = coerce_cli_value(decl, text)
        except ValueError:
            invalid(f"--set-var {key}={text}: {key!r} is declared as {decl.type}")
        problem = value_problem(decl, value)
        if problem:
            invalid(f"--set-var {key}={text}: {problem}")
        values[key] = value
    return values


def _with_family(
    payload: dict[str, Any],
    array_count: int | None,
    sweep_file: Path | None,
    max_parallel: int | None,
) -> None:
    """--array, --sweep and --max-parallel into the item's `array` or `sweep`."""
    if array_count is not None and sweep_file is not None:
        invalid("--array and --sweep are two kinds of group: pass one")
    if array_count is not None:
        payload["array"] = {"count": array_count}
    if sweep_file is not None:
        from launchq_client.configs import load_mapping

        payload["sweep"] = load_mapping(sweep_file, "a W&B sweep config")
    if max_parallel is not None:
        group = "array" if "array" in payload else "sweep" if "sweep" in payload else None
        if group is None:
            invalid("--max-parallel only goes with --array or --sweep")
        payload[group] = {**payload[group], "max_parallel": max_parallel}


def _check(runtime: QueueRuntime, payload: dict[str, Any], item_id: str) -> None:
    if payload.get("sweep") is not None or payload.get("array") is not None:
        _check_family(runtime, payload, item_id)
        return
    prepared = runtime.prepare(payload, item_id, datetime.now(UTC))
    if isinstance(prepared, list):
        from launchq.spec.validation import ItemError

        invalid(ItemError([_with_flag(issue) for issue in prepared]).render())
    if prepared.source is not None:  # the dispatcher would reject it: say so before publishing
        from launchq.builds.sources import bucket_problem

        problem = bucket_problem(prepared.source, prepared.body)
        if problem is not None:
            invalid(f"{problem.path}: {problem.message}")


def _check_family(runtime: QueueRuntime, payload: dict[str, Any], item_id: str) -> None:
    """A sweep or array: the item itself, then every child, as the dispatcher checks them."""
    from launchq.expansion import check_children
    from launchq.spec.family import family_of
    from launchq.spec.item import parse_item, payload_hash
    from launchq.spec.validation import ItemError

    try:
        item = parse_item({**payload, "queue": runtime.name, "item_id": item_id})
    except ItemError as exc:
        invalid(ItemError([_with_flag(issue) for issue in exc.issues]).render())
    family = family_of(item, payload_hash(item))
    assert family is not None
    checked = check_children(runtime, family, payload, item_id, datetime.now(UTC))
    if isinstance(checked, list):
        invalid(ItemError([_with_flag(issue) for issue in checked]).render())


# The item fields `enqueue` has a flag for: a missing one is fixed on the command line.
_FLAGS = {
    "image_uri": "--image IMAGE",
    "display_name": "--display-name NAME",
    "command": "--command 'CMD ...'",
    "args": "--args 'ARG ...'",
    "priority": "--priority NAME",
    "source": "--source DIR --module MODULE",
}


def _with_flag(issue: Issue) -> Issue:
    """Name the flag that sets a required field (`image_uri: required ...; pass --image IMAGE`):
    the dispatcher's message speaks of item fields, a CLI user types flags."""
    from dataclasses import replace

    if issue.suggestion or not issue.message.startswith("required"):
        return issue
    field, _, rest = issue.path.partition(".")
    if field == "template_variables" and rest:
        return replace(issue, suggestion=f"pass --set-var {rest}=VALUE")
    flag = _FLAGS.get(issue.path)
    return replace(issue, suggestion=f"pass {flag}") if flag else issue


def _refuse_reuse(backends: Backends, queue: str, item_id: str, payload: dict[str, Any]) -> None:
    """Refuse to publish another payload under an item id that is already taken.

    The dispatcher would acknowledge it and change nothing (a conflict, docs/message-format.md):
    saying so here, before publishing, is kinder. The same payload again is allowed (it is what
    a retrying publisher does) and stays a no-op.
    """
    from launchq.spec.item import item_hash

    existing = backends.store.get_item(queue, item_id)
    if existing is None or existing.payload_hash is None:
        return
    if item_hash(payload, queue, item_id) != existing.payload_hash:
        invalid(
            f"item id {item_id!r} is already taken in queue {queue!r} by a different payload "
            f"(it is {existing.state.value}); publishing would change nothing: choose another "
            "--item-id, or omit it to get a new one"
        )


def follow(
    backends: Backends, queue: str, item_id: str, timeout: float, announce: bool = True
) -> str | None:
    """A live status line on stderr until the item ends; returns its final state.

    With `announce`, the end is printed on stderr (state, run time, error); a caller that
    prints the outcome itself (`cancel --wait`) passes False, so it is said once."""
    from launchq.model.states import TERMINAL_STATES
    from launchq_client.queues import QueueStates
    from launchq_client.reads import item_summary

    terminal = {s.value for s in TERMINAL_STATES}
    err = console(stderr=True)
    started = time.monotonic()
    data: dict[str, Any] = {}
    with err.status(f"{item_id}: published, waiting for the dispatcher") as status:
        while time.monotonic() - started < timeout:
            data = backends.store.item_document(queue, item_id) or {}
            state = data.get("state")
            if state in terminal:
                break  # said once, below: not also in the (transient) status line
            if state:
                row = item_summary(data, queues=QueueStates(backends.store))
                extra = row["reason"] or row["vertex_state"] or ""
                status.update(
                    f"{item_id}: {styled_state(state)} {extra}  "
                    f"[dim]{duration(time.monotonic() - started)}[/dim]"
                )
            time.sleep(0.5)
    state = data.get("state")
    if state not in terminal:
        err.print(f"{item_id}: still {state or 'unrecorded'} after {timeout:.0f}s")
        return None
    if not announce:
        return str(state)
    row = item_summary(data)
    err.print(f"{item_id}: {styled_state(state)} (run time {duration(row['run_time_s'])})")
    if row["error"]:
        err.print(f"  error: {row['error']}", markup=False)
    return str(state)


# -- ls ------------------------------------------------------------------------------------


@click.command("ls")
@click.option("--queue", "-q", "queue_name", help="Only this queue.")
@click.option("--state", "states", multiple=True, help="Only these states (repeatable).")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--sweep", "parent", metavar="PARENT", help="The children of this sweep or array.")
@json_option
@backend_command
def ls(
    backends: Backends,
    queue_name: str | None,
    states: tuple[str, ...],
    limit: int,
    parent: str | None,
    as_json: bool,
) -> None:
    """List items, newest first (with --sweep: a sweep's children, in child order)."""
    from launchq_client.reads import find_item_data, list_children, list_items, parse_states

    try:
        wanted = parse_states(states)
    except ValueError as exc:
        invalid(f"--state: {exc}")
    if parent is not None:
        data = find_item_data(backends.store, parent, queue_name)
        if not isinstance(data.get("sweep"), Mapping):
            invalid(f"{parent} is not a sweep or array: it has no children")
        queue = str(data["queue"])
        rows = list_children(backends.store, queue, parent, wanted, limit)
    else:
        rows = list_items(backends.store, queue_name, wanted, limit)
    if as_json:
        emit_json(rows)
        return
    out = console()
    out.print(items_table(rows, out.width))


def items_table(rows: list[dict[str, Any]], width: int, title: str | None = None) -> Table:
    """`ls` and `watch`: what people find their run by (name, submitter, what ran) first; at a
    narrow width the low-value columns give way (`launchq_cli.tables`)."""
    from launchq_cli.tables import Column, fitted_table, priority, submitter, text

    columns = [
        # 20: enough to tell two runs of one experiment apart, before submitter and age show.
        Column("name", text("display_name"), flexible=True, minimum=20),
        Column("item", text("item_id")),
        Column("state", lambda row: styled_state(row["state"])),
        Column("queue", text("queue"), give_way=7),
        Column("priority", priority, give_way=8),
        Column("submitter", submitter, give_way=5, flexible=True, minimum=9),
        Column("ran", text("ran"), give_way=3, flexible=True, minimum=12),
        Column("age", lambda row: duration(row["age_s"]), give_way=6),
        Column("duration", lambda row: duration(row["run_time_s"]), give_way=4),
        Column("attempts", lambda row: str(row["attempts"]), give_way=2),
        Column("job id", text("job_id"), give_way=1),
    ]
    return fitted_table(columns, rows, width, title=title, caption=None if rows else "no items")


# -- status --------------------------------------------------------------------------------


@click.command("status")
@click.argument("item_id")
@click.option("--queue", "-q", "queue_name", help="The item's queue (needed if ambiguous).")
@json_option
@backend_command
def status(backends: Backends, item_id: str, queue_name: str | None, as_json: bool) -> None:
    """Everything about one item: state, error, job links, attempts, history.

    For a FAILED item, also the last lines of its job's log (`launchq logs` shows all of it).
    """
    from launchq_cli.logs import failed_job_tail
    from launchq_client.queues import QueueStates
    from launchq_client.reads import find_item_data, item_detail, sweep_progress

    data = find_item_data(backends.store, item_id, queue_name)
    detail = item_detail(data, queues=QueueStates(backends.store))
    detail["sweep"] = sweep_progress(backends.store, data)
    tail: tuple[list[str] | None, str | None] = (None, None)
    if detail["state"] == "FAILED" and detail["job"]:
        tail = failed_job_tail(backends, data)
    detail["log_tail"], detail["log_tail_unavailable"] = tail
    if as_json:
        emit_json(detail)
        return
    _print_detail(detail)


def _print_detail(d: dict[str, Any]) -> None:
    from rich.markup import escape

    out = console()
    out.print(f"[bold]{escape(str(d['item_id']))}[/bold]  queue {escape(str(d['queue']))}")
    if d["display_name"]:
        _hang(out, "  name       ", escape(str(d["display_name"])))
    claim = d["submitted_by"]
    if claim:
        # Pub/Sub carries no identity: the publisher's own word, and said to be one.
        who = escape(str(claim.get("value")))
        _hang(out, "  submitter  ", f"{who} [dim](claimed, unverified)[/dim]")
    if d["ran"]:
        _hang(out, "  ran        ", escape(str(d["ran"])))
    _hang(out, "  state      ", f"{styled_state(d['state'])}  {escape(d['description'] or '')}")
    if d["reason"]:
        _hang(out, "  reason     ", escape(d["reason"]))
    if d.get("placement"):
        _hang(out, "  placement  ", escape(f"{d['placement']} ({d['region']})"))
    out.print(
        f"  priority   {d['priority_name'] or '-'}    "
        f"attempts {d['attempts']}    age {duration(d['age_s'])}    "
        f"to submit {duration(d['time_to_submit_s'])}    run {duration(d['run_time_s'])}"
    )
    _print_cost_and_run(out, d)
    _print_group_and_notices(out, d)
    build = d.get("build")
    if build:
        built = build.get("digest") or build.get("build_state")
        out.print(f"  image      {escape(str(build.get('tag_uri')))} ({escape(str(built))})")
        if build.get("build_id"):
            seconds = build.get("build_seconds")
            took = f"  took {duration(seconds)}" if seconds is not None else ""
            out.print(f"  build      {escape(str(build['build_id']))}{took}")
        if build.get("log_url"):
            out.print(f"  build log  {build['log_url']}", soft_wrap=True)
    job = d["job"]
    if job:
        # An identifier, like the links: never broken, even past the width.
        name = f"{escape(str(job['name']))} ({job['vertex_state']})"
        out.print(f"  job        {name}", soft_wrap=True)
        out.print(f"  console    {job['console_url']}", soft_wrap=True)
        out.print(f"  logs       {job['logs_url']}", soft_wrap=True)
    error = d["error_detail"]
    if error:
        lines = str(error.get("message")).splitlines() or [""]
        lines += [str(sub.get("message")) for sub in (error.get("errors") or [])[1:]]
        _hang(out, "  [red]error[/red]      ", escape(lines[0]))
        for line in lines[1:]:
            _hang(out, "             ", escape(line))
    if d.get("log_tail"):
        out.print(f"  [dim]log (last {len(d['log_tail'])} lines; `launchq logs` has all)[/dim]")
        for line in d["log_tail"]:
            _hang(out, "    ", escape(line))
    elif d.get("log_tail_unavailable"):
        out.print(f"  [dim]log        unavailable: {escape(d['log_tail_unavailable'])}[/dim]")
    _print_attempts_and_history(out, d)


def _print_group_and_notices(out: Console, d: dict[str, Any]) -> None:
    """A sweep's child names its parent, a parent its progress; undelivered notifications."""
    from rich.markup import escape

    if d.get("sweep_of"):
        _hang(out, "  sweep      ", f"child of {escape(str(d['sweep_of']))}")
    if d.get("sweep"):
        _print_sweep(out, d["sweep"])
    for rule, notice in (d.get("notify") or {}).items():
        text = f"{rule}: {notice.get('state')} after {notice.get('attempts')} attempts"
        _hang(out, "  [yellow]notify[/yellow]     ", escape(f"{text}: {notice.get('error')}"))


def _print_sweep(out: Console, sweep: Mapping[str, Any]) -> None:
    """A sweep's progress: a bar of its children done, and how many are where."""
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    count = int(sweep["count"])
    kind = f"{sweep.get('method')} sweep" if sweep.get("kind") == "sweep" else "array"
    limit = f", max_parallel {sweep['max_parallel']}" if sweep.get("max_parallel") else ""
    recorded = "" if sweep["expanded"] == count else f", {sweep['expanded']} recorded so far"
    _hang(out, "  children   ", f"{kind} of {count}{limit}{recorded}")
    line = Table.grid(padding=(0, 1))
    line.add_row(
        "            ",
        ProgressBar(total=max(count, 1), completed=sweep["done"], width=30),
        f"{sweep['done']}/{count} done",
    )
    out.print(line)
    counts = "  ".join(
        f"{group} {sweep[group]}"
        for group in ("held", "waiting", "running", "succeeded", "failed", "cancelled")
    )
    _hang(out, "             ", counts)
    if sweep.get("cancel_requested"):
        _hang(out, "             ", "[yellow]cancel requested[/yellow]")


def _print_cost_and_run(out: Console, d: dict[str, Any]) -> None:
    """What the item's attempts cost, and its W&B run (docs/budgets.md, docs/wandb.md)."""
    from rich.markup import escape

    if d.get("gpu_hours") is not None:
        _hang(out, "  cost       ", escape(cost_text(d)))
    run = d.get("wandb_run")
    if run:
        where = run.get("url") or f"{run.get('project')}/runs/{run.get('id')}"
        out.print(f"  W&B run    {escape(str(where))}", soft_wrap=True)


def _print_attempts_and_history(out: Console, d: dict[str, Any]) -> None:
    from rich.markup import escape

    if len(d["attempt_list"]) > 1 or d.get("placement") or d.get("gpu_hours") is not None:
        out.print("  attempts")
        for attempt in d["attempt_list"]:
            _hang(out, f"    #{attempt['n']}  ", escape(attempt_line(attempt)))
    out.print("  history")
    start = d["history"][0]["at"] if d["history"] else None
    for entry in d["history"]:
        offset = _offset(start, entry["at"])
        source = entry.get("from") or "·"
        _hang(
            out,
            f"    {entry['at']}  {offset:>8}  ",
            f"{source} → {styled_state(entry.get('to'))}  "
            f"[dim]{escape(str(entry.get('cause') or ''))}[/dim]",
        )


def attempt_line(attempt: Mapping[str, Any]) -> str:
    """One attempt of `status`: when, where, how it ended, and where the next one went."""
    where = " ".join(
        str(part)
        for part in (attempt.get("placement"), attempt.get("region"), attempt.get("strategy"))
        if part
    )
    words = [str(attempt.get("created_at") or "-"), where or "-", str(attempt.get("state") or "")]
    if attempt.get("failure_class"):
        words.append(f"({attempt['failure_class']})")
    if attempt.get("moved_to"):
        words.append(f"→ {attempt['moved_to']}")
    if attempt.get("gpu_hours") is not None:
        words.append(f"ran {duration(attempt.get('run_seconds'))}, {cost_text(attempt)}")
    words.append(str(attempt.get("job_name") or ""))
    return "  ".join(word for word in words if word)


def cost_text(figures: Mapping[str, Any]) -> str:
    """`1.50 accelerator-h, $3.20 (SPOT saved $6.10)`, estimated (docs/budgets.md)."""
    text = f"{float(figures['gpu_hours']):.2f} accelerator-h"
    usd = figures.get("cost_usd", figures.get("usd"))
    if usd is not None:
        text += f", ${float(usd):,.2f}"
    saved = figures.get("spot_saved_usd", figures.get("usd_saved"))
    if saved:
        text += f" (SPOT saved ${float(saved):,.2f})"
    return text + " estimated"


def _hang(out: Console, label: str, value: str) -> None:
    """`label` then `value` (both markup), the value wrapped under itself at the console's
    width instead of back at the margin, so a long error or log line stays readable at 80."""
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid()
    grid.add_column(width=Text.from_markup(label).cell_len, no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row(label, value)
    out.print(grid)


def _offset(start: str | None, at: str | None) -> str:
    if not start or not at:
        return ""
    seconds = (datetime.fromisoformat(at) - datetime.fromisoformat(start)).total_seconds()
    return f"+{duration(seconds)}"


# -- cancel --------------------------------------------------------------------------------


@click.command("cancel")
@click.argument("item_id")
@click.option("--queue", "-q", "queue_name", help="The item's queue (needed if ambiguous).")
@click.option("--wait", is_flag=True, help="Follow the item until it ends (CANCELLED).")
@click.option("--timeout", type=float, default=600, show_default=True, help="--wait limit, s.")
@json_option
@backend_command
def cancel(
    backends: Backends,
    item_id: str,
    queue_name: str | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Cancel an item: publishes a cancel request to the item's queue topic.

    The dispatcher carries it out with launchq's own credentials (a waiting item is CANCELLED at
    once, a submitted one through CancelCustomJob, then CANCELLED once the sweep sees Vertex stop
    the job), so whoever may launch onto a queue may cancel in it, and needs no other right.
    `--wait` follows the item to its end and prints how it ended, once. Exits 0 when the
    cancel was requested or the item is already CANCELLED (cancelling twice is harmless; with
    `--wait`: when the item ended CANCELLED), 1 when it had already ended otherwise (SUCCEEDED,
    FAILED, REJECTED...) or, with `--wait`, ended otherwise or not within --timeout.
    """
    from launchq.model.states import ItemState
    from launchq_client.cancel import request_cancel

    queue, state, message_id = request_cancel(backends, item_id, queue_name)
    if message_id is None:
        if as_json:
            emit_json(
                {"item_id": item_id, "queue": queue, "state": state.value, "cancelled": False}
            )
        if state is ItemState.CANCELLED:
            if not as_json:
                click.echo(f"{item_id}: already CANCELLED (nothing published)")
            return
        raise CliError(f"{item_id} was not cancelled: it had already ended {state.value}")
    final = follow(backends, queue, item_id, timeout, announce=False) if wait else None
    cancelled = final == ItemState.CANCELLED.value
    result = {
        "item_id": item_id,
        "queue": queue,
        "message_id": message_id,
        "state": final or state.value,
        "cancelled": cancelled if wait else True,
    }
    if as_json:
        emit_json(result)
    elif not wait:
        click.echo(f"{item_id}: cancel requested (message {message_id}; it was {state.value})")
    elif cancelled:
        click.echo(f"{item_id}: {final}")
    if wait and final is None:
        raise CliError(f"{item_id} was not cancelled within {timeout:.0f}s")
    if wait and not cancelled:
        raise CliError(f"{item_id} was not cancelled: it ended {final}")


# -- watch ---------------------------------------------------------------------------------


@click.command("watch")
@click.option("--queue", "-q", "queue_name", help="Only this queue (default: all).")
@click.option("--interval", type=float, default=1.0, show_default=True, help="Refresh, seconds.")
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@click.option("--until-done", is_flag=True, help="Exit once every listed item has ended.")
@click.option("--once", is_flag=True, help="Print one frame (or one JSON snapshot) and exit.")
@click.option("--json", "as_json", is_flag=True, help="One JSON snapshot per line (NDJSON).")
@backend_command
def watch(
    backends: Backends,
    queue_name: str | None,
    interval: float,
    limit: int,
    until_done: bool,
    once: bool,
    as_json: bool,
) -> None:
    """A live-updating table of a queue's items (Ctrl-C stops).

    The table fits the terminal: at a narrow width the low-value columns give way first (job
    id, attempts, what ran, duration, submitter, age, queue, priority); name, item and state stay.
    """
    from rich.console import Group
    from rich.live import Live

    def snapshot() -> tuple[dict[str, Any], bool]:
        from launchq.model.states import TERMINAL_STATES
        from launchq_client.queues import list_queue_summaries, queue_document, queue_summary
        from launchq_client.reads import list_items

        store = backends.store
        if queue_name:
            queues = [queue_summary(store, queue_document(store, queue_name))]
        else:
            queues = list_queue_summaries(store)
        items = list_items(store, queue_name, (), limit)
        ended = {s.value for s in TERMINAL_STATES}
        done = all(row["state"] in ended for row in items)
        return {"at": datetime.now(UTC).isoformat(), "queues": queues, "items": items}, done

    if as_json:
        while True:
            snap, done = snapshot()
            click.echo(json.dumps(snap, default=str))
            if once or (until_done and done):
                return
            time.sleep(interval)

    def render(snap: dict[str, Any]) -> Group:
        from rich.text import Text

        header = "   ".join(
            f"{q['name']}: {q['running']}/{_max(q['max_jobs'])} running, {q['waiting']} waiting"
            + (" (paused)" if q["paused"] else "")
            for q in snap["queues"]
        )
        return Group(Text(header or "no queues"), items_table(snap["items"], out.width))

    out = console()
    if once:
        out.print(render(snapshot()[0]))
        return
    try:
        with Live(console=out, auto_refresh=False) as live:
            while True:
                snap, done = snapshot()
                live.update(render(snap), refresh=True)
                if until_done and done:
                    return
                time.sleep(interval)
    except KeyboardInterrupt:
        return


def _max(max_jobs: object) -> str:
    return "∞" if max_jobs == -1 else str(max_jobs)
