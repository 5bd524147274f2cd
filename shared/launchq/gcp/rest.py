"""How launchq talks to Google's REST APIs (Vertex, Cloud Build, Artifact Registry, Cloud
Storage, Pub/Sub): one pooled session per endpoint, Google's error envelope, bounded retries.

Why hand-written rather than the generated clients: their import cost on the functions' cold
start (docs/performance.md#hand-written-rest-clients). What the clients share lives here, once:

- `session_for`: an `http://` endpoint is a local stand-in or emulator (no credentials, no proxy
  lookup: ~1 ms a request saved); anything else uses Application Default Credentials through
  google-auth's `AuthorizedSession`.
- `JsonCaller`: one call (counted per method, for the sweep's summary and the tests), its error
  answer parsed from Google's envelope into the caller's error type, and retries of transient
  errors with tenacity (a fraction of `google.api_core.retry`'s import cost, which imports
  grpc). Callers decide which calls may be retried: a create never is.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import requests
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

CLOUD_PLATFORM = ("https://www.googleapis.com/auth/cloud-platform",)
# What the generated REST clients send: proto3 JSON, enums as numbers.
ALT = {"$alt": "json;enum-encoding=int"}


def session_for(base_url: str, scopes: Sequence[str] = CLOUD_PLATFORM) -> requests.Session:
    if base_url.startswith("http://"):
        session = requests.Session()
        # A loopback emulator needs no proxy; not asking the environment saves ~1 ms a request.
        session.trust_env = False
        return session
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(scopes=list(scopes))
    return cast(requests.Session, AuthorizedSession(credentials))  # type: ignore[no-untyped-call]


def sleep(seconds: float) -> None:
    threading.Event().wait(seconds)


@dataclass(frozen=True)
class CallRetry:
    attempts: int = 4
    initial_seconds: float = 0.5
    max_seconds: float = 8.0
    deadline_seconds: float = 60.0
    sleep: Callable[[float], None] | None = None


class ApiError(Protocol):
    transient: bool


ErrorFactory = Callable[[int, str, str, str, list[Mapping[str, Any]]], Exception]


def envelope(response: requests.Response) -> tuple[str, str, list[Mapping[str, Any]]]:
    """(status, message, details) of Google's error envelope; the raw text when there is none."""
    status, message = "UNKNOWN", response.text[:500]
    details: list[Mapping[str, Any]] = []
    try:
        error = response.json()["error"]
        status = str(error.get("status", status))
        message = str(error.get("message", message))
        details = [d for d in error.get("details") or [] if isinstance(d, Mapping)]
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return status, message, details


@dataclass
class JsonCaller:
    """Calls with JSON answers against one session; errors become `error(...)` exceptions
    (http status 0: no answer), which carry `transient`."""

    session: requests.Session
    timeout: float
    error: ErrorFactory
    retry: CallRetry = field(default_factory=CallRetry)
    calls: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def retried(
        self,
        method: str,
        verb: str,
        url: str,
        params: Mapping[str, str | int] | None = None,
        json: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        policy = self.retry
        retrying = Retrying(
            retry=retry_if_exception(lambda e: bool(getattr(e, "transient", False))),
            stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.deadline_seconds),
            wait=wait_exponential_jitter(initial=policy.initial_seconds, max=policy.max_seconds),
            sleep=policy.sleep or sleep,
            reraise=True,
        )
        return retrying(self.call, method, verb, url, params, json)

    def call(
        self,
        method: str,
        verb: str,
        url: str,
        params: Mapping[str, str | int] | None = None,
        json: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            self.calls[method] += 1
        query: dict[str, str | int] = {**ALT, **(params or {})}
        try:
            response = self.session.request(
                verb, url, params=query, json=json, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise self.error(0, "UNAVAILABLE", f"no answer: {exc}", method, []) from exc
        if response.status_code >= 400:
            status, message, details = envelope(response)
            raise self.error(response.status_code, status, message, method, details)
        if not response.content:
            return {}
        return cast(dict[str, Any], response.json())
