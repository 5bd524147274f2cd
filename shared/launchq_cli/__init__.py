"""The `launchq` command line.

The root group only wires sub-commands together; each concern lives in its own module under
`launchq_cli` and is imported when its command runs, so `launchq --help` stays fast.
"""

from __future__ import annotations

import click

from launchq import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="launchq")
def main() -> None:
    """launchq: a serverless launch queue for Vertex AI."""


def _register() -> None:
    # Importing these modules is cheap: each command imports its clients (Firestore, Pub/Sub,
    # aiplatform, rich) only when it runs.
    from launchq_cli import (
        cohort,
        common,
        emulators,
        items,
        local,
        logs,
        prices,
        queue,
        source_cli,
        standin,
        ui,
    )

    for command in (
        items.enqueue,
        items.ls,
        items.status,
        items.cancel,
        items.watch,
        logs.logs,
        queue.queue,
        cohort.cohort,
        prices.prices,
        source_cli.source,
        local.sweep,
        local.dev,
        emulators.emulators,
        standin.vertex_emulator,
        ui.ui,
        common.cli_reference,
    ):
        main.add_command(command)


_register()
