"""Placeholder: filled in by the work on this command."""

from __future__ import annotations

import click


@click.command("vertex-emulator")
def vertex_emulator() -> None:
    """Not built yet."""
    raise click.ClickException("not built yet")
