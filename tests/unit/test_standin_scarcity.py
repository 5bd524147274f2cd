"""Scarcity rules of the Vertex stand-in: parsing, matching, counting and seeded fractions, and
the core's failure classifier reading the stand-in's own error constants (so the two cannot
drift apart without a test failing)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from google.cloud.aiplatform_v1 import types
from google.protobuf import duration_pb2

from launchq.model.failures import FailureClass, failure_class
from launchq.model.states import ItemState
from launchq_local.standin.scarcity import (
    PREEMPTED_ERROR,
    UNSET_MAX_WAIT_SECONDS,
    JobTraits,
    ScarcityBook,
    rule_from_json,
    stockout_error,
)

A100 = types.AcceleratorType.NVIDIA_TESLA_A100


def job_pb(
    accelerator: types.AcceleratorType | None = A100,
    strategy: types.Scheduling.Strategy = types.Scheduling.Strategy.STRATEGY_UNSPECIFIED,
    max_wait: duration_pb2.Duration | None = None,
) -> Any:
    machine = types.MachineSpec(machine_type="a2-highgpu-1g")
    if accelerator is not None:
        machine.accelerator_type = accelerator
        machine.accelerator_count = 1
    scheduling = types.Scheduling(strategy=strategy)
    if max_wait is not None:
        scheduling.max_wait_duration = max_wait
    job = types.CustomJob(
        display_name="j",
        job_spec=types.CustomJobSpec(
            worker_pool_specs=[types.WorkerPoolSpec(machine_spec=machine, replica_count=1)],
            scheduling=scheduling,
        ),
    )
    return types.CustomJob.pb(job)


def traits(region: str = "us-central1", **job: Any) -> JobTraits:
    return JobTraits.of(region, job_pb(**job))


def rule(**body: Any) -> Any:
    return rule_from_json(body, "scarcity-1", random.Random(0))


# ---- the classifier agrees with the stand-in ------------------------------------------------


def test_the_classifier_reads_the_stockout_as_no_capacity() -> None:
    code, message = stockout_error("us-central1")
    error = {"code": code, "message": message}
    assert failure_class(ItemState.FAILED, error, None) is FailureClass.NO_CAPACITY


def test_the_classifier_reads_the_preemption_as_preempted() -> None:
    code, message = PREEMPTED_ERROR
    error = {"code": code, "message": message}
    assert failure_class(ItemState.FAILED, error, None) is FailureClass.PREEMPTED


def test_the_classifier_reads_expired_as_no_capacity() -> None:
    assert failure_class(ItemState.EXPIRED, None, None) is FailureClass.NO_CAPACITY


# ---- job traits ----------------------------------------------------------------------------


def test_traits_name_the_accelerator_strategy_and_wait() -> None:
    spot = traits(strategy=types.Scheduling.Strategy.SPOT)
    assert (spot.accelerator, spot.strategy) == ("NVIDIA_TESLA_A100", "SPOT")
    assert traits(accelerator=None).accelerator == "ACCELERATOR_TYPE_UNSPECIFIED"
    assert traits().max_wait_seconds == UNSET_MAX_WAIT_SECONDS  # unset: 24 h
    waited = traits(max_wait=duration_pb2.Duration(seconds=90, nanos=500_000_000))
    assert waited.max_wait_seconds == 90.5
    assert traits(max_wait=duration_pb2.Duration(seconds=0)).max_wait_seconds is None  # forever


# ---- parsing -------------------------------------------------------------------------------


def test_defaults_and_normalised_names() -> None:
    parsed = rule(kind="stockout", region="us-central1", accelerator="tesla_a100")
    assert parsed.accelerator == "NVIDIA_TESLA_A100"
    assert (parsed.strategy, parsed.count, parsed.fraction) == (None, None, None)
    assert (parsed.delay_seconds, parsed.wait_scale, parsed.max_wait_seconds) == (3.0, 1.0, 5.0)
    assert rule(kind="stockout", region="*").accelerator == "*"
    assert rule(kind="stockout", region="*", strategy="*").strategy is None


def test_preempt_and_flex_expire_imply_their_strategy() -> None:
    assert rule(kind="preempt", region="*").strategy == "SPOT"
    assert rule(kind="preempt", region="*", strategy="spot").strategy == "SPOT"
    assert rule(kind="flex_expire", region="*").strategy == "FLEX_START"
    with pytest.raises(ValueError, match="FLEX_START jobs only"):
        rule(kind="flex_expire", region="*", strategy="SPOT")


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"kind": "stockout"}, "region must be"),
        ({"kind": "stockout", "region": "us-central1", "zone": "a"}, "unknown scarcity field"),
        ({"kind": "stockout", "region": "*", "strategy": "CHEAP"}, "unknown strategy"),
        ({"kind": "stockout", "region": "*", "fraction": -0.1}, "non-negative"),
        ({"kind": "stockout", "region": "*", "count": True}, "positive integer"),
        ({"kind": "stockout", "region": "*", "delaySeconds": None}, "not null"),
        ({"kind": "stockout", "region": "*", "seed": "7"}, "seed must be"),
    ],
)
def test_bad_bodies(body: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        rule(**body)


# ---- matching ------------------------------------------------------------------------------


def test_matching_on_region_accelerator_and_strategy() -> None:
    stockout = rule(kind="stockout", region="us-central1", accelerator="NVIDIA_TESLA_A100")
    assert stockout.matches(traits())
    assert not stockout.matches(traits("us-east4"))
    assert not stockout.matches(traits(accelerator=types.AcceleratorType.NVIDIA_L4))
    assert not stockout.matches(traits(accelerator=None))
    anywhere = rule(kind="stockout", region="*")
    assert anywhere.matches(traits("asia-east1", accelerator=None))  # CPU-only jobs too
    preempt = rule(kind="preempt", region="*")
    assert preempt.matches(traits(strategy=types.Scheduling.Strategy.SPOT))
    assert not preempt.matches(traits(strategy=types.Scheduling.Strategy.STANDARD))
    assert not preempt.matches(traits())


def test_count_strikes_the_next_n_and_then_nothing() -> None:
    book = ScarcityBook()
    book.add({"kind": "stockout", "region": "us-central1", "count": 2})
    job = traits()
    assert [book.strike(job) is not None for _ in range(4)] == [True, True, False, False]
    [listed] = book.list()
    assert (listed.count, listed.matched, listed.fired) == (0, 4, 2)
    assert book.strike(traits("us-east4")) is None
    assert listed.matched == 4  # a job elsewhere does not count


def test_a_seeded_fraction_is_reproducible_and_near_its_rate() -> None:
    def storm(seed: int) -> list[bool]:
        book = ScarcityBook()
        book.reset(seed)
        book.add({"kind": "preempt", "region": "*", "fraction": 0.3})
        job = traits(strategy=types.Scheduling.Strategy.SPOT)
        return [book.strike(job) is not None for _ in range(1000)]

    assert storm(7) == storm(7)
    assert storm(7) != storm(8)
    assert 250 < sum(storm(7)) < 350
    # A rule's own seed does not depend on what came before it.
    book = ScarcityBook()
    first = book.add({"kind": "preempt", "region": "*", "fraction": 0.3, "seed": 3})
    again = ScarcityBook()
    again.add({"kind": "stockout", "region": "nowhere"})
    second = again.add({"kind": "preempt", "region": "*", "fraction": 0.3, "seed": 3})
    assert [first.draw() for _ in range(50)] == [second.draw() for _ in range(50)]


def test_the_first_rule_that_strikes_wins() -> None:
    book = ScarcityBook()
    never = book.add({"kind": "stockout", "region": "*", "fraction": 0.0})
    always = book.add({"kind": "stockout", "region": "*"})
    struck = book.strike(traits())
    assert struck is always
    assert (never.matched, never.fired, always.fired) == (1, 0, 1)
    assert book.remove(always.id)
    assert not book.remove(always.id)
    assert book.strike(traits()) is None


def test_expiry_wait_scales_caps_and_keeps_forever() -> None:
    flex = types.Scheduling.Strategy.FLEX_START
    hour = traits(strategy=flex, max_wait=duration_pb2.Duration(seconds=3600))
    assert rule(kind="flex_expire", region="*").expiry_wait(hour) == 5.0  # the default cap
    scaled = rule(kind="flex_expire", region="*", waitScale=0.001, maxWaitSeconds=None)
    assert scaled.expiry_wait(hour) == pytest.approx(3.6)
    forever = traits(strategy=flex, max_wait=duration_pb2.Duration(seconds=0))
    assert scaled.expiry_wait(forever) is None
