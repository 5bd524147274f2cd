"""The upload progress bar `launchq enqueue --source` and `launchq source upload` draw.

The uploader (`launchq_client.source.SourceUploader`) only counts bytes; drawing them is the
CLI's, on stderr, because stdout carries what scripts read (an item id, `--json`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PROGRESS_THRESHOLD = 4 * 1024 * 1024  # smaller uploads finish before a bar is worth drawing


class UploadBar:
    """A rich progress bar (on stderr) over an upload big enough to watch; a no-op otherwise."""

    def __init__(self, total: int, label: str) -> None:
        self._total = total
        self._label = label
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> Callable[[int], None]:
        if self._total < PROGRESS_THRESHOLD:
            return lambda _n: None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            # stderr: stdout carries what scripts read (an item id, --json).
            console=Console(stderr=True),
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(f"upload {self._label}", total=self._total)
        return lambda n: self._progress.advance(self._task, n)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
