"""A thin REST client for the CustomJob calls launchq makes (create, get, list, cancel).

Why not the generated `JobServiceClient`: the dispatcher is a Cloud Function and its cold start is
a feature. Measured on the project machine (2 cores, Python 3.11.7, google-cloud-aiplatform
2.7.0, best of 3): `from google.cloud.aiplatform_v1.services.job_service import JobServiceClient`
takes 1.08 s, `import google.cloud.aiplatform` about 3.9 s (reference notes), while `requests`
plus `google.auth.transport.requests` take about 0.2 s. The generated client also has no retry
and no timeout by default. This module speaks exactly the generated REST client's wire format
(proto3 JSON, camelCase, `$alt=json;enum-encoding=int`), and the tests drive the same stand-in
with both clients. `google-cloud-aiplatform` stays the source of truth for what a valid body is:
bodies are validated with `aiplatform_v1` when a queue is written, not here.

Retries use tenacity (32 ms to import) rather than `google.api_core.retry`, which imports grpc
(185 ms). Create is never retried here: it is not idempotent, and the dispatcher retries it only
after looking the job up by its labels.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote

import requests
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from launchq.errors import LaunchqError
from launchq.log import get_logger

log = get_logger(__name__)

_ALT = {"$alt": "json;enum-encoding=int"}
_TRANSIENT_HTTP = frozenset({408, 429, 500, 502, 503, 504})
_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


class VertexError(LaunchqError):
    """An error answer from Vertex (or no answer at all: `http_status` 0).

    `transient`: worth retrying (quota, server-side trouble, or the network).
    """

    def __init__(self, http_status: int, status: str, message: str, method: str) -> None:
        super().__init__(f"{method}: {http_status} {status}: {message}")
        self.http_status = http_status
        self.status = status
        self.message = message
        self.method = method
        self.transient = http_status == 0 or http_status in _TRANSIENT_HTTP

    @property
    def ambiguous(self) -> bool:
        """The request may have taken effect although we saw an error (no answer, 5xx)."""
        return self.http_status == 0 or self.http_status >= 500


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    initial_seconds: float = 0.5
    max_seconds: float = 8.0
    deadline_seconds: float = 60.0
    sleep: Callable[[float], None] | None = None


@dataclass
class VertexClient:
    """Calls against one Vertex endpoint (a region, or the local stand-in)."""

    base_url: str
    session: requests.Session
    timeout: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    calls: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def create_custom_job(self, parent: str, body: dict[str, Any]) -> dict[str, Any]:
        """One CreateCustomJob call, never retried (see the module docstring)."""
        return self._call("CreateCustomJob", "POST", f"/v1/{parent}/customJobs", json=body)

    def get_custom_job(self, name: str) -> dict[str, Any]:
        return self._retried("GetCustomJob", "GET", f"/v1/{name}")

    def cancel_custom_job(self, name: str) -> None:
        self._retried("CancelCustomJob", "POST", f"/v1/{name}:cancel", json={})

    def list_custom_jobs(
        self,
        parent: str,
        filter: str = "",
        page_size: int = 1000,
        read_mask: Sequence[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every job matching `filter`, following `nextPageToken` to the end.

        `read_mask` (field paths such as `name`, `state`, `createTime`) asks for only those
        fields of each job, sent as REST does: one comma-separated `readMask` parameter.
        """
        token = ""
        while True:
            params: dict[str, str | int] = {"pageSize": page_size}
            if filter:
                params["filter"] = filter
            if read_mask:
                params["readMask"] = ",".join(read_mask)
            if token:
                params["pageToken"] = token
            page = self._retried("ListCustomJobs", "GET", f"/v1/{parent}/customJobs", params)
            yield from page.get("customJobs", [])
            token = page.get("nextPageToken", "")
            if not token:
                return

    def _retried(
        self,
        method: str,
        verb: str,
        path: str,
        params: dict[str, str | int] | None = None,
        json: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        policy = self.retry
        retrying = Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, VertexError) and e.transient),
            stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.deadline_seconds),
            wait=wait_exponential_jitter(initial=policy.initial_seconds, max=policy.max_seconds),
            sleep=policy.sleep or _sleep,
            reraise=True,
        )
        return retrying(self._call, method, verb, path, params, json)

    def _call(
        self,
        method: str,
        verb: str,
        path: str,
        params: dict[str, str | int] | None = None,
        json: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            self.calls[method] += 1
        query: dict[str, str | int] = {**_ALT, **(params or {})}
        try:
            response = self.session.request(
                verb, self.base_url + path, params=query, json=json, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise VertexError(0, "UNAVAILABLE", f"no answer: {exc}", method) from exc
        if response.status_code >= 400:
            raise _error_from(response, method)
        if not response.content:
            return {}
        return cast(dict[str, Any], response.json())


def _sleep(seconds: float) -> None:
    threading.Event().wait(seconds)


def _error_from(response: requests.Response, method: str) -> VertexError:
    status, message = "UNKNOWN", response.text[:500]
    try:
        error = response.json()["error"]
        status = str(error.get("status", status))
        message = str(error.get("message", message))
    except (ValueError, KeyError, TypeError):
        pass
    return VertexError(response.status_code, status, message, method)


_clients: dict[str, VertexClient] = {}
_clients_lock = threading.Lock()


def client_for(base_url: str, timeout: float = 30.0) -> VertexClient:
    """A cached client per endpoint, so warm invocations reuse connections and credentials.

    An `http://` endpoint is the local stand-in: no credentials are sent. Anything else uses
    Application Default Credentials through google-auth's `AuthorizedSession`.
    """
    with _clients_lock:
        client = _clients.get(base_url)
        if client is None:
            client = VertexClient(base_url.rstrip("/"), _session_for(base_url), timeout)
            _clients[base_url] = client
        return client


def _session_for(base_url: str) -> requests.Session:
    if base_url.startswith("http://"):
        session = requests.Session()
        # A loopback emulator needs no proxy; not asking the environment saves ~1 ms a request.
        session.trust_env = False
        return session
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(scopes=_SCOPES)
    return cast(requests.Session, AuthorizedSession(credentials))  # type: ignore[no-untyped-call]


def job_id(job_name: str) -> str:
    """The numeric id at the end of `projects/N/locations/R/customJobs/ID`."""
    return job_name.rsplit("/", 1)[-1]


def console_url(job_name: str, region: str, project: str) -> str:
    return (
        f"https://console.cloud.google.com/vertex-ai/locations/{region}/training/"
        f"{job_id(job_name)}/cpu?project={project}"
    )


def logs_url(job_name: str, project: str) -> str:
    query = f'resource.type="ml_job"\nresource.labels.job_id="{job_id(job_name)}"'
    return (
        "https://console.cloud.google.com/logs/query;query="
        + quote(query, safe="")
        + f"?project={project}"
    )
