"""launchq.errors.is_infrastructure: the one rule for "redeliver" versus "record and ack"."""

from __future__ import annotations

import json

import pytest
import requests
from google.api_core import exceptions as gexc

from launchq.errors import InfrastructureError, LaunchqError, is_infrastructure
from launchq.gcp.vertex import VertexError
from launchq.spec.validation import ItemError


@pytest.mark.parametrize(
    "exc",
    [
        gexc.ServiceUnavailable("firestore down"),
        gexc.DeadlineExceeded("slow"),
        gexc.InternalServerError("oops"),
        gexc.TooManyRequests("quota"),
        gexc.Unknown("emulator contention"),
        gexc.Aborted("contention"),
        requests.ConnectionError("refused"),
        requests.Timeout("read timed out"),
        VertexError(503, "UNAVAILABLE", "try later", "CreateCustomJob"),
        VertexError(429, "RESOURCE_EXHAUSTED", "quota", "CreateCustomJob"),
        VertexError(0, "", "no answer", "CreateCustomJob"),
        InfrastructureError("a dependency failed"),
    ],
    ids=type,
)
def test_infrastructure(exc: BaseException) -> None:
    assert is_infrastructure(exc)


@pytest.mark.parametrize(
    "exc",
    [
        gexc.InvalidArgument("field name '__x__' is reserved"),
        gexc.FailedPrecondition("precondition"),
        gexc.NotFound("missing"),
        VertexError(400, "INVALID_ARGUMENT", "bad body", "CreateCustomJob"),
        VertexError(403, "PERMISSION_DENIED", "no", "CreateCustomJob"),
        ValueError("Value out of range: 9223372036854775808"),
        UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
        RecursionError("maximum recursion depth exceeded"),
        KeyError("state"),
        json.JSONDecodeError("Expecting value", "x", 0),
        ItemError([]),
        LaunchqError("content"),
    ],
    ids=type,
)
def test_content(exc: BaseException) -> None:
    assert not is_infrastructure(exc)


def test_the_flag_is_a_class_attribute_subclasses_can_set() -> None:
    class QuotaExhausted(LaunchqError):
        transient = True

    assert LaunchqError.transient is False
    assert InfrastructureError.transient is True
    assert is_infrastructure(QuotaExhausted())
