"""The stand-in's Cloud Quotas API v1 through the unmodified generated `CloudQuotasClient` (REST),
and launchq's reader (`launchq.gcp.quotas`) against it and against answers it cannot give."""

from __future__ import annotations

import json
import logging
import math
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1 import types as vertex
from google.cloud.aiplatform_v1.services.job_service import JobServiceClient
from google.cloud.cloudquotas_v1 import CloudQuotasClient, types

from launchq.gcp.quotas import (
    PERMISSION,
    QuotaReader,
    quota_id,
    quota_id_evidence,
    region_limit,
)
from launchq.spec.accelerators import ACCELERATOR_METRIC_NAMES
from launchq_local.httpserver import BackgroundServer
from launchq_local.standin import AdminClient, StandinServer
from launchq_local.standin.cloudquotas import QUOTA_IDS, REGIONS
from launchq_local.standin.limits import CPU_METRIC, KNOWN_METRICS
from launchq_local.standin.names import project_number
from tests.fixtures.standin import TEST_LOCATION, TEST_PROJECT, make_job

pytestmark = pytest.mark.integration

SERVICE = "aiplatform.googleapis.com"
L4 = "custom_model_training_nvidia_l4_gpus"
A100 = "custom_model_training_nvidia_a100_gpus"
T4 = "custom_model_training_nvidia_t4_gpus"
SPOT_T4 = "custom_model_training_preemptible_nvidia_t4_gpus"
L4_ID = "CustomModelTrainingL4GPUsPerProjectPerRegion"
PARENT = f"projects/{TEST_PROJECT}/locations/global/services/{SERVICE}"


def info_name(qid: str, project: str = TEST_PROJECT) -> str:
    return f"projects/{project}/locations/global/services/{SERVICE}/quotaInfos/{qid}"


@pytest.fixture(scope="module")
def _quotas_client(standin_server: StandinServer) -> CloudQuotasClient:
    return CloudQuotasClient(
        transport="rest",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=standin_server.url),
    )


@pytest.fixture
def quotas_client(standin: StandinServer, _quotas_client: CloudQuotasClient) -> CloudQuotasClient:
    """The generated client pointed at a freshly reset stand-in (no limits)."""
    return _quotas_client


def by_region(info: types.QuotaInfo) -> dict[str, int]:
    return {entry.dimensions["region"]: entry.details.value for entry in info.dimensions_infos}


# ---- the Cloud Quotas surface, through the generated client ------------------------------


def test_get_quota_info_reports_the_configured_limit_in_every_region(
    quotas_client: CloudQuotasClient, standin_admin: AdminClient
) -> None:
    standin_admin.set_limits(quotas={L4: 16, A100: 8})
    info = quotas_client.get_quota_info(name=info_name(L4_ID))
    # Names come back with the project number, as the Vertex surface's do.
    assert info.name == info_name(L4_ID, project_number(TEST_PROJECT))
    assert info.quota_id == L4_ID
    assert info.metric == f"{SERVICE}/{L4}"
    assert info.service == SERVICE
    assert info.container_type == types.QuotaInfo.ContainerType.PROJECT
    assert list(info.dimensions) == ["region"]
    assert info.is_precise
    assert not info.is_concurrent
    assert not info.refresh_interval  # an allocation quota, not a rate
    assert info.quota_display_name == "Custom model training Nvidia L4 GPUs per region"
    entries = list(info.dimensions_infos)
    assert [e.dimensions["region"] for e in entries] == list(REGIONS)
    for entry in entries:
        assert list(entry.applicable_locations) == [entry.dimensions["region"]]
    assert by_region(info)[TEST_LOCATION] == 16
    assert set(by_region(info).values()) == {16}
    # Another metric's quota carries its own limit, not the first one's.
    a100 = quotas_client.get_quota_info(name=info_name(quota_id(A100) or ""))
    assert set(by_region(a100).values()) == {8}


def test_the_reported_limit_is_the_one_a_create_is_refused_against(
    quotas_client: CloudQuotasClient,
    job_client: JobServiceClient,
    standin_parent: str,
    standin_admin: AdminClient,
) -> None:
    standin_admin.set_delays(running=None)
    standin_admin.set_limits(quotas={L4: 2})
    limit = by_region(quotas_client.get_quota_info(name=info_name(L4_ID)))[TEST_LOCATION]
    machine = vertex.MachineSpec(
        machine_type="g2-standard-8",
        accelerator_type=vertex.AcceleratorType.NVIDIA_L4,
        accelerator_count=1,
    )
    for _ in range(limit):
        job_client.create_custom_job(
            parent=standin_parent, custom_job=make_job(machine_spec=machine)
        )
    with pytest.raises(exceptions.TooManyRequests, match=L4):
        job_client.create_custom_job(
            parent=standin_parent, custom_job=make_job(machine_spec=machine)
        )
    assert len(standin_admin.jobs()) == limit == 2


def test_a_changed_limit_shows_at_once_and_no_limit_means_no_entry(
    quotas_client: CloudQuotasClient, standin_admin: AdminClient
) -> None:
    name = info_name(L4_ID)
    assert list(quotas_client.get_quota_info(name=name).dimensions_infos) == []
    standin_admin.set_limits(quotas={L4: 16})
    assert by_region(quotas_client.get_quota_info(name=name))[TEST_LOCATION] == 16
    standin_admin.set_limits(quotas={L4: 4})
    assert set(by_region(quotas_client.get_quota_info(name=name)).values()) == {4}
    standin_admin.set_limits(quotas={A100: 4})  # L4 unlimited again: no value anywhere
    info = quotas_client.get_quota_info(name=name)
    assert list(info.dimensions_infos) == []
    assert info.quota_id == L4_ID  # the quota still exists


def test_list_quota_infos_pages_through_every_quota_once(
    quotas_client: CloudQuotasClient, standin_admin: AdminClient
) -> None:
    standin_admin.set_limits(quotas={L4: 16})
    pager = quotas_client.list_quota_infos(request={"parent": PARENT, "page_size": 10})
    pages = list(pager.pages)
    sizes = [len(page.quota_infos) for page in pages]
    assert len(pages) == math.ceil(len(QUOTA_IDS) / 10) > 1
    assert all(size == 10 for size in sizes[:-1])
    assert 0 < sizes[-1] <= 10
    assert pages[-1].next_page_token == ""
    ids = [info.quota_id for page in pages for info in page.quota_infos]
    assert ids == sorted(QUOTA_IDS) == sorted(set(ids))
    infos = {info.quota_id: info for page in pages for info in page.quota_infos}
    assert by_region(infos[L4_ID])[TEST_LOCATION] == 16
    assert list(infos[quota_id(A100) or ""].dimensions_infos) == []
    # The pager follows the tokens by itself too.
    assert len(list(quotas_client.list_quota_infos(parent=PARENT))) == len(QUOTA_IDS)


def test_an_unknown_quota_id_is_not_found_in_googles_envelope(
    quotas_client: CloudQuotasClient, standin: StandinServer
) -> None:
    with pytest.raises(exceptions.NotFound) as caught:
        quotas_client.get_quota_info(
            name=info_name("CustomModelTrainingNvidiaL4GpusPerProjectPerRegion")
        )
    assert caught.value.code == 404
    raw = requests.get(f"{standin.url}/v1/{info_name('NoSuchQuota')}", timeout=5)
    assert raw.status_code == 404
    error = raw.json()["error"]
    assert error["status"] == "NOT_FOUND"
    assert error["code"] == 404
    assert "NoSuchQuota" in error["message"]


def test_other_services_locations_and_bad_parameters_are_refused(
    quotas_client: CloudQuotasClient, standin: StandinServer
) -> None:
    compute = f"projects/{TEST_PROJECT}/locations/global/services/compute.googleapis.com"
    with pytest.raises(exceptions.NotFound, match="not served"):
        quotas_client.get_quota_info(name=f"{compute}/quotaInfos/CpusPerProjectPerRegion")
    regional = f"projects/{TEST_PROJECT}/locations/us-central1/services/{SERVICE}"
    with pytest.raises(exceptions.BadRequest, match="global"):
        quotas_client.get_quota_info(name=f"{regional}/quotaInfos/{L4_ID}")
    url = f"{standin.url}/v1/{PARENT}/quotaInfos"
    for params in ({"pageToken": "not-a-token"}, {"page_size": "5"}, {"pageSize": "-1"}):
        answer = requests.get(url, params=params, timeout=5)
        assert answer.status_code == 400, params
        assert answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    # A token is bound to its project's listing.
    first = requests.get(url, params={"pageSize": 1}, timeout=5).json()
    other = url.replace(TEST_PROJECT, "other-project")
    answer = requests.get(other, params={"pageToken": first["nextPageToken"]}, timeout=5)
    assert answer.status_code == 400


def test_the_wire_shape_is_proto3_json(standin: StandinServer, standin_admin: AdminClient) -> None:
    standin_admin.set_limits(quotas={L4: 16})
    url = f"{standin.url}/v1/{info_name(L4_ID)}"
    body = requests.get(url, timeout=5).json()
    assert body["containerType"] == "PROJECT"
    entry = next(e for e in body["dimensionsInfos"] if e["applicableLocations"] == [TEST_LOCATION])
    assert entry == {
        "dimensions": {"region": TEST_LOCATION},
        "details": {"value": "16"},  # int64 as a string
        "applicableLocations": [TEST_LOCATION],
    }
    assert "isFixed" not in body  # false: left out, as proto3 JSON does
    ints = requests.get(url, params={"$alt": "json;enum-encoding=int"}, timeout=5).json()
    assert ints["containerType"] == 1


# ---- the quota ids ----------------------------------------------------------------------


def test_every_metric_launchq_knows_has_a_distinct_quota_id() -> None:
    metrics = set(KNOWN_METRICS) | set(ACCELERATOR_METRIC_NAMES)
    ids = {metric: quota_id(metric) for metric in metrics}
    assert all(ids.values()), [m for m, qid in ids.items() if qid is None]
    assert len(set(ids.values())) == len(metrics)
    for metric, qid in ids.items():
        assert qid is not None
        assert qid.startswith("CustomModelTraining")
        assert qid.endswith("PerProjectPerRegion")
        assert ("Preemptible" in qid) == ("preemptible" in metric)
        assert quota_id_evidence(metric) in ("confirmed", "derived")
    assert set(QUOTA_IDS.values()) == set(KNOWN_METRICS)


@pytest.mark.parametrize(
    ("metric", "expected", "evidence"),
    [
        (L4, "CustomModelTrainingL4GPUsPerProjectPerRegion", "confirmed"),
        (T4, "CustomModelTrainingT4GPUsPerProjectPerRegion", "confirmed"),
        (SPOT_T4, "CustomModelTrainingPreemptibleT4GPUsPerProjectPerRegion", "confirmed"),
        (
            "custom_model_training_nvidia_a100_80gb_gpus",
            "CustomModelTrainingA10080GBGPUsPerProjectPerRegion",
            "confirmed",
        ),
        (
            "custom_model_training_tpu_v5e",
            "CustomModelTrainingV5ETPUPerProjectPerRegion",
            "confirmed",
        ),
        (CPU_METRIC, "CustomModelTrainingCPUsPerProjectPerRegion", "derived"),
        (
            "custom_model_training_preemptible_cpus",
            "CustomModelTrainingPreemptibleCPUsPerProjectPerRegion",
            "confirmed",
        ),
        (f"{SERVICE}/{L4}", "CustomModelTrainingL4GPUsPerProjectPerRegion", "confirmed"),
    ],
)
def test_quota_ids_follow_googles_spelling(metric: str, expected: str, evidence: str) -> None:
    assert quota_id(metric) == expected
    assert quota_id_evidence(metric) == evidence


def test_a_metric_outside_the_table_has_no_quota_id() -> None:
    assert quota_id("custom_model_training_nvidia_x9_gpus") is None
    assert quota_id("online_prediction_requests_per_base_model") is None
    assert quota_id_evidence("custom_model_training_nvidia_x9_gpus") is None


# ---- the reader ------------------------------------------------------------------------


def test_the_reader_returns_the_regions_limits_and_names_what_it_could_not_read(
    standin: StandinServer, standin_admin: AdminClient, caplog: pytest.LogCaptureFixture
) -> None:
    standin_admin.set_limits(quotas={L4: 16, A100: 8, SPOT_T4: 3})
    reader = QuotaReader(standin.url, timeout=5)
    wanted = [L4, f"{SERVICE}/{A100}", T4, SPOT_T4, "custom_model_training_nvidia_x9_gpus"]
    with caplog.at_level(logging.WARNING, logger="launchq.gcp.quotas"):
        reading = reader.read(TEST_PROJECT, TEST_LOCATION, wanted)
    assert reading.limits == {L4: 16, A100: 8, SPOT_T4: 3}
    assert {m: u.reason for m, u in reading.unread.items()} == {
        T4: "no_value_in_region",  # no limit configured: the declared one stands
        "custom_model_training_nvidia_x9_gpus": "unknown_metric",
    }
    warning = next(r for r in caplog.records if r.levelno == logging.WARNING)
    assert warning.launchq_context["unread"] == {  # type: ignore[attr-defined]
        T4: "no_value_in_region",
        "custom_model_training_nvidia_x9_gpus": "unknown_metric",
    }
    # The same reader sees a changed limit: values are read, never cached.
    standin_admin.set_limits(quotas={L4: 4})
    assert reader.read(TEST_PROJECT, TEST_LOCATION, [L4]).limits == {L4: 4}
    # A region the quota has no entry for: nothing read, nothing raised.
    elsewhere = reader.read(TEST_PROJECT, "us-nowhere1", [L4])
    assert elsewhere.limits == {}
    assert elsewhere.unread[L4].reason == "no_value_in_region"


class Scripted(BackgroundServer):
    """A Cloud Quotas endpoint that answers what a test scripts, and counts the requests: the
    answers the stand-in never gives (403, an unlimited value, the live API's default entry)."""

    title = "scripted cloudquotas"

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status, self.body, self.paths = status, body, list[str]()
        super().__init__(self._app)

    def _app(self, environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        self.paths.append(str(environ["PATH_INFO"]))
        reason = {200: "OK", 403: "Forbidden", 404: "Not Found", 503: "Service Unavailable"}
        start_response(
            f"{self.status} {reason[self.status]}", [("Content-Type", "application/json")]
        )
        yield json.dumps(self.body).encode()


def envelope(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "status": status, "message": message}}


def test_permission_denied_stops_the_read_and_raises_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    denied = envelope(403, "PERMISSION_DENIED", f"Permission '{PERMISSION}' denied on resource.")
    with Scripted(403, denied) as server, caplog.at_level(logging.WARNING):
        reading = QuotaReader(server.url, timeout=5).read(
            TEST_PROJECT, TEST_LOCATION, [L4, A100, T4]
        )
    assert reading.limits == {}
    assert set(reading.unread) == {L4, A100, T4}
    assert {u.status for u in reading.unread.values()} == {"PERMISSION_DENIED"}
    assert {u.reason for u in reading.unread.values()} == {"error"}
    assert len(server.paths) == 1  # the project-wide refusal is not asked again per metric
    warning = next(r for r in caplog.records if r.name == "launchq.gcp.quotas")
    assert warning.launchq_context["permission"] == PERMISSION  # type: ignore[attr-defined]


def test_not_found_is_per_quota_and_every_metric_is_still_asked() -> None:
    missing = envelope(404, "NOT_FOUND", "Quota does not exist.")
    with Scripted(404, missing) as server:
        reading = QuotaReader(server.url, timeout=5).read(TEST_PROJECT, TEST_LOCATION, [L4, A100])
    assert reading.limits == {}
    assert {u.status for u in reading.unread.values()} == {"NOT_FOUND"}
    assert sorted(server.paths) == sorted(f"/v1/{info_name(quota_id(m) or '')}" for m in (L4, A100))


def test_unavailable_and_no_answer_raise_nothing() -> None:
    busy = envelope(503, "UNAVAILABLE", "The service is currently unavailable.")
    with Scripted(503, busy) as server:
        reading = QuotaReader(server.url, timeout=5).read(TEST_PROJECT, TEST_LOCATION, [L4, A100])
    assert {u.status for u in reading.unread.values()} == {"UNAVAILABLE"}
    assert len(server.paths) == 1  # no retry, no second metric
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = QuotaReader(f"http://127.0.0.1:{port}", timeout=5)
    reading = closed.read(TEST_PROJECT, TEST_LOCATION, [L4, A100])
    assert reading.limits == {}
    assert {u.reason for u in reading.unread.values()} == {"error"}
    assert all("no answer" in u.detail for u in reading.unread.values())


def test_the_live_apis_default_entry_and_an_unlimited_value() -> None:
    """The shape the live API gives a regional quota: overrides per region, then one entry
    without dimensions for the other regions; -1 is unlimited."""
    info = {
        "name": info_name(L4_ID),
        "quotaId": L4_ID,
        "dimensions": ["region"],
        "dimensionsInfos": [
            {
                "dimensions": {"region": "europe-west4"},
                "details": {"value": "-1"},
                "applicableLocations": ["europe-west4"],
            },
            {
                "dimensions": {"region": "us-central1", "model": "some-model"},
                "details": {"value": "99"},
                "applicableLocations": ["us-central1"],
            },
            {"details": {"value": "12"}, "applicableLocations": ["us-central1", "us-east1"]},
        ],
    }
    with Scripted(200, info) as server:
        reader = QuotaReader(server.url, timeout=5)
        assert reader.read(TEST_PROJECT, "us-central1", [L4]).limits == {L4: 12}
        assert reader.read(TEST_PROJECT, "europe-west4", [L4]).unread[L4].reason == "unlimited"
        assert reader.read(TEST_PROJECT, "asia-east1", [L4]).unread[L4].reason == (
            "no_value_in_region"
        )
    # The same JSON read back by the generated client's message type, and written out again as
    # the client would send it: the reader's shape is the wire's.
    wire = json.loads(types.QuotaInfo.to_json(types.QuotaInfo.from_json(json.dumps(info))))
    assert region_limit(wire, "us-east1") == 12
    assert region_limit(wire, "europe-west4") == -1
    assert region_limit(wire, "asia-east1") is None
