"""`make demo`: launchq's whole story on one machine, in well under a minute, checked.

    python -m launchq_demo            # exit 0 only if every item ended as expected

It starts the local stack on free ports (`launchq_local.devstack`: emulators, the Vertex stand-in
in execute mode, the dispatch, sweep and notify functions under functions-framework, a webhook
receiver, a sweep every second),
then drives it with the real CLI, in this process, printing each command as a user would type
it:

1. applies examples/queues/default.yaml (the W&B seed config, max_jobs 1) and trainer.yaml
   (typed template variables, max_jobs 2);
2. enqueues `demo-train`: examples/trainer/train.py, executed by the stand-in, which writes
   model.json to AIP_MODEL_DIR (the file is checked);
3. on the one-slot default queue: `demo-first` holds the slot while `demo-low` (priority low)
   waits, then `demo-urgent` (critical) arrives and overtakes it (`queue pending` shows the
   positions; submission order is checked);
4. `demo-fail`: the trainer exits 3, and the item shows Vertex's error message; trainer.yaml's
   `notify` rule sends one signed webhook about it, which the stack's receiver takes (checked:
   exactly one, for demo-fail only, the signature verified, and neither the signing key nor the
   URL's token in any record or in the message);
4b. `demo-source`: examples/source-trainer runs *from source* on examples/queues/source.yaml
   (`enqueue --source`: packed, uploaded once to the GCS emulator, checked by the dispatcher,
   run by the stand-in as a python package); its model.json is read back through the storage
   client and checked;
4c. `demo-built` / `demo-built-again`: the same source on examples/queues/built.yaml (a `builder`
   block): the first item is BUILDING while the Cloud Build stand-in "builds" its Dockerfile,
   then QUEUED with the image pinned by digest and run; the second, same source, skips the build
   (checked: one build, both SUCCEEDED, the same digest);
4d. `demo-ladder` on examples/queues/ladder-demo.yaml (placements: us-central1, then a SPOT VM
   in us-east4): the stand-in stocks out us-central1 once and preempts the us-east4 Spot VM
   once; the item moves after each, and its third attempt resumes from the checkpoint the
   preempted one wrote to `LAUNCHQ_CHECKPOINT_DIR` (checked: regions, failure classes, and the
   epoch the model says it resumed from);
5. an invalid item: the CLI refuses it before publishing (exit 2, every reason), and the same
   item published without the check is recorded REJECTED by the dispatcher with its reasons;

follows every transition live, prints a summary table (item, state, attempts, time to submit,
run time) and the checks, and tears the stack down, verifying nothing is left running.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from launchq.model.reasons import RejectReason
from launchq_cli.common import STATE_STYLES
from launchq_local.devstack import EXAMPLES, FUNCTIONS, DevStack, Ports
from launchq_local.webhook_receiver import Delivery

TRAINER_CMD = "$(LAUNCHQ_PYTHON) $(LAUNCHQ_EXAMPLES)/trainer/train.py"
DEFAULT_TIMEOUT = 75.0
SWEEP_RUNS = 12


@dataclass
class Expected:
    item_id: str
    queue: str
    state: str
    story: str


@dataclass
class Demo:
    console: Console
    stack: DevStack
    started: float = field(default_factory=time.monotonic)
    expected: list[Expected] = field(default_factory=list)
    checks: list[tuple[bool, str]] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)
    notified: int = 0  # the webhook receiver's deliveries printed so far

    # -- helpers ------------------------------------------------------------------------------

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.started:5.1f}s"

    def step(self, text: str) -> None:
        # What happened during the last step prints under its heading, not under this one.
        self.print_transitions()
        self.console.print(f"\n[bold cyan]▶ {text}[/bold cyan]  [dim]({self.elapsed()})[/dim]")

    def cli(self, *args: str) -> int:
        """Run `launchq ARGS` in this process, showing the command line first."""
        from launchq_cli import main

        for line in command_lines(["launchq", *args], self.console.width):
            self.console.print(f"[bold]{escape(line)}[/bold]", highlight=False, soft_wrap=True)
        try:
            result = main.main(args=list(args), prog_name="launchq", standalone_mode=False)
        except click.exceptions.Exit as exc:
            return int(exc.exit_code)
        except click.ClickException as exc:  # on stdout, so the story reads in order
            self.console.print(f"error: {exc.format_message()}", markup=False, highlight=False)
            return int(exc.exit_code)
        return int(result) if isinstance(result, int) else 0

    def check(self, ok: bool, text: str) -> None:
        self.checks.append((ok, text))

    def item(self, queue: str, item_id: str) -> dict[str, Any]:
        return dict(self.stack_store().item_document(queue, item_id) or {})

    def stack_store(self) -> Any:
        if not hasattr(self, "_store"):
            from launchq.store.firestore import connect

            self._store = connect(self.stack.project)
        return self._store

    def wait_for(self, what: str, ready: Callable[[], bool], timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return True
            self.print_transitions()
            time.sleep(0.2)
        self.console.print(f"[red]timed out waiting for {what}[/red]")
        return False

    def print_transitions(self) -> None:
        """Every new history entry of the demo's items, as one line each (oldest first)."""
        from launchq_client.reads import history

        lines = []
        for exp in self.expected:
            entries = history(self.item(exp.queue, exp.item_id))
            for entry in entries[self.seen.get(exp.item_id, 0) :]:
                lines.append((entry.get("at"), exp, entry))
            self.seen[exp.item_id] = len(entries)
        # One id width for the whole story, so the arrows line up whatever the ids' lengths.
        width = max((len(exp.item_id) for exp in self.expected), default=0)
        for _at, exp, entry in sorted(lines, key=lambda line: str(line[0])):
            self.console.print(
                transition_line(self.elapsed(), exp.item_id, width, entry), highlight=False
            )
        # Then what the notify function sent about them (it follows the state it tells of);
        # a stack without a receiver (a test's stand-in for one) has sent nothing.
        receiver = getattr(self.stack, "receiver", None)
        for delivery in receiver.deliveries(self.notified) if receiver is not None else []:
            self.console.print(notification_line(self.elapsed(), width, delivery), highlight=False)
            self.notified += 1

    # -- the story ----------------------------------------------------------------------------

    def apply_queues(self) -> bool:
        self.step(
            "Two teams' queues, each with its own topic (launchq-q-<queue>): `default` (the W&B "
            "seed config, max_jobs 1) and `trainer` (templated)"
        )
        ok = self.cli("queue", "apply", str(_rel(EXAMPLES / "queues" / "default.yaml"))) == 0
        ok &= self.cli("queue", "apply", str(_rel(EXAMPLES / "queues" / "trainer.yaml"))) == 0
        self.cli("queue", "ls")
        return ok

    def enqueue_trainer_items(self) -> None:
        self.step(
            "Enqueue the real trainer (the stand-in runs it) and one that fails; trainer's "
            "`notify` rule tells the team of a failure with a signed webhook"
        )
        self.expect("demo-train", "trainer", "SUCCEEDED", "trains, writes model.json")
        train = _rel(EXAMPLES / "items" / "train.json")
        self.cli("enqueue", "--from-file", str(train), "--item-id", "demo-train",
                 "--set-var", "epochs=400")  # fmt: skip
        self.expect("demo-fail", "trainer", "FAILED", "exits 3: error + notification")
        fail = _rel(EXAMPLES / "items" / "train-fail.json")
        self.cli("enqueue", "--from-file", str(fail), "--item-id", "demo-fail")

    def enqueue_source(self) -> None:
        self.step("Run code, not an image: the source trainer, packed and uploaded once")
        self.cli("queue", "apply", str(_rel(EXAMPLES / "queues" / "source.yaml")))
        self.expect("demo-source", "source", "SUCCEEDED", "from source: python package")
        self.cli(
            *("enqueue", "-q", "source", "--item-id", "demo-source"),
            *("--source", str(_rel(EXAMPLES / "source-trainer")), "--module", "trainer.task"),
            *("--args", "--epochs 300 --learning-rate 0.1"),
        )

    def enqueue_git(self) -> None:
        self.step(
            "Code from a git repository: the ref resolved to a commit, packed like --source; "
            "two items of one commit share one image"
        )
        import shutil
        import subprocess
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="launchq-demo-git-"))
        self.git_root = root
        work = root / "work"
        skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        shutil.copytree(EXAMPLES / "source-trainer", work / "trainer", ignore=skip)
        env = {"GIT_AUTHOR_NAME": "demo", "GIT_AUTHOR_EMAIL": "demo@example.com",
               "GIT_COMMITTER_NAME": "demo", "GIT_COMMITTER_EMAIL": "demo@example.com",
               "PATH": "/usr/bin:/bin", "HOME": str(root)}  # fmt: skip
        for args in (("init", "--quiet", "--initial-branch=main"), ("add", "."),
                     ("commit", "--quiet", "-m", "trainer")):  # fmt: skip
            subprocess.run(["git", *args], cwd=work, env=env, check=True, capture_output=True)
        subprocess.run(["git", "clone", "--quiet", "--bare", str(work), str(root / "models.git")],
                       env=env, check=True, capture_output=True)  # fmt: skip
        self.git_url = f"file://{root / 'models.git'}"
        self.git_builds = self._builds()
        for item_id in ("demo-git-1", "demo-git-2"):
            self.expect(item_id, "built", "SUCCEEDED", "from git: the commit main named")
            self.cli(
                *("enqueue", "-q", "built", "--item-id", item_id, "--git", self.git_url),
                *("--ref", "main", "--subdir", "trainer", "--module", "trainer.task"),
                *("--args", "--epochs 300 --learning-rate 0.1"),
            )

    def _builds(self) -> int:
        return self.stack.cloudbuild.app.counters["CreateBuild"] if self.stack.cloudbuild else 0

    def _check_git(self) -> None:
        import shutil

        first = self.item("built", "demo-git-1")
        second = self.item("built", "demo-git-2")
        origin = ((first.get("payload") or {}).get("source") or {}).get("git") or {}
        digests = {(d.get("build") or {}).get("digest") for d in (first, second)}
        builds = self._builds() - getattr(self, "git_builds", 0)
        self.check(
            len(origin.get("commit", "")) == 40 and len(digests) == 1 and None not in digests
            and builds == 1,
            f"demo-git-1 and demo-git-2 ran commit {origin.get('commit', '?')[:12]} of "
            f"{origin.get('url')} ({origin.get('subdir')}): one archive, {builds} build, one "
            f"image {digests.pop()} for both",
        )  # fmt: skip
        shutil.rmtree(getattr(self, "git_root", "/nonexistent"), ignore_errors=True)

    def enqueue_wandb(self) -> None:
        self.step(
            "A W&B run: the queue's jobs log to W&B (offline here) under a run id launchq "
            "derives from the item; the API key is read from Secret Manager when the job starts"
        )
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import secretmanager_v1

        client = secretmanager_v1.SecretManagerServiceClient(
            transport="rest",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=self.stack.secretmanager_url),
        )
        automatic = secretmanager_v1.Replication(automatic=secretmanager_v1.Replication.Automatic())
        secret = secretmanager_v1.Secret(replication=automatic)
        client.create_secret(
            parent="projects/launchq-demo", secret_id="wandb-api-key", secret=secret
        )
        self.wandb_key = "local-" + secrets.token_hex(20)
        client.add_secret_version(
            parent="projects/launchq-demo/secrets/wandb-api-key",
            payload=secretmanager_v1.SecretPayload(data=self.wandb_key.encode()),
        )
        self.cli("queue", "apply", str(_rel(EXAMPLES / "queues" / "wandb-demo.yaml")))
        self.expect("demo-wandb", "wandb-demo", "SUCCEEDED", "a W&B run, key from Secret Manager")
        wandb_item = _rel(EXAMPLES / "items" / "wandb.json")
        self.cli("enqueue", "--from-file", str(wandb_item), "--item-id", "demo-wandb")

    def enqueue_sweep(self) -> None:
        self.step(
            "A sweep: one item, a W&B grid of 12 trainer runs (3 learning rates x 4 epoch "
            "counts), at most 3 waiting or running at once; the rest are HELD"
        )
        self.cli("queue", "apply", str(_rel(EXAMPLES / "queues" / "sweeps.yaml")))
        self.expect("demo-sweep", "sweeps", "SUCCEEDED", "a grid of 12: every child succeeded")
        self.cli(
            *("enqueue", "-q", "sweeps", "--item-id", "demo-sweep", "--image", "python:3.11"),
            *("--sweep", str(_rel(EXAMPLES / "sweeps" / "lr-grid.yaml"))),
        )
        from launchq.model.states import SLOT_STATES

        store = self.stack_store()
        self.wait_for(
            "demo-sweep's first children to start",
            lambda: store.count_children("sweeps", "demo-sweep", sorted(SLOT_STATES)) > 0,
        )
        self.cli("status", "demo-sweep")  # its progress, early: 3 at a time, the rest HELD

    def _check_sweep(self) -> None:
        """Twelve children, each ran once with its own parameters, never more than
        max_parallel at a time; the parent ended with their counts."""
        store = self.stack_store()
        children = store.children_of("sweeps", "demo-sweep")
        points = {
            (c.stored["payload"]["template_variables"]["learning_rate"],
             c.stored["payload"]["template_variables"]["epochs"])
            for c in children
        }  # fmt: skip
        starts = sorted(
            (str(h["at"]), 1 if h["to"] == "SUBMITTING" else -1)
            for c in children
            for h in c.stored.get("history", [])
            if h.get("to") == "SUBMITTING" or (h.get("to") in ("SUCCEEDED", "FAILED"))
        )
        at_once = most = 0
        for _, step in starts:
            at_once += step
            most = max(most, at_once)
        parent = self.item("sweeps", "demo-sweep")
        self.check(
            len(children) == SWEEP_RUNS and len(points) == SWEEP_RUNS and most <= 3
            and parent.get("children") == {"SUCCEEDED": SWEEP_RUNS},
            f"demo-sweep expanded into {len(children)} children with {len(points)} distinct "
            f"parameter sets, at most {most} running at once (max_parallel 3), and ended with "
            f"{parent.get('children')}",
        )  # fmt: skip
        self.cli("status", "demo-sweep")

    def _check_wandb(self) -> None:
        """The run the job's `wandb.init()` started is the one on the item, and the key it got
        is the secret's, which no job body holds."""
        run = self.item("wandb-demo", "demo-wandb").get("wandb_run") or {}
        report: dict[str, Any] = {}
        for path in self.stack.work_dir.rglob("stdout.log"):
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("{") and f'"run_id": "{run.get("id")}"' in line:
                    report = json.loads(line)
        key = getattr(self, "wandb_key", "")
        jobs = json.dumps(self.stack.standin.admin.jobs()) if self.stack.standin else ""
        digest = hashlib.sha256(key.encode()).hexdigest()
        self.check(
            bool(run) and report.get("name") == run.get("name")
            and report.get("config") == {"lr": 0.1, "epochs": 3}
            and report.get("key_sha256") == digest and key not in jobs,
            f"demo-wandb ran W&B run {run.get('id')} ({run.get('url')}) with its config; the "
            "job read its API key from Secret Manager at start, and no job body holds it",
        )  # fmt: skip

    def enqueue_built(self) -> None:
        self.step("Build it into an image once: a builder queue, two items with one source")
        self.cli("queue", "apply", str(_rel(EXAMPLES / "queues" / "built.yaml")))
        self.expect("demo-built", "built", "SUCCEEDED", "BUILDING, then the built image runs")
        self.expect("demo-built-again", "built", "SUCCEEDED", "same source: no second build")
        for item_id in ("demo-built", "demo-built-again"):
            self.cli(
                *("enqueue", "-q", "built", "--item-id", item_id),
                *("--source", str(_rel(EXAMPLES / "source-trainer")), "--module", "trainer.task"),
                *("--args", "--epochs 300 --learning-rate 0.1"),
            )
            if item_id == "demo-built":
                self.wait_for(
                    "demo-built's image to be built",
                    lambda: self._state("built", "demo-built") not in (None, "BUILDING"),
                )

    def _check_built(self) -> None:
        first = self.item("built", "demo-built").get("build") or {}
        again = self.item("built", "demo-built-again").get("build") or {}
        # The builds made before the git items (enqueue_git) are demo-built's.
        builds = getattr(self, "git_builds", self._builds())
        self.check(
            builds == 1
            and bool(first.get("digest"))
            and first.get("digest") == again.get("digest"),
            f"one build ({builds}) for two items with one source; both ran "
            f"{first.get('tag_uri', '?').rsplit(':', 1)[0]}@{first.get('digest')}",
        )

    def enqueue_ladder_story(self) -> None:
        self.step(
            "A capacity ladder: us-central1 is stocked out, then the us-east4 Spot VM is "
            "preempted; the item moves each time and resumes from its checkpoint"
        )
        self.cli("queue", "apply", str(_rel(EXAMPLES / "queues" / "ladder-demo.yaml")))
        from launchq_local.standin.admin import AdminClient

        admin = AdminClient(self.stack.standin_url)
        try:
            # L4s only: the demo's other jobs (CPU, us-central1) are not part of this story.
            admin.add_scarcity("stockout", "us-central1", "NVIDIA_L4", count=1, delay_seconds=0.5)
            admin.add_scarcity("preempt", "us-east4", "NVIDIA_L4", count=1, delay_seconds=2.0)
        finally:
            admin.close()
        self.console.print(
            "[dim]# the Vertex stand-in now stocks out us-central1's L4s once and preempts the "
            "next us-east4 L4 Spot VM 2 s into its run (`launchq dev --stockout "
            "us-central1:NVIDIA_L4 --preempt-spot 1` does much the same)[/dim]"
        )
        self.expect("demo-ladder", "ladder-demo", "SUCCEEDED", "stockout, preempted, resumed")
        self.cli(
            *("enqueue", "-q", "ladder-demo", "--item-id", "demo-ladder"),
            *("--image", "python:3.11-slim", "--command", TRAINER_CMD),
            *("--args", "--epochs 40 --epoch-seconds 0.1"),
        )

    def _check_ladder(self) -> None:
        from launchq_local.standin.execute import gcs_to_local

        data = self.item("ladder-demo", "demo-ladder")
        attempts = [a for a in data.get("attempts") or [] if isinstance(a, dict)]
        where = [str(a.get("region")) for a in attempts]
        why = [str(a.get("failure_class")) for a in attempts[:-1]]
        self.check(
            where == ["us-central1", "us-east4", "us-central1"]
            and why == ["no_capacity", "preempted"],
            f"demo-ladder ran in {' → '.join(where) or 'nowhere'} after {', '.join(why) or '-'}",
        )
        body = data.get("job_body") or {}
        base = body.get("jobSpec", {}).get("baseOutputDirectory", {}).get("outputUriPrefix", "")
        model = Path(gcs_to_local(str(base).rstrip("/"), self.stack.work_dir)) / "model"
        fitted = json.loads((model / "model.json").read_text()) if base else {}
        if not (model / "model.json").is_file():
            self.check(False, f"demo-ladder wrote no model (looked in {model})")
            return
        resumed = int(fitted.get("resumed_from") or 0)
        self.check(
            resumed > 0 and str(fitted.get("attempt")) == str(len(attempts)),
            f"demo-ladder's attempt {fitted.get('attempt')} resumed from the checkpoint of "
            f"epoch {resumed} (of {fitted.get('epochs')}) that the preempted attempt wrote to "
            "$LAUNCHQ_CHECKPOINT_DIR",
        )

    def enqueue_priority_story(self) -> None:
        self.step("One slot on `default`: a low-priority item waits, a critical one overtakes it")
        self._enqueue_default("demo-first", "medium", "--epochs 40 --epoch-seconds 0.1")
        self.wait_for("demo-first to take the slot", lambda: self._past_queued("demo-first"))
        self._enqueue_default("demo-low", "low", "--epochs 10 --epoch-seconds 0.05")
        self.wait_for("demo-low to wait", lambda: self._state("default", "demo-low") == "QUEUED")
        self._enqueue_default("demo-urgent", "critical", "--epochs 10 --epoch-seconds 0.05")
        self.wait_for("demo-urgent to wait", lambda: self._waiting("demo-urgent"))
        self.cli("queue", "pending", "default")

    def _enqueue_default(self, item_id: str, priority: str, args: str) -> None:
        story = {"demo-first": "holds the only slot", "demo-low": "low: overtaken",
                 "demo-urgent": "critical: overtakes"}[item_id]  # fmt: skip
        self.expect(item_id, "default", "SUCCEEDED", story)
        self.cli(
            *("enqueue", "-q", "default", "--item-id", item_id, "--priority", priority),
            *("--image", "python:3.11-slim", "--command", TRAINER_CMD, "--args", args),
        )

    def enqueue_invalid(self) -> None:
        self.step("An invalid item: the CLI refuses it; sent anyway, the dispatcher rejects it")
        invalid = str(_rel(EXAMPLES / "items" / "invalid.json"))
        code = self.cli("enqueue", "--from-file", invalid, "--item-id", "demo-invalid")
        self.check(code == 2, f"the CLI refused the invalid item before publishing (exit {code})")
        self.console.print("[dim]# any other publisher can still send it; --no-check does[/dim]")
        self.expect("demo-invalid", "trainer", "REJECTED", "invalid: never submitted")
        self.cli("enqueue", "--from-file", invalid, "--item-id", "demo-invalid", "--no-check")

    def enqueue_cross_queue(self) -> None:
        self.step(
            "Publishing rights are per queue: an item sent on trainer's topic that names "
            "`default` is refused"
        )
        self.console.print(
            "[dim]# a trainer-team member may publish only to launchq-q-trainer; naming another "
            "queue in the item gains nothing[/dim]"
        )
        self.expect("demo-cross", "trainer", "REJECTED", "names default on trainer's topic")
        self.cli(
            *("enqueue", "-q", "default", "--item-id", "demo-cross", "--image", "python:3.11"),
            *("--queue-topic", "launchq-q-trainer", "--no-check"),
        )

    def expect(self, item_id: str, queue: str, state: str, story: str) -> None:
        self.expected.append(Expected(item_id, queue, state, story))

    def follow(self, timeout: float) -> bool:
        self.step("Follow every item to its end (a sweep runs every second)")
        return self.wait_for("every item to end", self._all_ended, timeout)

    def _all_ended(self) -> bool:
        from launchq.model.states import TERMINAL_STATES

        ended = {s.value for s in TERMINAL_STATES}
        return all(self._state(e.queue, e.item_id) in ended for e in self.expected)

    def _state(self, queue: str, item_id: str) -> str | None:
        state = self.item(queue, item_id).get("state")
        return str(state) if state else None

    def _past_queued(self, item_id: str) -> bool:
        return self._state("default", item_id) not in (None, "QUEUED")

    def _waiting(self, item_id: str) -> bool:
        return self._state("default", item_id) == "QUEUED"

    # -- the verdict --------------------------------------------------------------------------

    def summarize(self) -> None:
        from launchq_client.reads import item_summary

        self.print_transitions()
        self.step("Summary")
        table = Table()
        for column in ("item", "queue", "story", "expected", "state", "attempts",
                       "time to submit", "run time"):  # fmt: skip
            table.add_column(column, no_wrap=column in ("item", "state", "expected"))
        for exp in self.expected:
            row = item_summary(self.item(exp.queue, exp.item_id))
            ok = row["state"] == exp.state
            self.check(ok, f"{exp.item_id} ended {row['state']} (expected {exp.state})")
            table.add_row(
                exp.item_id,
                exp.queue,
                exp.story,
                exp.state,
                ("" if ok else "✗ ") + _styled(row["state"]),
                str(row["attempts"]),
                _secs(row["time_to_submit_s"]),
                _secs(row["run_time_s"]),
            )
        self.console.print(table)
        self._check_model()
        self._check_source_model()
        self._check_built()
        self._check_wandb()
        self._check_sweep()
        self._check_git()
        self._check_ladder()
        self._check_overtaking()
        self._check_errors()
        self._check_notifications()
        self.cli("status", "demo-fail")
        self.cli("status", "demo-ladder")

    def _check_model(self) -> None:
        from launchq_local.standin.execute import gcs_to_local

        data = self.item("trainer", "demo-train")
        prefix = (data.get("job_body") or {}).get("jobSpec", {}).get("baseOutputDirectory", {})
        uri = str(prefix.get("outputUriPrefix", ""))
        model = Path(gcs_to_local(uri.rstrip("/"), self.stack.work_dir)) / "model" / "model.json"
        if not uri or not model.is_file():
            self.check(False, f"demo-train wrote no model file (looked for {model})")
            return
        fitted = json.loads(model.read_text())
        self.check(
            True,
            f"demo-train's trainer wrote $AIP_MODEL_DIR/model.json: w={fitted['w']:.2f} "
            f"b={fitted['b']:.2f} (true 3, 2); the stand-in maps gs:// to {model}",
        )

    def _check_source_model(self) -> None:
        """Read demo-source's model back the way a user would: with the storage client."""
        data = self.item("source", "demo-source")
        spec = (data.get("job_body") or {}).get("jobSpec", {})
        uri = str(spec.get("baseOutputDirectory", {}).get("outputUriPrefix", ""))
        bucket, _, path = uri.removeprefix("gs://").rstrip("/").partition("/")
        name = f"{path}/model/model.json"
        blob = None
        if self.stack.gcs is not None and bucket:
            blob = self.stack.gcs.client(self.stack.project).bucket(bucket).get_blob(name)
        if blob is None:
            self.check(False, f"demo-source wrote no model (looked for gs://{bucket}/{name})")
            return
        fitted = json.loads(blob.download_as_bytes())
        close = abs(fitted["w"] - 3) < 0.2 and abs(fitted["b"] - 2) < 0.2
        self.check(
            close and fitted["epochs"] == 300,
            f"demo-source ran from source: w={fitted['w']:.2f} b={fitted['b']:.2f} after "
            f"{fitted['epochs']} epochs, read back from gs://{bucket}/{name}",
        )

    def _check_overtaking(self) -> None:
        def submitted(item_id: str) -> Any:
            attempts = self.item("default", item_id).get("attempts") or [{}]
            return attempts[0].get("created_at")

        urgent, low = submitted("demo-urgent"), submitted("demo-low")
        ok = urgent is not None and low is not None and urgent < low
        gap = f"{(low - urgent).total_seconds():.1f}s " if ok else ""
        self.check(
            ok, f"demo-urgent (critical) was submitted {gap}before demo-low (low), which came first"
        )

    def _check_errors(self) -> None:
        failed = (self.item("trainer", "demo-fail").get("error") or {}).get("message", "")
        first = str(failed).splitlines()[0] if failed else ""
        self.check(
            "non-zero status of 3" in str(failed),
            f"demo-fail shows Vertex's error: {first or 'none recorded'}",
        )
        cross = self.item("trainer", "demo-cross").get("error") or {}
        self.check(
            cross.get("reason") == RejectReason.QUEUE_MISMATCH,
            f"demo-cross was refused ({cross.get('reason')}): {cross.get('message')}; "
            f"nothing reached queue default: {not self.item('default', 'demo-cross')}",
        )
        rejected = self.item("trainer", "demo-invalid").get("error") or {}
        reasons = [str(e.get("message")) for e in rejected.get("errors") or []]
        listed = "; ".join(reasons) or "no reason recorded"
        self.check(bool(reasons), f"demo-invalid was rejected: {listed}")

    def _check_notifications(self) -> None:
        """trainer.yaml's `notify` rule (a signed webhook, on FAILED): one delivery, about
        demo-fail only, signed with the key from Secret Manager; no secret anywhere it shows."""
        from launchq.model.notices import notice_key

        receiver = self.stack.receiver
        if receiver is None:
            self.check(False, "the stack has no webhook receiver")
            return
        # demo-fail ended long ago; its notification is normally in by now.
        receiver.wait_for(lambda got: any(d.item_id == "demo-fail" for d in got), 15.0)
        self.print_transitions()
        got = receiver.deliveries()
        fail = [d for d in got if d.item_id == "demo-fail"]
        others = sorted({str(d.item_id) for d in got if d.item_id != "demo-fail"})
        key = notice_key("trainer", "demo-fail", "team-hook", "FAILED")
        store = self.stack_store()
        # The sender records SENT just after the receiver answers.
        self.wait_for("the notification's record", lambda: _sent(store.get_notice(key)), 5.0)
        notice = store.get_notice(key)
        one = fail[0] if len(fail) == 1 else None
        succeeded = sum(1 for exp in self.expected if exp.state == "SUCCEEDED")
        self.check(
            one is not None and one.accepted and one.verified and one.outcome == "FAILED"
            and one.rule == "team-hook" and not others
            and notice is not None and notice.state == "SENT",
            f"demo-fail's failure was notified {_times(len(fail))}: {one.kind if one else '?'} "
            f"{one.rule if one else '?'}, signature {one.signature if one else '?'}, "
            f"{one.detail if one else '-'!r}; none for the {succeeded} items that succeeded"
            + (f" (but for {', '.join(others)})" if others else ""),
        )  # fmt: skip
        secrets_ = {"signing key": self.stack.signing_key, "URL token": self.stack.hook_token}
        records = json.dumps(
            [self.item(exp.queue, exp.item_id) for exp in self.expected]
            + [notice.document if notice is not None else {}],
            default=str,
        )
        messages = json.dumps([dict(d.body) for d in got])
        leaked = [f"{name} in {where}" for name, value in secrets_.items()
                  for where, text in (("a record", records), ("a message", messages))
                  if value in text]  # fmt: skip
        self.check(
            not leaked,
            "neither the webhook's signing key nor its URL's token is in any item record, the "
            "notification's record or the message" + (f": {', '.join(leaked)}" if leaked else ""),
        )

    def verdict(self) -> bool:
        self.step("Checks")
        for ok, text in self.checks:
            mark = "[green]✓[/green]" if ok else "[red]✗[/red]"
            self.console.print(f"  {mark} {text}", highlight=False)
        return all(ok for ok, _ in self.checks)


_STATE_WIDTH = max(len(state) for state in STATE_STYLES)


def transition_line(elapsed: str, item_id: str, id_width: int, entry: dict[str, Any]) -> str:
    """`  12.3s  demo-built-again     QUEUED → SUBMITTING  admitted`: the id padded to the
    story's longest and the source state to the longest state, so the arrows form a column."""
    source = str(entry.get("from") or "·")
    cause = escape(str(entry.get("cause") or ""))
    return (
        f"  [dim]{elapsed}[/dim]  {escape(item_id):<{id_width}}  {source:>{_STATE_WIDTH}} → "
        f"{_styled(entry.get('to'))}  [dim]{cause}[/dim]"
    )


def notification_line(elapsed: str, id_width: int, delivery: Delivery) -> str:
    """`  14.2s  demo-fail      FAILED ✉ webhook team-hook, signature verified  The replica…`:
    what the webhook receiver took, in the transitions' columns."""
    item_id = escape(str(delivery.item_id or "?"))
    status = "" if delivery.accepted else f", answered {delivery.status}"
    return (
        f"  [dim]{elapsed}[/dim]  {item_id:<{id_width}}  {delivery.outcome!s:>{_STATE_WIDTH}} "
        f"✉ notified: {delivery.kind} {delivery.rule or ''}, signature {delivery.signature}"
        f"{status}  [dim]{escape(delivery.detail)}[/dim]"
    )


def command_lines(argv: list[str], width: int) -> list[str]:
    """`$ launchq ...` as a shell would take it, broken only between arguments (` \\` and an
    indented continuation) so that no quoted argument, nor an option and its value, is split
    across lines. A single word longer than the width gets a line of its own."""
    words: list[str] = []
    k = 0
    while k < len(argv):  # an option stays on one line with its value: `--image IMG`
        word = shlex.quote(argv[k])
        value = argv[k + 1] if k + 1 < len(argv) else None
        takes = value is not None and (not value.startswith("-") or " " in value)
        if argv[k].startswith("-") and takes and value is not None:
            words.append(f"{word} {shlex.quote(value)}")
            k += 2
        else:
            words.append(word)
            k += 1
    lines: list[str] = []
    current = "$"
    for word in words:
        candidate = f"{current} {word}"
        # Room for the trailing ` \` the line gets if another follows it.
        if len(candidate) + 2 > width and current.strip() not in ("$", ""):
            lines.append(current + " \\")
            current = f"    {word}"
        else:
            current = candidate
    lines.append(current)
    return lines


def _styled(state: object) -> str:
    from launchq_cli.common import styled_state

    return styled_state(str(state) if state else None)


def _sent(notice: Any) -> bool:
    return notice is not None and notice.state == "SENT"


def _times(count: int) -> str:
    return {0: "no time", 1: "once"}.get(count, f"{count} times")


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def _rel(path: Path) -> Path:
    """Paths as a user in the checkout would type them."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def run(console: Console, timeout: float, functions_dir: Path) -> bool:
    console.print(
        "[bold]launchq demo[/bold]: Pub/Sub in, Vertex AI CustomJobs out, every state in "
        "Firestore, all on this machine (nothing reaches Google Cloud)."
    )
    begun = time.monotonic()
    stack = DevStack("launchq-demo", Ports.free(), sweep_interval=1.0, functions_dir=functions_dir)
    console.print(
        "\n[bold cyan]▶ Start the local stack[/bold cyan]: Pub/Sub + Firestore emulators, the "
        "Vertex AI stand-in (execute mode), the dispatch, sweep and notify functions under "
        "functions-framework, push subscriptions, a webhook receiver, a sweep every second"
    )
    passed = False
    try:
        stack.start()
        console.print(
            f"  ready in {stack.startup_seconds:.1f}s: dispatcher {stack.dispatcher_url}, "
            f"sweeper {stack.sweeper_url}, notify {stack.notifier_url}, Vertex stand-in "
            f"{stack.standin_url}, webhook receiver {stack.receiver_url}",
            highlight=False,
        )
        demo = Demo(console, stack)
        if demo.apply_queues():
            demo.enqueue_trainer_items()
            demo.enqueue_ladder_story()
            demo.enqueue_source()
            demo.enqueue_built()
            demo.enqueue_wandb()
            demo.enqueue_sweep()
            demo.enqueue_git()
            demo.enqueue_priority_story()
            demo.enqueue_invalid()
            demo.enqueue_cross_queue()
            demo.follow(timeout)
            demo.summarize()
            passed = demo.verdict()
        else:
            console.print("[red]could not apply the example queues[/red]")
    finally:
        console.print("\n[bold cyan]▶ Tear down[/bold cyan]")
        stopped = time.monotonic()
        stack.stop()
        left = stack.leftovers()
        stack.remove_files()
        if left:
            passed = False
            console.print(f"  [red]still running: {', '.join(left)}[/red]")
        else:
            console.print(f"  stopped in {time.monotonic() - stopped:.1f}s; no process left behind")
    total = time.monotonic() - begun
    if passed:
        console.print(f"\n[bold green]demo passed[/bold green] in {total:.1f}s: "
                      "every item ended as expected")  # fmt: skip
    else:
        console.print(f"\n[bold red]demo FAILED[/bold red] after {total:.1f}s (see above)")
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m launchq_demo", description=__doc__)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="seconds to wait for every item to end")  # fmt: skip
    parser.add_argument("--functions-dir", type=Path, default=FUNCTIONS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    width = None if sys.stdout.isatty() else 130
    console = Console(width=width, highlight=False)
    try:
        return 0 if run(console, args.timeout, args.functions_dir) else 1
    except KeyboardInterrupt:
        console.print("interrupted; the stack was stopped")
        return 130
