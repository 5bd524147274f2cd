"""A local stand-in's HTTP side: a WSGI app on a loopback port, served from a daemon thread (or
the caller's), stopped whole. The Vertex, Cloud Logging and Cloud Build stand-ins all serve
this way; each adds only what it owns (its store, its admin client) through `_close`.
"""

from __future__ import annotations

import errno
import threading
from types import TracebackType
from typing import Any, Self

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from launchq.log import get_logger

log = get_logger(__name__)


class QuietHandler(WSGIRequestHandler):
    """No per-request access log (at hundreds of requests per second it drowns everything), and
    TCP_NODELAY: Werkzeug writes headers and body in two sends, and Nagle's algorithm holding
    the body back until the client's delayed ACK costs milliseconds per request.
    """

    disable_nagle_algorithm = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None

    def log(self, type: str, message: str, *args: Any) -> None:
        log.debug("http server: " + (message % args if args else message), kind=type)


class BackgroundServer:
    """Serve `app` on `host:port` (0: a free port); `start()` in a thread, `stop()` whole."""

    title = "stand-in"  # for the "listening" log line

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        try:
            self._server: BaseWSGIServer = make_server(
                host, port, app, threaded=True, request_handler=QuietHandler
            )
        except SystemExit as exc:
            # Werkzeug prints a bind failure and calls sys.exit(1): a stand-in in a process that
            # goes on (the local stack, a test) must see an error it can handle instead. With
            # picked ports the cause is a port taken between picking and binding
            # (launchq_local.devstack starts again on new ones).
            raise OSError(
                errno.EADDRINUSE, f"{self.title}: cannot listen on {host}:{port}"
            ) from exc
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _listening(self) -> dict[str, Any]:
        """Extra fields of the "listening" log line."""
        return {}

    def _close(self) -> None:
        """Release what the subclass owns (called first when stopping)."""

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"{self.title}-http", daemon=True
        )
        self._thread.start()
        log.info(f"{self.title} listening", url=self.url, **self._listening())
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until `stop()` or KeyboardInterrupt."""
        log.info(f"{self.title} listening", url=self.url, **self._listening())
        try:
            self._server.serve_forever()
        finally:
            self._close()

    def stop(self) -> None:
        self._close()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
