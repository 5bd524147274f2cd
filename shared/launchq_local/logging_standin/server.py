"""The Cloud Logging stand-in's HTTP side: `POST /v2/entries:list`, as the v2 REST API serves it.

Requests are parsed strictly with Google's own `ListLogEntriesRequest` message (unknown fields,
wrong types: a 400 in Google's error envelope, worded by the Vertex stand-in's wire module),
then checked the way the service checks them: `resourceNames` required and `projects/P` only,
a filter of at most 20,000 characters, `orderBy` `timestamp asc|desc`, a non-negative
`pageSize` (default 50, at most 1000), a `pageToken` from a previous page of the same query.
Werkzeug, as for the Vertex stand-in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from google.cloud.logging_v2.types import ListLogEntriesRequest
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from launchq.log import get_logger
from launchq_local.httpserver import BackgroundServer
from launchq_local.logging_standin.book import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, LogBook, Query
from launchq_local.standin.wire import (
    ApiError,
    invalid_argument,
    load_json_object,
    parse_message,
    to_json,
)

log = get_logger(__name__)

_RequestPb: Any = type(ListLogEntriesRequest.pb(ListLogEntriesRequest()))
MAX_FILTER_CHARS = 20_000  # "Length of a Logging query language query" in Logging's limits
_ORDERS = {"": False, "timestamp asc": False, "timestamp desc": True}
URL_MAP = Map([Rule("/v2/entries:list", endpoint="list", methods=["POST"])])


def parse_request(raw: bytes) -> Query:
    """A request body to a `Query`, or the 400 Google would answer."""
    pb = parse_message(load_json_object(raw, ""), _RequestPb(), "")
    if not pb.resource_names:
        raise invalid_argument("resource_names", "resource_names: at least one is required")
    projects = set()
    for name in pb.resource_names:
        kind, _, rest = name.partition("/")
        if kind != "projects" or not rest or "/" in rest:
            raise invalid_argument(
                "resource_names",
                f"resource_names: {name!r} is not supported by the local stand-in "
                "(only projects/PROJECT_ID)",
            )
        projects.add(rest)
    if len(pb.filter) > MAX_FILTER_CHARS:
        raise invalid_argument(
            "filter", f"filter: longer than {MAX_FILTER_CHARS} characters ({len(pb.filter)})"
        )
    order = " ".join(pb.order_by.split()).lower()
    if order not in _ORDERS:
        raise invalid_argument(
            "order_by", f'order_by: {pb.order_by!r}: use "timestamp asc" or "timestamp desc"'
        )
    if pb.page_size < 0:
        raise invalid_argument("page_size", "page_size: must not be negative")
    size = min(pb.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    return Query(frozenset(projects), pb.filter, _ORDERS[order], size, pb.page_token)


def _reply(body: str | dict[str, Any], status: int = 200) -> Response:
    text = body if isinstance(body, str) else json.dumps(body)
    return Response(text, status=status, content_type="application/json; charset=UTF-8")


class LoggingApp:
    """The WSGI application: route, parse, query, and map errors to Google's envelope."""

    def __init__(self, book: LogBook) -> None:
        self.book = book
        self.list_calls = 0  # answered entries.list calls, so tests can count pages

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        try:
            URL_MAP.bind_to_environ(request.environ).match()
        except HTTPException:
            error = ApiError("NOT_FOUND", f"No such method: {request.method} {request.path}")
            return _reply(error.envelope(), error.http)
        try:
            query = parse_request(request.get_data())
            page = to_json(self.book.list(query), int_enums=False)
            self.list_calls += 1
            return _reply(page)
        except ApiError as refused:
            return _reply(refused.envelope(), refused.http)
        except Exception as exc:
            log.exception("logging stand-in handler failed")
            internal = ApiError("INTERNAL", f"Internal error: {exc!r}")
            return _reply(internal.envelope(), internal.http)


class LoggingStandinServer(BackgroundServer):
    """The stand-in on a loopback port in a background thread; `book.record` is the line sink.

    >>> with LoggingStandinServer() as logs:
    ...     vertex = StandinServer(mode="execute", line_sink=logs.book.record)
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, book: LogBook | None = None):
        self.book = book or LogBook()
        self.app = LoggingApp(self.book)
        super().__init__(self.app, host, port)

    title = "logging stand-in"
