"""Placeholder: filled in by the work on this command."""

from __future__ import annotations

import click


@click.command("emulators")
def emulators() -> None:
    """Not built yet."""
    raise click.ClickException("not built yet")
