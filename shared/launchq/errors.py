"""The root of launchq's exceptions, and THE rule that sorts any exception into two kinds.

A Pub/Sub message must end either recorded and acknowledged, or answered with a 5xx so Pub/Sub
redelivers it. Redelivering only helps when the trouble is outside the message: Firestore or
Vertex unavailable, the network, a quota. Everything else (a value Firestore cannot store, a
field of the wrong type, a bug that a given payload triggers) fails the same way on every
delivery, so a 5xx only loops until the message is dead-lettered with no record. Hence one
classifier, `is_infrastructure`, and everything it does not name is content: recorded REJECTED.

Deliberately a closed list: a new exception type is content until someone decides otherwise,
because the cost of the wrong guess is asymmetric. Content mistaken for infrastructure loses the
message (redelivered to the dead-letter topic, never recorded); infrastructure mistaken for
content records one item REJECTED that the publisher can see and publish again.
"""

from __future__ import annotations

import requests
from google.api_core import exceptions as gexc


class LaunchqError(Exception):
    """Every launchq error. `transient` says whether trying again later can succeed."""

    transient: bool = False


class InfrastructureError(LaunchqError):
    """A service launchq depends on failed; the same message may well succeed later."""

    transient = True


# Firestore (gRPC) answers that say "not now": UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL,
# RESOURCE_EXHAUSTED, UNKNOWN and ABORTED. The emulator answers UNKNOWN or ABORTED under
# contention on one document (firebase-tools#2452). INVALID_ARGUMENT (a value Firestore refuses,
# a document over 1 MiB) is deliberately absent: it is about the content.
_GOOGLE_TRANSIENT: tuple[type[BaseException], ...] = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.TooManyRequests,
    gexc.Unknown,
    gexc.Aborted,
)
# No answer from an HTTP service (Vertex over REST): the network, not the message.
_HTTP_TRANSIENT: tuple[type[BaseException], ...] = (
    requests.ConnectionError,
    requests.Timeout,
)


def is_infrastructure(exc: BaseException) -> bool:
    """True if `exc` is trouble outside the message (worth a redelivery), else False (content).

    `launchq.vertex.VertexError` and any `LaunchqError` carry their own `transient` flag (a
    Vertex 503 is infrastructure, a Vertex 400 is not).
    """
    if isinstance(exc, LaunchqError):
        return exc.transient
    if isinstance(exc, _GOOGLE_TRANSIENT + _HTTP_TRANSIENT):
        return True
    # Imported here, not at the top: vertex's errors are to move under LaunchqError, and then
    # launchq.vertex imports this module.
    from launchq.vertex import VertexError

    return isinstance(exc, VertexError) and exc.transient
