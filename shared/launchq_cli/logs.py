"""`launchq logs ITEM`: what the item's job printed, from Cloud Logging, optionally followed.

The item is looked up in Firestore like `status` does (`launchq_client.reads`); the job is its
last attempt's. Choosing the endpoint, reading and following are in `launchq_client.logs`; this
module prints: plain lines (stderr's in red) or NDJSON.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from launchq_cli.common import CliError, backend_command, invalid
from launchq_client.backends import Backends

if TYPE_CHECKING:
    from launchq_client.logs import JobRef, LogLine

STATUS_TAIL_LINES = 10
STATUS_TIMEOUT = 10.0


@click.command("logs")
@click.argument("item_id")
@click.option("--queue", "-q", "queue_name", help="The item's queue (needed if ambiguous).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the item ends.")
@click.option("--replica", help="Only this replica, e.g. workerpool0-0 (default: all).")
@click.option("--tail", type=click.IntRange(1), help="Only the last N lines (then follow).")
@click.option("--since", help="Only lines newer than this: 30s, 10m, 2h, 1d.")
@click.option(
    "--interval", type=click.FloatRange(0.05),
    help="With --follow: seconds between reads (default 10 for Cloud Logging, whose read "
    "quota is per project; 1 for a local http:// endpoint).",
)  # fmt: skip
@click.option("--logging-endpoint", help="Cloud Logging base URL (e.g. the local stand-in).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (NDJSON).")
@backend_command
def logs(
    backends: Backends,
    item_id: str,
    queue_name: str | None,
    follow: bool,
    replica: str | None,
    tail: int | None,
    since: str | None,
    interval: float | None,
    logging_endpoint: str | None,
    as_json: bool,
) -> None:
    """Print the log of an item's job, oldest first (stdout as INFO, stderr as ERROR).

    Works for running, ended and cancelled items. With --follow, polls like `gcloud ai
    custom-jobs stream-logs` and exits once the item has ended and its last lines are printed
    (Ctrl-C stops following earlier, with exit code 0). A retried item's new job is followed
    too, announced on stderr.
    """
    from launchq_client import logs as joblogs

    lower = None
    if since is not None:
        try:
            lower = datetime.now(UTC) - joblogs.parse_duration(since)
        except ValueError as exc:
            invalid(f"--since: {exc}")
    # Waiting for the job is a Firestore read, cheap at any rate.
    data, job = _item_and_job(backends, item_id, queue_name, follow, interval or 1.0)
    client = joblogs.logs_client(backends, logging_endpoint)
    interval = interval or client.poll_interval
    try:
        emit = _printer(as_json)
        position = joblogs.Position()
        if tail is not None:
            lines = client.last(job.project, joblogs.job_filter(job, replica, lower), tail)
        else:
            lines = list(client.entries(job.project, joblogs.job_filter(job, replica, lower)))
        for line in lines:
            if position.fresh(line):
                emit(line)
        if follow:
            queue = str(data["queue"])
            joblogs.follow(
                client, job, replica, lower, position,
                watch=lambda: _watch(backends, queue, item_id),
                emit=emit, interval=interval, switched=_announce(as_json),
            )  # fmt: skip
    except KeyboardInterrupt:
        return  # Ctrl-C is how a person stops following a job that runs on: not an error
    except joblogs.LogsError as exc:
        raise CliError(str(exc)) from None
    finally:
        client.close()


def _item_and_job(
    backends: Backends, item_id: str, queue: str | None, wait: bool, interval: float
) -> tuple[dict[str, Any], JobRef]:
    """The item and its job; with `wait`, until it has one (or ends without one)."""
    from launchq.model.states import TERMINAL_STATES
    from launchq_client.logs import LogsError, job_ref
    from launchq_client.reads import find_item_data

    terminal = {s.value for s in TERMINAL_STATES}
    while True:
        data = find_item_data(backends.store, item_id, queue)
        try:
            job = job_ref(data)
        except LogsError as exc:
            raise CliError(exc.message) from None
        if job is not None:
            return data, job
        state = data.get("state")
        if not wait or state in terminal:
            raise CliError(f"{item_id} has no job, so no logs: it is {state}")
        time.sleep(interval)


def _watch(backends: Backends, queue: str, item_id: str) -> tuple[JobRef | None, bool]:
    """The item's current job (a retry makes a new one) and whether the item has ended."""
    from launchq.model.states import TERMINAL_STATES
    from launchq_client.logs import job_ref
    from launchq_client.reads import find_item_data

    data = find_item_data(backends.store, item_id, queue)
    return job_ref(data), data.get("state") in {s.value for s in TERMINAL_STATES}


def _announce(as_json: bool) -> Callable[[JobRef], None]:
    """Say on stderr that a retry's job is followed now; stdout stays the log (NDJSON with
    --json), so a pipe sees only log lines."""

    def announce(job: JobRef) -> None:
        click.echo(f"-- the item was retried: following its new job {job.job_id}", err=True)

    return announce


def _printer(as_json: bool) -> Callable[[LogLine], None]:
    def text(line: LogLine) -> None:
        error = line.severity in ("ERROR", "CRITICAL", "ALERT", "EMERGENCY")
        stamp = _short(line.timestamp)
        click.echo(
            f"{stamp} {line.replica} " + click.style(line.message, fg="red" if error else None)
        )

    def ndjson(line: LogLine) -> None:
        click.echo(json.dumps(line.to_json(), ensure_ascii=False))

    return ndjson if as_json else text


def _short(timestamp: str) -> str:
    """Milliseconds are enough to read a log by."""
    from launchq_client.logs import parse_time

    try:
        at = parse_time(timestamp)
    except ValueError:
        return timestamp
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def failed_job_tail(
    backends: Backends, data: dict[str, Any], count: int = STATUS_TAIL_LINES
) -> tuple[list[str] | None, str | None]:
    """The last lines of a failed item's job log for `status`: (lines, None) or (None, why not).

    Best effort: `status` must answer even when the log cannot be read.
    """
    from launchq_client import logs as joblogs
    from launchq_client.errors import Unreachable

    try:
        job = joblogs.job_ref(data)
        if job is None:
            return None, "no job"
        # `status` answers in seconds even when Cloud Logging does not: a short timeout.
        client = joblogs.logs_client(backends, timeout=STATUS_TIMEOUT)
    except joblogs.LogsError as exc:
        return None, exc.message
    except Unreachable as exc:
        return None, str(exc)
    except Exception as exc:  # no credentials, for instance
        return None, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    try:
        lines = client.last(job.project, joblogs.job_filter(job, None, None), count)
    except joblogs.LogsError as exc:
        return None, exc.message
    finally:
        client.close()
    return [line.message for line in lines], None
