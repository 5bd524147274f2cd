"""`launchq source push`: pack a directory and upload it once, content-addressed.

Prints the `source` block an item carries (`uri`, `sha256`, `module`). The packing rules are in
`launchq_client.source` and docs/source-jobs.md. With `STORAGE_EMULATOR_HOST` set, the storage
client talks to that emulator with no credentials; otherwise it uses Application Default
Credentials, as every other launchq command does.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import click

from launchq_cli.common import InvalidInput, emit_json, json_option


@click.group("source")
def source() -> None:
    """Source distributions for python-package jobs (docs/source-jobs.md)."""


@source.command("push")
@click.argument(
    "directory", type=click.Path(exists=True, file_okay=False, path_type=Path), default="."
)
@click.option("--bucket", help="Bucket to upload to (gs://BUCKET/launchq/sources/<sha256>.tar.gz).")
@click.option("--module", help="Python module Vertex runs (`python -m MODULE`), for the output.")
@click.option("--project", help="GCP project of the storage client (else the environment's).")
@click.option("--no-git", is_flag=True, help="Walk the directory even in a git checkout.")
@click.option("--list", "show_list", is_flag=True, help="Print every path in the archive.")
@click.option(
    "--dry-run", is_flag=True, help="Pack only: print sha256 and listing, upload nothing."
)
@json_option
def push(
    directory: Path,
    bucket: str | None,
    module: str | None,
    project: str | None,
    no_git: bool,
    show_list: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Pack DIRECTORY (default: .) deterministically and upload it unless already there.

    Prints the uri, the sha256 and the bytes sent (0 when the same archive was uploaded before).
    """
    from launchq_cli.progress import UploadBar
    from launchq_client.source import SourceError, SourceUploader, module_problem, pack

    if not dry_run and not bucket:
        raise InvalidInput("--bucket is required (or use --dry-run)")
    bucket_name = (bucket or "").removeprefix("gs://").rstrip("/")
    with tempfile.TemporaryDirectory(prefix="launchq-source-") as scratch:
        try:
            packed = pack(directory, Path(scratch), use_git=not no_git)
        except SourceError as exc:
            raise InvalidInput(str(exc)) from None
        problem = module_problem(packed, module) if module else None
        if problem is not None:  # before the upload, not 5 s into the job on Vertex
            raise InvalidInput(f"{problem} (nothing was uploaded)")
        report: dict[str, Any] = {
            "sha256": packed.sha256,
            "size": packed.size,
            "files": len(packed.listing),
            "top": packed.top,
            "git": packed.git,
            "generated_project": packed.generated_project,
        }
        if not dry_run:
            uploader = SourceUploader(
                storage_client(project), bucket_name, progress=None if as_json else UploadBar
            )
            result = uploader.upload(packed)
            report.update(
                uri=result.uri,
                bytes_sent=result.bytes_sent,
                already_present=result.already_present,
            )
    if module:
        report["module"] = module
    if show_list:
        report["listing"] = list(packed.listing)
    if as_json:
        emit_json(report)
        return
    for key in ("uri", "sha256", "module", "size", "files", "bytes_sent", "already_present"):
        if key in report:
            click.echo(f"{key}: {report[key]}")
    for path in report.get("listing", []):
        click.echo(f"  {path}")


def storage_client(project: str | None) -> Any:
    """The emulator's (anonymous) when STORAGE_EMULATOR_HOST is set, else ADC's."""
    from google.cloud.storage import Client

    project = project or os.environ.get("LAUNCHQ_PROJECT") or os.environ.get("GOOGLE_CLOUD_PROJECT")
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return Client(
            project=project or "launchq-local",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        )
    return Client(project=project)
