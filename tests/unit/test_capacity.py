"""The pure capacity policies: the 429 classifier, the queue backoff, the budget windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from launchq.capacity import (
    QueueBackoff,
    backoff_seconds,
    budget_key,
    next_backoff,
    quota_reason,
    window_at,
)
from launchq.gcp.vertex import VertexError, exhaustion, field_mask
from launchq.settings import Settings, SettingsError

A100 = "custom_model_training_nvidia_a100_gpus"
QUOTA_MESSAGE = "The following quota metrics exceed quota limits: aiplatform.googleapis.com/" + A100
RATE_MESSAGE = (
    "Quota exceeded for quota metric 'Job or LRO submission requests' and limit 'Job or LRO "
    "submission requests per minute per region' of service 'aiplatform.googleapis.com' for "
    "consumer 'project_number:123'."
)
T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


# -- the classifier ------------------------------------------------------------------------


def test_a_resource_quota_is_named_by_its_metric() -> None:
    error = VertexError(429, "RESOURCE_EXHAUSTED", QUOTA_MESSAGE, "CreateCustomJob")
    assert error.quota_metric == A100
    assert not error.rate_limited
    assert error.transient  # still transient for anyone who does not ask about capacity


def test_the_first_of_several_metrics_is_taken() -> None:
    message = QUOTA_MESSAGE + ", aiplatform.googleapis.com/custom_model_training_cpus"
    found = exhaustion(429, "RESOURCE_EXHAUSTED", message)
    assert found is not None
    assert found.metric == A100


def test_a_request_rate_refusal_is_not_capacity() -> None:
    error = VertexError(429, "RESOURCE_EXHAUSTED", RATE_MESSAGE, "CreateCustomJob")
    assert error.quota_metric is None
    assert error.rate_limited


def test_a_bare_429_is_a_request_rate() -> None:
    error = VertexError(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted.", "Create")
    assert error.rate_limited
    assert error.quota_metric is None


@pytest.mark.parametrize(
    "detail",
    [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "RATE_LIMIT_EXCEEDED",
            "metadata": {"quota_metric": f"aiplatform.googleapis.com/{A100}"},
        },
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{"subject": f"aiplatform.googleapis.com/{A100}"}],
        },
    ],
)
def test_the_metric_can_come_from_the_details(detail: dict[str, object]) -> None:
    found = exhaustion(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", [detail])
    assert found is not None
    assert found.metric == A100


def test_a_submission_requests_metric_in_the_details_is_a_rate() -> None:
    detail = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "metadata": {"quota_metric": "aiplatform.googleapis.com/job_or_lro_submission_requests"},
    }
    found = exhaustion(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", [detail])
    assert found is not None
    assert found.metric is None


@pytest.mark.parametrize(("http", "status"), [(503, "UNAVAILABLE"), (400, "INVALID_ARGUMENT")])
def test_other_errors_are_not_exhaustion(http: int, status: str) -> None:
    assert exhaustion(http, status, QUOTA_MESSAGE) is None
    assert VertexError(http, status, QUOTA_MESSAGE, "Create").quota_metric is None


def test_the_waiting_reason_names_metric_and_region() -> None:
    assert quota_reason(A100, "us-central1") == (
        f"waiting: Vertex quota {A100} exhausted in us-central1"
    )


# -- the backoff ---------------------------------------------------------------------------


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_seconds(n, 15, 240) for n in range(0, 7)] == [0, 15, 30, 60, 120, 240, 240]


def test_a_refusal_during_a_backoff_does_not_lengthen_it() -> None:
    first = next_backoff(None, T0, A100, "us-central1", 15, 240)
    assert first == QueueBackoff(T0 + timedelta(seconds=15), 1, A100, "us-central1")
    assert first.reason == quota_reason(A100, "us-central1")
    again = next_backoff(first, T0 + timedelta(seconds=5), A100, "us-central1", 15, 240)
    assert again is first
    later = T0 + timedelta(seconds=16)
    second = next_backoff(first, later, A100, "us-central1", 15, 240)
    assert second.refusals == 2
    assert second.until == later + timedelta(seconds=30)
    assert second.active(later)
    assert not second.active(second.until)


# -- the budget windows --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "seconds", "tokens"),
    [(60, 1, 1), (120, 1, 2), (90, 2, 3), (30, 2, 1), (7, 60, 7), (600, 1, 10), (1, 60, 1)],
)
def test_windows_hold_exactly_the_rate(rate: int, seconds: int, tokens: int) -> None:
    window = window_at(1_000_000.5, rate)
    assert window is not None
    assert (window.seconds, window.tokens) == (seconds, tokens)
    assert window.tokens * 60 // window.seconds == rate  # a minute of windows is the rate
    assert window.start <= 1_000_000.5 < window.end
    assert window.start % seconds == 0  # aligned: every instance computes the same windows


def test_no_rate_is_no_budget() -> None:
    assert window_at(1_000_000, 0) is None


def test_token_ids_are_distinct_per_window_and_region() -> None:
    key = budget_key("p", "us-central1")
    first = window_at(1_000_000.2, 120)
    second = window_at(1_000_001.2, 120)
    assert first is not None
    assert second is not None
    assert first.token_ids(key) == ["p~us-central1~1000000~0", "p~us-central1~1000000~1"]
    assert not set(first.token_ids(key)) & set(second.token_ids(key))
    assert not set(first.token_ids(key)) & set(first.token_ids(budget_key("p", "europe-west4")))


# -- settings and the read mask ------------------------------------------------------------


def test_rates_per_region_override_the_default() -> None:
    settings = Settings.from_env(
        {
            "LAUNCHQ_PROJECT": "p",
            "LAUNCHQ_CREATE_RATE_PER_MINUTE": "30",
            "LAUNCHQ_CREATE_RATES": "us-central1=120, europe-west4=6",
        }
    )
    assert settings.create_rate("us-central1") == 120
    assert settings.create_rate("europe-west4") == 6
    assert settings.create_rate("asia-east1") == 30
    assert Settings.from_env({"LAUNCHQ_PROJECT": "p"}).create_rate("us-central1") == 60


def test_a_malformed_rate_override_fails_loudly() -> None:
    with pytest.raises(SettingsError, match="LAUNCHQ_CREATE_RATES"):
        Settings.from_env({"LAUNCHQ_PROJECT": "p", "LAUNCHQ_CREATE_RATES": "us-central1:120"})


def test_field_masks_are_camel_case() -> None:
    assert field_mask(["name", "create_time", "job_spec.worker_pool_specs"]) == (
        "name,createTime,jobSpec.workerPoolSpecs"
    )


def test_token_ids_wrap_around_from_any_first_token() -> None:
    window = window_at(1_000_000, 180)  # 3 tokens a second
    assert window is not None
    assert window.token_ids("k", first=2, count=8) == ["k~1000000~2", "k~1000000~0", "k~1000000~1"]
    assert window.token_ids("k", first=1, count=2) == ["k~1000000~1", "k~1000000~2"]
