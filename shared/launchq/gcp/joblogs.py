"""A Vertex job's log entries in Cloud Logging: the query, one entry as text, and the last lines
(the notify function's failure messages; `launchq_client.logs` builds `launchq logs`,
`status` and the dashboard on the same query and text).

Vertex writes each replica's output as `ml_job` entries with resource labels `job_id` (the
numeric CustomJob id) and `task_name` (the replica), as `gcloud ai custom-jobs stream-logs`
filters them. `entries:list` over REST, for the reason docs/performance.md gives for the other
REST clients: import cost.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import requests

DEFAULT_ENDPOINT = "https://logging.googleapis.com"
SCOPES = ("https://www.googleapis.com/auth/logging.read",)


def rfc3339(moment: datetime) -> str:
    """One width of fraction (microseconds), so the strings sort as the times do."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ml_job_filter(
    job_id: str,
    since: datetime | None,
    until: datetime | None = None,
    replica: str | None = None,
) -> str:
    """The `entries.list` filter for one job's entries, optionally one replica's, in a window."""
    parts = ['resource.type="ml_job"', f'resource.labels.job_id="{job_id}"']
    if replica:
        parts.append(f'resource.labels.task_name="{quote(replica)}"')
    if since is not None:
        parts.append(f'timestamp>="{rfc3339(since)}"')
    if until is not None:
        parts.append(f'timestamp<"{rfc3339(until)}"')
    return " AND ".join(parts)


def quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def entry_text(entry: dict[str, Any]) -> str:
    """An entry as a line: textPayload, else jsonPayload.message, else the payload as text."""
    if "textPayload" in entry:
        return str(entry["textPayload"])
    if isinstance(entry.get("jsonPayload"), dict):
        payload = entry["jsonPayload"]
        return str(payload.get("message", payload))
    return str(entry.get("protoPayload", ""))


def last_lines(
    session: requests.Session,
    base_url: str,
    project: str,
    job_id: str,
    since: datetime | None,
    count: int,
    timeout: float = 10.0,
) -> list[str]:
    """The job's newest `count` lines, oldest first; raises `requests.RequestException` (or
    ValueError for an answer that is not JSON) when Cloud Logging cannot say."""
    body = {
        "resourceNames": [f"projects/{project}"],
        "filter": ml_job_filter(job_id, since),
        "orderBy": "timestamp desc",
        "pageSize": count,
    }
    response = session.post(f"{base_url}/v2/entries:list", json=body, timeout=timeout)
    response.raise_for_status()
    entries = (response.json() if response.content else {}).get("entries", [])
    return [entry_text(entry) for entry in reversed(entries[:count])]
