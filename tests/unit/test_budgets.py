"""Budgets: the price table, an attempt's rates and cost, and admission within a queue's and a
cohort's monthly budget, on the in-memory store (tests/integration/test_store_contract.py runs
the ledger's compare-and-swap on the Firestore emulator too)."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from launchq.budgets import Budgets, Held, Reservation
from launchq.errors import Conflict
from launchq.model.budgets import (
    DEFAULT_TIMEOUT_SECONDS,
    Amount,
    Charge,
    Ledger,
    ledger_id,
    period_of,
    rates,
    run_seconds,
    shortfall,
    timeout_seconds,
)
from launchq.model.reasons import WaitReason
from launchq.model.records import ItemRecord
from launchq.model.states import ItemState
from launchq.spec.budgets import Budget
from launchq.spec.prices import DEFAULT_PRICES, PriceTableError, parse_price_table
from launchq.spec.validation import ConfigError
from launchq.store import Transition
from launchq_client.budgets import budget_text
from launchq_client.cohorts import apply_cohort, cohort_detail
from launchq_client.configs import validate_queue_config as parse_queue_config
from launchq_client.queues import list_queue_summaries
from launchq_client.reads import pending_items
from tests.unit.fakes import World, item, queue_config

L4 = "custom_model_training_nvidia_l4_gpus"
HOUR = 3_600_000  # an accelerator-hour in the ledger's unit (accelerator-milliseconds)
PRICES = {
    "source": "tests",
    "retrieved": "2026-12-01",
    "rates": [
        {"kind": "machine", "name": "g2-standard-4", "usd_per_hour": 0.5},
        {"kind": "accelerator", "name": "NVIDIA_L4", "usd_per_hour": 1.0},
        {"kind": "accelerator", "name": "NVIDIA_L4", "strategy": "SPOT", "usd_per_hour": 0.25},
        {"kind": "accelerator", "name": "NVIDIA_L4", "region": "europe-west4",
         "usd_per_hour": 1.5},
    ],
}  # fmt: skip


def body(count: int = 1, replicas: int = 1, strategy: str | None = None, timeout: Any = None):
    scheduling: dict[str, Any] = {}
    if strategy:
        scheduling["strategy"] = strategy
    if timeout is not None:
        scheduling["timeout"] = timeout
    return {
        "jobSpec": {
            "workerPoolSpecs": [
                {
                    "machineSpec": {
                        "machineType": "g2-standard-4",
                        "acceleratorType": "NVIDIA_L4",
                        "acceleratorCount": count,
                    },
                    "replicaCount": replicas,
                }
            ],
            "scheduling": scheduling,
        }
    }


# -- the price table and an attempt's rates -----------------------------------------------------


def test_the_most_specific_rate_wins_and_flex_start_is_priced_as_standard() -> None:
    table = parse_price_table(PRICES)
    assert table.hourly("accelerator", "NVIDIA_L4", "us-central1", "STANDARD") == 1.0
    assert table.hourly("accelerator", "NVIDIA_L4", "europe-west4", "STANDARD") == 1.5
    assert table.hourly("accelerator", "NVIDIA_L4", "us-central1", "SPOT") == 0.25
    # An exact region beats an exact strategy: europe-west4's rate, given for every strategy.
    assert table.hourly("accelerator", "NVIDIA_L4", "europe-west4", "SPOT") == 1.5
    assert table.hourly("accelerator", "NVIDIA_L4", "us-central1", "FLEX_START") == 1.0
    assert table.hourly("accelerator", "NVIDIA_A100_80GB", "us-central1", "STANDARD") is None


def test_a_price_table_names_every_mistake() -> None:
    bad = {
        **PRICES,
        "rates": [
            *PRICES["rates"],
            PRICES["rates"][1],
            {"kind": "accelerator", "name": "NVIDIA_L44", "usd_per_hour": 1},
        ],
    }
    with pytest.raises(PriceTableError) as caught:
        parse_price_table(bad)
    text = str(caught.value)
    assert "did you mean 'NVIDIA_L4'" in text
    with pytest.raises(PriceTableError, match="retrieved"):
        parse_price_table({"source": "x", "rates": []})


def test_the_shipped_table_says_where_and_when_its_rates_were_read() -> None:
    assert DEFAULT_PRICES.source.startswith("https://cloud.google.com/vertex-ai/pricing")
    assert DEFAULT_PRICES.retrieved.year == 2026
    assert all(rate.source for rate in DEFAULT_PRICES.rates)


def test_rates_add_every_replica_and_spot_is_cheaper() -> None:
    table = parse_price_table(PRICES)
    standard = rates(body(count=2, replicas=3, timeout="3600s"), "us-central1", table)
    assert standard.accelerators == 6
    assert standard.micro_usd_per_hour == (3 * 0.5 + 6 * 1.0) * 1_000_000
    assert standard.timeout_seconds == 3600
    spot = rates(body(count=2, replicas=3, strategy="SPOT"), "us-central1", table)
    # The machine has only a `*` strategy rate: it applies to SPOT too.
    assert spot.micro_usd_per_hour == (3 * 0.5 + 6 * 0.25) * 1_000_000
    assert spot.timeout_seconds == DEFAULT_TIMEOUT_SECONDS
    assert spot.most == Amount(6000 * DEFAULT_TIMEOUT_SECONDS, 3_000_000 * 7 * 24)


def test_a_job_without_a_price_has_no_dollar_estimate_but_its_accelerators_count() -> None:
    table = parse_price_table({**PRICES, "rates": PRICES["rates"][1:]})
    found = rates(body(), "us-central1", table)
    assert found.micro_usd_per_hour is None
    assert found.missing == ("g2-standard-4 (STANDARD, us-central1)",)
    assert found.most == Amount(1000 * DEFAULT_TIMEOUT_SECONDS, None)


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("3600s", 3600), ("0.5s", 1), (7200, 7200), (None, DEFAULT_TIMEOUT_SECONDS),
     ("1h", DEFAULT_TIMEOUT_SECONDS)],
)  # fmt: skip
def test_the_timeout_is_read_from_the_rendered_job(raw: Any, seconds: int) -> None:
    assert timeout_seconds(body(timeout=raw)) == seconds


def test_run_time_is_vertexs_start_to_end_and_a_job_that_never_started_costs_nothing() -> None:
    assert run_seconds({"start_time": "2026-12-01T10:00:00Z",
                        "end_time": "2026-12-01T10:30:00.500000Z"}) == 1800.5  # fmt: skip
    assert run_seconds({"start_time": None, "end_time": "2026-12-01T10:30:00Z"}) == 0
    assert run_seconds(None) == 0
    charge = Charge(rates(body(count=2, timeout="600s"), "us-central1", parse_price_table(PRICES)))
    # A run longer than the timeout (clock skew) is capped: never more than was reserved.
    long = {"start_time": "2026-12-01T10:00:00Z", "end_time": "2026-12-01T11:00:00Z"}
    assert charge.rates.cost(run_seconds(long)) == charge.rates.most


def test_shortfall_says_which_budget_and_what_is_left() -> None:
    ledger = Ledger("queue~a~2026-12", spent=Amount(3 * HOUR, 0), reserved=Amount(2 * HOUR, 0))
    assert shortfall(Budget(gpu_hours=10), ledger, Amount(5 * HOUR, 0), "queue") is None
    why = shortfall(Budget(gpu_hours=10), ledger, Amount(5 * HOUR + 1, 0), "queue")
    assert why == "queue budget: 5.0 accelerator-hours needed (the job's timeout), 5.0 of 10 left "\
        "this month"  # fmt: skip
    assert "no price" in str(shortfall(Budget(usd=10), ledger, Amount(1, None), "cohort c"))


def test_a_budget_sets_a_limit_and_a_queue_config_carries_it() -> None:
    with pytest.raises(ValueError, match="gpu_hours, usd or both"):
        Budget()
    config = parse_queue_config({**queue_config(2), "budget": {"gpu_hours": 5, "usd": 20}})
    assert config.budget == Budget(gpu_hours=5, usd=20)
    with pytest.raises(ConfigError, match=r"budget\.on_exceed"):
        parse_queue_config({**queue_config(2), "budget": {"gpu_hours": 5, "on_exceed": "drop"}})


def test_months_are_utc_calendar_months() -> None:
    assert period_of(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == "2026-12"
    assert ledger_id("cohort", "gpus", "2027-01") == "cohort~gpus~2027-01"


# -- admission within a budget ------------------------------------------------------------------


def l4_queue(max_jobs: int = 10, timeout: int = 3600, **extra: Any) -> dict[str, Any]:
    config = queue_config(max_jobs, **extra)
    config["spec"]["worker_pool_specs"][0]["machine_spec"] = {
        "machine_type": "g2-standard-4",
        "accelerator_type": "NVIDIA_L4",
        "accelerator_count": 1,
    }
    config["run"] = {**config.get("run", {}), "timeout": timeout}
    return config


def jobs(world: World, state: str = "JOB_STATE_QUEUED") -> list[dict[str, Any]]:
    return [j for j in world.vertex.jobs.values() if j["state"] == state]


def end(world: World, job: dict[str, Any], minutes: float, state: str = "JOB_STATE_SUCCEEDED"):
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    stop = start + timedelta(minutes=minutes)
    world.vertex.set_state(
        job["name"], state, startTime=start.isoformat().replace("+00:00", "Z"),
        endTime=stop.isoformat().replace("+00:00", "Z"),
    )  # fmt: skip


def ledger(world: World, name: str, scope: str = "queue") -> Ledger:
    return world.store.get_ledgers([ledger_id(scope, name, period_of(world.clock()))])[0]  # type: ignore[arg-type]


def test_a_queue_never_starts_a_job_its_budget_cannot_cover_and_books_what_jobs_used() -> None:
    world = World()
    world.apply("team-a", l4_queue(budget={"gpu_hours": 2.5}))  # 1 GPU x 1 h timeout each
    for n in range(4):
        world.deliver(item("team-a", f"a{n}"))
    assert len(jobs(world)) == 2  # 2 h reserved; a third hour would be 3 > 2.5
    waiting = world.data("team-a", "a2")
    assert waiting["state"] == "QUEUED"
    assert WaitReason.of(waiting["reason"]) is WaitReason.BUDGET
    assert "1.0 accelerator-hours needed" in waiting["reason"]
    assert "0.5 of 2.5 left" in waiting["reason"]
    rows = pending_items(world.store, "team-a")
    assert rows[0]["reason"] == waiting["reason"]
    assert ledger(world, "team-a").reserved.gpu_ms == 2 * HOUR
    # One job ends after 30 minutes: its hour's reservation comes back, half an hour is spent.
    end(world, jobs(world)[0], 30)
    world.app().sweeper.run()
    booked = ledger(world, "team-a")
    assert (booked.spent.gpu_ms, booked.reserved.gpu_ms) == (HOUR // 2, 2 * HOUR)
    assert len(jobs(world)) == 2  # a2 took the hour freed; 0.5 + 2 = 2.5 used
    assert world.data("team-a", "a2")["state"] == "SUBMITTED"
    assert world.data("team-a", "a3")["state"] == "QUEUED"
    ended = next(i for i in ("a0", "a1") if world.data("team-a", i)["state"] == "SUCCEEDED")
    attempt = world.data("team-a", ended)["attempts"][-1]
    assert (attempt["run_seconds"], attempt["gpu_hours"]) == (1800, 0.5)
    assert world.data("team-a", ended).get("charge") is None
    summary = {row["name"]: row for row in list_queue_summaries(world.store)}["team-a"]
    assert summary["budget"]["gpu_hours"] == {
        "limit": 2.5,
        "spent": 0.5,
        "reserved": 2.0,
        "left": 0.0,
    }
    assert budget_text(summary["budget"]) == "2.5/2.5 GPU-h"


def test_a_failed_attempt_that_never_ran_gives_its_whole_reservation_back() -> None:
    world = World()
    world.apply("team-a", l4_queue(budget={"gpu_hours": 1}))
    world.deliver(item("team-a", "a0"))
    world.deliver(item("team-a", "a1"))
    job = jobs(world)[0]
    world.vertex.set_state(job["name"], "JOB_STATE_FAILED", error={"code": 3, "message": "bad"})
    world.app().sweeper.run()
    booked = ledger(world, "team-a")
    assert booked.spent.gpu_ms == 0
    assert world.data("team-a", "a1")["state"] == "SUBMITTED"
    assert booked.reserved.gpu_ms == HOUR


def test_on_exceed_reject_fails_the_item_and_the_next_one_that_fits_starts() -> None:
    world = World()
    config = l4_queue(budget={"gpu_hours": 1.5, "on_exceed": "reject"})
    world.apply("team-a", config)
    world.deliver(item("team-a", "a0"))
    world.deliver(item("team-a", "a1"))
    failed = world.data("team-a", "a1")
    assert failed["state"] == "FAILED"
    assert failed["error"]["reason"] == "over_budget"
    assert "0.5 of 1.5 left" in failed["error"]["message"]
    assert len(jobs(world)) == 1


def test_a_cohort_budget_is_shared_by_its_members() -> None:
    world = World()
    world.apply("team-a", l4_queue())
    world.apply("team-b", l4_queue())
    apply_cohort(world.store, {
        "name": "gpus", "project": "launchq-test", "region": "us-central1",
        "quotas": {L4: 8}, "budget": {"gpu_hours": 3},
        "members": [{"queue": "team-a"}, {"queue": "team-b"}],
    })  # fmt: skip
    for n in range(3):
        world.deliver(item("team-a", f"a{n}"))
        world.deliver(item("team-b", f"b{n}"))
    assert len(jobs(world)) == 3  # 3 GPU-hours for the two teams together, 8 GPUs free
    cohort = ledger(world, "gpus", "cohort")
    assert cohort.reserved.gpu_ms == 3 * HOUR
    states = {f"{q[-1]}{n}": world.data(q, f"{q[-1]}{n}") for q in ("team-a", "team-b")
              for n in range(3)}  # fmt: skip
    assert sorted(k for k, v in states.items() if v["state"] == "QUEUED") == ["a2", "b1", "b2"]
    # Each member's next item says which budget holds it back: the cohort's, not its queue's.
    for key in ("a2", "b1"):
        assert states[key]["reason"].startswith("over budget: cohort gpus budget: 1.0 ")
    summary = cohort_detail(world.store, "gpus")["budget"]
    assert summary["gpu_hours"] == {"limit": 3, "spent": 0.0, "reserved": 3.0, "left": 0.0}


def test_concurrent_admitters_never_reserve_past_the_budget() -> None:
    """Eight processes claim at once from one budgeted queue, with ends interleaved: the
    ledger's `spent + reserved` never passes the limit, and every claim that won is booked."""
    world = World()
    world.apply("team-a", l4_queue(max_jobs=-1, budget={"gpu_hours": 7}))
    store = world.store
    items: list[ItemRecord] = []
    for n in range(40):
        world.store.create_item(
            "team-a", f"x{n}", ItemState.QUEUED,
            {"queue": "team-a", "item_id": f"x{n}", "project": "launchq-test",
             "region": "us-central1", "job_body": body(timeout="3600s")},
            "test",
        )  # fmt: skip
        found = world.store.get_item("team-a", f"x{n}")
        assert found is not None
        items.append(found)
    budgets = Budgets(store)
    limit = 7 * HOUR
    peaks: list[int] = []
    won: list[str] = []
    lock = threading.Lock()
    runtime = parse_queue_config({**l4_queue(budget={"gpu_hours": 7}), "name": "team-a"})

    def claimer(seed: int) -> None:
        rng = random.Random(seed)
        for candidate in rng.sample(items, len(items)):
            current = store.get_item("team-a", candidate.item_id)
            if current is None or current.state is not ItemState.QUEUED:
                continue
            got = budgets.reserve(current, runtime.budget, None)
            if isinstance(got, Held):
                continue
            assert isinstance(got, Reservation)
            try:
                store.transition(
                    current, Transition(ItemState.SUBMITTING, "test"), {"attempt": 1},
                    charge=got.charge, ledgers=got.ledgers,
                )  # fmt: skip
            except Conflict:
                continue
            with lock:
                won.append(candidate.item_id)
                used = ledger(world, "team-a").used.gpu_ms
                peaks.append(used)

    threads = [threading.Thread(target=claimer, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 7  # exactly as many hours as the budget holds, none more
    assert max(peaks) <= limit
    assert ledger(world, "team-a").reserved.gpu_ms == 7 * HOUR
    assert ledger(world, "team-a").attempts == 7


def test_the_dashboard_shows_spend_against_budget_and_each_items_cost() -> None:
    """The queues page's budget column (only when a queue has a budget) and an ended item's
    estimated cost on its page, in the states users meet: one job ran, one waits for budget."""
    from launchq_client.backends import Backends
    from launchq_ui.app import create_app

    world = World()
    world.apply("team-a", l4_queue(budget={"gpu_hours": 1.5}))
    world.apply("plain", l4_queue())
    for n in range(2):
        world.deliver(item("team-a", f"a{n}"))
    end(world, jobs(world)[0], 30)
    world.app().sweeper.run()
    client = create_app(Backends(project="launchq-test", store=world.store)).test_client()
    page = client.get("/").get_data(as_text=True)
    assert "budget this month" in page
    assert 'data-label="budget this month">1.5/1.5 GPU-h</td>' in page  # 0.5 spent + 1 reserved
    rows = {row["name"]: row for row in client.get("/api/queues").get_json()}
    assert rows["plain"]["budget"] is None
    assert rows["team-a"]["budget"]["gpu_hours"]["spent"] == 0.5
    ended = next(i for i in ("a0", "a1") if world.data("team-a", i)["state"] == "SUCCEEDED")
    detail = client.get(f"/queues/team-a/items/{ended}").get_data(as_text=True)
    assert 'id="cost">0.50 accelerator-h' in detail
    assert '<td data-label="ran">30m00s</td>' in detail  # the attempt's run, Vertex's times
    # Without a budget anywhere, the column is not shown at all.
    quiet = World()
    quiet.apply("plain", l4_queue())
    page = create_app(Backends(project="launchq-test", store=quiet.store)).test_client().get("/")
    assert "budget this month" not in page.get_data(as_text=True)
