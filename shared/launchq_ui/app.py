"""The dashboard's Flask application: pages, their JSON endpoints, and the cancel action.

Read-only except for cancel, which publishes the same control message as `launchq cancel`
(`launchq_client.cancel.request_cancel`): the dashboard needs Firestore read, Logging read and
publisher rights on the queue topics, never Firestore write or Vertex rights.

Cross-site requests: the cancel form carries a token derived from a per-process secret
(HMAC of the item), and the POST must also come from this origin when the browser says where it
comes from (`Origin`, else `Referer`): a page on another site can neither read the token nor
pass the origin check. Every page sets a strict Content-Security-Policy (scripts and styles from
this server only), so even stored text from an item cannot run script.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, abort, jsonify, redirect, render_template, request, url_for

from launchq.cohorts import CohortSource
from launchq.errors import NotFound
from launchq.model.states import ItemState
from launchq.store import Store
from launchq_client.backends import Backends
from launchq_client.queues import QueueStates, queue_document
from launchq_client.reads import item_detail
from launchq_client.values import plain
from launchq_ui import charts, links, views

LOG_TAIL_LINES = 200
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def create_app(backends: Backends, clock: Callable[[], datetime] | None = None) -> Flask:
    """The dashboard over `backends` (the settings and clients the CLI uses too)."""
    app = Flask(__name__)
    secret = secrets.token_bytes(32)
    now: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))

    def store() -> Store:
        return backends.store

    def token(queue: str, item_id: str) -> str:
        message = f"cancel\0{queue}\0{item_id}".encode()
        return hmac.new(secret, message, hashlib.sha256).hexdigest()

    _configure(app)

    # -- queues ------------------------------------------------------------------------------

    def queue_rows() -> list[dict[str, Any]]:
        moment = now()
        rows = []
        cohorts = CohortSource(store())  # read once for every queue's waiting reasons
        for document in sorted(store().list_queues(), key=lambda d: str(d.get("name"))):
            items = views.window_items(store(), str(document.get("name")), moment)
            row = views.queue_row(store(), document, items, moment, cohorts)
            waits, running = views.wait_series(items), views.running_series(items, moment)
            since = views.data_since(items)  # both charts of a queue share their time axis
            for size, suffix in ((charts.WIDE, ""), (charts.NARROW, "_narrow")):
                row[f"wait_svg{suffix}"] = charts.svg(
                    waits, moment, f"{row['name']}: wait time", size, since
                )
                row[f"running_svg{suffix}"] = charts.svg(
                    running, moment, f"{row['name']}: jobs running", size, since
                )
            rows.append(row)
        return rows

    @app.get("/")
    def queues() -> str:
        rows = queue_rows()
        return render_template(
            "queues.html",
            queues=rows,
            budgets=any(row.get("budget") for row in rows),
            cohorts=_cohort_panels(store(), now()),
            view="queues",
        )

    @app.get("/api/queues")
    def api_queues() -> Response:
        rows = [{k: v for k, v in row.items() if "_svg" not in k} for row in queue_rows()]
        return jsonify(rows)

    @app.get("/api/cohorts")
    def api_cohorts() -> Response:
        panels = _cohort_panels(store(), now())
        for panel in panels:
            for member in panel["panel_members"]:
                for key in [k for k in member if "_svg" in k]:
                    del member[key]
        return jsonify(panels)

    # -- items -------------------------------------------------------------------------------

    def item_query(queue: str) -> dict[str, Any]:
        return _item_page(store, queue, now())

    @app.get("/queues/<queue>")
    def items(queue: str) -> str:
        return render_template("items.html", view="items", **item_query(queue))

    @app.get("/api/queues/<queue>/items")
    def api_items(queue: str) -> Response:
        return jsonify(item_query(queue))

    # -- one item ----------------------------------------------------------------------------

    def item_data(queue: str, item_id: str) -> dict[str, Any]:
        return _item_data(backends, queue, item_id, now())

    @app.get("/queues/<queue>/items/<item_id>")
    def item(queue: str, item_id: str) -> str:
        found = item_data(queue, item_id)
        data = found["data"]
        return render_template(
            "item.html",
            view="item",
            d=found["detail"],
            job_body=_pretty(data.get("job_body") or data.get("rendered") or data.get("job")),
            token=token(queue, item_id),
            notice=request.args.get("notice", ""),
        )

    @app.get("/api/queues/<queue>/items/<item_id>")
    def api_item(queue: str, item_id: str) -> Response:
        return jsonify(item_data(queue, item_id)["detail"])

    @app.post("/queues/<queue>/items/<item_id>/cancel")
    def cancel(queue: str, item_id: str) -> Any:
        from launchq_client.cancel import request_cancel

        _same_origin()
        sent = request.form.get("token", "")
        if not hmac.compare_digest(sent, token(queue, item_id)):
            abort(403, "the cancel form is stale or from elsewhere: reload the item page")
        _, state, message_id = request_cancel(backends, item_id, queue)
        notice = (
            f"cancel requested (message {message_id}; it was {state.value})"
            if message_id
            else f"not cancelled: it had already ended {state.value}"
        )
        return redirect(url_for("item", queue=queue, item_id=item_id, notice=notice), code=303)

    @app.errorhandler(NotFound)
    def not_found(exc: NotFound) -> tuple[str, int]:
        return render_template("error.html", view="error", message=str(exc)), 404

    return app


def _cohort_panels(store: Store, moment: datetime) -> list[dict[str, Any]]:
    """`views.cohort_panels` with each member's chart drawn: accelerators held over the last
    24 h, a dashed line at its share."""
    panels = views.cohort_panels(store, moment)
    for panel in panels:
        for member in panel["panel_members"]:
            title = f"{member['queue']}: {member['metric']} held"
            share = (member["nominal"], f"share {member['nominal']:g}")
            for size, suffix in ((charts.WIDE, ""), (charts.NARROW, "_narrow")):
                member[f"held_svg{suffix}"] = charts.svg(
                    member["series"], moment, title, size, member["since"], share
                )
            del member["series"], member["since"]
    return panels


def _configure(app: Flask) -> None:
    """Security headers on every answer, and the helpers every template uses."""

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    @app.errorhandler(views.BadCursor)
    def bad_cursor(exc: views.BadCursor) -> tuple[str, int]:
        args = request.view_args or {}
        queue, item_id = args.get("queue"), args.get("item_id")
        first: str | None
        if isinstance(queue, str) and isinstance(item_id, str):  # a sweep's children page
            first = url_for("item", queue=queue, item_id=item_id)
            text = "Go to the item's page"
        else:
            first = url_for("items", queue=queue) if isinstance(queue, str) else None
            text = "Go to the queue's first page"
        return render_template(
            "error.html",
            view="error",
            title="Bad page link",
            message=f"{exc}: the link was damaged or edited.",
            link=first,
            link_text=text,
        ), 400

    @app.context_processor
    def helpers() -> dict[str, Any]:
        from launchq_client.budgets import budget_text
        from launchq_client.values import duration

        return {
            "duration": duration,
            "budget_text": budget_text,
            "states": [s.value for s in ItemState],
        }


def _item_page(store: Callable[[], Store], queue: str, moment: datetime) -> dict[str, Any]:
    """The items page's data from the request's query: `state`, `q`, and the page's position,
    `after` (a `views.Cursor`, absent on the first page) and `page` (its number, a label only:
    the cursor alone says where the page is; editing the number changes only the label).
    `store` is called only once the query is known to be sound."""
    # The cursor is checked before anything is read: a damaged link is a 400, never a 500.
    cursor = request.args.get("after", "").strip()
    after = views.Cursor.decode(cursor, queue) if cursor else None
    try:
        page = min(max(int(request.args.get("page", "2")), 2), 1_000_000) if after else 1
    except ValueError:
        page = 2
    queue_document(store(), queue)  # NotFound -> 404
    state = request.args.get("state", "").strip().upper()
    search = request.args.get("q", "").strip()
    states = [ItemState(state)] if state in ItemState.__members__ else []
    found = views.page_of_items(store(), queue, states, search, after, moment)
    shown = states[0].value if states else ""
    following = found.next.encode() if found.next else None
    return {
        "queue": queue,
        "state": shown,
        "q": search,
        "page": page,
        "after": cursor if after else "",
        "next": following,
        "older_url": following
        and url_for("items", queue=queue, state=shown, q=search, after=following, page=page + 1),
        "first_url": url_for("items", queue=queue, state=shown, q=search),
        "more": following is not None,
        "items": found.rows,
    }


def _item_data(backends: Backends, queue: str, item_id: str, moment: datetime) -> dict[str, Any]:
    """An item's page (`launchq status --json`'s detail, its job links and log tail); a sweep's
    with its progress and a page of its children, at the request's `children_after`."""
    # The children page's position is checked before anything is read: a damaged link is a 400.
    position = request.args.get("children_after", "").strip()
    after = views.child_cursor(position, item_id) if position else None
    store = backends.store
    data = store.item_document(queue, item_id)
    if data is None:
        raise NotFound(f"no item {item_id!r} in queue {queue!r}")
    detail = views.item_row(item_detail(data, moment, QueueStates(store)))
    detail["links"] = [vars(link) for link in links.job_links(detail["job"], backends.settings)]
    detail["log"], detail["log_unavailable"] = _log_tail(backends, data)
    detail["progress"] = views.progress(store, data)
    detail["child_page"] = (
        _child_page(store, queue, item_id, after, moment) if detail["progress"] else None
    )
    return {"detail": detail, "data": data}


def _child_page(
    store: Store, queue: str, parent: str, after: str | None, moment: datetime
) -> dict[str, Any]:
    """A sweep's page of children (`views.children_page`) and its links: *Next children* goes on
    behind its last child; *First children* goes back to the start (the way back, as for the
    items pages, is the first page and the browser's Back button)."""
    found = views.children_page(store, queue, parent, after, moment)
    return {
        "rows": found.rows,
        "after": after or "",
        "next": found.next,
        "next_url": found.next
        and url_for("item", queue=queue, item_id=parent, children_after=found.next) + "#children",
        "first_url": url_for("item", queue=queue, item_id=parent) + "#children",
    }


def _same_origin() -> None:
    """Refuse a POST whose browser-stated origin is not this server."""
    stated = request.headers.get("Origin") or request.headers.get("Referer")
    if not stated or stated == "null":
        if stated == "null":
            abort(403, "cross-origin request refused")
        return  # no header at all: not a browser's cross-site form; the token still applies
    # Host only, not scheme: behind Cloud Run's TLS front end the app sees http while the
    # browser says https; the host is what a cross-site page cannot fake.
    if urlsplit(stated).netloc != request.host:
        abort(403, "cross-origin request refused")


def _pretty(value: Any) -> str | None:
    import json

    if not value:
        return None
    return json.dumps(plain(value), indent=2, ensure_ascii=False, sort_keys=True)


def _log_tail(backends: Backends, data: dict[str, Any]) -> tuple[list[dict[str, str]], str | None]:
    """The job's last log lines (`launchq logs`'s client); the page answers even without them."""
    from launchq_client import logs as joblogs
    from launchq_client.errors import Unreachable

    try:
        job = joblogs.job_ref(data)
        if job is None:
            return [], "no job yet"
        client = joblogs.logs_client(backends, timeout=5.0)
    except Unreachable as exc:
        return [], str(exc)
    except joblogs.LogsError as exc:
        return [], exc.message
    except Exception as exc:  # no credentials, for instance: say why, keep the page
        return [], str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    try:
        lines = client.last(job.project, joblogs.job_filter(job, None, None), LOG_TAIL_LINES)
    except joblogs.LogsError as exc:
        return [], exc.message
    finally:
        client.close()
    return [line.to_json() for line in lines], None
