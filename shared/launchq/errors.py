"""launchq's exceptions: one family, and the one place that says which failures are transient.

Every error launchq raises derives from `LaunchqError`. `transient` is what an entry point reads:
a transient error (infrastructure: Firestore or Vertex unavailable, rate limited) is worth a
redelivery, so the dispatch function answers 5xx and Pub/Sub tries again; anything else is about
the message or the state and is recorded, never retried by redelivery.

`is_infrastructure` extends that to exceptions launchq did not raise itself (the Google client
libraries', requests'), so the dispatcher needs one rule, not a list per call site.
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
