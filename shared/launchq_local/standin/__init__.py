"""A local stand-in for the Vertex AI v1 CustomJob REST API, driven by the unmodified clients.

    from launchq_local.standin import StandinServer

    with StandinServer() as server:               # a free loopback port, background thread
        client = JobServiceClient(transport="rest", credentials=AnonymousCredentials(),
                                  client_options={"api_endpoint": server.url})
        server.admin.add_fault(methods=["CreateCustomJob"], http_status=429)

Modules: `server` (HTTP, routing, faults), `api` (the Vertex surface), `wire` (strict parsing,
error envelopes), `validation` (semantic checks), `filters` (List filter), `masks` (List
readMask), `jobs` (store and lifecycle), `limits` (quotas and the creation rate limit),
`scarcity` (stockouts, SPOT preemptions, FLEX_START expiry per region and accelerator),
`execute` (execute mode), `admin_api` / `admin` (admin API and its client).
See docs/vertex-standin.md.
"""

from __future__ import annotations

from launchq_local.standin.admin import AdminClient, AdminError
from launchq_local.standin.lifecycle import Delays
from launchq_local.standin.server import StandinServer

__all__ = ["AdminClient", "AdminError", "Delays", "StandinServer"]
