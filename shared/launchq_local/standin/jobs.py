"""The job store: every CustomJob, its lifecycle, outcome rules and executed processes.

One re-entrant lock guards everything here. Handlers do little work while holding it (a dict
lookup, a few field writes, a protobuf copy), so contention stays low even with many client
threads, and there is no lock ordering to get wrong. Jobs are stored as raw protobuf messages
(`types.CustomJob.pb(...)`), which are much cheaper to copy and serialize than proto-plus.
"""

from __future__ import annotations

import base64
import bisect
import dataclasses
import fnmatch
import itertools
import signal
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from google.cloud.aiplatform_v1 import types
from google.longrunning import operations_pb2  # type: ignore[import-untyped]
from google.protobuf import empty_pb2

from launchq.log import get_logger
from launchq_local.standin import execute, lifecycle
from launchq_local.standin.filters import Predicate, Subject
from launchq_local.standin.lifecycle import Delays, Outcome, ScheduledState
from launchq_local.standin.limits import (
    Limits,
    RateWindow,
    demand,
    quota_exceeded,
    rate_exceeded,
)
from launchq_local.standin.names import Parent, new_id, not_found
from launchq_local.standin.scarcity import (
    PREEMPTED_ERROR,
    JobTraits,
    ScarcityBook,
    ScarcityRule,
    stockout_error,
)
from launchq_local.standin.wire import ApiError, invalid_argument

log = get_logger(__name__)

Mode = Literal["scripted", "execute"]
MODES: tuple[Mode, ...] = ("scripted", "execute")
CustomJobPb: Any = type(types.CustomJob.pb(types.CustomJob()))
_DeleteMetadataPb: Any = type(types.DeleteOperationMetadata.pb(types.DeleteOperationMetadata()))


@dataclass
class OutcomeRule:
    """'The next N jobs whose labels/display name match end like this' (N=None: all of them)."""

    id: str
    labels: dict[str, str]
    display_name: str | None
    outcome: Outcome
    remaining: int | None = 1
    matched: int = 0

    def matches(self, display_name: str, labels: dict[str, str]) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.display_name is not None and not fnmatch.fnmatchcase(
            display_name, self.display_name
        ):
            return False
        return all(
            key in labels if want == "*" else labels.get(key) == want
            for key, want in self.labels.items()
        )

    def to_json(self) -> dict[str, Any]:
        error = self.outcome.error
        return {
            "id": self.id,
            "match": {"labels": self.labels, "displayName": self.display_name},
            "state": self.outcome.state,
            "error": {"code": error[0], "message": error[1]} if error else None,
            "after": self.outcome.after,
            "count": self.remaining,
            "matched": self.matched,
        }


@dataclass
class JobRecord:
    pb: Any
    seq: int
    parent: Parent
    job_id: str
    created: float
    mode: Mode
    delays: Delays
    outcome: Outcome
    history: list[ScheduledState]
    plan: list[ScheduledState]
    run: execute.ExecRun | None = None
    rule_id: str | None = None
    scarcity_id: str | None = None  # the scarcity rule that struck the job
    # Execute mode: seconds after RUNNING at which a preempt rule kills the process, and
    # whether it did (the watcher then records the preemption instead of the exit status).
    preempt_after: float | None = None
    preempted: bool = False
    demand: dict[str, int] = field(default_factory=dict)  # quota held while active
    _applied: int = 0

    @property
    def state(self) -> str:
        return self.history[-1].state

    def materialize(self, now: float) -> None:
        """Move due planned transitions into the history and mirror it into the protobuf."""
        while self.plan and self.plan[0].at <= now:
            self.history.append(self.plan.pop(0))
        if self._applied != len(self.history):
            self._write_pb()
            self._applied = len(self.history)

    def append(self, state: str, at: float, error: tuple[int, str] | None = None) -> None:
        self.history.append(ScheduledState(state, at, error))
        self._write_pb()
        self._applied = len(self.history)

    def _write_pb(self) -> None:
        pb, last = self.pb, self.history[-1]
        pb.state = lifecycle.STATE_VALUES[last.state]
        pb.update_time.FromMicroseconds(_us(last.at))
        started = next((t.at for t in self.history if t.state == lifecycle.RUNNING), None)
        if started is None:
            pb.ClearField("start_time")
        else:
            pb.start_time.FromMicroseconds(_us(started))
        if last.state in lifecycle.TERMINAL:
            pb.end_time.FromMicroseconds(_us(last.at))
        else:
            pb.ClearField("end_time")
        if last.error is not None and last.state in lifecycle.TERMINAL:
            pb.error.code, pb.error.message = last.error
        else:
            pb.ClearField("error")

    def subject(self) -> Subject:
        return Subject(self.pb.display_name, self.state, _us(self.created), self.pb.labels)

    def snapshot(self) -> Any:
        copy = CustomJobPb()
        copy.CopyFrom(self.pb)
        return copy

    def admin_view(self) -> dict[str, Any]:
        view: dict[str, Any] = {
            "name": self.pb.name,
            "id": self.job_id,
            "displayName": self.pb.display_name,
            "state": self.state,
            "mode": self.mode,
            "labels": dict(self.pb.labels),
            "history": [{"state": t.state, "time": t.at} for t in self.history],
            "plannedOutcome": self.outcome.state,
            "outcomeRule": self.rule_id,
            "scarcityRule": self.scarcity_id,
        }
        if self.run is not None:
            proc = self.run.proc
            view["execution"] = {
                "argv": self.run.argv,
                "pid": proc.pid if proc else None,
                "alive": self.run.alive,
                "exitCode": self.run.exit_code,
                "env": self.run.aip_env,
                "stdoutPath": str(self.run.stdout_path),
                "stderrPath": str(self.run.stderr_path),
            }
        return view


def _scarce_plan(
    rule: ScarcityRule, job: JobTraits, mode: Mode, delays: Delays
) -> tuple[Mode, Delays, Outcome, float | None]:
    """How a job struck by a scarcity rule goes: its mode, delays, outcome, and (execute mode,
    preempt) when its process is killed. Stockouts and expiries never get a machine, so the job
    is scripted even in execute mode: its process never starts."""
    if rule.kind == "stockout":
        delays = dataclasses.replace(delays, pending=rule.delay_seconds)
        outcome = Outcome(lifecycle.FAILED, stockout_error(job.region), lifecycle.PENDING)
        return "scripted", delays, outcome, None
    if rule.kind == "flex_expire":
        delays = dataclasses.replace(delays, pending=rule.expiry_wait(job))
        return "scripted", delays, Outcome(lifecycle.EXPIRED, None, lifecycle.PENDING), None
    if mode == "execute":
        return mode, delays, Outcome(), rule.delay_seconds
    delays = dataclasses.replace(delays, running=rule.delay_seconds)
    return mode, delays, Outcome(lifecycle.FAILED, PREEMPTED_ERROR, lifecycle.RUNNING), None


def _us(seconds: float) -> int:
    return round(seconds * 1_000_000)


def encode_token(seq: int, fingerprint: int) -> str:
    raw = f"{seq}.{fingerprint}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, fingerprint: int) -> int:
    """The sequence number to continue below; any tampering or a changed query is a 400."""
    try:
        padded = token + "=" * (-len(token) % 4)
        seq_text, fp_text = base64.urlsafe_b64decode(padded).decode().split(".")
        seq, fp = int(seq_text), int(fp_text)
    except ValueError:
        raise invalid_argument("page_token", "Invalid page token.") from None
    if fp != fingerprint:
        raise invalid_argument(
            "page_token", "Invalid page token: it belongs to a request with other parameters."
        )
    return seq


def query_fingerprint(parent: Parent, filter_text: str) -> int:
    return zlib.crc32(f"{parent.name}\n{filter_text}".encode())


@dataclass
class Page:
    jobs: list[Any]
    next_seq: int | None


@dataclass
class JobStore:
    """All jobs of all projects; see the module docstring for the locking rule."""

    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="launchq-si-")))
    mode: Mode = "scripted"
    delays: Delays = field(default_factory=Delays)
    kill_grace: float = 2.0
    limits: Limits = field(default_factory=Limits)
    rate: RateWindow = field(default_factory=RateWindow)
    # (region, metric) → the jobs that hold some of it and were active when last looked at.
    _holders: dict[tuple[Parent, str], dict[int, JobRecord]] = field(default_factory=dict)
    # Where executed jobs' output lines go as they are printed (the Cloud Logging stand-in).
    line_sink: execute.LineSink | None = None
    _jobs: dict[str, JobRecord] = field(default_factory=dict)
    _seqs: list[int] = field(default_factory=list)  # ascending; parallel to _order
    _order: list[JobRecord] = field(default_factory=list)
    _operations: dict[str, Any] = field(default_factory=dict)
    _rules: list[OutcomeRule] = field(default_factory=list)
    scarcity: ScarcityBook = field(default_factory=ScarcityBook)
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _rule_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # ---- Vertex API ---------------------------------------------------------------------

    def charge_create(self, parent: Parent) -> None:
        """The creation rate limit, charged before the request is parsed (see limits.py)."""
        rpm = self.limits.create_requests_per_minute
        if not self.rate.admit((parent.number, parent.location), rpm):
            assert rpm is not None
            raise rate_exceeded(parent.number, parent.location, rpm)

    def create(self, parent: Parent, job: Any) -> Any:
        now = time.time()
        need = demand(job)
        with self._lock:
            self._check_quota(parent, need, now)
            job_id = self._unused_id()
            job.name = f"{parent.name}/customJobs/{job_id}"
            job.create_time.FromMicroseconds(_us(now))
            rule = self._match_rule(job.display_name, dict(job.labels))
            outcome = rule.outcome if rule else Outcome()
            mode: Mode = "scripted" if rule else self.mode
            delays = dataclasses.replace(self.delays)
            # An outcome rule names the job itself, so it wins over the region's scarcity.
            traits = JobTraits.of(parent.location, job)
            scarce = None if rule else self.scarcity.strike(traits)
            preempt_after: float | None = None
            if scarce is not None:
                mode, delays, outcome, preempt_after = _scarce_plan(scarce, traits, mode, delays)
            timeline = lifecycle.schedule(now, delays, outcome)
            record = JobRecord(
                pb=job,
                seq=next(self._seq),
                parent=parent,
                job_id=job_id,
                created=now,
                mode=mode,
                delays=delays,
                outcome=outcome,
                history=[],
                plan=[],
                rule_id=rule.id if rule else None,
                scarcity_id=scarce.id if scarce else None,
                preempt_after=preempt_after,
                demand=need,
            )
            record.append(lifecycle.QUEUED, now)
            if mode == "scripted":
                record.plan = timeline[1:]
            else:
                self._start_execution(record, now)
            self._jobs[job_id] = record
            self._seqs.append(record.seq)
            self._order.append(record)
            for metric in need:
                self._holders.setdefault((parent, metric), {})[record.seq] = record
            record.materialize(now)
            return record.snapshot()

    def get(self, parent: Parent, job_id: str) -> Any:
        with self._lock:
            record = self._find(parent, job_id)
            record.materialize(time.time())
            return record.snapshot()

    def page(
        self, parent: Parent, predicate: Predicate, page_size: int, below_seq: int | None
    ) -> Page:
        """Newest first; `below_seq` continues after the last job of the previous page."""
        now = time.time()
        with self._lock:
            end = (
                len(self._seqs) if below_seq is None else bisect.bisect_left(self._seqs, below_seq)
            )
            found: list[JobRecord] = []
            for index in range(end - 1, -1, -1):
                record = self._order[index]
                if record.parent != parent:
                    continue
                record.materialize(now)
                if predicate(record.subject()):
                    found.append(record)
                    if len(found) > page_size:
                        break
            more = len(found) > page_size
            page = found[:page_size]
            return Page([r.snapshot() for r in page], page[-1].seq if more else None)

    def cancel(self, parent: Parent, job_id: str) -> None:
        now = time.time()
        with self._lock:
            record = self._find(parent, job_id)
            record.materialize(now)
            state = record.state
            if state in lifecycle.TERMINAL:
                raise ApiError(
                    "FAILED_PRECONDITION",
                    f"Cannot cancel CustomJob {record.pb.name}: it is already in state {state}.",
                )
            if state == lifecycle.CANCELLING:
                return  # cancel is idempotent while it is in progress
            record.plan = []
            record.append(lifecycle.CANCELLING, now)
            run = record.run
            if run is not None and run.proc is not None and not run.abandoned:
                run.cancel_requested = True
                execute.terminate(run.proc, self.kill_grace)
                return  # the watcher records CANCELLED when the process group is gone
            if run is not None:
                run.cancel_requested = True
                run.wake.set()
            done = now + record.delays.cancelling
            record.plan = [ScheduledState(lifecycle.CANCELLED, done, lifecycle.CANCELLED_ERROR)]
            record.materialize(now)

    def delete(self, parent: Parent, job_id: str) -> Any:
        """Only finished jobs can be deleted (see docs/vertex-standin.md); answers a done LRO."""
        now = time.time()
        with self._lock:
            record = self._find(parent, job_id)
            record.materialize(now)
            if record.state not in lifecycle.TERMINAL:
                raise ApiError(
                    "FAILED_PRECONDITION",
                    f"CustomJob {record.pb.name} is in state {record.state} and cannot be "
                    "deleted; cancel it first.",
                )
            self._forget(record)
            operation = self._delete_operation(record.pb.name, now)
            self._operations[operation.name] = operation
            return operation

    def get_operation(self, name: str) -> Any:
        with self._lock:
            operation = self._operations.get(name)
            if operation is None:
                raise ApiError("NOT_FOUND", f'Operation "{name}" does not exist.')
            return operation

    # ---- admin API ----------------------------------------------------------------------

    def set_state(self, job_id: str, state: str, error: tuple[int, str] | None) -> dict[str, Any]:
        """Pin a job to `state` now; its scripted future is dropped, its process killed."""
        now = time.time()
        with self._lock:
            record = self._find_any(job_id)
            record.materialize(now)
            record.plan = []
            self._abandon(record)
            if error is None and state in lifecycle.TERMINAL:
                error = Outcome(state).effective_error
            record.append(state, now, error)
            return record.admin_view()

    def set_outcome(self, job_id: str, outcome: Outcome) -> dict[str, Any]:
        """Change how a scripted job will end, keeping the time it has already spent."""
        now = time.time()
        with self._lock:
            record = self._find_any(job_id)
            record.materialize(now)
            if record.run is not None:
                raise ApiError(
                    "FAILED_PRECONDITION",
                    f"Job {job_id} runs in execute mode; its outcome is its exit code. "
                    "Use :setState to force a state.",
                )
            if not lifecycle.is_active(record.state):
                raise ApiError(
                    "FAILED_PRECONDITION", f"Job {job_id} is already in state {record.state}."
                )
            record.outcome = outcome
            timeline = lifecycle.schedule(record.created, record.delays, outcome)
            record.plan = lifecycle.remaining(timeline, record.state, now)
            record.materialize(now)
            return record.admin_view()

    def add_rule(
        self,
        labels: dict[str, str],
        display_name: str | None,
        outcome: Outcome,
        count: int | None,
    ) -> OutcomeRule:
        with self._lock:
            rule = OutcomeRule(f"rule-{next(self._rule_ids)}", labels, display_name, outcome, count)
            self._rules.append(rule)
            return rule

    def rules(self) -> list[OutcomeRule]:
        with self._lock:
            return list(self._rules)

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    def admin_jobs(self) -> list[dict[str, Any]]:
        now = time.time()
        with self._lock:
            for record in self._order:
                record.materialize(now)
            return [r.admin_view() for r in reversed(self._order)]

    def admin_job(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            record = self._find_any(job_id)
            record.materialize(time.time())
            return record.admin_view()

    def job_log(self, job_id: str) -> dict[str, str]:
        with self._lock:
            run = self._find_any(job_id).run
        if run is None:
            return {"stdout": "", "stderr": ""}
        return {
            "stdout": execute.read_log(run.stdout_path),
            "stderr": execute.read_log(run.stderr_path),
        }

    def configure(self, mode: Mode | None, delays: Delays | None) -> None:
        with self._lock:
            if mode is not None:
                self.mode = mode
            if delays is not None:
                self.delays = delays

    def set_limits(self, new: Limits) -> None:
        """New limits apply to the next create; jobs already admitted keep running."""
        with self._lock:
            self.limits = new

    def usage(self) -> dict[str, dict[str, int]]:
        """Quota held by active jobs, per `projects/N/locations/L` and metric."""
        now = time.time()
        with self._lock:
            found: dict[str, dict[str, int]] = {}
            for parent, metric in list(self._holders):
                held = self._held(parent, metric, now)
                if held:
                    found.setdefault(parent.name, {})[metric] = held
            return {name: dict(sorted(held.items())) for name, held in sorted(found.items())}

    def reset(
        self, mode: Mode, delays: Delays, new_limits: Limits | None = None, seed: int | None = None
    ) -> None:
        """Forget everything and kill every executed process (their watchers record nothing).

        `seed` seeds the random source of scarcity rules added from now on."""
        with self._lock:
            self.scarcity.reset(seed)
            for record in self._order:
                self._abandon(record)
            self._jobs.clear()
            self._seqs.clear()
            self._order.clear()
            self._operations.clear()
            self._rules.clear()
            self._holders.clear()
            self.mode, self.delays = mode, delays
            if new_limits is not None:
                self.limits = new_limits
            self.rate.clear()

    def close(self) -> None:
        with self._lock:
            for record in self._order:
                self._abandon(record)

    def job_count(self) -> int:
        with self._lock:
            return len(self._order)

    # ---- internals ----------------------------------------------------------------------

    def _check_quota(self, parent: Parent, need: dict[str, int], now: float) -> None:
        """429 if admitting `need` would take any limited metric of the region over its limit.

        Only the limited metrics the new job needs are looked at, through their holders.
        """
        quotas = self.limits.quotas
        over = sorted(
            metric
            for metric, amount in need.items()
            if metric in quotas and self._held(parent, metric, now) + amount > quotas[metric]
        )
        if over:
            raise quota_exceeded(over)

    def _held(self, parent: Parent, metric: str, now: float) -> int:
        """What the region's active jobs hold of `metric`; holders found finished are dropped.

        States change lazily (on read), so usage is recomputed from the holders rather than
        kept as a running total: no state-change path has to remember to release quota. The
        cost is linear in the active holders of the metric, about 2-5 us each on the shared
        2-core machine (`python -m bench.standin_quota_check`: 10,000 active A100 holders cost
        21-68 ms per create against 0.02-0.05 ms without a quota). Those holders are few in
        practice, each holding at least 1 of a limited amount; jobs that hold none of the
        metric are never looked at (the first version scanned every job: 15 ms per create
        among 10,000 CPU-only jobs, now 0.07-0.5 ms).
        """
        holders = self._holders.get((parent, metric))
        if not holders:
            return 0
        held = 0
        for seq, record in list(holders.items()):
            record.materialize(now)
            if record.state in lifecycle.TERMINAL:
                del holders[seq]
            else:
                held += record.demand[metric]
        if not holders:
            del self._holders[(parent, metric)]
        return held

    def _unused_id(self) -> str:
        while (job_id := new_id()) in self._jobs:
            pass
        return job_id

    def _find(self, parent: Parent, job_id: str) -> JobRecord:
        record = self._jobs.get(job_id)
        if record is None or record.parent != parent:
            raise not_found(f"{parent.name}/customJobs/{job_id}")
        return record

    def _find_any(self, job_id: str) -> JobRecord:
        record = self._jobs.get(job_id.rsplit("/", 1)[-1])
        if record is None:
            raise ApiError("NOT_FOUND", f"No job with id {job_id!r}.")
        return record

    def _forget(self, record: JobRecord) -> None:
        for metric in record.demand:
            self._holders.get((record.parent, metric), {}).pop(record.seq, None)
        del self._jobs[record.job_id]
        index = bisect.bisect_left(self._seqs, record.seq)
        del self._seqs[index]
        del self._order[index]

    def _match_rule(self, display_name: str, labels: dict[str, str]) -> OutcomeRule | None:
        for rule in self._rules:
            if rule.matches(display_name, labels):
                rule.matched += 1
                if rule.remaining is not None:
                    rule.remaining -= 1
                return rule
        return None

    def _delete_operation(self, job_name: str, now: float) -> Any:
        metadata = _DeleteMetadataPb()
        metadata.generic_metadata.create_time.FromMicroseconds(_us(now))
        metadata.generic_metadata.update_time.FromMicroseconds(_us(now))
        operation = operations_pb2.Operation(name=f"{job_name}/operations/{new_id()}", done=True)
        operation.metadata.Pack(metadata)
        operation.response.Pack(empty_pb2.Empty())
        return operation

    def _abandon(self, record: JobRecord) -> None:
        run = record.run
        if run is None or run.abandoned:
            return
        run.abandoned = True
        run.wake.set()
        if run.proc is not None and run.proc.poll() is None:
            execute.kill_group(run.proc, signal.SIGKILL)

    # ---- execute mode -------------------------------------------------------------------

    def _start_execution(self, record: JobRecord, now: float) -> None:
        run = execute.prepare(record.pb, record.job_id, self.work_dir, self.line_sink)
        record.run = run
        delays = record.delays
        if delays.queued is not None:
            record.plan = [ScheduledState(lifecycle.PENDING, now + delays.queued)]
        if delays.queued is None or delays.pending is None:
            wait: float | None = None  # stays QUEUED/PENDING until cancelled or pinned
        else:
            wait = delays.queued + delays.pending
        thread = threading.Thread(
            target=self._execute, args=(record, wait), name=f"standin-job-{record.job_id}"
        )
        thread.daemon = True
        thread.start()

    def _execute(self, record: JobRecord, wait: float | None) -> None:
        run = record.run
        assert run is not None
        if run.wake.wait(wait):
            return  # cancelled or pinned before it started
        with self._lock:
            if run.abandoned or run.cancel_requested:
                return
            now = time.time()
            record.materialize(now)
            record.plan = []
            if run.argv is None:
                message = (
                    "execute mode needs container_spec.command (the image's ENTRYPOINT is not "
                    "run: there is no Docker in the stand-in)."
                )
                record.append(lifecycle.FAILED, now, (9, message))
                return
            try:
                run.proc = execute.spawn(run)
            except OSError as exc:
                record.append(lifecycle.FAILED, now, (3, f"Could not start {run.argv!r}: {exc}"))
                return
            record.append(lifecycle.RUNNING, now)
            log.info("job process started", job=record.pb.name, pid=run.proc.pid)
            if record.preempt_after is not None:
                timer = threading.Timer(record.preempt_after, self._preempt, args=(record,))
                timer.daemon = True
                timer.start()
        returncode = execute.wait(run)
        self._finish(record, returncode)

    def _preempt(self, record: JobRecord) -> None:
        """A preempt rule's time has come: SIGTERM the job's process group, as a reclaimed Spot
        VM's workload gets, unless the job already ended, was cancelled or was pinned."""
        with self._lock:
            run = record.run
            if run is None or run.abandoned or run.cancel_requested or not run.alive:
                return
            assert run.proc is not None
            record.preempted = True
            execute.terminate(run.proc, self.kill_grace)
            log.info("job preempted", job=record.pb.name, pid=run.proc.pid)

    def _finish(self, record: JobRecord, returncode: int) -> None:
        run = record.run
        assert run is not None
        status = execute.exit_status(returncode)
        message = execute.failure_message(run, status) if status else ""
        with self._lock:
            run.exit_code = status
            if run.abandoned:
                return
            now = time.time()
            record.materialize(now)
            if run.cancel_requested:
                record.append(lifecycle.CANCELLED, now, lifecycle.CANCELLED_ERROR)
            elif record.preempted:
                record.append(lifecycle.FAILED, now, PREEMPTED_ERROR)
            elif status == 0:
                record.append(lifecycle.SUCCEEDED, now)
            else:
                record.append(lifecycle.FAILED, now, (3, message))
            log.info("job process ended", job=record.pb.name, exit_status=status)
