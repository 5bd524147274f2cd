"""A thin REST client for the Cloud Build and Artifact Registry calls launchq makes.

Cloud Build: `projects.locations.builds.create/get/list/cancel`; Artifact Registry: one tag GET
(`.../repositories/R/packages/IMAGE/tags/TAG`) that tells whether an image was already built.

Why REST and not `google-cloud-build`: the same reasons as `launchq.gcp.vertex` (import cost
measured in docs/performance.md#hand-written-rest-clients), and the library would add itself and
grpc-google-iam-v1 to the function archive's pinned requirements. The wire format is the generated
REST client's (`$alt=json;enum-encoding=int`), and the tests drive the same stand-in with that
client (`transport="rest"`) and with this one. `google-cloud-build` is a `local`/`dev` dependency
only: the stand-in parses requests with its messages.

Retries: like Vertex, reads and cancel are retried on transient errors; create never is (not
idempotent). A duplicate build is prevented by the `builds/{key}` claim in Firestore before
create, not by retrying carefully.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests

from launchq.gcp.rest import CallRetry, JsonCaller, session_for
from launchq.gcp.vertex import VertexError
from launchq.log import get_logger
from launchq.spec.buildplan import ImageRef

log = get_logger(__name__)

CLOUDBUILD_ENDPOINT = "https://cloudbuild.googleapis.com"
ARTIFACTREGISTRY_ENDPOINT = "https://artifactregistry.googleapis.com"

# google.devtools.cloudbuild.v1.Build.Status, by number (what `enum-encoding=int` answers).
STATUS_NAMES: dict[int, str] = {
    0: "STATUS_UNKNOWN",
    10: "PENDING",
    1: "QUEUED",
    2: "WORKING",
    3: "SUCCESS",
    4: "FAILURE",
    5: "INTERNAL_ERROR",
    6: "TIMEOUT",
    7: "CANCELLED",
    9: "EXPIRED",
}
FAILED_STATUSES = frozenset({"FAILURE", "INTERNAL_ERROR", "TIMEOUT", "CANCELLED", "EXPIRED"})
RUNNING_STATUSES = frozenset({"STATUS_UNKNOWN", "PENDING", "QUEUED", "WORKING"})


class CloudBuildError(VertexError):
    """An error answer from Cloud Build or Artifact Registry (`http_status` 0: no answer).

    A subclass of `VertexError` so the dispatcher's one classification of Google API errors
    (transient, ambiguous) applies to both.
    """


def status_name(raw: object) -> str:
    """The `Build.Status` name of a wire value (int, numeric string or name)."""
    if isinstance(raw, bool):
        return "STATUS_UNKNOWN"
    if isinstance(raw, int):
        return STATUS_NAMES.get(raw, "STATUS_UNKNOWN")
    if isinstance(raw, str):
        if raw.isdigit():
            return STATUS_NAMES.get(int(raw), "STATUS_UNKNOWN")
        return raw if raw in STATUS_NAMES.values() else "STATUS_UNKNOWN"
    return "STATUS_UNKNOWN"


@dataclass
class CloudBuildClient:
    """Calls against one Cloud Build endpoint and one Artifact Registry endpoint."""

    build_url: str
    registry_url: str
    session: requests.Session
    timeout: float = 30.0
    retry: CallRetry = field(default_factory=CallRetry)
    _api: JsonCaller = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._api = JsonCaller(self.session, self.timeout, CloudBuildError, self.retry)

    @property
    def calls(self) -> Counter[str]:
        return self._api.calls

    def create_build(self, project: str, location: str, build: dict[str, Any]) -> dict[str, Any]:
        """One CreateBuild call (never retried); answers the long-running operation."""
        parent = f"projects/{project}/locations/{location}"
        return self._call(
            "CreateBuild",
            "POST",
            f"{self.build_url}/v1/{parent}/builds",
            {"projectId": project, "parent": parent},
            build,
        )

    def get_build(self, project: str, location: str, build_id: str) -> dict[str, Any]:
        name = f"projects/{project}/locations/{location}/builds/{build_id}"
        return self._retried("GetBuild", "GET", f"{self.build_url}/v1/{name}")

    def cancel_build(self, project: str, location: str, build_id: str) -> dict[str, Any]:
        name = f"projects/{project}/locations/{location}/builds/{build_id}"
        body = {"name": name, "projectId": project, "id": build_id}
        return self._retried(
            "CancelBuild", "POST", f"{self.build_url}/v1/{name}:cancel", None, body
        )

    def list_builds(
        self, project: str, location: str, filter: str = "", page_size: int = 500
    ) -> Iterator[dict[str, Any]]:
        """Every build matching `filter` (e.g. `tags="launchq-KEY" OR tags="launchq-KEY2"`)."""
        parent = f"projects/{project}/locations/{location}"
        token = ""
        while True:
            params: dict[str, str | int] = {"projectId": project, "pageSize": page_size}
            if filter:
                params["filter"] = filter
            if token:
                params["pageToken"] = token
            page = self._retried(
                "ListBuilds", "GET", f"{self.build_url}/v1/{parent}/builds", params
            )
            yield from page.get("builds", [])
            token = page.get("nextPageToken", "")
            if not token:
                return

    def get_tag(self, image: ImageRef, tag: str) -> str | None:
        """The digest (`sha256:...`) `image:tag` points at, or None when there is no such tag."""
        path = (
            f"/v1/projects/{image.project}/locations/{image.location}/repositories/"
            f"{image.repository}/packages/{quote(image.package, safe='')}/tags/{tag}"
        )
        try:
            answer = self._retried("GetTag", "GET", self.registry_url + path)
        except CloudBuildError as exc:
            if exc.http_status == 404:
                return None
            raise
        version = str(answer.get("version", ""))
        digest = version.rsplit("/", 1)[-1]
        return digest if digest.startswith("sha256:") else None

    def _retried(
        self,
        method: str,
        verb: str,
        url: str,
        params: dict[str, str | int] | None = None,
        json: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return self._api.retried(method, verb, url, params, json)

    def _call(
        self,
        method: str,
        verb: str,
        url: str,
        params: dict[str, str | int] | None = None,
        json: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return self._api.call(method, verb, url, params, json)


_clients: dict[tuple[str, str], CloudBuildClient] = {}
_clients_lock = threading.Lock()


def client_for(
    build_url: str = CLOUDBUILD_ENDPOINT, registry_url: str = ARTIFACTREGISTRY_ENDPOINT
) -> CloudBuildClient:
    """A cached client per endpoint pair (an `http://` endpoint is a local stand-in: no
    credentials)."""
    key = (build_url.rstrip("/"), registry_url.rstrip("/"))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = CloudBuildClient(key[0], key[1], session_for(key[0]))
            _clients[key] = client
        return client
