"""The Secret Manager stand-in's HTTP side: the v1 REST surface for global secrets.

    POST   /v1/projects/{p}/secrets?secretId=S             CreateSecret (body: Secret)
    GET    /v1/projects/{p}/secrets                        ListSecrets (pageSize, pageToken)
    GET    /v1/projects/{p}/secrets/{s}                    GetSecret
    DELETE /v1/projects/{p}/secrets/{s}                    DeleteSecret (etag)
    POST   /v1/projects/{p}/secrets/{s}:addVersion         AddSecretVersion
    GET    /v1/projects/{p}/secrets/{s}/versions           ListSecretVersions
    GET    /v1/projects/{p}/secrets/{s}/versions/{v}       GetSecretVersion (`latest` too)
    GET    /v1/projects/{p}/secrets/{s}/versions/{v}:access  AccessSecretVersion
    POST   /v1/projects/{p}/secrets/{s}/versions/{v}:disable|:enable|:destroy

Bodies are parsed strictly with `secretmanager_v1`'s own messages through the Vertex stand-in's
wire walker (unknown fields, wrong types: a Google-worded 400 with a `BadRequest` field
violation), and so are query strings (a parameter that binds to no request field is a 400, as on
Google's front end). Answers are the same messages as proto3 JSON, enums as numbers when the
client asks `$alt=json;enum-encoding=int` (the generated REST client always does). Regional
secrets (`/locations/`), IAM, UpdateSecret and rotation are not served.

Every routed call is counted per RPC name (`SecretManagerStandinServer.call_count`), and a test
can make the next N calls of a method fail (`fail_next`), before the call does anything.
Werkzeug, as for the other stand-ins.
"""

from __future__ import annotations

import json
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from google.cloud.secretmanager_v1.types import (
    AddSecretVersionRequest,
    DestroySecretVersionRequest,
    DisableSecretVersionRequest,
    EnableSecretVersionRequest,
    Secret,
)
from google.protobuf import empty_pb2
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import BaseConverter, Map, Rule
from werkzeug.wrappers import Request, Response

from launchq.log import get_logger
from launchq_local.httpserver import BackgroundServer
from launchq_local.secretmanager_standin.store import (
    DESTROYED,
    DISABLED,
    ENABLED,
    MAX_PAGE_SIZE,
    MAX_PAYLOAD_BYTES,
    SecretStore,
    crc32c,
)
from launchq_local.standin.api import check_query, page_size, respond
from launchq_local.standin.wire import (
    HTTP_FOR_STATUS,
    ApiError,
    FieldViolation,
    invalid_argument,
    load_json_object,
    parse_message,
)

log = get_logger(__name__)

_SecretPb: Any = type(Secret.pb(Secret()))
_AddPb: Any = type(AddSecretVersionRequest.pb(AddSecretVersionRequest()))
_StateRequestPbs: dict[str, Any] = {
    "DisableSecretVersion": type(DisableSecretVersionRequest.pb(DisableSecretVersionRequest())),
    "EnableSecretVersion": type(EnableSecretVersionRequest.pb(EnableSecretVersionRequest())),
    "DestroySecretVersion": type(DestroySecretVersionRequest.pb(DestroySecretVersionRequest())),
}
_TARGET_STATE = {
    "DisableSecretVersion": DISABLED,
    "EnableSecretVersion": ENABLED,
    "DestroySecretVersion": DESTROYED,
}

# A project id, a project number, or a domain-scoped id (example.com:my-project).
_PROJECT_RE = re.compile(
    r"[a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,20}|[a-z][a-z0-9.-]*:[a-z][a-z0-9-]{4,28}[a-z0-9]"
)
# CreateSecretRequest.secret_id: "at most 255 characters ... letters, numerals, - and _".
SECRET_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")
# A version number, `latest`, or an alias ("starts with a letter", at most 63 characters).
_VERSION_RE = re.compile(r"[0-9]{1,19}|[A-Za-z][A-Za-z0-9_-]{0,62}")
# What the stand-in stores of a Secret; the rest (rotation, TTLs, topics, CMEK, aliases, tags…)
# has behaviour it does not have, so a request setting it is refused rather than half-honoured.
_SUPPORTED_SECRET_FIELDS = frozenset({"replication", "labels", "annotations"})
_OUTPUT_ONLY_SECRET_FIELDS = ("name", "create_time", "etag", "policy_member")
MAX_LABELS = 64


class _Segment(BaseConverter):
    """One path segment without ':' (so `{version}:access` splits into version and verb)."""

    regex = r"[^/:]+"


_P = "/v1/projects/<seg:project>/secrets"
_S = f"{_P}/<seg:secret>"
_V = f"{_S}/versions/<seg:version>"
URL_MAP = Map(
    [
        Rule(_P, endpoint="CreateSecret", methods=["POST"]),
        Rule(_P, endpoint="ListSecrets", methods=["GET"]),
        Rule(_S, endpoint="GetSecret", methods=["GET"]),
        Rule(_S, endpoint="DeleteSecret", methods=["DELETE"]),
        Rule(f"{_S}:addVersion", endpoint="AddSecretVersion", methods=["POST"]),
        Rule(f"{_S}/versions", endpoint="ListSecretVersions", methods=["GET"]),
        Rule(_V, endpoint="GetSecretVersion", methods=["GET"]),
        Rule(f"{_V}:access", endpoint="AccessSecretVersion", methods=["GET"]),
        Rule(f"{_V}:disable", endpoint="DisableSecretVersion", methods=["POST"]),
        Rule(f"{_V}:enable", endpoint="EnableSecretVersion", methods=["POST"]),
        Rule(f"{_V}:destroy", endpoint="DestroySecretVersion", methods=["POST"]),
    ],
    converters={"seg": _Segment},
    strict_slashes=False,
    merge_slashes=False,
)
METHODS: tuple[str, ...] = tuple(sorted({str(rule.endpoint) for rule in URL_MAP.iter_rules()}))

# The IAM permission each method checks: an injected PERMISSION_DENIED names it, as the
# service's own refusal does.
PERMISSIONS = {
    "CreateSecret": "secretmanager.secrets.create",
    "ListSecrets": "secretmanager.secrets.list",
    "GetSecret": "secretmanager.secrets.get",
    "DeleteSecret": "secretmanager.secrets.delete",
    "AddSecretVersion": "secretmanager.versions.add",
    "ListSecretVersions": "secretmanager.versions.list",
    "GetSecretVersion": "secretmanager.versions.get",
    "AccessSecretVersion": "secretmanager.versions.access",
    "DisableSecretVersion": "secretmanager.versions.disable",
    "EnableSecretVersion": "secretmanager.versions.enable",
    "DestroySecretVersion": "secretmanager.versions.destroy",
}


# ---------------------------------------------------------------------------- names


def project_checked(project: str) -> str:
    """The project segment as sent, or the 400 the service answers for a malformed one."""
    if not _PROJECT_RE.fullmatch(project):
        raise ApiError(
            "INVALID_ARGUMENT",
            "Invalid resource field value in the request.",
            details=[
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "RESOURCE_PROJECT_INVALID",
                    "domain": "googleapis.com",
                }
            ],
        )
    return project


def _bad_format(name: str, expected: str) -> ApiError:
    message = f"The provided Secret ID [{name}] does not match the expected format [{expected}]"
    return ApiError("INVALID_ARGUMENT", message, [FieldViolation("name", message)])


def secret_checked(project: str, secret: str) -> tuple[str, str]:
    project_checked(project)
    if not SECRET_ID_RE.fullmatch(secret):
        raise _bad_format(f"projects/{project}/secrets/{secret}", "projects/*/secrets/*")
    return project, secret


def version_checked(project: str, secret: str, version: str) -> tuple[str, str, str]:
    project_checked(project)
    if not SECRET_ID_RE.fullmatch(secret) or not _VERSION_RE.fullmatch(version):
        raise _bad_format(
            f"projects/{project}/secrets/{secret}/versions/{version}",
            "projects/*/secrets/*/versions/*",
        )
    return project, secret, version


# ---------------------------------------------------------------------------- validation


def _required(path: str) -> ApiError:
    # The service's wording for a missing required field ("Field [payload] is required.").
    return invalid_argument(path, f"Field [{path}] is required.")


def validate_secret(pb: Any) -> None:
    """A CreateSecret body, output-only fields already cleared."""
    for fd, _ in pb.ListFields():
        if fd.name not in _SUPPORTED_SECRET_FIELDS:
            raise invalid_argument(
                f"secret.{fd.name}",
                f"secret.{fd.name} is not supported by the local Secret Manager stand-in",
            )
    replication = pb.replication
    kind = replication.WhichOneof("replication") if pb.HasField("replication") else None
    if kind is None:
        raise _required("replication")
    # Where a CMEK key could be named: the automatic policy, or each user-managed replica.
    parts = (
        [replication.automatic] if kind == "automatic" else list(replication.user_managed.replicas)
    )
    if kind == "user_managed":
        if not parts:
            raise _required("replication.user_managed.replicas")
        for index, replica in enumerate(parts):
            if not replica.location:
                raise _required(f"replication.user_managed.replicas[{index}].location")
    if any(part.HasField("customer_managed_encryption") for part in parts):
        raise invalid_argument(
            "replication",
            "customer_managed_encryption is not supported by the local Secret Manager stand-in",
        )
    _validate_labels(dict(pb.labels))


def _validate_labels(labels: dict[str, str]) -> None:
    """The documented label rules: keys [\\p{Ll}\\p{Lo}][\\p{Ll}\\p{Lo}\\p{N}_-]{0,62}, values
    [\\p{Ll}\\p{Lo}\\p{N}_-]{0,63}, at most 128 UTF-8 bytes each, at most 64 labels."""
    if len(labels) > MAX_LABELS:
        raise invalid_argument("labels", f"A secret can have at most {MAX_LABELS} labels.")
    for key, value in labels.items():
        key_ok = bool(key) and _letter(key[0]) and _label_chars(key[1:]) and len(key) <= 63
        if not key_ok or len(key.encode()) > 128:
            raise invalid_argument(f"labels[{key}]", f"Invalid label key: [{key}].")
        if not _label_chars(value) or len(value) > 63 or len(value.encode()) > 128:
            raise invalid_argument(f"labels[{key}]", f"Invalid label value: [{value}].")


def _letter(char: str) -> bool:
    return unicodedata.category(char) in ("Ll", "Lo")


def _label_chars(text: str) -> bool:
    return all(_letter(c) or unicodedata.category(c).startswith("N") or c in "_-" for c in text)


def _page_size(raw: str | None) -> int:
    # 0 or absent: "the server decides"; the stand-in sends all (up to the maximum).
    return page_size(raw, default=MAX_PAGE_SIZE, maximum=MAX_PAGE_SIZE)


def _no_filter(request: Request) -> None:
    if request.args.get("filter"):
        raise invalid_argument(
            "filter", "filter is not supported by the local Secret Manager stand-in"
        )


# ---------------------------------------------------------------------------- faults


@dataclass
class Fault:
    """The next `remaining` calls of `method` answer `status` (and do nothing else)."""

    method: str
    status: str
    message: str
    remaining: int

    def error(self) -> ApiError:
        details: list[dict[str, Any]] = []
        if self.status == "PERMISSION_DENIED":
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "IAM_PERMISSION_DENIED",
                    "domain": "iam.googleapis.com",
                    "metadata": {"permission": PERMISSIONS[self.method]},
                }
            )
        return ApiError(self.status, self.message, details=details)


def _default_message(method: str, status: str) -> str:
    if status == "PERMISSION_DENIED":
        # The service's refusal, without the troubleshooter link that follows it.
        return f"Permission '{PERMISSIONS[method]}' denied on resource (or it may not exist)."
    if status == "UNAVAILABLE":
        return "The service is currently unavailable."
    return f"Injected fault: {status}."


class CallBook:
    """Per-method call counts and the queue of injected faults; thread-safe."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def enter(self, method: str) -> ApiError | None:
        """Count a call; the error to answer instead, if a fault is queued for the method."""
        with self._lock:
            self._counts[method] += 1
            for fault in self._faults:
                if fault.method == method:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault.error()
        return None

    def count(self, method: str) -> int:
        _known(method)
        with self._lock:
            return self._counts[method]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def add_fault(self, method: str, count: int, status: str, message: str | None) -> None:
        _known(method)
        if status not in HTTP_FOR_STATUS or status == "OK":
            raise ValueError(f"status must be a google.rpc.Code name other than OK: {status!r}")
        if count < 1:
            raise ValueError(f"count must be at least 1: {count}")
        fault = Fault(method, status, message or _default_message(method, status), count)
        with self._lock:
            self._faults.append(fault)

    def pending(self, method: str) -> int:
        _known(method)
        with self._lock:
            return sum(f.remaining for f in self._faults if f.method == method)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._faults.clear()


def _known(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; one of {list(METHODS)}")


# ---------------------------------------------------------------------------- the app


class SecretManagerApp:
    """The WSGI application: route, count, fault, parse, act, and map errors to the envelope."""

    def __init__(self, store: SecretStore) -> None:
        self.store = store
        self.calls = CallBook()
        self._handlers: dict[str, Callable[..., Response]] = {
            "CreateSecret": self._create,
            "ListSecrets": self._list,
            "GetSecret": self._get,
            "DeleteSecret": self._delete,
            "AddSecretVersion": self._add_version,
            "ListSecretVersions": self._list_versions,
            "GetSecretVersion": self._get_version,
            "AccessSecretVersion": self._access,
        }

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        try:
            endpoint, args = URL_MAP.bind_to_environ(request.environ).match()
        except MethodNotAllowed:
            error = ApiError(
                "UNIMPLEMENTED",
                f"{request.method} {request.path} is not served by the local Secret Manager "
                "stand-in",
            )
            return _reply(error.envelope(), error.http)
        except HTTPException:
            error = ApiError("NOT_FOUND", f"No such method: {request.method} {request.path}")
            return _reply(error.envelope(), error.http)
        method = str(endpoint)
        try:
            injected = self.calls.enter(method)
            if injected is not None:
                raise injected
            if method in _TARGET_STATE:
                return self._set_state(request, method=method, **args)
            return self._handlers[method](request, **args)
        except ApiError as refused:
            return _reply(refused.envelope(), refused.http)
        except Exception as exc:
            log.exception("secret manager stand-in handler failed", method=method)
            internal = ApiError("INTERNAL", f"Internal error: {exc!r}")
            return _reply(internal.envelope(), internal.http)

    # ------------------------------------------------------------------ secrets

    def _create(self, request: Request, project: str) -> Response:
        check_query(request, ("secretId",))
        project_checked(project)
        secret_id = request.args.get("secretId", "")
        if not secret_id:
            raise _required("secret_id")
        if not SECRET_ID_RE.fullmatch(secret_id):
            raise invalid_argument(
                "secret_id",
                f"The provided Secret ID [{secret_id}] does not match the expected format "
                "[[a-zA-Z_0-9-]{1,255}]",
            )
        pb = parse_message(load_json_object(request.get_data(), "secret"), _SecretPb(), "secret")
        for name in _OUTPUT_ONLY_SECRET_FIELDS:
            # Ignored on input, as Google ignores output-only fields (older releases of the
            # library lack some of them, hence the check).
            if name in pb.DESCRIPTOR.fields_by_name:
                pb.ClearField(name)
        validate_secret(pb)
        return respond(request, self.store.create(project, secret_id, pb))

    def _list(self, request: Request, project: str) -> Response:
        check_query(request, ("pageSize", "pageToken", "filter"))
        project_checked(project)
        _no_filter(request)
        size = _page_size(request.args.get("pageSize"))
        page = self.store.list(project, size, request.args.get("pageToken", ""))
        return respond(request, page)

    def _get(self, request: Request, project: str, secret: str) -> Response:
        check_query(request)
        return respond(request, self.store.get(*secret_checked(project, secret)))

    def _delete(self, request: Request, project: str, secret: str) -> Response:
        check_query(request, ("etag",))
        self.store.delete(*secret_checked(project, secret), etag=request.args.get("etag", ""))
        return respond(request, empty_pb2.Empty())

    # ------------------------------------------------------------------ versions

    def _add_version(self, request: Request, project: str, secret: str) -> Response:
        check_query(request)
        secret_checked(project, secret)
        pb = parse_message(load_json_object(request.get_data(), ""), _AddPb(), "")
        _same_name("parent", pb.parent, f"projects/{project}/secrets/{secret}")
        if not pb.HasField("payload"):
            raise _required("payload")
        data = bytes(pb.payload.data)
        if len(data) > MAX_PAYLOAD_BYTES:
            raise invalid_argument(
                "payload.data",
                f"Secret payload data must be no larger than 64KiB ({len(data)} bytes).",
            )
        checksum = pb.payload.data_crc32c if pb.payload.HasField("data_crc32c") else None
        if checksum is not None and checksum != crc32c(data):
            raise invalid_argument(
                "payload.data_crc32c",
                f"Checksum mismatch: payload.data_crc32c is {checksum}, the CRC32C of "
                f"payload.data is {crc32c(data)}.",
            )
        return respond(request, self.store.add_version(project, secret, data, checksum))

    def _list_versions(self, request: Request, project: str, secret: str) -> Response:
        check_query(request, ("pageSize", "pageToken", "filter"))
        secret_checked(project, secret)
        _no_filter(request)
        size = _page_size(request.args.get("pageSize"))
        page = self.store.list_versions(project, secret, size, request.args.get("pageToken", ""))
        return respond(request, page)

    def _get_version(self, request: Request, project: str, secret: str, version: str) -> Response:
        check_query(request)
        return respond(request, self.store.get_version(*version_checked(project, secret, version)))

    def _access(self, request: Request, project: str, secret: str, version: str) -> Response:
        check_query(request)
        return respond(request, self.store.access(*version_checked(project, secret, version)))

    def _set_state(
        self, request: Request, project: str, secret: str, version: str, *, method: str
    ) -> Response:
        """Disable, Enable and Destroy: one body shape (`etag`), one store call."""
        check_query(request)
        version_checked(project, secret, version)
        pb = parse_message(load_json_object(request.get_data(), ""), _StateRequestPbs[method](), "")
        _same_name("name", pb.name, f"projects/{project}/secrets/{secret}/versions/{version}")
        state = _TARGET_STATE[method]
        return respond(request, self.store.set_state(project, secret, version, state, pb.etag))


def _same_name(field: str, sent: str, path: str) -> None:
    """A body may repeat the name the URL carries (body "*"), but not contradict it."""
    if sent and sent != path:
        raise invalid_argument(field, f"{field} [{sent}] does not match the URL's [{path}].")


def _reply(body: dict[str, Any], status: int) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json; charset=UTF-8")


# ---------------------------------------------------------------------------- the server


class SecretManagerStandinServer(BackgroundServer):
    """The stand-in on a loopback port in a background thread.

    >>> with SecretManagerStandinServer() as sm:
    ...     client = SecretManagerServiceClient(
    ...         transport="rest", credentials=AnonymousCredentials(),
    ...         client_options={"api_endpoint": sm.url})
    ...     sm.fail_next("AccessSecretVersion", count=2, status="UNAVAILABLE")
    ...     sm.call_count("AccessSecretVersion")
    """

    title = "secret manager stand-in"

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, store: SecretStore | None = None
    ) -> None:
        self.store = store or SecretStore()
        self.app = SecretManagerApp(self.store)
        super().__init__(self.app, host, port)

    def call_count(self, method: str) -> int:
        """Calls of one RPC (`AccessSecretVersion`, …) routed so far, refused ones included."""
        return self.app.calls.count(method)

    def call_counts(self) -> dict[str, int]:
        """Every RPC called so far and how many times."""
        return self.app.calls.counts()

    def fail_next(
        self,
        method: str,
        count: int = 1,
        status: str = "UNAVAILABLE",
        message: str | None = None,
    ) -> None:
        """Make the next `count` calls of `method` answer `status` (a google.rpc.Code name, e.g.
        UNAVAILABLE → 503, PERMISSION_DENIED → 403) without touching the store. Faults queue up:
        a second `fail_next` for the same method fires after the first is used up."""
        self.app.calls.add_fault(method, count, status, message)

    def pending_faults(self, method: str) -> int:
        """How many injected failures of `method` are still to fire."""
        return self.app.calls.pending(method)

    def reset(self) -> None:
        """No secrets, no counts, no faults."""
        self.store.clear()
        self.app.calls.reset()
