"""Cohorts: the fair-share policy (pure), its share bound under random arrivals (a property over
many seeds), and admission against a cohort's quota units on the in-memory store; and
`max_jobs_per_submitter` inside one queue."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from launchq.dispatch import PubsubMessage
from launchq.gcp.vertex import VertexError
from launchq.model.fairshare import Candidate, Standing, accrue, decide
from launchq.model.reasons import WaitReason
from launchq.model.states import ItemState
from launchq.spec.cohorts import CohortConfigError, parse_cohort_config
from launchq.spec.topics import SUBMITTED_BY_ATTRIBUTE
from launchq.spec.validation import ConfigError
from launchq_client.backends import Backends
from launchq_client.cohorts import apply_cohort, cohort_detail, delete_cohort, member_waits
from launchq_client.queues import set_paused
from launchq_client.reads import pending_items
from launchq_ui import views
from launchq_ui.app import create_app
from tests.unit.fakes import SHARED_TOPIC, World, item, queue_config

L4 = "custom_model_training_nvidia_l4_gpus"


def standing(queue: str, held: int, usage: float = 0.0, **kw: Any) -> Standing:
    values: dict[str, Any] = {"weight": 1.0, "nominal": 2.5, "borrowing_limit": None}
    values.update(kw)
    return Standing(queue=queue, held=held, usage=usage, **values)


# -- the policy ------------------------------------------------------------------------------


def test_usage_accrues_the_same_whatever_the_step() -> None:
    once = accrue(100.0, 3, 60.0, 600.0)
    stepwise = 100.0
    for _ in range(60):
        stepwise = accrue(stepwise, 3, 1.0, 600.0)
    assert once == pytest.approx(stepwise)
    assert accrue(100.0, 0, 600.0, 600.0) == pytest.approx(50.0)  # one half-life


def test_a_member_below_its_share_goes_before_one_at_or_above_it() -> None:
    heavy_user_below_share = standing("a", held=2, usage=10_000.0)
    light_user_at_share = standing("b", held=3, usage=0.0)
    decision = decide(
        [Candidate(light_user_at_share, 1), Candidate(heavy_user_below_share, 1)], free=2
    )
    assert decision.admit is not None
    assert decision.admit.standing.queue == "a"
    assert decision.waiting == {"b": WaitReason.SHARE}


def test_between_borrowers_the_lower_usage_per_weight_goes_first() -> None:
    a = standing("a", held=3, usage=900.0, weight=3.0)  # 300 per weight
    b = standing("b", held=3, usage=400.0)  # 400 per weight
    decision = decide([Candidate(b, 1), Candidate(a, 1)], free=1)
    assert decision.admit is not None
    assert decision.admit.standing.queue == "a"


def test_free_units_are_kept_for_a_big_job_below_its_share_not_above_it() -> None:
    big_below = standing("a", held=0, usage=0.0)
    small_above = standing("b", held=3, usage=50.0)
    kept = decide([Candidate(big_below, 2), Candidate(small_above, 1)], free=1)
    assert kept.admit is None
    assert kept.waiting == {"a": WaitReason.QUOTA_FULL, "b": WaitReason.SHARE}
    big_above = standing("a", held=3, usage=0.0)
    small_also_above = standing("b", held=3, usage=50.0)
    backfilled = decide([Candidate(big_above, 2), Candidate(small_also_above, 1)], free=1)
    assert backfilled.admit is not None
    assert backfilled.admit.standing.queue == "b"
    assert backfilled.waiting == {"a": WaitReason.QUOTA_FULL}


def test_a_borrowing_limit_and_a_full_quota_hold_an_item_back() -> None:
    capped = standing("a", held=3, borrowing_limit=0)
    big = standing("b", held=0)
    decision = decide([Candidate(capped, 1), Candidate(big, 4)], free=2)
    assert decision.admit is None
    assert decision.waiting == {"a": WaitReason.BORROWING, "b": WaitReason.QUOTA_FULL}


def simulate(seed: int, weights: list[float], limit: int, horizon: int) -> list[float]:
    """Every member always has work (the contended case); jobs of 1-2 accelerators run 20-120 s.
    Each second, ended jobs free their units and the policy fills what is free. Returns each
    member's accelerator-seconds."""
    rng = random.Random(seed)
    members = [f"q{i}" for i in range(len(weights))]
    total = sum(weights)
    usage = dict.fromkeys(members, 0.0)
    held = dict.fromkeys(members, 0)
    running: list[tuple[int, str, int]] = []  # (end, member, units)
    used = dict.fromkeys(members, 0.0)
    nxt = {m: rng.choice((1, 1, 1, 2)) for m in members}
    for t in range(horizon):
        for job in [j for j in running if j[0] <= t]:
            running.remove(job)
            held[job[1]] -= job[2]
        while True:
            free = limit - sum(held.values())
            candidates = [
                Candidate(
                    Standing(m, w, limit * w / total, None, held[m], usage[m]),
                    nxt[m],
                )
                for m, w in zip(members, weights, strict=True)
            ]
            chosen = decide(candidates, free).admit
            if chosen is None:
                break
            member = chosen.standing.queue
            held[member] += chosen.need
            running.append((t + rng.randint(20, 120), member, chosen.need))
            nxt[member] = rng.choice((1, 1, 1, 2))
        assert sum(held.values()) <= limit
        for m in members:
            usage[m] = accrue(usage[m], held[m], 1.0, 600.0)
            used[m] += held[m]
    return [used[m] for m in members]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), weights=st.sampled_from([[1, 1], [2, 1], [1, 1, 1]]))
def test_over_a_contended_hour_each_member_gets_its_share_within_5_points(
    seed: int, weights: list[float]
) -> None:
    used = simulate(seed, weights, limit=6, horizon=3600)
    total = sum(used)
    for got, weight in zip(used, weights, strict=True):
        share = weight / sum(weights)
        assert abs(got / total - share) <= 0.05, (used, weights)


# -- the config ------------------------------------------------------------------------------


def cohort_doc(**extra: Any) -> dict[str, Any]:
    return {
        "name": "gpus",
        "project": "launchq-test",
        "region": "us-central1",
        "quotas": {L4: 3},
        "half_life_seconds": 600,
        "members": [{"queue": "team-a"}, {"queue": "team-b"}],
        **extra,
    }


def test_a_cohort_config_names_every_mistake_with_its_path() -> None:
    bad = cohort_doc(quotas={"custom_model_training_nvidia_l4_gpu": 3})
    bad["members"] = [{"queue": "team-a", "shares": 2}, {"queue": "team-a"}]
    with pytest.raises(ConfigError) as caught:
        parse_cohort_config(bad)
    text = str(caught.value)
    assert "did you mean 'custom_model_training_nvidia_l4_gpus'" in text
    assert "members[0]: unknown key 'shares'; did you mean 'share'?" in text


def test_a_queue_or_a_quota_belongs_to_one_cohort() -> None:
    world = World()
    apply_cohort(world.store, cohort_doc())
    other = cohort_doc(name="other", members=[{"queue": "team-b"}, {"queue": "team-c"}])
    with pytest.raises(CohortConfigError) as caught:
        apply_cohort(world.store, other)
    text = str(caught.value)
    assert "members[0].queue: queue 'team-b' is in cohort 'gpus' already" in text
    assert f"quotas.{L4}: cohort 'gpus' shares this quota already" in text


# -- admission on the memory store -------------------------------------------------------------


def l4_queue(max_jobs: int = 10) -> dict[str, Any]:
    config = queue_config(max_jobs)
    config["spec"]["worker_pool_specs"][0]["machine_spec"] = {
        "machine_type": "g2-standard-4",
        "accelerator_type": "NVIDIA_L4",
        "accelerator_count": 1,
    }
    return config


@pytest.fixture
def world() -> World:
    world = World()
    world.apply("team-a", l4_queue())
    world.apply("team-b", l4_queue())
    apply_cohort(world.store, cohort_doc())
    return world


def active_jobs(world: World) -> list[dict[str, Any]]:
    return [j for j in world.vertex.jobs.values() if j["state"] == "JOB_STATE_QUEUED"]


def held(world: World) -> int:
    pool = f"launchq-test~us-central1~{L4}"
    return len(world.store.held_units(pool))


def test_an_idle_member_lends_the_whole_quota_and_gets_its_share_back_as_jobs_end(
    world: World,
) -> None:
    for n in range(6):
        world.deliver(item("team-a", f"a{n}"))
    assert len(active_jobs(world)) == 3
    assert held(world) == 3
    assert world.data("team-a", "a3")["state"] == "QUEUED"
    for n in range(3):
        world.deliver(item("team-b", f"b{n}"))
    assert len(active_jobs(world)) == 3  # nothing is preempted
    b_wait = member_waits(world.store, "team-b", world.clock())
    assert b_wait is not None
    assert b_wait[0] is WaitReason.QUOTA_FULL
    rows = pending_items(world.store, "team-b")
    assert rows[0]["reason"] == b_wait[1]
    # One of A's jobs ends: B (below its share of 1.5) takes the unit, not A's older items.
    world.vertex.set_state(active_jobs(world)[0]["name"], "JOB_STATE_SUCCEEDED")
    world.app().sweeper.run()
    assert world.data("team-b", "b0")["state"] == "SUBMITTED"
    assert len(world.vertex.job_of("b0")) == 1
    assert world.data("team-a", "a3")["state"] == "QUEUED"
    a_wait = member_waits(world.store, "team-a", world.clock())
    assert a_wait == (
        WaitReason.SHARE,
        "cohort gpus: team-b goes first (below its share, or less recent use)",
    )
    assert held(world) == 3
    detail = cohort_detail(world.store, "gpus")
    members = {m["queue"]: m for m in detail["quotas"][0]["members"]}
    assert (members["team-a"]["held"], members["team-b"]["held"]) == (2, 1)
    assert members["team-a"]["borrowed"] == 0.5  # nominal 1.5: half the second is borrowed


def test_pending_shows_where_each_item_stands_in_its_cohort(world: World) -> None:
    """A holds the whole quota (3 of 3, its share 1.5) with 3 more waiting; B holds none and
    has 2 waiting. As units free one by one, B's two go first (B is below its share until it
    holds 2 > 1.5, and has nothing after), then A's in their queue's order."""
    for n in range(6):
        world.deliver(item("team-a", f"a{n}"))
    world.clock.advance(1)
    for n in range(2):
        world.deliver(item("team-b", f"b{n}"))
    a_rows = pending_items(world.store, "team-a")
    b_rows = pending_items(world.store, "team-b")
    assert [(r["item_id"], r["position"]) for r in b_rows] == [("b0", 1), ("b1", 2)]
    assert [r["cohort_position"] for r in b_rows] == [1, 2]
    assert [(r["item_id"], r["cohort_position"]) for r in a_rows] == [
        ("a3", 3),
        ("a4", 4),
        ("a5", 5),
    ]
    # Outside a cohort there is no cohort position.
    world.apply("solo", queue_config(1))
    world.deliver(item("solo", "s0"))
    world.deliver(item("solo", "s1"))
    assert [r["cohort_position"] for r in pending_items(world.store, "solo")] == [None]


def test_units_go_back_with_the_slot_in_the_write_that_ends_the_attempt(world: World) -> None:
    world.deliver(item("team-a", "a0"))
    assert world.data("team-a", "a0")["units"]
    job = world.vertex.job_of("a0")[0]
    world.vertex.set_state(job["name"], "JOB_STATE_FAILED", error={"code": 3, "message": "x"})
    world.app().sweeper.run()
    assert world.data("team-a", "a0")["state"] == "FAILED"
    assert world.data("team-a", "a0")["units"] == []
    assert held(world) == 0


def test_a_refusal_below_the_declared_quota_lowers_the_limit_without_backing_off(
    world: World,
) -> None:
    world.deliver(item("team-a", "a0"))
    message = f"The following quota metrics exceed quota limits: aiplatform.googleapis.com/{L4}"
    world.vertex.refuse.append(VertexError(429, "RESOURCE_EXHAUSTED", message, "CreateCustomJob"))
    world.deliver(item("team-b", "b0"))
    assert world.data("team-b", "b0")["state"] == "QUEUED"
    queue = world.store.get_queue("team-b") or {}
    assert "capacity_backoff" not in queue  # the queue does not back off for minutes
    detail = cohort_detail(world.store, "gpus")
    assert detail["quotas"][0]["limit"] == 1  # what launchq held when Vertex said no
    world.deliver(item("team-b", "b1"))
    assert world.data("team-b", "b1")["state"] == "QUEUED"  # within the lowered limit
    # The recheck period ends: the declared limit is used again.
    world.clock.advance(31)
    world.app().sweeper.run()
    states = {world.data("team-b", i)["state"] for i in ("b0", "b1")}
    assert states == {"SUBMITTED"}
    assert held(world) == 3


def test_a_leaked_unit_is_given_back_by_the_sweep(world: World) -> None:
    world.deliver(item("team-a", "a0"))
    record = world.store.get_item("team-a", "a0")
    assert record is not None
    assert record.units
    # A hand edit (or a bug) ends the item without its units.
    from launchq.store.base import Transition

    world.store.transition(
        record,
        Transition(ItemState.CANCELLED, "edited by hand"),
        {"units": []},
    )
    assert held(world) == 1
    world.app().sweeper.run()
    assert held(world) == 0


def test_usage_is_accrued_by_the_sweep_at_most_once_a_second(world: World) -> None:
    world.deliver(item("team-a", "a0"))
    world.app().sweeper.run()
    first = world.store.get_cohort("gpus") or {}
    world.app().sweeper.run()  # a millisecond later: not written again
    assert (world.store.get_cohort("gpus") or {})["usage"] == first["usage"]
    world.clock.advance(100)
    world.app().sweeper.run()
    usage = (world.store.get_cohort("gpus") or {})["usage"]
    assert usage["team-a"]["value"] == pytest.approx(accrue(0.0, 1, 100.0, 600.0), rel=0.01)
    assert usage["team-b"]["value"] == 0.0
    assert usage["team-a"]["at"] - first["usage"]["team-a"]["at"] >= timedelta(seconds=100)


# -- max_jobs_per_submitter ------------------------------------------------------------------


def deliver_as(world: World, who: str, queue: str, item_id: str) -> None:
    data = json.dumps(item(queue, item_id)).encode()
    attributes = {SUBMITTED_BY_ATTRIBUTE: who}
    message = PubsubMessage(data, attributes, f"m-{item_id}", topic=SHARED_TOPIC)
    world.app().dispatcher.handle(message)


def test_a_submitter_at_its_limit_is_passed_over_and_told_why() -> None:
    world = World()
    world.apply("shared", queue_config(4, max_jobs_per_submitter=2))
    for n in range(4):
        deliver_as(world, "alice", "shared", f"a{n}")
    deliver_as(world, "bob", "shared", "b0")
    started = {i for i in ("a0", "a1", "a2", "a3", "b0") if world.vertex.job_of(i)}
    assert started == {"a0", "a1", "b0"}
    rows = {row["item_id"]: row for row in pending_items(world.store, "shared")}
    assert rows["a2"]["position"] is None
    assert rows["a2"]["reason"] == (
        "submitter alice holds 2 jobs (max_jobs_per_submitter 2): it starts when one ends"
    )
    # Bob's second item starts before Alice's older ones: she is at her limit.
    deliver_as(world, "bob", "shared", "b1")
    assert world.vertex.job_of("b1")
    assert not world.vertex.job_of("a2")
    # One of Alice's jobs ends: her next item takes the slot.
    world.vertex.set_state(world.vertex.job_of("a0")[0]["name"], "JOB_STATE_SUCCEEDED")
    world.app().sweeper.run()
    assert world.vertex.job_of("a2")
    assert world.data("shared", "a2")["submitter"] == "alice"


def test_among_submitters_the_one_with_less_recent_use_goes_first() -> None:
    world = World()
    world.apply("shared", queue_config(1, max_jobs_per_submitter=5))
    deliver_as(world, "alice", "shared", "a0")
    world.app().sweeper.run()  # the first accrual
    world.clock.advance(600)  # Alice's job runs ten minutes
    world.app().sweeper.run()
    usage = (world.store.get_queue("shared") or {})["submitter_usage"]
    assert usage["s:alice"]["value"] == pytest.approx(accrue(0.0, 1, 600.0, 3600.0), rel=0.01)
    deliver_as(world, "alice", "shared", "a1")
    world.clock.advance(1)
    deliver_as(world, "bob", "shared", "b0")  # younger than a1, same priority
    world.vertex.set_state(world.vertex.job_of("a0")[0]["name"], "JOB_STATE_SUCCEEDED")
    world.app().sweeper.run()
    assert world.vertex.job_of("b0")
    assert not world.vertex.job_of("a1")
    positions = [(r["item_id"], r["position"]) for r in pending_items(world.store, "shared")]
    assert positions == [("a1", 1)]


# -- the dashboard ---------------------------------------------------------------------------


def test_the_dashboard_shows_each_member_against_its_share(world: World) -> None:
    for n in range(4):
        world.deliver(item("team-a", f"a{n}"))
    world.deliver(item("team-b", "b0"))
    world.app().sweeper.run()
    client = create_app(Backends(project="launchq-test", store=world.store)).test_client()
    page = client.get("/").get_data(as_text=True)
    assert 'data-cohort="gpus"' in page
    assert f"{L4}: <strong>3 / 3</strong> held" in page
    assert 'data-member="team-a"' in page
    assert "share 1.5" in page  # the dashed level on each member's chart
    [panel] = client.get("/api/cohorts").get_json()
    members = {m["queue"]: m for m in panel["panel_members"]}
    assert (members["team-a"]["held"], members["team-a"]["borrowed"]) == (3, 1.5)
    assert (members["team-b"]["held"], members["team-b"]["waiting"]) == (0, 1)
    # The chart's series counts the accelerators each claim took, from the items' histories.
    series = views.accelerators_series(
        views.window_items(world.store, "team-a", world.clock()), world.clock()
    )
    assert series.points[-1][1] == 3.0


def test_a_pass_counts_the_open_queues_that_still_have_ready_items(world: World) -> None:
    """What makes the sweep loop pass every busy interval: ready items left on an open queue
    (here a full cohort quota), not on a paused one."""
    for n in range(5):
        world.deliver(item("team-a", f"a{n}"))
    assert world.app().sweeper.run().waiting_queues == 1
    set_paused(world.store, "team-a", True)
    assert world.app().sweeper.run().waiting_queues == 0


def test_a_quota_dropped_or_a_cohort_deleted_gives_its_units_back_as_jobs_end(
    world: World,
) -> None:
    world.deliver(item("team-a", "a0"))
    pool = f"launchq-test~us-central1~{L4}"
    t4 = "custom_model_training_nvidia_t4_gpus"
    apply_cohort(world.store, cohort_doc(quotas={t4: 2}))  # L4 no longer declared
    assert len(world.store.free_units(pool, 10)) == 0  # free ones deleted at once
    assert [u.retire for u in world.store.held_units(pool)] == [True]  # a0 keeps its own
    assert world.vertex.job_of("a0")
    world.vertex.set_state(world.vertex.job_of("a0")[0]["name"], "JOB_STATE_SUCCEEDED")
    world.app().sweeper.run()
    assert world.store.held_units(pool) == []
    # Deleting the cohort: its queues are admitted on their own again.
    delete_cohort(world.store, "gpus")
    assert world.store.get_cohort("gpus") is None
    assert world.store.free_units(f"launchq-test~us-central1~{t4}", 10) == []
    world.deliver(item("team-a", "a1"))
    assert world.vertex.job_of("a1")
    assert "units" not in world.data("team-a", "a1")  # admitted outside any cohort


def test_the_example_cohorts_are_valid() -> None:
    examples = sorted((Path(__file__).resolve().parents[2] / "examples" / "cohorts").glob("*.yaml"))
    assert examples
    for path in examples:
        config = parse_cohort_config(yaml.safe_load(path.read_text()), name=path.stem)
        assert config.name == path.stem


class ScriptedReader:
    """A Cloud Quotas reader answering from a script, counting its reads."""

    def __init__(self, reading: Any) -> None:
        self.reading = reading
        self.reads: list[tuple[str, str, list[str]]] = []

    def read(self, project: str, region: str, metrics: Any) -> Any:
        self.reads.append((project, region, sorted(metrics)))
        return self.reading


def test_quotas_are_read_only_for_cohorts_that_ask_and_only_every_few_minutes(
    world: World,
) -> None:
    from launchq.gcp.quotas import QuotaReading, Unread

    reader = ScriptedReader(QuotaReading("launchq-test", "us-central1", {L4: 1}))
    sweeper = world.app().sweeper
    sweeper.quota_reader = reader  # type: ignore[assignment]
    sweeper.run()
    assert reader.reads == []  # the cohort does not ask (read_quotas: false)
    apply_cohort(world.store, cohort_doc(read_quotas=True))
    sweeper.run()
    world.clock.advance(299)
    world.app().sweeper.run()  # another process, within 300 s of the last read: not again
    sweeper.run()
    assert reader.reads == [("launchq-test", "us-central1", [L4])]
    for n in range(3):
        world.deliver(item("team-a", f"a{n}"))
    assert len(active_jobs(world)) == 1  # Google enforces 1 of the 3 declared
    # The read fails (the sweep's account lacks roles/cloudquotas.viewer): the declared stands.
    denied = Unread("error", "403", "PERMISSION_DENIED")
    reader.reading = QuotaReading("launchq-test", "us-central1", {}, {L4: denied})
    world.clock.advance(2)
    sweeper.run()
    assert len(reader.reads) == 2
    [quota] = cohort_detail(world.store, "gpus")["quotas"]
    assert (quota["read"], quota["limit"], quota["read_why"]) == (
        None, 3, "error: PERMISSION_DENIED"
    )  # fmt: skip
    assert len(active_jobs(world)) == 3
