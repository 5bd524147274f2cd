"""`launchq vertex-emulator`: the local Vertex AI CustomJob stand-in in the foreground.

Ctrl-C (or SIGTERM) stops the server and kills every executed job's process group, so nothing
started by the stand-in outlives it. See docs/vertex-standin.md for the admin API.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from types import FrameType

import click

from launchq.log import configure


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
    server = StandinServer(
        host=host,
        port=port,
        mode="execute" if mode == "execute" else "scripted",
        delays=delays,
        work_dir=work_dir,
        kill_grace=kill_grace,
    )

    def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on_sigterm)
    click.echo(
        f"Vertex AI stand-in on {server.url} (mode {mode}, work dir {server.store.work_dir})"
    )
    click.echo(f"  api_endpoint={server.url}   admin: {server.url}/emulator/v1/status")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopping: killing executed jobs")
    finally:
        server.stop()
