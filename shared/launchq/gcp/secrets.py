"""Secret Manager's `versions:access` over REST: the notify function reads its webhooks' URLs and
signing keys with its own service account, when it sends.

A value is kept in the process for `ttl` seconds (a burst of failures reads a webhook's URL
once), never written anywhere: not to a record, a log line or an event. Errors say which
version and the HTTP status, never a payload. `LAUNCHQ_SECRETMANAGER_ENDPOINT` (the local
stand-in) replaces Google's endpoint, as for the CLI and the job bootstrap.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable

import requests

from launchq.gcp.rest import session_for

DEFAULT_ENDPOINT = "https://secretmanager.googleapis.com"
TTL_SECONDS = 300.0


class SecretError(Exception):
    """A version could not be read; `transient` when trying again may help."""

    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class SecretReader:
    """Reads secret versions (`projects/P/secrets/S/versions/V`), cached briefly."""

    def __init__(
        self,
        endpoint: str | None = None,
        timeout: float = 10.0,
        ttl: float = TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self.timeout = timeout
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[str, tuple[float, str]] = {}
        self._session: requests.Session | None = None
        self._lock = threading.Lock()

    def value(self, name: str) -> str:
        with self._lock:
            cached = self._cache.get(name)
            if cached is not None and cached[0] > self.clock():
                return cached[1]
            if self._session is None:
                self._session = session_for(self.base)
            session = self._session
        try:
            response = session.get(f"{self.base}/v1/{name}:access", timeout=self.timeout)
        except requests.RequestException as exc:
            raise SecretError(f"{name}: {type(exc).__name__}", transient=True) from None
        if response.status_code != 200:
            status = response.status_code
            raise SecretError(f"{name}: HTTP {status}", transient=status == 429 or status >= 500)
        try:
            data = base64.b64decode(response.json()["payload"]["data"]).decode("utf-8")
        except (ValueError, KeyError, TypeError):
            raise SecretError(f"{name}: not a text secret", transient=False) from None
        with self._lock:
            self._cache[name] = (self.clock() + self.ttl, data.strip())
        return data.strip()
