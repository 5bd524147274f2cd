"""Each benchmark once, at a tiny size, on the test session's emulators and stand-in.

This proves the benchmarks still run and return sane structures (`make bench` runs them at full
size). It never asserts a timing: the machine is shared and noisy.
"""

from __future__ import annotations

import pytest

from bench import admission, cold_start, overhead, publish_latency, run, sweep_scaling
from bench.common import Stack

pytestmark = pytest.mark.integration


def test_every_benchmark_runs_once_at_a_tiny_size(stack: Stack) -> None:
    results = run.run_all(stack, run.SMOKE)
    assert set(results) == set(run.RUNNERS)

    cold = results["cold_start"]
    assert cold["jobs_created"] == cold["runs"] == 1
    assert cold["dispatch"]["ready_s_median"] > 0
    assert cold["dispatch"]["peak_rss_mb_median"] > 10
    assert cold["aiplatform_import"]["peak_rss_mb_median"] > 10
    assert cold["time_ratio"] > 0
    assert cold["memory_ratio"] > 0
    assert (
        0 < cold["libraries_import"]["peak_rss_mb_median"] < cold["dispatch"]["peak_rss_mb_median"]
    )
    assert cold["libraries_ratio"] > 0

    latency = results["publish_latency"]["paced"]
    assert latency["items"] == latency["latency_ms"]["n"] == run.SMOKE["publish_latency"]["items"]
    assert latency["latency_ms"]["p50"] > 0
    assert latency["duplicate_jobs"] == 0

    over = results["overhead"]
    assert over["per_item"]["floor"]["commit"] == 2
    assert over["per_item"]["dispatch"]["commit"] >= 2
    # A new item is recorded, claimed and recorded again without reading it back: each
    # compare-and-swap starts from the previous write (only a redelivery reads).
    assert over["per_item"]["dispatch"].get("batch_get_documents", 0) < 1
    assert over["vertex_creates_total"] > 0
    assert over["ratio"] > 0
    assert over["per_item"]["floor_events"]["commit"] == 2
    assert over["ratio_events_floor"] > 0
    assert over["profile"]["top_self_time"]

    (sweep,) = (results["sweep_scaling"][k] for k in results["sweep_scaling"] if k.isdigit())
    assert sweep["quiet_sweep"]["items_seen"] == sweep["items"]
    assert sweep["busy_sweep"]["transitions"] == sweep["items"]
    assert 0 < sweep["quiet_sweep"]["vertex_calls"] <= 2
    assert sweep["busy_sweep"]["firestore_writes"] >= sweep["items"]
    assert sweep["quiet_sweep"]["firestore_docs_read"] >= sweep["items"]
    assert sweep["naive_get_per_item"]["vertex_calls"] == sweep["items"]

    lad = results["ladder"]
    assert lad["failover"]["moved_to_us_east4"] == lad["failover"]["items"]
    assert lad["failover"]["lag_p95_s"] > 0
    two = lad["burst"]["two_placements"]
    assert two["jobs"] == lad["burst"]["items"]
    assert max(two["max_running_per_region"].values()) <= two["quota_jobs_per_region"]
    assert lad["storm"]["succeeded"] == lad["storm"]["items"]
    assert lad["met"]["no_duplicates"]
    assert "7 ladder" in run.table(results)

    fair = results["fairshare"]
    assert fair["cohort"]["finished"]
    assert fair["cohort"]["max_active"] <= fair["quota"]
    assert fair["probe"]["max_active"] <= fair["quota"]
    assert fair["cohort"]["duplicates"] == fair["cohort"]["raised"] == 0
    assert 0 < fair["cohort"]["utilisation"][0] <= 1.0
    assert 0 <= fair["cohort"]["share_a"][0] <= 1.0
    assert fair["arrival"]["a_jobs_cancelled"] == 0
    assert fair["arrival"]["b_first_start_after_arrival_s"] is not None
    assert "8 fair share" in run.table(results)

    bud = results["budgets"]
    assert bud["met"]["never_over"]
    assert bud["met"]["vertex_within"]
    assert bud["met"]["exactly_once"]
    [burst] = bud["runs"]
    assert burst["jobs_started"] >= bud["fit"]  # at least the first `fit` reservations fit
    assert burst["head_waits_for_budget"]  # and the rest waits, saying why
    assert burst["ledger_writes"] == 2 * burst["jobs_started"]
    assert "9 budget" in run.table(results)

    sw = results["sweeps"]
    children = run.SMOKE["sweeps"]["children"]
    [first] = sw["record"]["runs"]
    assert first["expanded"] == first["children_recorded"] == children
    assert first["child_states"] == {"QUEUED": children}  # a paused queue: recorded, not admitted
    # One write per child, one parent update per batch, one parent create: counted on the wire.
    assert first["writes_per_child"] == first["writes_per_child_from_batches"]
    assert 0 < first["validate_s"] < first["to_last_child_s"] <= first["handle_s"]
    for part in ("admitted", "duplicates", "crash_redelivered", "crash_sweep"):
        once = sw[part]
        assert once["children_found"] == once["jobs"] == children, part
        assert once["children_missing"] == once["children_extra"] == 0, part
        assert once["duplicate_jobs"] == once["children_without_a_job"] == 0, part
    assert sw["duplicates"]["children_committed"] == children
    assert 0 < sw["crash_sweep"]["expanded_at_crash"] < children  # it died mid-expansion
    cancelled = sw["cancel"]
    assert cancelled["queued_or_held_after"] == 0
    assert cancelled["parent_state"] == "CANCELLED"
    assert sw["largest"]["recorded_by_the_delivery"] == 0  # its deadline had passed
    assert sw["largest"]["expanded_in_the_end"] == run.SMOKE["sweeps"]["largest_children"]
    assert sw["validate"]["prepare_ms_per_child"] > 0
    assert sw["met"]["exactly_once"]
    assert sw["met"]["cancel_none_waiting"]
    assert "10 sweeps" in run.table(results)

    adm = results["admission"]
    assert adm["all_finished"]
    assert adm["jobs_created"] == adm["items"] == adm["items_succeeded"]
    assert 0 < adm["max_concurrency_exact"] <= adm["max_jobs"]
    assert adm["max_concurrency_sampled"] <= adm["max_jobs"]
    assert adm["slot_wait_ms"]["n"] == adm["items"] - adm["max_jobs"]
    assert adm["sweeps"] > 0

    listing = results["list_bytes"]
    assert listing["jobs_listed_with_mask"] == listing["jobs"] == run.SMOKE["list_bytes"]["jobs"]
    assert set(listing["fields_with_mask"]) <= set(listing["read_mask"])
    assert "jobSpec" not in listing["fields_with_mask"]
    assert 0 < listing["bytes"]["masked"] < listing["bytes"]["full"]
    assert listing["bytes_ratio"] == listing["bytes"]["masked"] / listing["bytes"]["full"]
    cap = results["capacity"]
    assert cap["burst"]["messages_raised"] == 0
    assert cap["burst"]["created"] == cap["burst"]["items"]
    assert cap["burst"]["item_states"] == {"SUCCEEDED": cap["burst"]["items"]}
    assert 0 < cap["burst"]["max_jobs_running"] <= cap["burst"]["quota_jobs"]
    assert 0 < cap["burst"]["max_creates_in_a_scaled_minute"] <= cap["burst"]["items"]
    assert cap["budget_contention"]["token_documents_written_again"] == 0
    assert 0 < cap["budget_contention"]["max_granted_in_a_window"] <= 10
    # Every grant is its own token document: no token was handed out twice.
    assert cap["budget_contention"]["granted"] == cap["budget_contention"]["token_documents"]

    table = run.table(results)
    assert table.count("\n") >= 8
    assert "cold start" in table


def test_the_firestore_counter_counts_what_goes_over_the_wire(stack: Stack) -> None:
    from bench.common import FirestoreCounter

    project = stack.new_project()
    db = stack.firestore(project)
    with FirestoreCounter() as counter:
        db.collection("c").document("a").create({"x": 1})
        db.collection("c").document("a").get()
        list(db.collection("c").stream())
    snap = counter.snapshot()
    assert snap["rpcs"] == {"commit": 1, "batch_get_documents": 1, "run_query": 1}
    assert snap["writes"] == 1
    assert snap["docs_read"] == 2


def test_sweep_scaling_keeps_its_script_entry_point() -> None:
    assert callable(sweep_scaling.main)
    assert callable(cold_start.importtime_profile)
    assert admission._max_overlap([(0, 2), (1, 3), (2, 4)]) == 2
    assert publish_latency.QUEUE
    assert overhead.QUEUE
