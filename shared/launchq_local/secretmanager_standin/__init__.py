"""A local stand-in for Secret Manager v1 (REST), driven by the unmodified generated client.

    from google.cloud import secretmanager_v1
    from launchq_local.secretmanager_standin import SecretManagerStandinServer

    with SecretManagerStandinServer() as sm:  # a free loopback port, background thread
        client = secretmanager_v1.SecretManagerServiceClient(
            transport="rest", credentials=AnonymousCredentials(),
            client_options={"api_endpoint": sm.url})
        sm.fail_next("AccessSecretVersion", count=1, status="PERMISSION_DENIED")
        sm.call_count("AccessSecretVersion")

There is no emulator of Secret Manager. The stand-in serves the global-secret methods launchq
needs (create, get, list and delete secrets; add, get, list and access versions; disable, enable
and destroy them) with the service's names (`projects/{number}/...`), `latest` resolution, CRC32C
checks and error wordings. Modules: `store` (secrets, versions, states; thread-safe), `server`
(HTTP, strict parsing, call counts and injected faults). See docs/secretmanager-standin.md.
"""

from __future__ import annotations

from launchq_local.secretmanager_standin.server import SecretManagerStandinServer
from launchq_local.secretmanager_standin.store import SecretStore

__all__ = ["SecretManagerStandinServer", "SecretStore"]
