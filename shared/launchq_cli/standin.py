"""`launchq vertex-emulator`: the local Vertex AI CustomJob stand-in in the foreground.

Ctrl-C (or SIGTERM) stops the server and kills every executed job's process group, so nothing
started by the stand-in outlives it. See docs/vertex-standin.md for the admin API.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

import click

from launchq.log import configure

if TYPE_CHECKING:
    from launchq_local.standin.limits import Limits


def vertex_limits(quotas: tuple[str, ...], create_rpm: int | None) -> Limits:
    """`--quota METRIC=N` values and a rate → the stand-in's `Limits` (bad ones: usage error)."""
    from launchq_local.standin.limits import Limits, metric_name

    parsed: dict[str, int] = {}
    for value in quotas:
        metric, sep, number = value.partition("=")
        try:
            if not sep or not number.strip().isdigit():
                raise ValueError(f"{value!r} is not METRIC=N (N a non-negative integer)")
            parsed[metric_name(metric)] = int(number)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="'--quota'") from None
    return Limits(parsed, create_rpm)


F = TypeVar("F", bound=Callable[..., Any])


def limit_options(prefix: str = "") -> Callable[[F], F]:
    """`--quota` and `--create-requests-per-minute` (with `prefix`, e.g. `vertex-`, for `dev`)."""

    def decorate(command: F) -> F:
        command = click.option(
            f"--{prefix}create-requests-per-minute",
            "create_rpm",
            type=click.IntRange(min=1),
            default=None,
            help="Vertex's CreateCustomJob rate limit per project and region (sliding 60 s "
            "window); over it, creates answer 429 RESOURCE_EXHAUSTED. Default: no limit.",
        )(command)
        return click.option(
            f"--{prefix}quota",
            "quotas",
            multiple=True,
            metavar="METRIC=N",
            help="A per-region compute quota over active jobs, e.g. "
            "custom_model_training_nvidia_a100_gpus=16 or custom_model_training_cpus=64 "
            "(repeatable); over it, creates answer 429 RESOURCE_EXHAUSTED. Default: none.",
        )(command)

    return decorate


def _seconds_or_forever(value: str) -> float | None:
    """`--running-delay forever` keeps jobs RUNNING until the admin API says otherwise."""
    if value.lower() in ("forever", "none", "inf"):
        return None
    seconds = float(value)
    if seconds < 0:
        raise click.BadParameter("delays must be >= 0")
    return seconds


@click.command("vertex-emulator")
@click.option("--port", type=int, default=8090, show_default=True, help="0 picks a free port.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--mode",
    type=click.Choice(["scripted", "execute"]),
    default="scripted",
    show_default=True,
    help="scripted: timed state changes; execute: run the container command locally.",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Logs and gs:// outputs of executed jobs (default: a new temporary directory).",
)
@click.option("--queued-delay", default="1", show_default=True, help="Seconds, or 'forever'.")
@click.option("--pending-delay", default="1", show_default=True, help="Seconds, or 'forever'.")
@click.option("--running-delay", default="5", show_default=True, help="Seconds, or 'forever'.")
@click.option("--cancelling-delay", type=float, default=0.5, show_default=True)
@click.option("--kill-grace", type=float, default=2.0, show_default=True, help="SIGTERM→SIGKILL.")
@limit_options()
@click.option("--log-level", default="INFO", show_default=True)
def vertex_emulator(
    port: int,
    host: str,
    mode: str,
    work_dir: Path | None,
    queued_delay: str,
    pending_delay: str,
    running_delay: str,
    cancelling_delay: float,
    kill_grace: float,
    quotas: tuple[str, ...],
    create_rpm: int | None,
    log_level: str,
) -> None:
    """Serve the Vertex AI v1 CustomJob REST API locally (Ctrl-C stops it)."""
    from launchq_local.standin import Delays, StandinServer

    configure(getattr(logging, log_level.upper(), logging.INFO))
    try:
        delays = Delays(
            queued=_seconds_or_forever(queued_delay),
            pending=_seconds_or_forever(pending_delay),
            running=_seconds_or_forever(running_delay),
            cancelling=cancelling_delay,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    limits = vertex_limits(quotas, create_rpm)
    server = StandinServer(
        host=host,
        port=port,
        mode="execute" if mode == "execute" else "scripted",
        delays=delays,
        work_dir=work_dir,
        kill_grace=kill_grace,
        limits=limits,
    )

    def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on_sigterm)
    click.echo(
        f"Vertex AI stand-in on {server.url} (mode {mode}, work dir {server.store.work_dir})"
    )
    click.echo(f"  api_endpoint={server.url}   admin: {server.url}/emulator/v1/status")
    if limits.active:
        click.echo(f"  limits: {limits.to_json()}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopping: killing executed jobs")
    finally:
        server.stop()
