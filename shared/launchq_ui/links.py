"""The item page's links to the job and its log, for the stack the dashboard reads.

The dispatcher stores Google Cloud console links with every job (`launchq.gcp.vertex.console_url`,
`logs_url`). Against the local stack those lead to the real console, where the job does not
exist. A stack whose Vertex endpoint is plain `http://` is a local stand-in (the rule
`launchq logs` uses too), so there the links go where the local stack serves the same things:
the job as the stand-in returns it, and the log on the dashboard's own item page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from launchq.settings import Settings


@dataclass(frozen=True)
class Link:
    """One link of the item page: its text, where it goes, and a short note on what it is."""

    text: str
    href: str
    note: str
    external: bool  # opens in a new tab


def is_local(settings: Settings) -> bool:
    """Jobs run by a local Vertex stand-in (an `http://` endpoint), not by Google Cloud."""
    return bool(settings.vertex_endpoint and settings.vertex_endpoint.startswith("http://"))


def job_links(job: Mapping[str, Any] | None, settings: Settings) -> list[Link]:
    """The job's console and log links (none before the item has a job)."""
    if not job or not job.get("name"):
        return []
    if is_local(settings):
        endpoint = str(settings.vertex_endpoint).rstrip("/")
        return [
            Link("Job (Vertex stand-in)", f"{endpoint}/v1/{job['name']}", "local stack", True),
            Link("Log (below)", "#h-log", "local stack: the Cloud Logging stand-in", False),
        ]
    links = []
    if job.get("console_url"):
        links.append(Link("Vertex console", str(job["console_url"]), "Google Cloud", True))
    if job.get("logs_url"):
        links.append(Link("Cloud Logging", str(job["logs_url"]), "Google Cloud", True))
    return links
