"""`launchq vertex-emulator`: the local Vertex AI CustomJob stand-in in the foreground.

Ctrl-C (or SIGTERM) stops the server and kills every executed job's process group, so nothing
started by the stand-in outlives it. See docs/vertex-standin.md for the admin API.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Mapping, Sequence
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


def scarcity_rules(
    stockouts: tuple[str, ...],
    preempt_spot: float | None,
    flex_expires: tuple[str, ...] = (),
    seed: int | None = None,
) -> list[dict[str, Any]]:
    """`--stockout REGION[:ACCELERATOR]`, `--preempt-spot FRACTION` and `--flex-expire
    REGION[:ACCELERATOR]` → the stand-in's scarcity rules (bad ones: usage error)."""
    import random

    from launchq_local.standin.scarcity import rule_from_json

    flagged: list[tuple[str, dict[str, Any]]] = []
    for option, kind, values in (
        ("--stockout", "stockout", stockouts),
        ("--flex-expire", "flex_expire", flex_expires),
    ):
        for value in values:
            region, _, accelerator = value.partition(":")
            rule = {"kind": kind, "region": region, "accelerator": accelerator or "*"}
            flagged.append((option, rule))
    if preempt_spot is not None:
        preempt: dict[str, Any] = {"kind": "preempt", "region": "*", "fraction": preempt_spot}
        if seed is not None:
            preempt["seed"] = seed
        flagged.append(("--preempt-spot", preempt))
    for option, rule in flagged:
        try:  # the stand-in's own parser, so a bad flag fails before anything starts
            rule_from_json(rule, "check", random.Random())
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=f"'{option}'") from None
    return [rule for _, rule in flagged]


def describe_scarcity(rules: Sequence[Mapping[str, Any]]) -> str:
    """One line for a person: `stockout us-central1:NVIDIA_TESLA_A100; preempt 30% of SPOT
    jobs`."""
    parts = []
    for rule in rules:
        if rule["kind"] == "preempt":
            parts.append(f"preempt {rule['fraction']:.0%} of SPOT jobs")
        else:
            parts.append(f"{rule['kind']} {rule['region']}:{rule.get('accelerator', '*')}")
    return "; ".join(parts)


F = TypeVar("F", bound=Callable[..., Any])


def scarcity_options(command: F) -> F:
    """`--stockout`, `--flex-expire`, `--preempt-spot` and `--scarcity-seed`: GPU scarcity to
    watch a failover locally (docs/vertex-standin.md, "Scarcity")."""
    command = click.option(
        "--scarcity-seed",
        type=int,
        default=None,
        help="Seed for --preempt-spot, so the same jobs get preempted on every run.",
    )(command)
    command = click.option(
        "--preempt-spot",
        type=click.FloatRange(0.0, 1.0),
        default=None,
        metavar="FRACTION",
        help="Preempt this fraction of SPOT jobs, in every region, a few seconds after they "
        "start RUNNING (0.3: a preemption storm). Default: none.",
    )(command)
    command = click.option(
        "--flex-expire",
        "flex_expires",
        multiple=True,
        metavar="REGION[:ACCELERATOR]",
        help="FLEX_START jobs there wait in PENDING for their max_wait_duration (at most 5 s) "
        "and end EXPIRED (repeatable; REGION may be '*').",
    )(command)
    return click.option(
        "--stockout",
        "stockouts",
        multiple=True,
        metavar="REGION[:ACCELERATOR]",
        help="No capacity there: jobs FAIL from PENDING with Vertex's 'Resources are "
        "insufficient in region' error, e.g. us-central1:NVIDIA_TESLA_A100 (repeatable; "
        "REGION may be '*'; no ACCELERATOR: any, CPU-only jobs included).",
    )(command)


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
@scarcity_options
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
    stockouts: tuple[str, ...],
    flex_expires: tuple[str, ...],
    preempt_spot: float | None,
    scarcity_seed: int | None,
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
    scarcity = scarcity_rules(stockouts, preempt_spot, flex_expires, scarcity_seed)
    server = StandinServer(
        host=host,
        port=port,
        mode="execute" if mode == "execute" else "scripted",
        delays=delays,
        work_dir=work_dir,
        kill_grace=kill_grace,
        limits=limits,
        scarcity=scarcity,
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
    if scarcity:
        click.echo(f"  scarcity: {describe_scarcity(scarcity)}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopping: killing executed jobs")
    finally:
        server.stop()
