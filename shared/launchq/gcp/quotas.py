"""Read the limits of Vertex's per-region accelerator quotas from the Cloud Quotas API (v1).

A cohort declares the quota its queues share (`launchq.spec.cohorts`); where the deployment may,
admission can also read the limit Google actually enforces, so a declared limit above the real
one (an increase that was not granted, a decrease nobody told the platform team about) does not
send creates that can only be refused. `QuotaReader.read(project, region, metrics)` asks for one
`QuotaInfo` per metric and answers a `QuotaReading`: `limits` (metric → the region's effective
limit) and `unread` (metric → why there is no value). **It never raises into admission**: a
metric it could not read is in `unread`, is logged, and its declared limit stands.

**Permission.** The methods `projects.locations.services.quotaInfos.get` and `.list` both
require the IAM permission `cloudquotas.quotas.get` on the project (Cloud Quotas REST
reference), which the predefined role `roles/cloudquotas.viewer` (Cloud Quotas Viewer) grants.
launchq's Terraform grants it to no account (the dispatcher's custom role holds CustomJob
permissions only, terraform/iam.tf): whoever wants the read grants the role to the account that
admits. Without it every read is a 403 PERMISSION_DENIED: the reader stops after the first one
and reports every metric unread. The
Cloud Quotas API (`cloudquotas.googleapis.com`) must also be enabled; user credentials (local
ADC) additionally need a quota project, or the API answers PERMISSION_DENIED (Cloud Quotas
troubleshooting page). A service account needs neither.

**Quota ids** (`quota_id`). Cloud Quotas names a quota by its id, not by its metric:
`custom_model_training_nvidia_l4_gpus` is limited per region by
`CustomModelTrainingL4GPUsPerProjectPerRegion`. The id drops `nvidia`, spells `GPUs`/`CPUs` in
capitals and is not a mechanical function of the metric (`a100_80gb` → `A10080GB`, `tpu_v5e` →
`V5ETPU`, `tpu_v3` → `V3TPUs`), so it is a table, `QUOTA_ID_TOKENS`. "confirmed": the training id
is in Google's own code (GoogleCloudPlatform/vertex-ai-samples, Model Garden's
`notebook_util/common_util.py`, `get_quota_id`) or in a real API answer or error
(`CustomModelTrainingT4GPUsPerProjectPerRegion` in a Ray-on-Vertex quota error,
`CustomModelTrainingA10080GBGPUsPerProjectPerRegion` read back from a granted quota preference);
"derived": built from the pattern, with the serving id (`CustomModelServing…`, gcloud's Model
Garden utilities) as the only evidence at best. A SPOT job's metric
(`custom_model_training_preemptible_…`) is limited by `CustomModelTrainingPreemptible…`; seen for
T4, A100 and CPUs only. docs/vertex-standin.md ("Cloud Quotas API") lists the sources.

**The value of a region** (`region_limit`). A `QuotaInfo` carries `dimensionsInfos`, most
specific first: an entry for one region (`dimensions: {region: us-central1}`,
`applicableLocations: [us-central1]`) and, for the regions without one, a default entry with no
`region` dimension whose `applicableLocations` lists them (the API's documented rule: an entry
without a dimension applies to every value that has no entry of its own). The region's own entry
wins; then the default entry that lists the region; no entry at all means no value (`unread`,
reason `no_value_in_region`): the declared limit stands. A negative value is unlimited
(`unlimited`): the declared limit stands as well.

**Over REST, hand-written** like `vertex`, `cloudbuild` and `gcs` beside it (`launchq.gcp.rest`):
one GET per quota, `QuotaInfo` read as proto3 JSON. The generated `CloudQuotasClient` would add
two pinned packages to the functions' archive (google-cloud-quotas, grpcio-status) for one GET;
the tests drive the stand-in with that client, and this reader against the same stand-in, so
both read the same wire format. No retry: a failed read is simply a read to do again at the
next interval, and a sweep pass must not wait on it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import requests
from google.auth.exceptions import GoogleAuthError

from launchq.gcp.rest import envelope, session_for
from launchq.log import get_logger
from launchq.spec.accelerators import PREEMPTIBLE_PREFIX, PREFIX, SERVICE

__all__ = [
    "PERMISSION",
    "ROLE",
    "QuotaReader",
    "QuotaReading",
    "Unread",
    "quota_id",
    "quota_id_evidence",
    "reader_for",
    "region_limit",
]

log = get_logger(__name__)

DEFAULT_ENDPOINT = "https://cloudquotas.googleapis.com"
PERMISSION = "cloudquotas.quotas.get"
ROLE = "roles/cloudquotas.viewer"
QUOTA_ID_PREFIX = "CustomModelTraining"
QUOTA_ID_SUFFIX = "PerProjectPerRegion"

Evidence = Literal["confirmed", "derived"]

# Metric suffix (after `custom_model_training_`, or `custom_model_training_preemptible_`) → the
# token between `CustomModelTraining[Preemptible]` and `PerProjectPerRegion`, and what supports
# the on-demand training id (module docstring). Covers every metric of `launchq.spec.accelerators`
# and the CPU metric the stand-in enforces; the integration test fails when a metric is added
# there without a row here.
QUOTA_ID_TOKENS: dict[str, tuple[str, Evidence]] = {
    "cpus": ("CPUs", "derived"),  # only the preemptible twin has been seen
    "nvidia_k80_gpus": ("K80GPUs", "derived"),
    "nvidia_p100_gpus": ("P100GPUs", "confirmed"),
    "nvidia_v100_gpus": ("V100GPUs", "confirmed"),
    "nvidia_p4_gpus": ("P4GPUs", "derived"),
    "nvidia_t4_gpus": ("T4GPUs", "confirmed"),
    "nvidia_a100_gpus": ("A100GPUs", "confirmed"),
    "nvidia_a100_80gb_gpus": ("A10080GBGPUs", "confirmed"),
    "nvidia_l4_gpus": ("L4GPUs", "confirmed"),
    "nvidia_h100_gpus": ("H100GPUs", "confirmed"),
    "nvidia_h100_mega_gpus": ("H100MEGAGPUs", "confirmed"),
    "nvidia_h200_gpus": ("H200GPUs", "confirmed"),
    # Google's table lists B200GPUs, but under the NVIDIA_GB200 key: the token is Google's, the
    # pairing with this metric is ours.
    "nvidia_b200_gpus": ("B200GPUs", "confirmed"),
    "nvidia_gb200_gpus": ("GB200GPUs", "derived"),
    "nvidia_rtx_pro_6000_gpus": ("RTXPRO6000GPUs", "derived"),  # the serving id is public
    "tpu_v2": ("V2TPUs", "derived"),
    "tpu_v3": ("V3TPUs", "confirmed"),
    "tpu_v4_pod": ("V4PODTPUs", "derived"),  # a guess: no v4 id of any kind has been seen
    "tpu_v5e": ("V5ETPU", "confirmed"),
}
# Suffixes whose *preemptible* training id has been seen in a real Cloud Quotas answer.
_PREEMPTIBLE_SEEN = frozenset({"cpus", "nvidia_t4_gpus", "nvidia_a100_gpus"})

# How Google's front end maps an HTTP status to a google.rpc status, for an answer without an
# envelope (a proxy's 503, say).
_STATUS_FOR_HTTP: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
# Statuses that say nothing about one quota but about the caller, the project or the service:
# asking for the next metric would get the same answer, so a read stops at the first one.
_STOPPING = frozenset(
    {
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
        "UNAVAILABLE",
        "DEADLINE_EXCEEDED",
        "RESOURCE_EXHAUSTED",
    }
)


def _split(metric: str) -> tuple[str, bool] | None:
    """(suffix, preemptible) of a bare or `aiplatform.googleapis.com/`-prefixed metric."""
    bare = metric.strip().removeprefix(f"{SERVICE}/")
    if bare.startswith(PREEMPTIBLE_PREFIX):
        return bare.removeprefix(PREEMPTIBLE_PREFIX), True
    if bare.startswith(PREFIX):
        return bare.removeprefix(PREFIX), False
    return None


def quota_id(metric: str) -> str | None:
    """The Cloud Quotas id of Vertex's per-project, per-region quota on `metric`.

    `custom_model_training_nvidia_l4_gpus` → `CustomModelTrainingL4GPUsPerProjectPerRegion`,
    `custom_model_training_preemptible_nvidia_t4_gpus` →
    `CustomModelTrainingPreemptibleT4GPUsPerProjectPerRegion`. The metric may carry its
    `aiplatform.googleapis.com/` prefix. None for a metric this table does not know.
    """
    split = _split(metric)
    if split is None or split[0] not in QUOTA_ID_TOKENS:
        return None
    suffix, preemptible = split
    token = QUOTA_ID_TOKENS[suffix][0]
    return f"{QUOTA_ID_PREFIX}{'Preemptible' if preemptible else ''}{token}{QUOTA_ID_SUFFIX}"


def quota_id_evidence(metric: str) -> Evidence | None:
    """Whether `quota_id(metric)` has been seen ("confirmed") or follows the pattern ("derived")."""
    split = _split(metric)
    if split is None or split[0] not in QUOTA_ID_TOKENS:
        return None
    suffix, preemptible = split
    if preemptible:
        return "confirmed" if suffix in _PREEMPTIBLE_SEEN else "derived"
    return QUOTA_ID_TOKENS[suffix][1]


def bare_metric(metric: str) -> str:
    """`aiplatform.googleapis.com/custom_model_training_cpus` → `custom_model_training_cpus`."""
    return metric.strip().removeprefix(f"{SERVICE}/")


def region_limit(info: Mapping[str, Any], region: str) -> int | None:
    """The value of a `QuotaInfo` (proto3 JSON) in effect in `region`, or None.

    The entry for the region itself first, then a default entry (no `region` dimension) whose
    `applicableLocations` lists it. Entries narrowed by another dimension (a model, a VM
    family) limit a part of the quota only and are skipped.
    """
    default: int | None = None
    for entry in info.get("dimensionsInfos") or []:
        dimensions = dict(entry.get("dimensions") or {})
        if set(dimensions) - {"region"}:
            continue
        value = int((entry.get("details") or {}).get("value") or 0)  # int64: a JSON string
        if dimensions.get("region") == region:
            return value
        default_entry = "region" not in dimensions and region in (
            entry.get("applicableLocations") or []
        )
        if default_entry and default is None:
            default = value
    return default


UnreadReason = Literal["unknown_metric", "error", "no_value_in_region", "unlimited"]


@dataclass(frozen=True)
class Unread:
    """Why a metric has no value in a reading; its declared limit stands.

    `status`: the google.rpc status name of an error answer (`PERMISSION_DENIED`, `NOT_FOUND`),
    "" when there was no answer at all or no error.
    """

    reason: UnreadReason
    detail: str
    status: str = ""


@dataclass(frozen=True)
class QuotaReading:
    """One read of a region's quotas: every metric asked for is in exactly one of the two."""

    project: str
    region: str
    limits: Mapping[str, int] = field(default_factory=dict)
    unread: Mapping[str, Unread] = field(default_factory=dict)


@dataclass
class QuotaReader:
    """Reads quota limits through one Cloud Quotas endpoint (Google's, or the local stand-in).

    An `http://` endpoint is the local stand-in: no credentials, as `launchq.gcp.rest` does for
    the Vertex stand-in. Anything else uses Application Default Credentials. The session is
    built on the first read.
    """

    endpoint: str = DEFAULT_ENDPOINT
    timeout: float = 10.0
    _session: requests.Session | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def read(self, project: str, region: str, metrics: Iterable[str]) -> QuotaReading:
        """The region's effective limit of each metric (bare, or with the service prefix; the
        reading's keys are bare). Never raises for what the API or the network answers."""
        wanted = sorted({bare_metric(m) for m in metrics})
        limits: dict[str, int] = {}
        unread: dict[str, Unread] = {}
        stop: Unread | None = None
        for metric in wanted:
            qid = quota_id(metric)
            if qid is None:
                unread[metric] = Unread("unknown_metric", f"no Cloud Quotas id known for {metric}")
                continue
            if stop is not None:
                unread[metric] = Unread("error", f"not asked after: {stop.detail}", stop.status)
                continue
            name = f"projects/{project}/locations/global/services/{SERVICE}/quotaInfos/{qid}"
            info, failure = self._get(name)
            if failure is not None:
                unread[metric] = failure
                if failure.status in _STOPPING or not failure.status:
                    stop = failure
                continue
            value = region_limit(info, region)
            if value is None:
                detail = f"{qid} has no value for {region}"
                unread[metric] = Unread("no_value_in_region", detail)
            elif value < 0:
                unread[metric] = Unread("unlimited", f"{qid} is unlimited in {region}")
            else:
                limits[metric] = value
        reading = QuotaReading(project, region, limits, unread)
        if unread:
            log.warning(
                "quota limits not read; the declared limits stand",
                project=project,
                region=region,
                read=limits,
                unread={m: u.status or u.reason for m, u in unread.items()},
                detail=next(iter(unread.values())).detail,
                permission=PERMISSION if _denied(unread) else None,
            )
        else:
            log.info("quota limits read", project=project, region=region, read=limits)
        return reading

    def _get(self, name: str) -> tuple[Mapping[str, Any], Unread | None]:
        try:
            response = self.session().get(
                f"{self.endpoint.rstrip('/')}/v1/{name}", timeout=self.timeout
            )
        except requests.RequestException as exc:
            # No answer (refused, reset, timed out): nothing about the quota.
            return {}, Unread("error", f"{name}: no answer: {exc}")
        except GoogleAuthError as exc:
            # No credentials (no ADC on this machine) or a token refresh that failed.
            return {}, Unread("error", f"{name}: no credentials: {exc}")
        if response.status_code >= 400:
            status, message, _ = envelope(response)
            if status == "UNKNOWN":  # no envelope (a proxy's answer): Google's mapping
                status = _STATUS_FOR_HTTP.get(response.status_code, f"HTTP_{response.status_code}")
            return {}, Unread("error", f"{name}: {message}", status)
        try:
            info = response.json()
        except ValueError:
            return {}, Unread("error", f"{name}: not JSON: {response.text[:200]}")
        return (info if isinstance(info, dict) else {}), None

    def session(self) -> requests.Session:
        """One pooled session (credentials from ADC unless the endpoint is a local stand-in)."""
        with self._lock:
            if self._session is None:
                self._session = session_for(self.endpoint)
            return self._session


def _denied(unread: Mapping[str, Unread]) -> bool:
    return any(u.status == "PERMISSION_DENIED" for u in unread.values())


_readers: dict[str, QuotaReader] = {}
_readers_lock = threading.Lock()


def reader_for(endpoint: str = DEFAULT_ENDPOINT, timeout: float = 10.0) -> QuotaReader:
    """A cached reader per endpoint, so warm invocations reuse the client and its connections."""
    with _readers_lock:
        reader = _readers.get(endpoint)
        if reader is None:
            reader = QuotaReader(endpoint, timeout)
            _readers[endpoint] = reader
        return reader
