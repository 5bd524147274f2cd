"""What every cloud-facing command shares: settings and clients, output, errors, exit codes.

Configuration comes from flags, else environment variables (`launchq.settings`), so one command
works against the local stack and against a real project:

    --project          LAUNCHQ_PROJECT, else GOOGLE_CLOUD_PROJECT
    --queue-topic      LAUNCHQ_QUEUE_TOPIC: the shared topic of a single-team install (default:
                       none; each queue has its own topic, launchq-q-<queue>)
    --vertex-endpoint  LAUNCHQ_VERTEX_ENDPOINT (default: the region's Vertex AI endpoint)
    (emulators)        PUBSUB_EMULATOR_HOST, FIRESTORE_EMULATOR_HOST

Exit codes: 0 success, 1 the thing asked about failed (not found, job failed, backend error),
2 usage or validation error. Errors are one sentence on stderr (`error: ...`); `--debug` (or
`LAUNCHQ_DEBUG=1`) shows the traceback instead and turns on debug logs.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import sys
from collections.abc import Callable
from functools import cached_property
from typing import IO, TYPE_CHECKING, Any, NoReturn, TypeVar

import click

if TYPE_CHECKING:  # the clients are imported when first used: `--help` stays fast
    from google.cloud.pubsub_v1 import PublisherClient
    from rich.console import Console

    from launchq.settings import Settings
    from launchq.store import Store
    from launchq.store.firestore import FirestoreStore
    from launchq.wiring import Launchq

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A failure of the thing asked about: one sentence, exit 1."""

    exit_code = EXIT_FAILURE

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class InvalidInput(CliError):
    """Usage or validation error (bad flag value, invalid file, unknown queue): exit 2."""

    exit_code = EXIT_USAGE


def fail(message: str) -> NoReturn:
    raise CliError(message)


def invalid(message: str) -> NoReturn:
    raise InvalidInput(message)


# -- settings and clients ------------------------------------------------------------------


class Backends:
    """Settings plus lazily built clients; a command pays only for the clients it uses."""

    def __init__(
        self,
        project: str | None = None,
        queue_topic: str | None = None,
        vertex_endpoint: str | None = None,
    ) -> None:
        self._overrides = {
            "LAUNCHQ_PROJECT": project,
            "LAUNCHQ_QUEUE_TOPIC": queue_topic,
            "LAUNCHQ_VERTEX_ENDPOINT": vertex_endpoint,
        }
        self._closers: list[Callable[[], None]] = []

    @cached_property
    def settings(self) -> Settings:
        from launchq.settings import Settings, SettingsError

        env = {**os.environ, **{k: v for k, v in self._overrides.items() if v}}
        try:
            return Settings.from_env(env)
        except SettingsError as exc:
            raise InvalidInput(f"{exc} (or pass --project)") from None

    @cached_property
    def firestore(self) -> FirestoreStore:
        """The store on this CLI's Firestore (the emulator when FIRESTORE_EMULATOR_HOST is set)."""
        from launchq.store.firestore import connect

        _check_emulator("FIRESTORE_EMULATOR_HOST", "Firestore")
        store = connect(self.settings.project, self.settings.firestore_database)
        self._closers.append(store.db.close)
        return store

    @cached_property
    def app(self) -> Launchq:
        """launchq's units wired like the functions' (`launchq.wiring`), on this CLI's Firestore.

        The queue cache is off: a command acts on the config as stored now.
        """
        from dataclasses import replace

        from launchq.wiring import build

        return build(replace(self.settings, queue_cache_seconds=0.0), store=self.firestore)

    @property
    def store(self) -> Store:
        return self.app.store

    @cached_property
    def publisher(self) -> PublisherClient:
        from google.cloud.pubsub_v1 import PublisherClient

        _check_emulator("PUBSUB_EMULATOR_HOST", "Pub/Sub")
        return PublisherClient()

    def topic_path_for(self, queue: str) -> str:
        """Where items for `queue` are published: the queue's own topic (`launchq-q-<queue>`,
        publisher rights on it are launch rights), or the shared topic when the install opted
        in (`--queue-topic` / `LAUNCHQ_QUEUE_TOPIC`)."""
        from launchq.spec.topics import queue_topic

        topic = self.settings.queue_topic or queue_topic(queue)
        return f"projects/{self.settings.project}/topics/{topic}"

    def close(self) -> None:
        for closer in self._closers:
            try:
                closer()
            except Exception:  # closing is best effort; the command's outcome stands
                logging.getLogger(__name__).debug("client close failed", exc_info=True)


def _check_emulator(variable: str, service: str) -> None:
    """Fail in a second with the fix, instead of the client retrying a dead port for a minute."""
    address = os.environ.get(variable)
    if not address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=1.0):
            return
    except (OSError, ValueError):
        fail(
            f"cannot reach the {service} emulator at {address} ({variable}); "
            "start the local stack with `make dev`, or unset it to use Google Cloud"
        )


# -- the decorator every cloud-facing command wears ------------------------------------------


def backend_command(fn: F) -> F:
    """Add `--project/--queue-topic/--vertex-endpoint/--debug`, pass `Backends` first, and turn
    any exception into one sentence and an exit code (or a traceback under `--debug`)."""

    @click.option("--project", help="GCP project of launchq's Firestore and topics.")
    @click.option(
        "--queue-topic",
        help="The shared topic, if the install uses one (default: the queue's own topic, "
        "launchq-q-<queue>).",
    )
    @click.option("--vertex-endpoint", help="Vertex AI base URL (e.g. the local stand-in).")
    @click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
    @functools.wraps(fn)
    def wrapper(
        *args: Any,
        project: str | None,
        queue_topic: str | None,
        vertex_endpoint: str | None,
        debug: bool,
        **kwargs: Any,
    ) -> Any:
        debug = debug or os.environ.get("LAUNCHQ_DEBUG", "") not in ("", "0")
        if debug:
            from launchq import log as logsetup

            logsetup.configure(logging.DEBUG, sys.stderr)
        backends = Backends(project, queue_topic, vertex_endpoint)
        try:
            return fn(backends, *args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if debug:
                raise
            raise as_cli_error(exc) from None
        finally:
            backends.close()

    return wrapper  # type: ignore[return-value]


def as_cli_error(exc: Exception) -> CliError:
    """One sentence for an exception a command did not handle itself."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    from launchq.spec.validation import LaunchqValidationError
    from launchq_cli.ops import Ambiguous, NotFound

    if isinstance(exc, LaunchqValidationError):
        return InvalidInput(exc.render())
    if isinstance(exc, Ambiguous):
        return InvalidInput(str(exc))
    if isinstance(exc, NotFound):
        return CliError(str(exc))
    if isinstance(exc, auth_exc.DefaultCredentialsError):
        return CliError(
            "no Google credentials: run `gcloud auth application-default login`, "
            "or point FIRESTORE_EMULATOR_HOST/PUBSUB_EMULATOR_HOST at the local stack"
        )
    if isinstance(exc, gexc.GoogleAPICallError):
        return CliError(f"Google Cloud answered {exc.code} {type(exc).__name__}: {exc.message}")
    if isinstance(exc, gexc.RetryError):
        return CliError(f"Google Cloud did not answer in time: {exc.cause or exc}")
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return CliError(f"{text} ({type(exc).__name__}; run with --debug for the traceback)")


# -- output --------------------------------------------------------------------------------


def json_option(fn: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON (shape documented in docs/cli.md)."
    )(fn)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def console(stderr: bool = False) -> Console:
    """Rich console; when not a terminal, `COLUMNS` wide (else 120), so piped tables stay
    readable and a script (or a test) can ask for the width a person's terminal has."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else _columns(os.environ.get("COLUMNS"), 120)
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def _columns(value: str | None, default: int) -> int:
    try:
        columns = int(value or "")
    except ValueError:
        return default
    return columns if columns > 0 else default


def duration(seconds: float | None) -> str:
    """`4.2s`, `3m05s`, `2h04m`, `3d04h`: compact, for tables."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"


STATE_STYLES = {
    "BUILDING": "bold yellow",
    "QUEUED": "yellow",
    "SUBMITTING": "cyan",
    "SUBMITTED": "cyan",
    "PENDING": "cyan",
    "RUNNING": "bold blue",
    "SUCCEEDED": "green",
    "FAILED": "bold red",
    "REJECTED": "red",
    "CANCELLED": "magenta",
    "CANCELLING": "magenta",
    "EXPIRED": "red",
}


def styled_state(state: str | None) -> str:
    text = state or "-"
    style = STATE_STYLES.get(text)
    return f"[{style}]{text}[/{style}]" if style else text


def parse_pairs(pairs: tuple[str, ...], option: str, metavar: str = "KEY=VALUE") -> dict[str, str]:
    """`K=V` pairs of a repeatable option; exit 2 naming the malformed one."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            invalid(f"{option} {pair!r}: expected {metavar}")
        values[key.strip()] = value
    return values


# -- the generated CLI reference (docs/cli.md) -------------------------------------------------

REFERENCE_MARKER = "<!-- generated by `launchq cli-reference`: do not edit below this line -->"


def render_reference(group: click.Group) -> str:
    """Every command's `--help`, as Markdown; docs/cli.md ends with this (a test checks it)."""
    sections: list[str] = []

    def visit(command: click.Command, path: list[str], parent: click.Context | None) -> None:
        if command.hidden:
            return
        ctx = click.Context(
            command,
            info_name=path[-1],
            parent=parent,
            terminal_width=100,
            help_option_names=["-h", "--help"],
        )
        ctx.max_content_width = 100
        title = " ".join(path)
        sections.append(f"### `{title}`\n\n```text\n{command.get_help(ctx).rstrip()}\n```\n")
        if isinstance(command, click.Group):
            for name in sorted(command.list_commands(ctx)):
                sub = command.get_command(ctx, name)
                if sub is not None:
                    visit(sub, [*path, name], ctx)

    visit(group, ["launchq"], None)
    return "\n".join(sections)


@click.command("cli-reference", hidden=True)
def cli_reference() -> None:
    """Print the Markdown CLI reference (the generated part of docs/cli.md)."""
    from launchq_cli import main

    click.echo(render_reference(main), nl=False)
