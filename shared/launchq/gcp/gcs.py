"""A thin REST client for the one Cloud Storage call the dispatcher makes: an object's metadata.

Why not `google-cloud-storage`: the dispatch function's cold start. The function archive pins only
the core's requirements (`[tool.launchq].function-requirements`, checked by
tests/unit/test_packaging.py), and `requests` plus `google.auth.transport.requests` are already
there for `launchq.gcp.vertex`; the storage library would add itself, `google-cloud-core`,
`google-resumable-media` and `google-crc32c` to the archive for one GET. Import cost:
docs/performance.md#hand-written-rest-clients. The wire format is the JSON API's (`GET
/storage/v1/b/BUCKET/o/OBJECT`, object name percent-encoded including `/`), which the GCS emulator
serves too; the integration tests read the objects it returns with the storage library.

No retries here: a failure is an `InfrastructureError`, the dispatcher answers 5xx and Pub/Sub
redelivers the message with its own backoff, which is the retry the dispatcher already has.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote

import requests

from launchq.errors import InfrastructureError
from launchq.gcp.rest import session_for

DEFAULT_ENDPOINT = "https://storage.googleapis.com"
_SCOPES = ("https://www.googleapis.com/auth/devstorage.read_only",)


@dataclass
class GcsClient:
    """Object metadata reads against one Cloud Storage endpoint (or the emulator).

    The session is made on first use, so building a client does no I/O (no credential lookup).
    """

    base_url: str
    timeout: float = 30.0
    _session: requests.Session | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def get_object(self, bucket: str, name: str) -> dict[str, Any] | None:
        """The object's metadata resource, or None when it does not exist (404).

        Anything else that is not a 200 (401/403: the dispatcher may not read the bucket; 429,
        5xx, no answer) raises `InfrastructureError`: it says nothing about the item.
        """
        url = f"{self.base_url}/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}"
        try:
            response = self.session.get(url, timeout=self.timeout)
        except requests.RequestException as exc:
            message = f"Cloud Storage: no answer for gs://{bucket}/{name}: {exc}"
            raise InfrastructureError(message) from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise InfrastructureError(
                f"Cloud Storage: GET gs://{bucket}/{name}: {response.status_code} "
                f"{response.text[:300]}"
            )
        return cast(dict[str, Any], response.json())

    @property
    def session(self) -> requests.Session:
        with self._lock:
            if self._session is None:
                self._session = session_for(self.base_url, _SCOPES)
            return self._session


def endpoint(configured: str | None) -> str:
    """The JSON API base URL: `LAUNCHQ_STORAGE_ENDPOINT`/`STORAGE_EMULATOR_HOST` (a bare
    `host:port`, as the emulator docs write it, means http) or Google's."""
    if not configured:
        return DEFAULT_ENDPOINT
    url = configured if "://" in configured else f"http://{configured}"
    return url.rstrip("/")


_clients: dict[str, GcsClient] = {}
_clients_lock = threading.Lock()


def client_for(base_url: str, timeout: float = 30.0) -> GcsClient:
    """A cached client per endpoint, so warm invocations reuse connections and credentials."""
    with _clients_lock:
        client = _clients.get(base_url)
        if client is None:
            client = _clients[base_url] = GcsClient(base_url.rstrip("/"), timeout)
        return client
