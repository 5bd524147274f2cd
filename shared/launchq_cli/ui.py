"""`launchq ui`: the read-only web dashboard (`launchq_ui`), served locally.

It uses the same settings and clients as every other command (`Backends`), so it shows whatever
the CLI points at: the local stack under `launchq dev`'s environment, or a real project.
Werkzeug's threaded server is enough for the few people who open a dashboard: each page is a
handful of Firestore reads. The Cloud Run deployment (terraform `dashboard`, docs/dashboard.md)
runs this same command in the container, behind Cloud Run's IAM check.
"""

from __future__ import annotations

import click

from launchq_cli.common import backend_command
from launchq_client.backends import Backends


@click.command("ui")
@click.option("--port", type=click.IntRange(0, 65535), default=8088, show_default=True)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; the dashboard has no login of its own, so keep it local.",
)
@backend_command
def ui(backends: Backends, port: int, host: str) -> None:
    """Serve the read-only dashboard: queues, items (live), one item with its log, charts.

    Its one action, cancel, publishes the same request as `launchq cancel`. Ctrl-C stops it.
    """
    from werkzeug.serving import make_server

    from launchq_ui.app import create_app

    # Build the clients before serving: a missing project or a dead emulator fails now, as one
    # sentence, and the server's threads never race to build them.
    backends.store  # noqa: B018
    server = make_server(host, port, create_app(backends), threaded=True)
    click.echo(f"launchq dashboard on http://{host}:{server.server_port}/ (Ctrl-C stops)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
