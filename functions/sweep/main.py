"""Sweep function: Cloud Scheduler calls it every minute (OIDC-authenticated in production).

It answers the sweep's JSON summary; all logic lives in the `launchq` package.
"""

import flask
import functions_framework

from launchq.functions import handle_sweep_request


@functions_framework.http
def sweep(request: flask.Request) -> tuple[dict[str, object], int]:
    del request  # the schedule is the only input
    return handle_sweep_request()
