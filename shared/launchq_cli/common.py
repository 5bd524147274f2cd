"""What every cloud-facing command shares: the backend flags, output, errors, exit codes.

Settings and clients are `launchq_client.backends.Backends`; the flags override the environment
variables it reads, so one command works against the local stack and against a real project:

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
import sys
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from launchq_client.backends import Backends
from launchq_client.errors import BadSettings, Unreachable

if TYPE_CHECKING:
    from rich.console import Console

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
        except (BadSettings, Unreachable) as exc:
            # The fix is the whole message (set a variable, start the stack): a traceback
            # under --debug would only bury it.
            raise as_cli_error(exc) from None
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

    from launchq.errors import NotFound
    from launchq.spec.validation import LaunchqValidationError
    from launchq_client.errors import Ambiguous

    if isinstance(exc, LaunchqValidationError):
        return InvalidInput(exc.render())
    if isinstance(exc, BadSettings):
        return InvalidInput(f"{exc} (or pass --project)")
    if isinstance(exc, Ambiguous):
        return InvalidInput(str(exc))
    if isinstance(exc, NotFound | Unreachable):
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


STATE_STYLES = {
    "SWEEP": "bold",
    "HELD": "dim yellow",
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
