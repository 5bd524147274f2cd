"""A thin REST client for the CustomJob calls launchq makes (create, get, list, cancel).

Why not the generated `JobServiceClient`: the dispatcher is a Cloud Function and its cold start is
a feature; the generated client costs most of a second to import (figures, and how to measure
them again: docs/performance.md#hand-written-rest-clients), and has no retry and no timeout by
default. This module speaks exactly the generated REST client's wire format (proto3 JSON,
camelCase, `$alt=json;enum-encoding=int`), and the tests drive the same stand-in with both
clients. `google-cloud-aiplatform` stays the source of truth for what a valid body is: bodies
are validated with `aiplatform_v1` when a queue is written, not here.

Quota and request-rate refusals (HTTP 429 RESOURCE_EXHAUSTED) are classified here, once
(`exhaustion`): a create refused because a quota metric such as
`aiplatform.googleapis.com/custom_model_training_nvidia_a100_gpus` is used up means the project
has no capacity right now (it clears when running jobs end, minutes to hours later), whereas a
request-rate refusal (60 job-creation requests per minute per region) clears within a minute.
Callers read `VertexError.quota_metric` and `VertexError.rate_limited` and never parse messages.

Retries use tenacity rather than `google.api_core.retry`, which imports grpc. Create is never
retried here: it is not idempotent, and the dispatcher retries it only after looking the job up by
its labels."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests

from launchq.errors import LaunchqError
from launchq.gcp.rest import CallRetry, JsonCaller, session_for
from launchq.log import get_logger

__all__ = ["CallRetry", "VertexClient", "VertexError", "client_for", "exhaustion"]

log = get_logger(__name__)

_TRANSIENT_HTTP = frozenset({408, 429, 500, 502, 503, 504})


_QUOTA_LIST = re.compile(r"quota metrics exceed quota limits:\s*([^\s,;]+)", re.IGNORECASE)
_QUOTA_METRIC_IN_TEXT = re.compile(r"quota metric '([^']+)'", re.IGNORECASE)
_SERVICE_PREFIX = "aiplatform.googleapis.com/"


@dataclass(frozen=True)
class Exhaustion:
    """What a RESOURCE_EXHAUSTED answer ran out of.

    `metric` is the quota metric without its service prefix (e.g.
    `custom_model_training_nvidia_a100_gpus`) when the refusal is about resources; None when it
    is about the request rate (then `metric_text` may name the rate quota, for the log).
    """

    metric: str | None
    metric_text: str = ""

    @property
    def is_quota(self) -> bool:
        return self.metric is not None


def exhaustion(
    http_status: int, status: str, message: str, details: Sequence[Mapping[str, Any]] = ()
) -> Exhaustion | None:
    """The one classifier of 429 / RESOURCE_EXHAUSTED answers; None for any other error.

    A *resource* quota is named in the message Vertex gives at create ("The following quota
    metrics exceed quota limits: aiplatform.googleapis.com/custom_model_training_…_gpus") or in a
    `google.rpc.ErrorInfo` (`metadata.quota_metric`) / `google.rpc.QuotaFailure` detail. A metric
    whose name ends in `requests` (e.g. "Job or LRO submission requests", the 60/min create
    quota) or a limit "per minute" is a request rate, not capacity.
    """
    if http_status != 429 and status != "RESOURCE_EXHAUSTED":
        return None
    named = _named_metric(message, details)
    if named is None:
        return Exhaustion(None)
    short = named.removeprefix(_SERVICE_PREFIX)
    words = f"{short} {message}".lower()
    if short.lower().replace(" ", "_").endswith("requests") or "per minute" in words:
        return Exhaustion(None, named)
    return Exhaustion(short, named)


def _named_metric(message: str, details: Sequence[Mapping[str, Any]]) -> str | None:
    found = _QUOTA_LIST.search(message) or _QUOTA_METRIC_IN_TEXT.search(message)
    if found:
        return found.group(1).strip()
    for detail in details:
        kind = str(detail.get("@type", ""))
        if kind.endswith("google.rpc.ErrorInfo"):
            metadata = detail.get("metadata") or {}
            metric = metadata.get("quota_metric") or metadata.get("quotaMetric")
            if metric:
                return str(metric)
        if kind.endswith("google.rpc.QuotaFailure"):
            for violation in detail.get("violations") or []:
                metric = violation.get("quotaMetric") or violation.get("subject")
                if metric:
                    return str(metric)
    return None


class VertexError(LaunchqError):
    """An error answer from Vertex (or no answer at all: `http_status` 0).

    `transient`: worth retrying (quota, server-side trouble, or the network).
    `quota_metric`: the exhausted resource quota of a 429 (capacity, not an error);
    `rate_limited`: a 429 about the request rate.
    """

    def __init__(
        self,
        http_status: int,
        status: str,
        message: str,
        method: str,
        details: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        super().__init__(f"{method}: {http_status} {status}: {message}")
        self.http_status = http_status
        self.status = status
        self.message = message
        self.method = method
        self.details = list(details)
        self.transient = http_status == 0 or http_status in _TRANSIENT_HTTP
        self.exhaustion = exhaustion(http_status, status, message, details)

    @property
    def quota_metric(self) -> str | None:
        return self.exhaustion.metric if self.exhaustion else None

    @property
    def rate_limited(self) -> bool:
        return self.exhaustion is not None and not self.exhaustion.is_quota

    @property
    def ambiguous(self) -> bool:
        """The request may have taken effect although we saw an error (no answer, 5xx)."""
        return self.http_status == 0 or self.http_status >= 500


@dataclass
class VertexClient:
    """Calls against one Vertex endpoint (a region, or the local stand-in)."""

    base_url: str
    session: requests.Session
    timeout: float = 30.0
    retry: CallRetry = field(default_factory=CallRetry)
    _api: JsonCaller = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._api = JsonCaller(self.session, self.timeout, VertexError, self.retry)

    @property
    def calls(self) -> Counter[str]:
        """Calls made, per method (the sweep reports its own; tests count them)."""
        return self._api.calls

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
        read_mask: Sequence[str] = (),
    ) -> Iterator[dict[str, Any]]:
        """Every job matching `filter`, following `nextPageToken` to the end.

        `read_mask`: only these CustomJob fields (snake_case paths) come back; sent as the
        `readMask` query parameter, a FieldMask in its JSON form (comma-separated camelCase).
        """
        token = ""
        while True:
            params: dict[str, str | int] = {"pageSize": page_size}
            if filter:
                params["filter"] = filter
            if read_mask:
                params["readMask"] = field_mask(read_mask)
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
        return self._api.retried(method, verb, self.base_url + path, params, json)

    def _call(
        self,
        method: str,
        verb: str,
        path: str,
        params: dict[str, str | int] | None = None,
        json: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return self._api.call(method, verb, self.base_url + path, params, json)


def field_mask(paths: Sequence[str]) -> str:
    """A FieldMask as proto3 JSON writes it: paths in lowerCamelCase, joined by commas."""
    return ",".join(_camel(path) for path in paths)


def _camel(path: str) -> str:
    return ".".join(
        head + "".join(part.title() for part in rest)
        for head, *rest in (segment.split("_") for segment in path.split("."))
    )


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
            client = VertexClient(base_url.rstrip("/"), session_for(base_url), timeout)
            _clients[base_url] = client
        return client


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
