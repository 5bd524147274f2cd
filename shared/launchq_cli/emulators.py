"""`launchq emulators`: both gcloud emulators in the foreground, for manual work and demos.

The `export` lines go to stdout (copy them into another shell); progress and log locations go
to stderr, so stdout stays machine-readable. Ctrl-C or SIGTERM stops both emulators and every
Java process under them (see `launchq_local.emulators`).
"""

from __future__ import annotations

import shlex
import signal
import time
from types import FrameType

import click

from launchq_local.emulators import EmulatorError, EmulatorStack, start_stack

_WATCH_INTERVAL = 0.5


@click.command("emulators")
@click.option(
    "--pubsub-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port for the Pub/Sub emulator on 127.0.0.1 (default: a free port).",
)
@click.option(
    "--firestore-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port for the Firestore emulator on 127.0.0.1 (default: a free port).",
)
@click.option(
    "--project",
    default="launchq-dev",
    show_default=True,
    help="Project id to export; Firestore keeps data per project.",
)
def emulators(pubsub_port: int | None, firestore_port: int | None, project: str) -> None:
    """Run the Pub/Sub and Firestore emulators until Ctrl-C."""
    click.echo("Starting the Pub/Sub and Firestore emulators...", err=True)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        stack = start_stack(project, pubsub_port=pubsub_port, firestore_port=firestore_port)
    except EmulatorError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        _announce(stack)
        _watch(stack)
    except KeyboardInterrupt:
        click.echo("\nStopping the emulators...", err=True)
    finally:
        stack.stop()
    click.echo("Emulators stopped.", err=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (e.g. from a process manager) takes the same orderly path as Ctrl-C."""
    raise KeyboardInterrupt


def _announce(stack: EmulatorStack) -> None:
    for key, value in stack.env().items():
        click.echo(f"export {key}={shlex.quote(value)}")
    click.echo(
        f"Ready in {stack.startup_seconds:.1f}s: Pub/Sub {stack.pubsub.url}, "
        f"Firestore {stack.firestore.url}. Logs: {stack.log_dir}. Ctrl-C stops both.",
        err=True,
    )


def _watch(stack: EmulatorStack) -> None:
    """Block until interrupted; an emulator dying on its own ends the command with its log."""
    while True:
        try:
            stack.check_alive()
        except EmulatorError as exc:
            raise click.ClickException(str(exc)) from exc
        time.sleep(_WATCH_INTERVAL)
