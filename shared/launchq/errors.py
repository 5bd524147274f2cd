"""launchq's exceptions: one family, and the one rule that sorts any exception into two kinds.

Every error launchq raises derives from `LaunchqError`; `transient` is what an entry point reads.
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


class LaunchqError(Exception):
    """Root of launchq's exceptions. `transient`: would retrying the same work succeed later?"""

    transient: bool = False


class InfrastructureError(LaunchqError):
    """A service launchq depends on is unavailable; the work is safe and worth a redelivery."""

    transient = True


class Conflict(LaunchqError):
    """A compare-and-swap lost against a concurrent writer: re-read and decide again."""


class NotFound(LaunchqError, KeyError):
    """An item or queue that does not exist (a KeyError too, for callers that expect one)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InvalidTransition(LaunchqError, ValueError):
    """A code path tried to move an item along an edge the state table does not have."""


class SettingsError(LaunchqError, ValueError):
    """A required setting is missing or malformed."""


def is_infrastructure(exc: BaseException) -> bool:
    """True if `exc` means a dependency is unavailable, not that the input or state is wrong.

    The Google API core exceptions are imported lazily: the function is only called on an error
    path, and the import is already paid by the Firestore client by then.
    """
    if isinstance(exc, LaunchqError):
        return exc.transient
    import requests
    from google.api_core import exceptions as gexc

    transient_google = (
        gexc.ServiceUnavailable,
        gexc.DeadlineExceeded,
        gexc.InternalServerError,
        gexc.TooManyRequests,
        gexc.Unknown,
        gexc.Aborted,
        gexc.GatewayTimeout,
        gexc.BadGateway,
        gexc.RetryError,
    )
    if isinstance(exc, transient_google):
        return True
    return isinstance(exc, requests.ConnectionError | requests.Timeout | ConnectionError)
