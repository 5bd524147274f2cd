"""`launchq logs` and the log tail of `launchq status` against the whole local stack.

The stand-in executes examples/trainer/train.py; every line it prints reaches the Cloud Logging
stand-in through the line sink, and the CLI reads it back over `entries:list`, as it would from
Cloud Logging. `--follow` runs as a real subprocess so its lines can be watched as they come.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from launchq_cli import main
from launchq_local.devstack import DevStack

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LAUNCHQ = Path(sys.executable).parent / "launchq"
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "REJECTED", "EXPIRED"}


@pytest.fixture(scope="module")
def trainer(stack: DevStack) -> DevStack:
    """The shared stack with the example `trainer` queue."""
    assert run("queue", "apply", str(EXAMPLES / "queues" / "trainer.yaml"))[0] == 0
    return stack


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def enqueue(*args: str) -> str:
    code, out, err = run("enqueue", "-q", "trainer", "--image", "python:3.11-slim", *args)
    assert code in (0, 1), err
    return out.strip().splitlines()[0]


def ndjson(text: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def state(item_id: str) -> str:
    return str(json.loads(run("status", item_id, "--json")[1])["state"])


def test_logs_of_a_finished_job(trainer: DevStack) -> None:
    item = enqueue("--set-var", "epochs=50", "--wait", "--timeout", "120")
    assert state(item) == "SUCCEEDED"
    job_id = json.loads(run("status", item, "--json")[1])["job_id"]

    code, out, err = run("logs", item)
    assert code == 0, err
    lines = out.splitlines()
    printed = [line.split(" ", 2)[2] for line in lines]
    assert printed[0].startswith(f"job {job_id}: training")
    assert [m.split("/")[0] for m in printed[1:6]] == [f"epoch {n}" for n in (10, 20, 30, 40, 50)]
    assert lines[-1].split(" ", 2)[2].startswith("wrote ")
    assert all(line.split(" ")[1] == "workerpool0-0" for line in lines)

    code, out, _ = run("logs", item, "--json")
    entries = ndjson(out)
    assert [e["message"] for e in entries] == [line.split(" ", 2)[2] for line in lines]
    assert {e["severity"] for e in entries} == {"INFO"}
    assert {e["job_id"] for e in entries} == {job_id}
    stamps = [e["timestamp"] for e in entries]
    assert stamps == sorted(stamps)

    tail = ndjson(run("logs", item, "--json", "--tail", "2")[1])
    assert tail == entries[-2:]
    assert ndjson(run("logs", item, "--json", "--replica", "workerpool0-0")[1]) == entries
    assert run("logs", item, "--json", "--replica", "workerpool1-0")[1] == ""
    assert ndjson(run("logs", item, "--json", "--since", "1h")[1]) == entries
    time.sleep(1.1)
    assert run("logs", item, "--json", "--since", "1s")[1] == ""
    assert run("logs", item, "--since", "soon")[0] == 2


def test_status_shows_the_failed_job_s_last_lines(trainer: DevStack) -> None:
    item = enqueue("--args", "--epochs 40 --fail", "--wait", "--timeout", "120")
    detail = json.loads(run("status", item, "--json")[1])
    assert detail["state"] == "FAILED"
    everything = ndjson(run("logs", item, "--json")[1])
    errors = [e["message"] for e in everything if e["severity"] == "ERROR"]
    assert len(errors) == 1
    assert errors[0].startswith("error: loss diverged at epoch 20")
    assert detail["log_tail"] == [e["message"] for e in everything[-10:]]
    assert detail["log_tail_unavailable"] is None
    code, out, _ = run("status", item)
    assert code == 0
    after_error = out[out.index("error") :]
    assert "log (last" in after_error
    assert "loss diverged at epoch 20" in after_error
    succeeded = enqueue("--set-var", "epochs=5", "--wait", "--timeout", "120")
    assert json.loads(run("status", succeeded, "--json")[1])["log_tail"] is None


def script_command(body: str) -> str:
    """`--command` running `body` with the stack's interpreter (the stand-in expands the var)."""
    return shlex.join(["$(LAUNCHQ_PYTHON)", "-c", body])


def follow_in_a_process(item: str, *extra: str) -> subprocess.Popen[str]:
    """`launchq logs ITEM --follow` as a real process, so its lines can be read as they come."""
    return subprocess.Popen(
        [str(LAUNCHQ), "logs", item, "--follow", "--interval", "0.2", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )


def test_follow_shows_lines_as_the_job_runs_and_stops_when_it_ends(
    trainer: DevStack, tmp_path: Path
) -> None:
    flag = tmp_path / "go"
    # The job cannot end before the test has seen its first line through the follower.
    body = (
        "import os, sys, time\n"
        "print('waiting for the flag', flush=True)\n"
        "deadline = time.time() + 120\n"
        f"while not os.path.exists({str(flag)!r}) and time.time() < deadline:\n"
        "    time.sleep(0.05)\n"
        "print('flag seen', flush=True)\n"
        "print('a warning', file=sys.stderr, flush=True)\n"
    )
    item = enqueue("--command", script_command(body))
    follower = follow_in_a_process(item, "--json")
    try:
        assert follower.stdout is not None
        first = json.loads(follower.stdout.readline())
        assert first["message"] == "waiting for the flag"
        assert state(item) not in TERMINAL
        flag.touch()
        rest, err = follower.communicate(timeout=120)
    finally:
        follower.kill()
    assert follower.returncode == 0, err
    # stdout and stderr are separate pipes read by separate readers (separate streams in Cloud
    # Logging too): lines of the two printed a microsecond apart may come in either order.
    assert sorted((e["message"], e["severity"]) for e in ndjson(rest)) == [
        ("a warning", "ERROR"),
        ("flag seen", "INFO"),
    ]
    assert state(item) == "SUCCEEDED"


def test_follow_moves_on_to_the_job_of_a_retry(trainer: DevStack, tmp_path: Path) -> None:
    config = (EXAMPLES / "queues" / "trainer.yaml").read_text()
    config = config.replace("name: trainer", "name: retrier").replace(
        "  user_errors: false", "  user_errors: true\n  backoff_initial_seconds: 0"
    )
    (tmp_path / "retrier.yaml").write_text(config)
    assert run("queue", "apply", str(tmp_path / "retrier.yaml"))[0] == 0
    tried, flag = tmp_path / "tried", tmp_path / "go"
    # The first attempt fails, but only once the follower is on it; the retry succeeds.
    body = (
        "import os, sys, time\n"
        f"if not os.path.exists({str(tried)!r}):\n"
        f"    open({str(tried)!r}, 'w').close()\n"
        "    print('attempt one', flush=True)\n"
        "    deadline = time.time() + 120\n"
        f"    while not os.path.exists({str(flag)!r}) and time.time() < deadline:\n"
        "        time.sleep(0.05)\n"
        "    print('attempt one fails', flush=True)\n"
        "    sys.exit(3)\n"
        "print('attempt two', flush=True)\n"
    )
    code, out, err = run(
        "enqueue", "-q", "retrier", "--image", "python:3.11-slim", "--command", script_command(body)
    )
    assert code in (0, 1), err
    item = out.strip().splitlines()[0]
    follower = follow_in_a_process(item, "--json")
    try:
        assert follower.stdout is not None
        assert json.loads(follower.stdout.readline())["message"] == "attempt one"
        flag.touch()
        rest, err = follower.communicate(timeout=120)
    finally:
        follower.kill()
    assert follower.returncode == 0, err
    assert [e["message"] for e in ndjson(rest)] == ["attempt one fails", "attempt two"]
    assert "the item was retried: following its new job" in err
    status = json.loads(run("status", item, "--json")[1])
    assert status["state"] == "SUCCEEDED"
    assert status["attempts"] == 2


def test_follow_a_cancelled_item(trainer: DevStack) -> None:
    body = "import time\nprint('running', flush=True)\ntime.sleep(120)\nprint('never')\n"
    item = enqueue("--command", script_command(body))
    deadline = time.monotonic() + 60
    while not run("logs", item, "--json")[1]:
        assert time.monotonic() < deadline, "no log line within 60 s"
        time.sleep(0.2)
    # Ctrl-C stops a follower of a job that runs on, quietly.
    follower = follow_in_a_process(item)
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline().rstrip().endswith(" workerpool0-0 running")
        follower.send_signal(signal.SIGINT)
        _, err = follower.communicate(timeout=30)
    finally:
        follower.kill()
    assert follower.returncode == 0
    assert "Traceback" not in err
    assert state(item) not in TERMINAL

    assert run("cancel", item)[0] == 0
    code, out, err = run("logs", item, "--follow", "--json", "--interval", "0.2")
    assert code == 0, err
    assert state(item) == "CANCELLED"
    assert [e["message"] for e in ndjson(out)] == ["running"]
    # Read again after the end: the same line.
    assert [e["message"] for e in ndjson(run("logs", item, "--json")[1])] == ["running"]


def test_items_without_a_job_or_a_reachable_log(
    trainer: DevStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run(
        "enqueue", "--from-file", str(EXAMPLES / "items" / "invalid.json"), "--no-check",
        "--wait", "--timeout", "120",
    )  # fmt: skip
    rejected = out.strip()
    code, _, err = run("logs", rejected)
    assert code == 1
    assert "has no job, so no logs: it is REJECTED" in err
    assert run("logs", "no-such-item")[0] == 1
    failed = enqueue("--args", "--epochs 10 --fail", "--wait", "--timeout", "120")
    monkeypatch.delenv("LAUNCHQ_LOGGING_ENDPOINT")
    code, _, err = run("logs", failed)
    assert code == 1
    assert "LAUNCHQ_LOGGING_ENDPOINT" in err
    assert "local Vertex stand-in" in err
    # status still answers; it says why the log tail is missing.
    detail = json.loads(run("status", failed, "--json")[1])
    assert detail["state"] == "FAILED"
    assert detail["log_tail"] is None
    assert "LAUNCHQ_LOGGING_ENDPOINT" in detail["log_tail_unavailable"]
    code, out, _ = run("status", failed)
    assert code == 0
    assert "log        unavailable: the job ran on the local Vertex stand-in" in out
