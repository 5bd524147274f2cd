"""Stored values as people and scripts read them: RFC 3339 times, durations, JSON-safe copies.

Firestore hands back datetimes, Vertex RFC 3339 strings; every read model (`launchq_client.reads`,
`launchq_client.queues`) and every front end shows them one way, so the CLI's `--json`, its
tables and the dashboard never disagree on a time or a duration.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def iso(value: object) -> str | None:
    """RFC 3339 UTC with milliseconds and `Z`, or None (Firestore gives tz-aware datetimes)."""
    if not isinstance(value, datetime):
        return None
    when = value if value.tzinfo else value.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def seconds_between(start: object, end: object) -> float | None:
    if isinstance(start, datetime) and isinstance(end, datetime):
        return round((end - start).total_seconds(), 3)
    return None


def plain(value: Any) -> Any:
    """Firestore values to JSON-safe ones (datetimes become RFC 3339 strings)."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def duration(seconds: float | None) -> str:
    """`4.2s`, `3m05s`, `2h04m`, `3d04h`: compact, for tables."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"
