"""`launchq sweep` (one sweep, now) and `launchq dev` (the whole stack in the foreground).

`sweep` runs the same code as the sweep function, in this process, against whatever the flags and
environment point at: the local stack, or a real project when an operator wants one now rather
than at the next scheduled minute. `dev` is what `make dev` runs (see launchq_local.devstack).
"""

from __future__ import annotations

import json
import logging
import shlex
import signal
import sys
import time
from types import FrameType
from typing import Any

import click

from launchq.log import configure
from launchq_cli.common import (
    EXIT_FAILURE,
    CliError,
    backend_command,
    console,
    emit_json,
    json_option,
)
from launchq_cli.standin import (
    describe_scarcity,
    limit_options,
    scarcity_options,
    scarcity_rules,
    vertex_limits,
)
from launchq_client.backends import Backends


@click.command("sweep")
@json_option
@backend_command
def sweep(backends: Backends, as_json: bool) -> None:
    """Run one sweep now: record Vertex job states, refill free slots, retry failures.

    Exits 1 when the sweep reports errors (they are listed).
    """
    summary = backends.app.sweeper.run().as_dict()
    if as_json:
        emit_json(summary)
    else:
        _print_summary(summary)
    if summary.get("errors"):
        raise click.exceptions.Exit(EXIT_FAILURE)


def _print_summary(summary: dict[str, Any]) -> None:
    if summary.get("skipped"):
        click.echo(f"sweep skipped: {summary['skipped']}")
        return
    counts = ", ".join(
        f"{summary.get(key, 0)} {key.replace('_', ' ')}"
        for key in ("items_seen", "transitions", "admitted", "retried")
    )
    calls = summary.get("vertex_calls_total", 0)
    click.echo(f"sweep: {counts}; {calls} Vertex calls in {summary.get('duration_s', 0):.2f}s")
    for error in summary.get("errors") or []:
        click.echo(f"  error: {error}", err=True)


@click.command("dev")
@click.option("--free-ports", is_flag=True, help="Pick free ports instead of the fixed ones.")
@click.option("--project", default="launchq-dev", show_default=True, help="Local project id.")
@click.option("--sweep-interval", type=float, default=3.0, show_default=True, help="Seconds.")
@click.option("--quiet", is_flag=True, help="Do not print state changes as they happen.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="warning",
    show_default=True,
    help="Structured JSON logs on stderr from this level (info: each start and stop step).",
)
@limit_options("vertex-")
@scarcity_options
def dev(
    free_ports: bool,
    project: str,
    sweep_interval: float,
    quiet: bool,
    log_level: str,
    quotas: tuple[str, ...],
    create_rpm: int | None,
    stockouts: tuple[str, ...],
    flex_expires: tuple[str, ...],
    preempt_spot: float | None,
    scarcity_seed: int | None,
) -> None:
    """Run the whole stack locally until Ctrl-C (what `make dev` runs).

    Firestore 8080, Pub/Sub 8085, dispatcher 8081, sweeper 8082, notify function 8083, Vertex
    stand-in 8090 (execute mode), Logging stand-in 8091 (what jobs print, for `launchq logs`),
    Cloud Build stand-in 8092 (builds images from source, no Docker), Secret Manager stand-in
    8093 (W&B keys and webhook secrets), a webhook receiver 8094 (what notifications send), the
    queue topic pushed to the dispatcher, a sweep every few seconds. Prints the variables that
    point the CLI at it, then every state change and every notification delivered.
    `--stockout` and `--preempt-spot` make Vertex capacity scarce, to watch a failover
    (docs/local-dev.md).
    """
    from launchq_local.devstack import DevStack, DevStackError, Ports
    from launchq_local.emulators import EmulatorError

    err = console(stderr=True)
    limits = vertex_limits(quotas, create_rpm)  # a bad flag fails before anything starts
    scarcity = scarcity_rules(stockouts, preempt_spot, flex_expires, scarcity_seed)
    configure(getattr(logging, log_level.upper()), sys.stderr)
    # Ctrl-C, SIGTERM and a closed terminal's SIGHUP all stop the stack the same way. This
    # handler is in place before the emulators start, so theirs defers to it (see
    # launchq_local.emulators) and the stop below runs in order.
    for signum in _STOP_SIGNALS:
        signal.signal(signum, _interrupt)
    stack = DevStack(
        project,
        Ports.free() if free_ports else Ports(),
        sweep_interval,
        limits=limits,
        scarcity=scarcity,
    )
    err.print("Starting the local stack (emulators, Vertex stand-in, functions)...")
    try:
        stack.start()
    except (EmulatorError, DevStackError) as exc:
        stack.remove_files()
        raise CliError(str(exc)) from None
    except KeyboardInterrupt:
        stack.remove_files()
        raise click.exceptions.Exit(130) from None
    try:
        _announce(stack)
        _follow(stack, quiet)
    except KeyboardInterrupt:
        err.print("\nStopping the local stack...")
    except DevStackError as exc:
        raise CliError(str(exc)) from None
    finally:
        _ignore_stop_signals()
        stack.stop()
        stack.remove_files()
    err.print("Stopped; nothing left running.")


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _ignore_stop_signals()
    raise KeyboardInterrupt


def _ignore_stop_signals() -> None:
    """A second Ctrl-C or SIGTERM must not cut the orderly stop short: it takes seconds, and
    stopped half-way it would leave processes behind (also when the first one came while the
    stack was still starting, whose clean-up is the same stop)."""
    for signum in _STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def _announce(stack: Any) -> None:
    err = console(stderr=True)
    for key, value in stack.env().items():
        click.echo(f"export {key}={shlex.quote(value)}")
    err.print(
        f"[green]Ready in {stack.startup_seconds:.1f}s[/green]: Firestore "
        f"{stack.ports.firestore}, Pub/Sub {stack.ports.pubsub}, dispatcher "
        f"{stack.dispatcher_url}, sweeper {stack.sweeper_url} (every {stack.sweep_interval:g}s), "
        f"Vertex stand-in {stack.standin_url} (execute mode), GCS emulator "
        f"http://127.0.0.1:{stack.ports.gcs}, Logging stand-in {stack.logging_url}, "
        f"Cloud Build stand-in {stack.cloudbuild_url}, Secret Manager stand-in "
        f"{stack.secretmanager_url}, notify function {stack.notifier_url}, webhook receiver "
        f"{stack.receiver_url} (what it took: {stack.receiver_url}/deliveries)."
    )
    err.print(f"Logs: {stack.log_dir}   job outputs: {stack.work_dir}")
    if stack.scarcity:
        err.print(f"Vertex capacity is scarce: {describe_scarcity(list(stack.scarcity))}")
    err.print(
        "Paste the exports above into another shell, then e.g.\n"
        "  launchq queue apply examples/queues/trainer.yaml\n"
        "  launchq enqueue --from-file examples/items/train.json --wait\n"
        "Ctrl-C stops everything."
    )


def _follow(stack: Any, quiet: bool) -> None:
    """Print state-change events from the events topic and the notifications the webhook
    receiver took; watch the stack's health."""
    from google.api_core import exceptions as gexc
    from google.cloud.pubsub_v1 import SubscriberClient

    out = console(stderr=True)
    subscriber = SubscriberClient()
    printed = 0  # deliveries of the webhook receiver printed so far
    try:
        while True:
            stack.check_alive()
            if quiet:
                time.sleep(1.0)
                continue
            try:
                response = subscriber.pull(
                    subscription=stack.events_subscription_path, max_messages=100, timeout=2.0
                )
            except (gexc.DeadlineExceeded, gexc.RetryError):
                printed += _print_deliveries(out, stack, printed)
                continue
            received = response.received_messages
            for message in received:
                out.print(_event_line(message.message.data), markup=False, highlight=False)
            # After the events: a notification follows the state change it tells of.
            printed += _print_deliveries(out, stack, printed)
            if received:
                subscriber.acknowledge(
                    subscription=stack.events_subscription_path,
                    ack_ids=[m.ack_id for m in received],
                )
            else:
                time.sleep(0.5)
    finally:
        subscriber.close()


def _print_deliveries(out: Any, stack: Any, since: int) -> int:
    """Print what the webhook receiver took since the `since`-th delivery; how many."""
    fresh = stack.receiver.deliveries(since) if stack.receiver is not None else []
    for delivery in fresh:
        out.print(delivery.summary(), markup=False, highlight=False)
    return len(fresh)


def _event_line(data: bytes) -> str:
    try:
        event = json.loads(data)
        body = event["data"]
    except (ValueError, KeyError, TypeError):
        return f"event: {data[:200]!r}"
    at = str(event.get("time", ""))[11:23]
    source = body.get("from") or "·"
    return f"{at}  {body.get('queue')}/{body.get('item_id')}  {source} → {body.get('to')}  " + str(
        body.get("cause") or ""
    )
