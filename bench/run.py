"""Run every benchmark on one local stack; write bench/results/latest.json and the table.

    .venv/bin/python -m bench.run            # full size (make bench): JSON, docs table, printed
    .venv/bin/python -m bench.run --smoke    # tiny sizes, prints the table, writes nothing

The table goes between the `<!-- bench:results -->` markers of docs/performance.md (the rest of
that page is prose and is left alone).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import (
    admission,
    budgets,
    capacity,
    cold_start,
    fairshare,
    ladder,
    list_bytes,
    overhead,
    publish_latency,
    sweep_scaling,
    sweeps,
)
from bench.common import ROOT, Stack, load_average, local_stack, machine
from launchq.spec.sweeps import MAX_CHILDREN

RESULTS = ROOT / "bench" / "results" / "latest.json"
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"

FULL: dict[str, dict[str, Any]] = {
    "cold_start": {"runs": 7},
    "publish_latency": {"items": 1000, "rate": 5.0},
    "overhead": {"items": 200, "profile_items": 100},
    "sweep_scaling": {"counts": [100, 1000, 10_000]},
    "admission": {"items": 500, "max_jobs": 10, "min_run": 0.2, "max_run": 2.0},
    "list_bytes": {"jobs": 1000, "repeats": 5},
    "capacity": {"items": 1000, "run_s": 1.0, "refill_jobs": 30},
    "ladder": {"items": 50, "burst_items": 500, "run_s": 2.0},
    "fairshare": {"items": 16, "seeds": 10, "probe_seeds": 2, "delay": 8.0},
    "budgets": {"items": 30, "fit": 10, "seeds": 3},
    "sweeps": {
        "children": 1000,
        "repeats": 3,
        "batches": [50, 100, 200, 400],
        "largest_children": 10_000,
        "validate_children": 10_000,
    },
}
SMOKE: dict[str, dict[str, Any]] = {
    "cold_start": {"runs": 1, "profile": False},
    "publish_latency": {"items": 8, "rate": 20.0, "burst": False},
    "overhead": {"items": 4, "profile_items": 3},
    "sweep_scaling": {"counts": [20]},
    "admission": {"items": 12, "max_jobs": 3, "min_run": 0.05, "max_run": 0.3},
    "list_bytes": {"jobs": 20, "repeats": 1},
    "capacity": {"items": 24, "run_s": 0.5, "refill_jobs": 6, "budget_seconds": 1.0},
    "ladder": {"items": 6, "burst_items": 24, "run_s": 0.5},
    "fairshare": {"items": 4, "seeds": 1, "probe_seeds": 1, "delay": 1.0, "run_s": [0.5, 1.0]},
    "budgets": {"items": 8, "fit": 3, "seeds": 1},
    "sweeps": {
        "children": 20,
        "repeats": 1,
        "batches": [],
        "largest_children": 30,
        "largest_expand_seconds": 0.0,  # the delivery records none: the sweep does it all
        "validate_children": 50,
    },
}


def _sweeps(stack: Stack, counts: list[int]) -> dict[str, Any]:
    return {str(n): sweep_scaling.measure(stack, n) for n in counts}


RUNNERS: dict[str, Callable[..., dict[str, Any]]] = {
    "cold_start": cold_start.measure,
    "publish_latency": publish_latency.measure,
    "overhead": overhead.measure,
    "sweep_scaling": _sweeps,
    "admission": admission.measure,
    "list_bytes": list_bytes.measure,
    "capacity": capacity.measure,
    "ladder": ladder.measure,
    "fairshare": fairshare.measure,
    "budgets": budgets.measure,
    "sweeps": sweeps.measure,
}


def run_all(
    stack: Stack, sizes: dict[str, dict[str, Any]], only: list[str] | None = None
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, runner in RUNNERS.items():
        if only and name not in only:
            continue
        load_before = load_average()
        started = time.perf_counter()
        result = runner(stack, **sizes[name])
        result["_meta"] = {
            "wall_s": round(time.perf_counter() - started, 1),
            "load_before": load_before,
            "load_after": load_average(),
            "parameters": sizes[name],
        }
        results[name] = result
        stack.cleanup()
    return results


def _fmt_met(value: bool | None) -> str:
    return "—" if value is None else ("met" if value else "**missed**")


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str, str]] = []
    if c := results.get("cold_start"):
        d, b = c["dispatch"], c["aiplatform_import"]
        rows += [
            (
                "1 cold start",
                f"spawn → first event handled, median of {c['runs']}",
                f"{d['ready_s_median']:.2f} s vs {b['ready_s_median']:.2f} s "
                f"(`import google.cloud.aiplatform`): ratio **{c['time_ratio']:.2f}**",
                "≤ 0.25",
                _fmt_met(c["met"]["time"]),
            ),
            (
                "",
                "peak RSS",
                f"{d['peak_rss_mb_median']:.0f} MB vs {b['peak_rss_mb_median']:.0f} MB: "
                f"ratio **{c['memory_ratio']:.2f}**",
                "≤ 0.5",
                _fmt_met(c["met"]["memory"]),
            ),
            (
                "",
                "of which import / first event",
                f"{d['import_s_median']:.2f} s / {d['first_event_s_median']:.2f} s",
                "",
                "",
            ),
            (
                "",
                "the libraries alone (functions-framework, Firestore, pydantic, requests, auth)",
                f"{c['libraries_import']['ready_s_median']:.2f} s: ratio "
                f"**{c['libraries_ratio']:.2f}**; launchq adds "
                f"{c['time_ratio'] - c['libraries_ratio']:.2f}",
                "",
                "",
            ),
        ]
    if p := results.get("publish_latency"):
        paced = p["paced"]
        lat = paced["latency_ms"]
        rows.append(
            (
                "2 publish → create",
                f"{paced['items']} items paced at {paced['publish_rate_per_s']:g}/s, "
                "1 dispatcher process",
                f"p50 **{lat['p50']:.0f} ms**, p95 {lat['p95']:.0f} ms, "
                f"p99 **{lat['p99']:.0f} ms**",
                "p50 ≤ 100, p99 ≤ 300 ms",
                _fmt_met(p["met"]["p50"] and p["met"]["p99"]),
            )
        )
        if burst := p.get("burst"):
            lat = burst["latency_ms"]
            rows.append(
                (
                    "",
                    f"{burst['items']} items at once (throughput)",
                    f"**{burst['items_per_s']:.1f} items/s**; latency p50 {lat['p50']:.0f} ms, "
                    f"p99 {lat['p99']:.0f} ms (queueing)",
                    "",
                    "",
                )
            )
    if o := results.get("overhead"):
        ms = o["ms_per_item"]
        per = o["per_item"]["dispatch"]
        rows += [
            (
                "3 overhead",
                "dispatcher per item / I/O floor (median)",
                f"{ms['dispatch']['median']:.1f} ms / {ms['floor']['median']:.1f} ms: "
                f"ratio **{o['ratio']:.2f}** (events off: {o['ratio_no_events']:.2f})",
                "≤ 1.3",
                _fmt_met(o["met"]["ratio"]),
            ),
            (
                "",
                "with events, over the floor plus its one events publish (median)",
                f"{ms['dispatch']['median']:.1f} ms / {ms['floor_events']['median']:.1f} ms: "
                f"ratio **{o['ratio_events_floor']:.2f}**",
                "≤ 1.3",
                _fmt_met(o["met"]["ratio_events_floor"]),
            ),
            (
                "",
                "round trips per item",
                f"Firestore {per.get('batch_get_documents', 0):g} reads + "
                f"{per.get('commit', 0):g} commits, 1 Vertex create, "
                f"{o['events_published_per_item']} event publishes (floor: 2 commits + 1 create)",
                "",
                "",
            ),
        ]
    if s := results.get("sweep_scaling"):
        counts = [k for k in s if k.isdigit()]
        for n in counts:
            r = s[n]
            q, b, naive = r["quiet_sweep"], r["busy_sweep"], r["naive_get_per_item"]
            met = r.get("met", {})
            rows.append(
                (
                    "4 sweep" if n == counts[0] else "",
                    f"N = {int(n):,} active items",
                    f"quiet: {q['vertex_calls']} Vertex calls, {q['firestore_docs_read']:,} reads, "
                    f"{q['firestore_writes']} writes, {q['wall_s']:.1f} s; "
                    + (
                        f"busy: {b['vertex_calls']} calls, {b['firestore_writes']:,} writes, "
                        f"{b['wall_s']:.1f} s; "
                        if b
                        else ""
                    )
                    + f"naive: {naive['vertex_calls']:,} GETs, {naive['wall_s']:.1f} s",
                    "≤ 100 calls, ≤ 30 s" if met else "",
                    (
                        f"calls {_fmt_met(met['vertex_calls'])}, "
                        f"quiet {_fmt_met(met['wall_s_quiet'])}, "
                        f"busy {_fmt_met(met['wall_s_busy'])}"
                    )
                    if met
                    else "",
                )
            )
    if a := results.get("admission"):
        w = a["slot_wait_ms"]
        rows += [
            (
                "5 admission",
                f"{a['items']} items, max_jobs {a['max_jobs']}, jobs run "
                f"{a['job_run_s'][0]:g} to {a['job_run_s'][1]:g} s",
                f"max concurrency **{a['max_concurrency_exact']}** (sampled every 50 ms: "
                f"{a['max_concurrency_sampled']}); {a['jobs_created']} jobs, "
                f"{a['items_succeeded']} items SUCCEEDED",
                f"≤ {a['max_jobs']}",
                _fmt_met(a["met"]["max_concurrency"]),
            ),
            (
                "",
                "freed slot → next create",
                f"p50 {w.get('p50', 0):.0f} ms, p95 {w.get('p95', 0):.0f} ms, "
                f"max {w.get('max', 0):.0f} ms (sweeps back to back, median "
                f"{a['sweep_s_median']} s each)",
                "",
                "",
            ),
        ]
    if lb := results.get("list_bytes"):
        per = lb["bytes_per_job"]
        page = lb["page_s_median"]
        rows.append(
            (
                "6 list page",
                f"ListCustomJobs page of {lb['jobs']:,} jobs, with the sweep's readMask / without",
                f"{lb['bytes']['masked']:,} / {lb['bytes']['full']:,} bytes "
                f"({per['masked']:.0f} / {per['full']:.0f} per job): ratio "
                f"**{lb['bytes_ratio']:.2f}**; fetch + decode {page['masked'] * 1000:.0f} / "
                f"{page['full'] * 1000:.0f} ms: ratio {lb['time_ratio']:.2f}",
                "",
                "",
            )
        )
    if cap := results.get("capacity"):
        b, r, t = cap["burst"], cap["refill"], cap["budget_contention"]
        rows += [
            (
                "6 capacity",
                f"burst: {b['items']} items, max_jobs 200, 2 A100s a job, quota 16 A100s, "
                f"{b['budget_per_second'] * 60:g} creates/min ({b['scale']})",
                f"{b['created']} created, {b['item_states'].get('SUCCEEDED', 0)} SUCCEEDED, "
                f"{b['item_states'].get('FAILED', 0)} FAILED, **{b['messages_raised']}** "
                f"messages raised, {b['quota_refusals']} quota refusals "
                f"({b['refusals_per_job']:g} per job); at most **{b['max_jobs_running']}** "
                f"jobs running (quota: {b['quota_jobs']}), {b['max_creates_in_a_second']} "
                f"creates in a second and **{b['max_creates_in_a_scaled_minute']}** in a scaled "
                f"minute (budget {b['budget_per_scaled_minute']:g}); makespan "
                f"{b['makespan_s']:.0f} s = {b['makespan_ratio']:.2f}x the floor",
                "all SUCCEEDED, 0 raised, within quota and rate",
                _fmt_met(all(cap["met"].values())),
            ),
            (
                "",
                f"refill latency, interval {r['interval_s']:g} s, period {r['period_s']:g} s",
                f"loop: p50 **{r['loop']['p50_periods']}**, p95 {r['loop']['p95_periods']} "
                f"periods; one pass per period: p50 {r['one_pass_per_period']['p50_periods']}, "
                f"p95 {r['one_pass_per_period']['p95_periods']}",
                "",
                "",
            ),
            (
                "",
                f"creation budget, {t['takers']} takers, {t['rate_per_minute']:g}/min",
                f"max **{t['max_granted_in_a_window']}** granted a window "
                f"(of {t['tokens_per_window']:g}); {t['token_documents']} token documents, "
                f"{t['token_documents_written_again']} written twice",
                "",
                "",
            ),
        ]
    if lad := results.get("ladder"):
        f, b, st = lad["failover"], lad["burst"], lad["storm"]
        one, two = b["one_placement"], b["two_placements"]
        rows += [
            (
                "7 ladder",
                f"failover: {f['items']} items, us-central1 stocked out ({f['scale']})",
                f"failure visible → next create in us-east4: p50 {f['lag_p50_s']:.2f} s, p95 "
                f"**{f['lag_p95_s']:.2f} s** = {f['lag_p95_of_period']:.2f} of the period "
                f"({f['lag_p95_of_interval']:.2f} pass intervals); {f['duplicates']} duplicates",
                "the next pass (≤ 2 intervals)",
                _fmt_met(lad["met"]["failover_p95_within_one_pass"]),
            ),
            (
                "",
                f"burst: {b['items']} items, 8 jobs' quota per region, jobs of {b['run_s']:g} s",
                f"makespan {two['makespan_s']:.0f} s on two placements vs "
                f"{one['makespan_s']:.0f} s on one: ratio **{b['makespan_ratio_two_over_one']}**; "
                f"most running per region {two['max_running_per_region']}; quota refusals "
                f"{two['quota_refusals']} vs {one['quota_refusals']}; "
                f"{two['duplicates'] + one['duplicates']} duplicates, "
                f"{two['messages_raised'] + one['messages_raised']} raised",
                "≤ 0.6, within quota, 0 duplicates",
                _fmt_met(
                    lad["met"]["burst_ratio_at_most_0_6"] and lad["met"]["quota_never_exceeded"]
                ),
            ),
            (
                "",
                f"preemption storm: {st['items']} items, {st['preempt_fraction']:.0%} of SPOT "
                "jobs preempted",
                f"**{st['succeeded']}** SUCCEEDED, {st['items_preempted_at_least_once']} "
                f"preempted; {st['resumed_with_the_same_checkpoint_dir']} of "
                f"{st['resumed_attempts']} resumed attempts on the same checkpoint directory; "
                f"{st['duplicates']} duplicates",
                "all SUCCEEDED, 0 duplicates",
                _fmt_met(lad["met"]["storm_all_succeeded"] and lad["met"]["no_duplicates"]),
            ),
        ]
    if fair := results.get("fairshare"):
        co, pr, ar = fair["cohort"], fair["probe"], fair["arrival"]
        rows += [
            (
                "8 fair share",
                f"two teams, {fair['items_per_team']} items each, a {fair['quota']}-L4 quota, "
                f"{len(co['utilisation'])} seeds",
                f"quota busy while work waits: cohort **{min(co['utilisation']):.1%}** to "
                f"{max(co['utilisation']):.1%} vs probing "
                f"{min(pr['utilisation']):.1%} to {max(pr['utilisation']):.1%}; team A's share "
                f"{min(co['share_a']):.1%} to {max(co['share_a']):.1%}; at most "
                f"{co['max_active']} active; {co['duplicates']} duplicates, {co['raised']} raised",
                "≥ 95%, 50% ± 5, ≤ quota, 0/0",
                _fmt_met(all(fair["met"][k] for k in ("utilisation", "share", "quota"))),
            ),
            (
                "",
                "team B arrives while A holds the whole quota",
                f"B's first start {ar['b_first_start_after_arrival_s']} s after arrival (first "
                f"end {ar['first_end_after_arrival_s']} s); holds its share after "
                f"{ar['b_holds_share_after_s']} s; {ar['a_jobs_cancelled']} of A's jobs stopped",
                "the first freed unit, no preemption",
                _fmt_met(fair["met"]["arrival"]),
            ),
        ]
    if bud := results.get("budgets"):
        runs = bud["runs"]
        rows.append(
            (
                "9 budget",
                f"{bud['items']} items on a queue whose budget fits {bud['fit']} job timeouts, "
                f"{len(runs)} seeds",
                f"ledger at most **{max(r['max_used_gpu_ms'] for r in runs) / 1000:g}** of "
                f"{runs[0]['limit_gpu_ms'] / 1000:g} accelerator-s; jobs used "
                f"{max(r['vertex_gpu_ms'] for r in runs) / 1000:g} at most (Vertex's times), "
                f"booked {max(r['ledger_spent_gpu_ms'] for r in runs) / 1000:g}; "
                f"{min(r['jobs_started'] for r in runs)}-{max(r['jobs_started'] for r in runs)} "
                f"jobs; busiest second {max(r['ledger_writes_busiest_second'] for r in runs)} "
                f"ledger writes; {sum(r['duplicates'] for r in runs)} duplicates, "
                f"{sum(r['raised'] for r in runs)} raised",
                "never over, 0/0",
                _fmt_met(
                    all(bud["met"][k] for k in ("never_over", "vertex_within", "exactly_once"))
                ),
            )
        )
    if sw := results.get("sweeps"):
        rows += _sweeps_rows(sw)
    lines = [
        "| measurement | what | result | goal | |",
        "|---|---|---|---|---|",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]
    return "\n".join(lines)


def _sweeps_rows(sw: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    rows: list[tuple[str, str, str, str, str]] = []
    met = sw.get("met", {})
    if rec := sw.get("record"):
        m = rec["median"]
        rows.append(
            (
                "10 sweeps",
                f"a {rec['children']:,}-run grid from one delivery, paused queue (recording "
                f"alone), batches of {rec['batch']}, median of {len(rec['runs'])}",
                f"last child recorded after **{m['to_last_child_s']:.2f} s**: validation "
                f"{m['validate_s']:.2f} s, rendering {m['render_children_s']:.2f} s, commits "
                f"{m['commit_batches_s']:.2f} s ({m['commit_ms_per_batch']:.0f} ms a batch); "
                f"{rec['writes_per_child']:g} Firestore writes per child "
                f"({m['children_per_s_expanding']:.0f} children/s)",
                "< 10 s" if rec["children"] >= 1000 else "",
                _fmt_met(met.get("record_10s")),
            )
        )
        if by := sw.get("record_by_batch"):
            rows.append(
                (
                    "",
                    "the same with BATCH = " + " / ".join(by),
                    " / ".join(f"{v['to_last_child_s']:.2f}" for v in by.values()) + " s",
                    "",
                    "",
                )
            )
    if adm := sw.get("admitted"):
        rows.append(
            (
                "",
                "the same on an unlimited queue (creation budget off), then sweeps",
                f"all {adm['children_found']:,} SUBMITTED after {adm['to_all_submitted_s']:.1f} "
                f"s ({adm['submitted_by_dispatcher']} by the delivery, the rest by "
                f"{adm['sweeps']['passes']} sweep pass(es)); {adm['writes_per_child']:g} "
                "writes per child",
                "",
                "",
            )
        )
    once = [sw[k] for k in ("duplicates", "crash_redelivered", "crash_sweep") if k in sw]
    if once:
        rows.append(
            (
                "",
                f"{sw.get('duplicates', {}).get('deliveries', 3)} deliveries at once; a crash "
                "after half the batches, then a redelivery / the sweep alone",
                "children missing / extra: "
                + ", ".join(f"{r['children_missing']}/{r['children_extra']}" for r in once)
                + "; duplicate jobs / children without a job: "
                + ", ".join(f"{r['duplicate_jobs']}/{r['children_without_a_job']}" for r in once),
                "0/0",
                _fmt_met(met.get("exactly_once")),
            )
        )
    if can := sw.get("cancel"):
        off = sw.get("cancel_no_events")
        before = ", ".join(f"{n} {state}" for state, n in sorted(can["before"].items()))
        rows.append(
            (
                "",
                f"cancel a {can['children']:,}-child sweep ({before})",
                (
                    f"none QUEUED or HELD after **{can['to_none_waiting_s']:.2f} s**"
                    if can["to_none_waiting_s"] is not None
                    else f"**{can['queued_or_held_after']} still QUEUED or HELD**"
                )
                + (
                    f" ({off['to_none_waiting_s']:.2f} s with events off)"
                    if off and off["to_none_waiting_s"] is not None
                    else ""
                )
                + f"; parent {can['parent_state']} after "
                f"{can['to_parent_cancelled']['passes']} sweep pass(es)",
                "",
                _fmt_met(met.get("cancel_none_waiting")),
            )
        )
    if big := sw.get("largest"):
        cap = " (the cap)" if big["children"] == MAX_CHILDREN else ""
        recorded = big["recorded_by_the_delivery"]
        rows.append(
            (
                "",
                f"{big['children']:,} children{cap} in one delivery, deadline "
                f"{big['expand_seconds']:g} s",
                f"{recorded:,} recorded by the delivery"
                + (
                    f", the last after {big['to_last_child_s']:.1f} s (validation "
                    f"{big['validate_s']:.1f} s, {big['children_per_s_expanding']:.0f} "
                    "children/s)"
                    if recorded
                    else ""
                )
                + (
                    f"; the sweep recorded the other {big['children'] - recorded:,} in "
                    f"{big['sweeps_to_finish']['passes']} pass(es)"
                    if recorded < big["children"]
                    else ""
                ),
                "",
                "",
            )
        )
    if val := sw.get("validate"):
        rows.append(
            (
                "",
                f"validating {val['children']:,} children in-process (no I/O)",
                f"{val['dispatcher_checks_s']:.2f} s ({val['prepare_ms_per_child']:.2f} ms "
                "a child to prepare)",
                "",
                "",
            )
        )
    return rows


def machine_block(info: dict[str, Any], results: dict[str, Any]) -> str:
    loads = {k: v["_meta"]["load_before"] for k, v in results.items() if "_meta" in v}
    load_lines = "\n".join(f"| {k} | {' / '.join(map(str, v))} |" for k, v in loads.items())
    return (
        f"Measured {info['date']} with `{info['command']}`.\n\n"
        "```\n"
        f"$ nproc\n{info['nproc']}\n"
        f"$ free -h\n{info['free_h']}\n"
        f"$ python -V\n{info['python_V']}\n"
        f"$ uname -a\n{info['uname_a']}\n"
        f"cpu: {info['cpu_model']}\n"
        "```\n\n"
        "Load average (1 / 5 / 15 min) when each measurement started:\n\n"
        "| measurement | load |\n|---|---|\n" + load_lines + "\n"
    )


def write_doc(text: str, path: Path = DOC) -> None:
    block = f"{BEGIN}\n{text}\n{END}"
    if path.exists() and BEGIN in path.read_text():
        current = path.read_text()
        head, rest = current.split(BEGIN, 1)
        tail = rest.split(END, 1)[1] if END in rest else ""
        path.write_text(head + block + tail)
    else:
        path.write_text(f"# Performance\n\n{block}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; writes nothing")
    parser.add_argument("--only", nargs="+", choices=list(RUNNERS), help="run only these")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    sizes = SMOKE if args.smoke else FULL
    info = machine()
    info["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    info["command"] = "make bench" if not args.smoke else "python -m bench.run --smoke"
    with local_stack() as stack:
        results = run_all(stack, sizes, args.only)
    info["load_average_at_end"] = load_average()
    text = table(results) + "\n\n" + machine_block(info, results)
    print(text)
    if not args.smoke and not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({"machine": info, "results": results}, indent=2) + "\n")
        write_doc(text)
        print(f"\nwrote {RESULTS.relative_to(ROOT)} and {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
