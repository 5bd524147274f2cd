"""The Secret Manager stand-in, driven by the unmodified `google-cloud-secret-manager` client over
REST, for setup as much as for the calls under test.

Raw HTTP (`requests`) is used only to send what the client never would (unknown fields, wrong
types, bad names). Note what the REST client raises: it picks the exception class from the HTTP
status alone, so FAILED_PRECONDITION (HTTP 400, as the service answers it) arrives as
`BadRequest` and ALREADY_EXISTS (409) as `Conflict`; the canonical status is in the envelope,
`exc.response.json()["error"]["status"]`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from google.api_core import exceptions as gexc
from google.api_core import retry as retries
from google.auth.credentials import AnonymousCredentials
from google.cloud.secretmanager_v1 import (
    Replication,
    Secret,
    SecretManagerServiceClient,
    SecretPayload,
    SecretVersion,
)

from launchq_local.secretmanager_standin import SecretManagerStandinServer
from launchq_local.secretmanager_standin.store import crc32c
from launchq_local.standin.names import project_number
from tests.fixtures.standin import TEST_PROJECT

pytestmark = pytest.mark.integration

NUMBER = project_number(TEST_PROJECT)
PARENT = f"projects/{TEST_PROJECT}"
AUTOMATIC: dict[str, Any] = {"replication": {"automatic": {}}}  # as JSON, for raw requests
AUTOMATIC_SECRET = Secret(replication=Replication(automatic=Replication.Automatic()))
ENABLED = SecretVersion.State.ENABLED
DISABLED = SecretVersion.State.DISABLED
DESTROYED = SecretVersion.State.DESTROYED


@pytest.fixture(scope="module")
def sm_server() -> Iterator[SecretManagerStandinServer]:
    with SecretManagerStandinServer() as server:  # a free loopback port, background thread
        yield server


@pytest.fixture
def sm(sm_server: SecretManagerStandinServer) -> SecretManagerStandinServer:
    sm_server.reset()
    return sm_server


@pytest.fixture(scope="module")
def client(sm_server: SecretManagerStandinServer) -> SecretManagerServiceClient:
    return SecretManagerServiceClient(
        transport="rest",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": sm_server.url},
    )


def make_secret(client: SecretManagerServiceClient, secret_id: str, *payloads: bytes) -> str:
    """Create a secret with one version per payload; its name (project as a number)."""
    secret = client.create_secret(parent=PARENT, secret_id=secret_id, secret=AUTOMATIC_SECRET)
    for data in payloads:
        client.add_secret_version(parent=secret.name, payload=SecretPayload(data=data))
    return str(secret.name)


def status_of(exc: gexc.GoogleAPICallError) -> str:
    assert exc.response is not None
    return str(exc.response.json()["error"]["status"])


def message_of(exc: gexc.GoogleAPICallError) -> str:
    """The envelope's message (the REST client prefixes `exc.message` with method and URL)."""
    assert exc.response is not None
    return str(exc.response.json()["error"]["message"])


FAST_RETRY = retries.Retry(
    initial=0.01,
    maximum=0.05,
    multiplier=1.5,
    predicate=retries.if_exception_type(gexc.ServiceUnavailable),
    timeout=10,
)


# ---------------------------------------------------------------------------- the happy path


def test_latest_is_the_second_version_and_version_1_the_first(
    sm: SecretManagerStandinServer, client: SecretManagerServiceClient
) -> None:
    name = make_secret(client, "wandb-api-key", b"first-key", b"second-key")
    # The service names the project by number whatever the request used.
    assert name == f"projects/{NUMBER}/secrets/wandb-api-key"

    latest = client.access_secret_version(name=f"{PARENT}/secrets/wandb-api-key/versions/latest")
    assert latest.payload.data == b"second-key"
    assert latest.name == f"{name}/versions/2"  # resolved, not "latest"
    assert latest.payload.data_crc32c == crc32c(b"second-key")

    first = client.access_secret_version(name=f"{name}/versions/1")  # by number, too
    assert first.payload.data == b"first-key"
    assert first.name == f"{name}/versions/1"

    version = client.get_secret_version(name=f"{PARENT}/secrets/wandb-api-key/versions/latest")
    assert version.name == f"{name}/versions/2"
    assert version.state == ENABLED
    assert not version.client_specified_payload_checksum
    assert "automatic" in version.replication_status


def test_access_answers_the_checksum_google_documents(
    sm: SecretManagerStandinServer, client: SecretManagerServiceClient
) -> None:
    """Secret Manager's data-integrity page: payload "YQo=" ("a\\n") has dataCrc32c 163439259."""
    name = make_secret(client, "doc-example", b"a\n")
    raw = requests.get(f"{sm.url}/v1/{name}/versions/1:access", timeout=10).json()
    assert raw == {
        "name": f"{name}/versions/1",
        "payload": {"data": "YQo=", "dataCrc32c": "163439259"},
    }


def test_secrets_and_versions_list_newest_first_in_pages(
    sm: SecretManagerStandinServer, client: SecretManagerServiceClient
) -> None:
    for i in range(7):
        make_secret(client, f"s{i}")
    client.create_secret(
        parent="projects/another-project", secret_id="theirs", secret=AUTOMATIC_SECRET
    )
    before = sm.call_count("ListSecrets")
    pages = list(client.list_secrets(request={"parent": PARENT, "page_size": 3}).pages)
    assert [len(page.secrets) for page in pages] == [3, 3, 1]
    listed = [s.name.rsplit("/", 1)[-1] for page in pages for s in page.secrets]
    assert listed == [f"s{i}" for i in reversed(range(7))]  # newest first, as documented
    assert pages[0].total_size == 7
    assert sm.call_count("ListSecrets") - before == 3

    name = make_secret(client, "many", *(f"v{i}".encode() for i in range(1, 6)))
    before = sm.call_count("ListSecretVersions")
    pager = client.list_secret_versions(request={"parent": name, "page_size": 2})
    assert [v.name.rsplit("/", 1)[-1] for v in pager] == ["5", "4", "3", "2", "1"]
    assert sm.call_count("ListSecretVersions") - before == 3  # 2 + 2 + 1

    # A page token belongs to its list: replayed against another project, it is refused.
    first = requests.get(f"{sm.url}/v1/{PARENT}/secrets", params={"pageSize": 2}, timeout=10)
    token = first.json()["nextPageToken"]
    replay = requests.get(
        f"{sm.url}/v1/projects/another-project/secrets", params={"pageToken": token}, timeout=10
    )
    assert replay.status_code == 400
    assert "page_token" in replay.json()["error"]["message"]


def test_user_managed_replication_and_labels_round_trip(
    sm: SecretManagerStandinServer, client: SecretManagerServiceClient
) -> None:
    secret = client.create_secret(
        parent=PARENT,
        secret_id="replicated",
        secret=Secret(
            replication=Replication(
                user_managed=Replication.UserManaged(
                    replicas=[
                        Replication.UserManaged.Replica(location="us-central1"),
                        Replication.UserManaged.Replica(location="eu"),
                    ]
                )
            ),
            labels={"team": "ml", "tier": "gpu-2"},
        ),
    )
    assert dict(secret.labels) == {"team": "ml", "tier": "gpu-2"}
    assert client.get_secret(name=secret.name).labels == secret.labels
    version = client.add_secret_version(parent=secret.name, payload=SecretPayload(data=b"x"))
    locations = [r.location for r in version.replication_status.user_managed.replicas]
    assert locations == ["us-central1", "eu"]


# ---------------------------------------------------------------------------- states


def test_a_disabled_version_refuses_access_until_enabled(
    sm: SecretManagerStandinServer, client: SecretManagerServiceClient
) -> None:
    name = make_secret(client, "key", b"v1", b"v2")
    disabled = client.disable_secret_version(name=f"{name}/versions/1")
    assert disabled.state == DISABLED

    with pytest.raises(gexc.BadRequest) as refused:
        client.access_secret_version(name=f"{name}/versions/1")
    assert refused.value.code == 400
    assert status_of(refused.value) == "FAILED_PRECONDITION"
    assert message_of(refused.value) == f"Secret Version [{name}/versions/1] is in DISABLED state."
    # Its metadata stays readable, and so do the other versions.
    assert client.get_secret_version(name=f"{name}/versions/1").state == DISABLED
    assert client.access_secret_version(name=f"{name}/versions/2").payload.data == b"v2"

    enabled = client.enable_secret_version(name=f"{name}/versions/1")
    assert enabled.state == ENABLED
    assert enabled.etag != disabled.etag
    assert client.access_secret_version(name=f"{name}/versions/1").payload.data == b"v1"


def test_latest_is_the_newest_version_even_when_it_is_disabled(
    sm: SecretManagerStandinServer, client: SecretManagerServiceClient
) -> None:
    """`latest` is "an alias to the most recently created SecretVersion" (API reference), so a
    disabled newest version is refused, not skipped for an older enabled one; the real service
    answers exactly that (see docs/secretmanager-standin.md)."""
    name = make_secret(client, "rotated", b"old", b"new")
    client.disable_secret_version(name=f"{name}/versions/2")

    with pytest.raises(gexc.BadRequest) as refused:
        client.access_secret_version(name=f"{name}/versions/latest")
    assert status_of(refused.value) == "FAILED_PRECONDITION"
    assert message_of(refused.value) == f"Secret Version [{name}/versions/2] is in DISABLED state."
    assert client.access_secret_version(name=f"{name}/versions/1").payload.data == b"old"
    assert client.get_secret_version(name=f"{name}/versions/latest").name == f"{name}/versions/2"

    client.add_secret_version(parent=name, payload=SecretPayload(data=b"newer"))  # a new latest
    latest = client.access_secret_version(name=f"{name}/versions/latest")
    assert (latest.name, latest.payload.data) == (f"{name}/versions/3", b"newer")


def test_a_destroyed_version_is_gone_for_good(
    sm: SecretManagerStandinServer, client: SecretManagerServiceClient
) -> None:
    name = make_secret(client, "burnt", b"secret-bytes")
    destroyed = client.destroy_secret_version(name=f"{name}/versions/latest")
    assert destroyed.name == f"{name}/versions/1"
    assert destroyed.state == DESTROYED
    assert destroyed.destroy_time.timestamp() > 0

    for call in (
        client.access_secret_version,
        client.enable_secret_version,
        client.disable_secret_version,
        client.destroy_secret_version,
    ):
        with pytest.raises(gexc.BadRequest) as refused:
            call(name=f"{name}/versions/1")
        assert status_of(refused.value) == "FAILED_PRECONDITION"
        gone = f"Secret Version [{name}/versions/1] is in DESTROYED state."
        assert message_of(refused.value) == gone
    # The version keeps its number: the next one is 2, and `latest` moves on to it.
    assert client.add_secret_version(
        parent=name, payload=SecretPayload(data=b"again")
    ).name.endswith("/2")
    assert client.access_secret_version(name=f"{name}/versions/latest").payload.data == b"again"
    assert client.get_secret_version(name=f"{name}/versions/1").state == DESTROYED


def test_etags_guard_state_changes_and_deletes(
    sm: SecretManagerStandinServer, client: SecretManagerServiceClient
) -> None:
    name = make_secret(client, "guarded", b"v1")
    version = client.get_secret_version(name=f"{name}/versions/1")
    with pytest.raises(gexc.BadRequest) as stale:
        client.disable_secret_version(request={"name": version.name, "etag": '"stale"'})
    assert status_of(stale.value) == "FAILED_PRECONDITION"
    assert client.get_secret_version(name=version.name).state == ENABLED
    assert client.disable_secret_version(request={"name": version.name, "etag": version.etag})

    secret = client.get_secret(name=name)
    with pytest.raises(gexc.BadRequest):
        client.delete_secret(request={"name": name, "etag": '"stale"'})
    client.delete_secret(request={"name": name, "etag": secret.etag})
    with pytest.raises(gexc.NotFound):
        client.get_secret(name=name)
    # A secret created again under the same id starts from version 1.
    again = make_secret(client, "guarded", b"fresh")
    assert client.access_secret_version(name=f"{again}/versions/1").payload.data == b"fresh"


# ---------------------------------------------------------------------------- errors


def test_missing_secrets_and_versions_are_not_found(
    sm: SecretManagerStandinServer, client: SecretManagerServiceClient
) -> None:
    missing = f"projects/{NUMBER}/secrets/nope"
    with pytest.raises(gexc.NotFound) as no_secret:
        client.get_secret(name=f"{PARENT}/secrets/nope")
    assert message_of(no_secret.value) == f"Secret [{missing}] not found."
    with pytest.raises(gexc.NotFound) as no_versions:
        client.access_secret_version(name=f"{PARENT}/secrets/nope/versions/latest")
    assert message_of(no_versions.value) == f"Secret [{missing}] not found or has no versions."
    with pytest.raises(gexc.NotFound):
        client.add_secret_version(parent=f"{PARENT}/secrets/nope", payload=SecretPayload(data=b"x"))

    empty = make_secret(client, "empty")
    with pytest.raises(gexc.NotFound) as none_yet:
        client.access_secret_version(name=f"{empty}/versions/latest")
    assert message_of(none_yet.value) == f"Secret [{empty}] not found or has no versions."

    name = make_secret(client, "one", b"only")
    with pytest.raises(gexc.NotFound) as no_version:
        client.get_secret_version(name=f"{name}/versions/3")
    assert message_of(no_version.value) == f"Secret Version [{name}/versions/3] not found."
    assert status_of(no_version.value) == "NOT_FOUND"


def test_a_second_create_is_already_exists(
    sm: SecretManagerStandinServer, client: SecretManagerServiceClient
) -> None:
    name = make_secret(client, "dup", b"kept")
    with pytest.raises(gexc.Conflict) as conflict:
        client.create_secret(parent=f"projects/{NUMBER}", secret_id="dup", secret=AUTOMATIC_SECRET)
    assert conflict.value.code == 409
    assert status_of(conflict.value) == "ALREADY_EXISTS"
    assert message_of(conflict.value) == f"Secret [{name}] already exists."
    # The existing secret is untouched.
    assert client.access_secret_version(name=f"{name}/versions/1").payload.data == b"kept"


def test_add_version_checks_a_crc32c_it_is_given(
    sm: SecretManagerStandinServer, client: SecretManagerServiceClient
) -> None:
    name = make_secret(client, "checked")
    data = b"wandb-0123456789"
    with pytest.raises(gexc.BadRequest) as mismatch:
        client.add_secret_version(
            parent=name, payload=SecretPayload(data=data, data_crc32c=crc32c(data) ^ 1)
        )
    assert status_of(mismatch.value) == "INVALID_ARGUMENT"
    assert "Checksum mismatch" in mismatch.value.message
    assert list(client.list_secret_versions(parent=name)) == []  # nothing was stored

    good = client.add_secret_version(
        parent=name, payload=SecretPayload(data=data, data_crc32c=crc32c(data))
    )
    assert good.name == f"{name}/versions/1"
    assert good.client_specified_payload_checksum
    assert client.access_secret_version(name=good.name).payload.data_crc32c == crc32c(data)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


ADD = "secrets/s:addVersion"
CREATE = "secrets?secretId=t"
X = {"data": "eA=="}  # b"x"
BAD_NAME = "does not match the expected format"


@pytest.mark.parametrize(
    ("method", "path", "body", "fragment"),
    [
        # Bodies, parsed with secretmanager_v1's own messages.
        ("POST", ADD, {"payload": X, "extra": 1}, 'Unknown name "extra"'),
        ("POST", ADD, {"payload": {"data": 5}}, "payload.data"),
        ("POST", ADD, {"payload": {**X, "crc": 1}}, 'Unknown name "crc"'),
        ("POST", ADD, {"payload": {**X, "dataCrc32c": "x"}}, "data_crc32c"),
        ("POST", ADD, {}, "Field [payload] is required."),
        ("POST", ADD, {"payload": {"data": _b64(b"x" * 65537)}}, "64KiB"),
        ("POST", ADD, "[1, 2]", "Expected an object"),
        ("POST", ADD, "{not json", "Invalid JSON payload"),
        ("POST", CREATE, {**AUTOMATIC, "labelz": {}}, "Unknown name \"labelz\" at 'secret'"),
        ("POST", CREATE, {}, "Field [replication] is required."),
        ("POST", CREATE, {"replication": {"userManaged": {}}}, "replicas"),
        ("POST", CREATE, {**AUTOMATIC, "ttl": "60s"}, "secret.ttl is not supported"),
        ("POST", CREATE, {**AUTOMATIC, "labels": {"Env": "x"}}, "label key"),
        ("POST", "secrets?secretId=a.b", AUTOMATIC, "Secret ID [a.b]"),
        ("POST", "secrets", AUTOMATIC, "Field [secret_id] is required."),
        ("POST", "secrets/s/versions/1:disable", {"etag": 3}, "etag"),
        ("POST", "secrets/s/versions/1:destroy", {"force": True}, 'Unknown name "force"'),
        # Query strings and names.
        ("GET", "secrets?page_size=2", None, 'Unknown name "page_size"'),
        ("GET", "secrets?pageSize=-1", None, "page_size"),
        ("GET", "secrets?filter=name:s", None, "filter is not supported"),
        ("GET", "secrets/s/versions/1:access?view=FULL", None, 'Unknown name "view"'),
        ("GET", "secrets/10.0.0.1/versions/latest:access", None, BAD_NAME),
        ("GET", "secrets/s/versions/1.5", None, BAD_NAME),
    ],
)
def test_strict_parse_rejects_bad_requests(
    sm: SecretManagerStandinServer,
    client: SecretManagerServiceClient,
    method: str,
    path: str,
    body: Any,
    fragment: str,
) -> None:
    make_secret(client, "s", b"v1")
    url = f"{sm.url}/v1/{PARENT}/{path}"
    if isinstance(body, str):
        response = requests.request(method, url, data=body, timeout=10)
    else:
        response = requests.request(method, url, json=body, timeout=10)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert fragment in error["message"]
    # Nothing changed: still one version, still enabled.
    assert [v.state for v in client.list_secret_versions(parent=f"{PARENT}/secrets/s")] == [ENABLED]


def test_a_malformed_project_is_resource_project_invalid(
    sm: SecretManagerStandinServer, client: SecretManagerServiceClient
) -> None:
    with pytest.raises(gexc.BadRequest) as refused:
        client.get_secret(name="projects/ab/secrets/s")
    assert message_of(refused.value) == "Invalid resource field value in the request."
    assert refused.value.reason == "RESOURCE_PROJECT_INVALID"


def test_unserved_paths_and_methods(sm: SecretManagerStandinServer) -> None:
    iam = requests.get(f"{sm.url}/v1/{PARENT}/secrets/s:getIamPolicy", timeout=10)
    assert iam.status_code == 404
    assert iam.json()["error"]["status"] == "NOT_FOUND"
    update = requests.patch(f"{sm.url}/v1/{PARENT}/secrets/s", json={}, timeout=10)
    assert update.status_code == 501
    assert update.json()["error"]["status"] == "UNIMPLEMENTED"
    regional = requests.get(f"{sm.url}/v1/{PARENT}/locations/us-central1/secrets", timeout=10)
    assert regional.status_code == 404
    assert sm.call_counts() == {}  # unrouted requests are no method's calls


# ---------------------------------------------------------------------------- counts and faults


def test_the_call_counter_counts_reads_per_method(
    sm: SecretManagerStandinServer, client: SecretManagerServiceClient
) -> None:
    name = make_secret(client, "counted", b"v1")
    assert sm.call_count("AccessSecretVersion") == 0
    for _ in range(3):
        client.access_secret_version(name=f"{name}/versions/latest")
    with pytest.raises(gexc.NotFound):
        client.access_secret_version(name=f"{name}/versions/9")  # refused calls count too
    assert sm.call_count("AccessSecretVersion") == 4
    assert sm.call_counts() == {
        "CreateSecret": 1,
        "AddSecretVersion": 1,
        "AccessSecretVersion": 4,
    }
    with pytest.raises(ValueError, match="unknown method"):
        sm.call_count("AccessSecret")


def test_injected_permission_denied_then_recovery(
    sm: SecretManagerStandinServer, client: SecretManagerServiceClient
) -> None:
    name = make_secret(client, "locked", b"v1")
    sm.fail_next("AccessSecretVersion", count=1, status="PERMISSION_DENIED")
    with pytest.raises(gexc.Forbidden) as denied:
        client.access_secret_version(name=f"{name}/versions/1")
    assert denied.value.code == 403
    assert status_of(denied.value) == "PERMISSION_DENIED"
    assert denied.value.reason == "IAM_PERMISSION_DENIED"
    assert "secretmanager.versions.access" in denied.value.message
    assert sm.pending_faults("AccessSecretVersion") == 0
    assert client.access_secret_version(name=f"{name}/versions/1").payload.data == b"v1"
    assert sm.call_count("AccessSecretVersion") == 2


def test_injected_unavailable_is_retried_by_the_client(
    sm: SecretManagerStandinServer, client: SecretManagerServiceClient
) -> None:
    name = make_secret(client, "flaky", b"v1")
    sm.fail_next("AccessSecretVersion", count=2, status="UNAVAILABLE")
    with pytest.raises(gexc.ServiceUnavailable) as unavailable:
        client.access_secret_version(name=f"{name}/versions/1", retry=None)
    assert unavailable.value.code == 503
    assert sm.pending_faults("AccessSecretVersion") == 1
    # The generated client retries UNAVAILABLE on AccessSecretVersion; a fast policy here.
    read = client.access_secret_version(name=f"{name}/versions/1", retry=FAST_RETRY)
    assert read.payload.data == b"v1"
    assert sm.call_count("AccessSecretVersion") == 3  # 503, 503, 200


def test_an_injected_fault_touches_nothing_and_faults_queue_in_order(
    sm: SecretManagerStandinServer, client: SecretManagerServiceClient
) -> None:
    name = make_secret(client, "queued")
    sm.fail_next("AddSecretVersion", status="UNAVAILABLE")
    sm.fail_next("AddSecretVersion", status="RESOURCE_EXHAUSTED", message="Quota exceeded.")
    with pytest.raises(gexc.ServiceUnavailable):
        client.add_secret_version(parent=name, payload=SecretPayload(data=b"a"))
    with pytest.raises(gexc.TooManyRequests) as exhausted:
        client.add_secret_version(parent=name, payload=SecretPayload(data=b"b"))
    assert message_of(exhausted.value) == "Quota exceeded."
    version = client.add_secret_version(parent=name, payload=SecretPayload(data=b"c"))
    assert version.name == f"{name}/versions/1"  # the refused adds stored nothing
    assert sm.call_count("AddSecretVersion") == 3

    with pytest.raises(ValueError, match="status"):
        sm.fail_next("AccessSecretVersion", status="TEAPOT")
    with pytest.raises(ValueError, match="unknown method"):
        sm.fail_next("ReadSecret")
    with pytest.raises(ValueError, match="count"):
        sm.fail_next("AccessSecretVersion", count=0)

    sm.fail_next("GetSecret", count=5)
    sm.reset()
    assert sm.pending_faults("GetSecret") == 0
    assert sm.call_counts() == {}
    with pytest.raises(gexc.NotFound):  # reset also emptied the store
        client.get_secret(name=name)
