"""Structured JSON logging that Cloud Logging understands.

Cloud Functions (gen2) and Cloud Run parse one JSON object per line on stdout/stderr: `severity`
and `message` become the entry's severity and text, every other key lands in `jsonPayload`.
Library code logs through `get_logger(__name__)` and passes context as keyword arguments::

    log = get_logger(__name__)
    log.info("job submitted", item_id=item.id, queue=item.queue, job_name=job.name)

The standard `logging` module is used underneath (so handlers, levels and pytest's caplog all
work); this module only adds the JSON formatter and the keyword-argument convenience.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}
_CONTEXT_ATTR = "launchq_context"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with Cloud Logging's special field names."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelno, "DEFAULT"),
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
        }
        entry.update(getattr(record, _CONTEXT_ATTR, {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class StructuredLogger:
    """A thin wrapper that turns keyword arguments into JSON fields."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def _log(self, level: int, message: str, exc_info: bool, fields: dict[str, Any]) -> None:
        if self._logger.isEnabledFor(level):
            context = {k: v for k, v in fields.items() if v is not None}
            self._logger.log(
                level, message, exc_info=exc_info, extra={_CONTEXT_ATTR: context}, stacklevel=3
            )

    def debug(self, message: str, **fields: Any) -> None:
        self._log(logging.DEBUG, message, False, fields)

    def info(self, message: str, **fields: Any) -> None:
        self._log(logging.INFO, message, False, fields)

    def warning(self, message: str, **fields: Any) -> None:
        self._log(logging.WARNING, message, False, fields)

    def error(self, message: str, **fields: Any) -> None:
        self._log(logging.ERROR, message, False, fields)

    def exception(self, message: str, **fields: Any) -> None:
        self._log(logging.ERROR, message, True, fields)


def get_logger(name: str) -> StructuredLogger:
    return StructuredLogger(logging.getLogger(name))


def configure(level: int = logging.INFO, stream: Any = None) -> None:
    """Install the JSON formatter on the root logger (entry points call this once)."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
