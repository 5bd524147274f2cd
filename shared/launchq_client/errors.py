"""The client's failures, typed, so each front end words and codes them its own way.

The CLI turns them into `error: ...` and an exit code (`launchq_cli.common.as_cli_error`), the
dashboard into an error page; neither has to know which module raised what. Every message is one
sentence a person can act on. An item or queue that does not exist is the core's
`launchq.errors.NotFound` (one class for one meaning, whoever looks it up).
"""

from __future__ import annotations

from collections.abc import Iterable


class ClientError(Exception):
    """A failure the client explains in one sentence (its `str`)."""


class Ambiguous(ClientError, LookupError):
    """An item id exists in more than one queue; the caller must name the queue."""


class BadSettings(ClientError):
    """The settings are incomplete or invalid (no project, a malformed variable)."""


class Unreachable(ClientError):
    """A backend the settings point at cannot be used as they say (an emulator that does not
    answer, a topic that does not exist, logs asked of a local stand-in's job in the cloud)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The closest of `choices` to a mistyped `word` (case-insensitive), if one is close."""
    import difflib

    by_lower = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None
