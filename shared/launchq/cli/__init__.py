"""The `launchq` command line.

The root group only wires sub-commands together; each concern lives in its own module under
`launchq.cli` and is imported when its command runs, so `launchq --help` stays fast.
"""

from __future__ import annotations

import click

from launchq import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="launchq")
def main() -> None:
    """launchq: a serverless launch queue for Vertex AI."""


def _register() -> None:
    from launchq.cli import emulators, queue, standin

    main.add_command(emulators.emulators)
    main.add_command(standin.vertex_emulator)
    main.add_command(queue.queue)


_register()
