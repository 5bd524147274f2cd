"""Cloud Quotas API v1 for `aiplatform.googleapis.com`, served from the stand-in's own quotas.

There is no emulator of Cloud Quotas. The stand-in answers its two read methods on the same port
as the Vertex surface, for the service `aiplatform.googleapis.com` only:

    GET /v1/projects/{project}/locations/global/services/aiplatform.googleapis.com/quotaInfos/{id}
    GET /v1/projects/{project}/locations/global/services/aiplatform.googleapis.com/quotaInfos
        ?pageSize=&pageToken=

Every answer is built from the limits the stand-in enforces (`limits.Limits.quotas`, set with
`--quota`, `PUT /emulator/v1/limits` or `StandinServer(limits=…)`), at the moment of the call:
the quota a create is refused against and the quota a reader is told are the same number, and a
changed limit shows at once. The stand-in enforces one limit per metric in *every* region; it
reports it as one `dimensionsInfos` entry per region of `REGIONS` (`dimensions: {region: R}`,
`applicableLocations: [R]`, `details.value`). A metric with no limit (unlimited in the stand-in)
is reported with no entry at all, and so is any region outside `REGIONS`: a reader then has no
value for the region (`launchq.gcp.quotas` keeps the declared limit).

Messages are the generated `google.cloud.cloudquotas_v1` types, serialized as the Vertex surface
serializes its own (proto3 JSON: camelCase, int64 as strings, defaults left out, enum names
unless `$alt=json;enum-encoding=int`), and errors are Google's envelope (`wire.ApiError`). The
quota ids come from `launchq.gcp.quotas.quota_id`, the table the reader uses. What is confirmed
about the shapes and what is inferred is in docs/vertex-standin.md ("Cloud Quotas API"); the
error wordings here are inferred. These calls are not counted and take no injected faults (the
fault book is the Vertex surface's).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from google.cloud.cloudquotas_v1 import types
from werkzeug.wrappers import Request, Response

from launchq.gcp.quotas import quota_id
from launchq.spec.accelerators import SERVICE
from launchq_local.standin.api import check_query, page_size, respond
from launchq_local.standin.jobs import JobStore
from launchq_local.standin.limits import KNOWN_METRICS
from launchq_local.standin.names import parent_from
from launchq_local.standin.wire import ApiError, invalid_argument

# The regions a quota is reported for: Vertex AI's regions as of this writing (from its locations
# page, not re-checked; a stand-in needs plausible names, not the exact list). The stand-in
# accepts any location name in a job's parent; a region missing here is still enforced, just
# not reported.
REGIONS: tuple[str, ...] = (
    "africa-south1",
    "asia-east1",
    "asia-east2",
    "asia-northeast1",
    "asia-northeast2",
    "asia-northeast3",
    "asia-south1",
    "asia-southeast1",
    "asia-southeast2",
    "australia-southeast1",
    "australia-southeast2",
    "europe-central2",
    "europe-north1",
    "europe-southwest1",
    "europe-west1",
    "europe-west2",
    "europe-west3",
    "europe-west4",
    "europe-west6",
    "europe-west8",
    "europe-west9",
    "europe-west12",
    "me-central1",
    "me-central2",
    "me-west1",
    "northamerica-northeast1",
    "northamerica-northeast2",
    "southamerica-east1",
    "southamerica-west1",
    "us-central1",
    "us-east1",
    "us-east4",
    "us-east5",
    "us-south1",
    "us-west1",
    "us-west2",
    "us-west3",
    "us-west4",
)
_LIST_PARAMS = ("pageSize", "pageToken")
# Display names: the metric's words with plausible capitalisation (inferred, never compared).
_WORDS = {"nvidia": "Nvidia", "gpus": "GPUs", "cpus": "CPUs", "tpu": "TPU", "rtx": "RTX"}


def _quota_ids() -> dict[str, str]:
    """Quota id → bare metric, for every metric the stand-in enforces, sorted by id. A metric
    the id table does not know yet is left out (enforced, not reported) rather than failing the
    import: tests/integration/test_cloudquotas_standin.py fails on the gap instead."""
    found = {quota_id(metric): metric for metric in KNOWN_METRICS}
    return {qid: found[qid] for qid in sorted(q for q in found if q is not None)}


QUOTA_IDS: dict[str, str] = _quota_ids()


def _metric_display(metric: str) -> str:
    """`custom_model_training_nvidia_l4_gpus` → `Custom model training Nvidia L4 GPUs`."""
    words = [_shown(word) for word in metric.split("_")]
    words[0] = words[0].capitalize()
    return " ".join(words)


def _shown(word: str) -> str:
    return _WORDS.get(word) or (word.upper() if any(c.isdigit() for c in word) else word)


def quota_info(number: str, qid: str, quotas: dict[str, int]) -> types.QuotaInfo:
    """The `QuotaInfo` of quota `qid` for project `number`, with the stand-in's limits."""
    metric = QUOTA_IDS[qid]
    limit = quotas.get(metric)
    entries = (
        []
        if limit is None
        else [
            types.DimensionsInfo(
                dimensions={"region": region},
                details=types.QuotaDetails(value=limit),
                applicable_locations=[region],
            )
            for region in REGIONS
        ]
    )
    display = _metric_display(metric)
    return types.QuotaInfo(
        name=f"projects/{number}/locations/global/services/{SERVICE}/quotaInfos/{qid}",
        quota_id=qid,
        metric=f"{SERVICE}/{metric}",
        service=SERVICE,
        # An allocation quota (held while a job is active), tracked exactly; not a rate, so no
        # refresh interval, and not a count of operations in flight, so not "concurrent".
        is_precise=True,
        container_type=types.QuotaInfo.ContainerType.PROJECT,
        dimensions=["region"],
        metric_display_name=display,
        quota_display_name=f"{display} per region",
        metric_unit="1",
        quota_increase_eligibility=types.QuotaIncreaseEligibility(is_eligible=True),
        is_fixed=False,
        dimensions_infos=entries,
    )


def _container(project: str, location: str, service: str, field: str) -> str:
    """The project number of a `projects/{p}/locations/global/services/{s}` path; 4xx else."""
    parent = parent_from(project, location, field)
    if location != "global":
        raise invalid_argument(
            field, f"Invalid location '{location}': the location of quota infos must be 'global'."
        )
    if service != SERVICE:
        raise ApiError(
            "NOT_FOUND",
            f"Service '{service}' is not served by the local stand-in (it serves {SERVICE}).",
        )
    return parent.number


def _pb(message: Any) -> Any:
    return type(message).pb(message)


def get(
    store: JobStore, request: Request, project: str, location: str, service: str, quota: str
) -> Response:
    """CloudQuotas.GetQuotaInfo."""
    check_query(request)
    number = _container(project, location, service, "name")
    if quota not in QUOTA_IDS:
        raise ApiError(
            "NOT_FOUND",
            f"Quota '{quota}' does not exist or is not visible in the service '{SERVICE}'.",
        )
    return respond(request, _pb(quota_info(number, quota, dict(store.limits.quotas))))


def encode_token(number: str, after: str) -> str:
    raw = json.dumps({"p": number, "a": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_token(token: str, number: str) -> str:
    """The quota id a page continues after; a token of another project, or no token at all, is
    a 400 (a page token is opaque and bound to its listing)."""
    try:
        body = json.loads(base64.urlsafe_b64decode(token.encode()))
        after = body["a"] if body["p"] == number else None
    except (binascii.Error, ValueError, TypeError, KeyError):
        after = None
    if not isinstance(after, str):
        raise invalid_argument("page_token", "Invalid page token.")
    return after


def list_infos(
    store: JobStore, request: Request, project: str, location: str, service: str
) -> Response:
    """CloudQuotas.ListQuotaInfos: every quota, by quota id, `pageSize` at a time."""
    check_query(request, _LIST_PARAMS)
    number = _container(project, location, service, "parent")
    size = page_size(request.args.get("pageSize"))
    token = request.args.get("pageToken", "")
    after = decode_token(token, number) if token else ""
    ids = [qid for qid in QUOTA_IDS if qid > after]
    page, rest = ids[:size], ids[size:]
    quotas = dict(store.limits.quotas)
    response = types.ListQuotaInfosResponse(
        quota_infos=[quota_info(number, qid, quotas) for qid in page],
        next_page_token=encode_token(number, page[-1]) if rest else "",
    )
    return respond(request, _pb(response))
