"""Handlers for the Vertex AI v1 CustomJob REST surface (`/v1/projects/*/locations/*/...`).

Each handler checks the query string as strictly as the request body: Google's front end answers
400 for a query parameter that binds to no request field, so a typo such as `page_size` (instead
of `pageSize`) fails here as it would against Vertex, instead of being silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.cloud.aiplatform_v1 import types
from werkzeug.wrappers import Request, Response

from launchq_local.standin.filters import compile_filter
from launchq_local.standin.jobs import (
    CustomJobPb,
    JobStore,
    decode_token,
    encode_token,
    query_fingerprint,
)
from launchq_local.standin.masks import parse_read_mask, trim
from launchq_local.standin.names import job_id_from, parent_from
from launchq_local.standin.validation import clear_output_only, validate_custom_job
from launchq_local.standin.wire import (
    ApiError,
    invalid_argument,
    load_json_object,
    parse_message,
    to_json,
    wants_int_enums,
)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_SYSTEM_PARAMS = frozenset(
    {
        "$alt",
        "alt",
        "$fields",
        "fields",
        "$prettyPrint",
        "prettyPrint",
        "key",
        "quotaUser",
        "$quotaUser",
        "$callback",
        "callback",
        "access_token",
        "$.xgafv",
    }
)
_LIST_PARAMS = ("filter", "pageSize", "pageToken", "readMask")
_ListResponsePb: Any = type(types.ListCustomJobsResponse.pb(types.ListCustomJobsResponse()))
_CancelRequestPb: Any = type(types.CancelCustomJobRequest.pb(types.CancelCustomJobRequest()))


def respond(request: Request, message: Any) -> Response:
    body = to_json(message, wants_int_enums(request.args.get("$alt") or request.args.get("alt")))
    return Response(body, 200, content_type="application/json; charset=UTF-8")


def check_query(request: Request, allowed: Iterable[str] = ()) -> None:
    permitted = _SYSTEM_PARAMS.union(allowed)
    for key in request.args:
        if key not in permitted:
            message = (
                f'Invalid JSON payload received. Unknown name "{key}": Cannot bind query '
                f"parameter. Field '{key}' could not be found in request message."
            )
            raise invalid_argument(key, message)


def create(store: JobStore, request: Request, project: str, location: str) -> Response:
    check_query(request)
    parent = parent_from(project, location)
    store.charge_create(parent)
    body = load_json_object(request.get_data(), "custom_job")
    job = parse_message(body, CustomJobPb(), "custom_job")
    clear_output_only(job)
    validate_custom_job(job)
    return respond(request, store.create(parent, job))


def get(store: JobStore, request: Request, project: str, location: str, job: str) -> Response:
    check_query(request)
    parent = parent_from(project, location, "name")
    return respond(request, store.get(parent, job_id_from(parent, job)))


def page_size(
    raw: str | None, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE
) -> int:
    """A list call's `pageSize`, as Google's list methods read it (Vertex's, Cloud Quotas',
    Secret Manager's): absent or 0 is the server's `default`, above `maximum` is `maximum`."""
    if raw is None or raw == "":
        return default
    try:
        size = int(raw)
    except ValueError:
        raise invalid_argument(
            "page_size", f"Invalid value at 'page_size' (TYPE_INT32), \"{raw}\""
        ) from None
    if size < 0:
        raise invalid_argument("page_size", "page_size must not be negative.")
    return min(size or default, maximum)


def list_jobs(store: JobStore, request: Request, project: str, location: str) -> Response:
    """`readMask` keeps only the listed fields of each job (see masks.py)."""
    check_query(request, _LIST_PARAMS)
    parent = parent_from(project, location)
    mask = parse_read_mask(request.args.getlist("readMask"), CustomJobPb.DESCRIPTOR)
    filter_text = request.args.get("filter", "")
    predicate = compile_filter(filter_text)
    size = page_size(request.args.get("pageSize"))
    fingerprint = query_fingerprint(parent, filter_text)
    token = request.args.get("pageToken", "")
    below = decode_token(token, fingerprint) if token else None
    page = store.page(parent, predicate, size, below)
    response = _ListResponsePb()
    response.custom_jobs.extend(page.jobs if mask is None else [trim(j, mask) for j in page.jobs])
    if page.next_seq is not None:
        response.next_page_token = encode_token(page.next_seq, fingerprint)
    return respond(request, response)


def cancel(store: JobStore, request: Request, project: str, location: str, job: str) -> Response:
    check_query(request)
    parent = parent_from(project, location, "name")
    body = load_json_object(request.get_data(), "")
    if "name" in body:
        raise invalid_argument("name", 'Invalid JSON payload received. "name" is bound by the URL.')
    parse_message(body, _CancelRequestPb(), "")
    store.cancel(parent, job_id_from(parent, job))
    return Response("{}", 200, content_type="application/json; charset=UTF-8")


def delete(store: JobStore, request: Request, project: str, location: str, job: str) -> Response:
    check_query(request)
    parent = parent_from(project, location, "name")
    return respond(request, store.delete(parent, job_id_from(parent, job)))


def get_operation(
    store: JobStore, request: Request, project: str, location: str, job: str, operation: str
) -> Response:
    check_query(request)
    parent = parent_from(project, location, "name")
    job_id = job_id_from(parent, job)
    name = f"{parent.name}/customJobs/{job_id}/operations/{operation}"
    return respond(request, store.get_operation(name))


def wait_operation(
    store: JobStore, request: Request, project: str, location: str, job: str, operation: str
) -> Response:
    """Operations are born done, so waiting is the same as getting."""
    body = load_json_object(request.get_data(), "")
    unknown = set(body) - {"timeout"}
    if unknown:
        raise invalid_argument("", f"Invalid JSON payload received. Unknown name {unknown}.")
    return get_operation(store, request, project, location, job, operation)


__all__ = ["ApiError", "cancel", "create", "delete", "get", "get_operation", "list_jobs"]
