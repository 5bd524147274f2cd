"""A local stand-in for Cloud Logging's `entries.list`, fed by the Vertex stand-in's executed jobs.

    from launchq_local.logging_standin import LoggingStandinServer
    from launchq_local.standin import StandinServer

    with LoggingStandinServer() as logs:
        vertex = StandinServer(mode="execute", line_sink=logs.book.record).start()
        client = google.cloud.logging.Client(
            project="p", credentials=AnonymousCredentials(), _use_grpc=False,
            client_options={"api_endpoint": logs.url})

Each line an executed job prints becomes an entry with Vertex's `ml_job` resource (labels
`job_id`, `project_id`, `task_name`), logName `projects/P/logs/workerpool0-0`, severity INFO
(stdout) or ERROR (stderr). Modules: `query` (the filter language subset), `book` (entries,
ordering, paging), `server` (HTTP, strict parsing). See docs/logging-standin.md.
"""

from __future__ import annotations

from launchq_local.logging_standin.book import Entry, LogBook
from launchq_local.logging_standin.server import LoggingStandinServer

__all__ = ["Entry", "LogBook", "LoggingStandinServer"]
