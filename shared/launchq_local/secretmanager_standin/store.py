"""The secret store: secrets, their numbered versions, payloads and version states.

Secrets are keyed by (project number, secret id): the real service names every secret
`projects/{number}/secrets/{id}` whichever form the request used, so the store maps a project id
to the Vertex stand-in's fake number (`standin.names.project_number`) and both forms reach the
same secret. Versions are numbered 1, 2, 3… in creation order and never renumbered; a destroyed
version keeps its number and state and loses its payload, as on the real service. `latest` is the
most recently created version whatever its state (the API reference: "an alias to the most
recently created SecretVersion"), so a disabled or destroyed newest version makes `latest`
unreadable rather than falling back to an older one.

Everything is guarded by one lock: the stand-in serves from several threads, and a version number
must be taken and its payload stored in one step. Answers are raw `secretmanager_v1` protobufs,
copies of the stored state, ready for `wire.to_json`. Error wordings are Google's where they were
found (see docs/secretmanager-standin.md, "Errors") and inferred otherwise.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import google_crc32c
from google.cloud.secretmanager_v1.types import (
    AccessSecretVersionResponse,
    ListSecretsResponse,
    ListSecretVersionsResponse,
    Secret,
    SecretVersion,
)

from launchq_local.standin.names import project_number
from launchq_local.standin.wire import ApiError, invalid_argument

_SecretPb: Any = type(Secret.pb(Secret()))
_VersionPb: Any = type(SecretVersion.pb(SecretVersion()))
_AccessPb: Any = type(AccessSecretVersionResponse.pb(AccessSecretVersionResponse()))
_ListSecretsPb: Any = type(ListSecretsResponse.pb(ListSecretsResponse()))
_ListVersionsPb: Any = type(ListSecretVersionsResponse.pb(ListSecretVersionsResponse()))

ENABLED = int(SecretVersion.State.ENABLED)
DISABLED = int(SecretVersion.State.DISABLED)
DESTROYED = int(SecretVersion.State.DESTROYED)
STATE_NAMES = {ENABLED: "ENABLED", DISABLED: "DISABLED", DESTROYED: "DESTROYED"}

MAX_PAGE_SIZE = 25_000  # ListSecrets / ListSecretVersions: "capped at 25000"
MAX_PAYLOAD_BYTES = 64 * 1024  # SecretPayload.data: "Must be no larger than 64KiB"


def crc32c(data: bytes) -> int:
    """CRC32C (Castagnoli), what `SecretPayload.data_crc32c` carries, as an unsigned int."""
    return int(google_crc32c.value(data))


def secret_name(number: str, secret_id: str) -> str:
    return f"projects/{number}/secrets/{secret_id}"


def _etag() -> str:
    # Secret Manager's etags are quoted opaque strings; only equality matters to a client.
    return f'"{secrets.token_hex(7)}"'


def _now_us() -> int:
    return time.time_ns() // 1000


# ---------------------------------------------------------------------------- errors


def secret_not_found(name: str) -> ApiError:
    return ApiError("NOT_FOUND", f"Secret [{name}] not found.")


def no_versions(name: str) -> ApiError:
    """Any version of a missing secret, or `latest` of a secret with none (wording confirmed)."""
    return ApiError("NOT_FOUND", f"Secret [{name}] not found or has no versions.")


def version_not_found(name: str) -> ApiError:
    return ApiError("NOT_FOUND", f"Secret Version [{name}] not found.")


def wrong_state(name: str, state: int) -> ApiError:
    """A version that is not ENABLED cannot be read (wording and status confirmed)."""
    message = f"Secret Version [{name}] is in {STATE_NAMES[state]} state."
    return ApiError("FAILED_PRECONDITION", message)


def etag_mismatch(kind: str, name: str, etag: str) -> ApiError:
    return ApiError(
        "FAILED_PRECONDITION",
        f"The etag {etag} does not match the current etag of {kind} [{name}].",
    )


# ---------------------------------------------------------------------------- state


@dataclass
class _Version:
    number: int
    data: bytes
    crc32c: int
    client_checksum: bool  # the client sent payload.data_crc32c (and it matched)
    created_us: int
    state: int = ENABLED
    destroyed_us: int = 0
    etag: str = field(default_factory=_etag)


@dataclass
class _Secret:
    seq: int  # creation order: list order and the page tokens' key
    pb: Any  # the stored `Secret`, output-only fields filled in
    versions: list[_Version] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.pb.name)

    def version_pb(self, version: _Version) -> Any:
        pb = _VersionPb(
            name=f"{self.name}/versions/{version.number}",
            state=version.state,
            etag=version.etag,
            client_specified_payload_checksum=version.client_checksum,
        )
        pb.create_time.FromMicroseconds(version.created_us)
        if version.state == DESTROYED:
            pb.destroy_time.FromMicroseconds(version.destroyed_us)
        replication = self.pb.replication
        if replication.HasField("user_managed"):
            for replica in replication.user_managed.replicas:
                pb.replication_status.user_managed.replicas.add(location=replica.location)
        else:
            pb.replication_status.automatic.SetInParent()
        return pb


@dataclass
class SecretStore:
    """Thread-safe; every method takes the project as sent (id or number)."""

    _secrets: dict[tuple[str, str], _Secret] = field(default_factory=dict)
    _seq: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def clear(self) -> None:
        with self._lock:
            self._secrets.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._secrets)

    # ------------------------------------------------------------------ secrets

    def create(self, project: str, secret_id: str, secret: Any) -> Any:
        """Store a validated `Secret` (output-only fields already cleared); answer it."""
        number = project_number(project)
        name = secret_name(number, secret_id)
        with self._lock:
            if (number, secret_id) in self._secrets:
                raise ApiError("ALREADY_EXISTS", f"Secret [{name}] already exists.")
            pb = _SecretPb()
            pb.CopyFrom(secret)
            pb.name = name
            pb.etag = _etag()
            pb.create_time.FromMicroseconds(_now_us())
            self._seq += 1
            self._secrets[(number, secret_id)] = _Secret(self._seq, pb)
            return _copy(pb)

    def get(self, project: str, secret_id: str) -> Any:
        with self._lock:
            return _copy(self._secret(project, secret_id).pb)

    def delete(self, project: str, secret_id: str, etag: str = "") -> None:
        with self._lock:
            found = self._secret(project, secret_id)
            if etag and etag != found.pb.etag:
                raise etag_mismatch("Secret", found.name, etag)
            del self._secrets[(project_number(project), secret_id)]

    def list(self, project: str, page_size: int, page_token: str) -> Any:
        """One page of the project's secrets, newest first (as the API documents)."""
        number = project_number(project)
        digest = _digest(f"projects/{number}")
        after = _decode_token(page_token, digest) if page_token else None
        with self._lock:
            mine = sorted(
                (s for (n, _), s in self._secrets.items() if n == number),
                key=lambda s: s.seq,
                reverse=True,
            )
            response = _ListSecretsPb(total_size=len(mine))
            rest = [s for s in mine if after is None or s.seq < after]
            for found in rest[:page_size]:
                response.secrets.append(found.pb)
            if len(rest) > page_size:
                response.next_page_token = _encode_token(rest[page_size - 1].seq, digest)
            return response

    # ------------------------------------------------------------------ versions

    def add_version(self, project: str, secret_id: str, data: bytes, checksum: int | None) -> Any:
        """A new ENABLED version numbered after the last one; `checksum` already verified."""
        with self._lock:
            found = self._secret(project, secret_id)
            version = _Version(
                number=len(found.versions) + 1,
                data=data,
                crc32c=crc32c(data),
                client_checksum=checksum is not None,
                created_us=_now_us(),
            )
            found.versions.append(version)
            return found.version_pb(version)

    def get_version(self, project: str, secret_id: str, version: str) -> Any:
        with self._lock:
            found, resolved = self._resolve(project, secret_id, version)
            return found.version_pb(resolved)

    def access(self, project: str, secret_id: str, version: str) -> Any:
        """The payload of an ENABLED version, named by its number even when asked as `latest`."""
        with self._lock:
            found, resolved = self._resolve(project, secret_id, version)
            name = f"{found.name}/versions/{resolved.number}"
            if resolved.state != ENABLED:
                raise wrong_state(name, resolved.state)
            response = _AccessPb(name=name)
            response.payload.data = resolved.data
            response.payload.data_crc32c = resolved.crc32c
            return response

    def set_state(self, project: str, secret_id: str, version: str, state: int, etag: str) -> Any:
        """Disable, enable or destroy. DESTROYED is final: no way out of it, nor into it twice."""
        with self._lock:
            found, resolved = self._resolve(project, secret_id, version)
            name = f"{found.name}/versions/{resolved.number}"
            if etag and etag != resolved.etag:
                raise etag_mismatch("Secret Version", name, etag)
            if resolved.state == DESTROYED:
                raise wrong_state(name, DESTROYED)
            if resolved.state != state:
                resolved.state = state
                resolved.etag = _etag()
                if state == DESTROYED:
                    resolved.data = b""
                    resolved.destroyed_us = _now_us()
            return found.version_pb(resolved)

    def list_versions(self, project: str, secret_id: str, page_size: int, page_token: str) -> Any:
        """One page of a secret's versions, newest first, destroyed ones included."""
        with self._lock:
            found = self._secret(project, secret_id)
            digest = _digest(found.name)
            after = _decode_token(page_token, digest) if page_token else None
            newest_first = list(reversed(found.versions))
            rest = [v for v in newest_first if after is None or v.number < after]
            response = _ListVersionsPb(total_size=len(newest_first))
            for version in rest[:page_size]:
                response.versions.append(found.version_pb(version))
            if len(rest) > page_size:
                response.next_page_token = _encode_token(rest[page_size - 1].number, digest)
            return response

    # ------------------------------------------------------------------ lookups (lock held)

    def _secret(self, project: str, secret_id: str) -> _Secret:
        number = project_number(project)
        found = self._secrets.get((number, secret_id))
        if found is None:
            raise secret_not_found(secret_name(number, secret_id))
        return found

    def _resolve(self, project: str, secret_id: str, version: str) -> tuple[_Secret, _Version]:
        number = project_number(project)
        name = secret_name(number, secret_id)
        found = self._secrets.get((number, secret_id))
        if found is None:
            raise no_versions(name)
        if version == "latest":
            if not found.versions:
                raise no_versions(name)
            return found, found.versions[-1]
        # Anything else that got past the name check is a number or an alias; the stand-in
        # assigns no aliases, so an alias is as unknown as a number past the last version.
        if version.isdigit() and 1 <= int(version) <= len(found.versions):
            return found, found.versions[int(version) - 1]
        raise version_not_found(f"{name}/versions/{version}")


def _copy(pb: Any) -> Any:
    copy = _SecretPb()
    copy.CopyFrom(pb)
    return copy


# ---------------------------------------------------------------------------- page tokens


def _digest(scope: str) -> str:
    return hashlib.sha256(scope.encode()).hexdigest()[:16]


def _encode_token(key: int, digest: str) -> str:
    # Keyset tokens (the last item returned), so a page does not shift when secrets are created
    # or versions added between pages; the digest ties a token to the list it came from.
    raw = json.dumps({"k": key, "q": digest}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, digest: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        key = int(data["k"])
        same = data["q"] == digest
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise _bad_token() from None
    if not same:
        raise _bad_token()
    return key


def _bad_token() -> ApiError:
    return invalid_argument(
        "page_token",
        "page_token is invalid: it was not returned by a previous call listing the same parent",
    )
