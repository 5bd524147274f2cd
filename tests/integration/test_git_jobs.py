"""Jobs from a git repository on the whole local stack: a repository served by `git daemon` on a
loopback port (git://, as a Git host serves it), `launchq enqueue --git URL --ref REF --subdir
DIR` resolving the ref to a commit, packing that commit's subdir like `--source`, and the item
naming the commit, never the ref. A source queue runs it; a builder queue builds it once for
two items of one commit; a ref that moves after enqueue does not change what runs; a ref that
does not resolve, a subdir that is not in the commit and a URL with credentials are refused
before anything is published."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from launchq_cli import main
from launchq_local.devstack import DevStack

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def git(*args: str, cwd: Path) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "HOME": str(cwd), "PATH": "/usr/bin:/bin"}  # fmt: skip
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          check=True)  # fmt: skip
    return done.stdout.strip()


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`git://127.0.0.1:PORT/models.git` with examples/source-trainer under `trainer/`, on
    branch main (tagged v1), served by git daemon; and a work tree to push new commits from."""
    assert shutil.which("git"), "git is not installed (apt-get install git)"
    root = tmp_path_factory.mktemp("git")
    work = root / "work"
    shutil.copytree(EXAMPLES / "source-trainer", work / "trainer")
    (work / "README.md").write_text("models\n")
    git("init", "--quiet", "--initial-branch=main", cwd=work)
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "trainer", cwd=work)
    git("tag", "-a", "v1", "-m", "first", cwd=work)
    served = root / "served"
    served.mkdir()
    git("clone", "--quiet", "--bare", str(work), str(served / "models.git"), cwd=root)
    git("remote", "add", "origin", str(served / "models.git"), cwd=work)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={served}",
         "--listen=127.0.0.1", f"--port={port}", str(served)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"git://127.0.0.1:{port}/models.git"
    deadline = time.monotonic() + 10
    while subprocess.run(["git", "ls-remote", url], capture_output=True, check=False).returncode:
        assert time.monotonic() < deadline, "git daemon did not start"
        time.sleep(0.1)
    try:
        yield url, work
    finally:
        daemon.terminate()
        daemon.wait(10)


def _state(item_id: str) -> str | None:
    """The item's state; None before the dispatcher recorded it (the push is asynchronous)."""
    code, out, _ = run("status", item_id, "--json")
    return str(json.loads(out)["state"]) if code == 0 else None


def _wait(queue: str, item_id: str, seconds: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        code, out, _ = run("status", item_id, "--json")
        detail = json.loads(out) if code == 0 else {}
        if detail.get("terminal"):
            return dict(detail)
        time.sleep(0.5)
    raise AssertionError(f"{queue}/{item_id} did not end")


def test_a_git_job_runs_the_commit_its_ref_named_at_enqueue(
    stack: DevStack, repository: tuple[str, Path]
) -> None:
    url, work = repository
    head = git("rev-parse", "HEAD", cwd=work)
    assert run("queue", "apply", str(EXAMPLES / "queues" / "source.yaml"))[0] == 0
    code, _, err = run(
        "enqueue", "-q", "source", "--item-id", "git-1", "--git", url, "--ref", "main",
        "--subdir", "trainer", "--module", "trainer.task", "--args", "--epochs 50",
    )  # fmt: skip
    assert code == 0, err
    assert f"-> {head}" in err
    # The branch moves on after the enqueue: the item still runs the commit it named.
    (work / "trainer" / "trainer" / "task.py").write_text("raise SystemExit('moved on')\n")
    git("commit", "--quiet", "-am", "break it", cwd=work)
    git("push", "--quiet", "origin", "main", cwd=work)
    detail = _wait("source", "git-1")
    assert detail["state"] == "SUCCEEDED", detail.get("error_detail")
    source = detail["payload"]["source"]
    assert source["git"] == {"url": url, "commit": head, "subdir": "trainer"}
    assert detail["ran"] == f"source trainer.task from {url}@{head[:12]} (trainer)"
    # The tag resolves through the annotated tag object to the same commit: the same archive.
    code, _, err = run(
        "enqueue", "-q", "source", "--item-id", "git-2", "--git", url, "--ref", "v1",
        "--subdir", "trainer", "--module", "trainer.task", "--json",
    )  # fmt: skip
    assert code == 0, err
    second = _wait("source", "git-2")["payload"]["source"]
    assert second["git"]["commit"] == head
    assert second["sha256"] == source["sha256"]
    assert "already uploaded" in err or second["uri"] == source["uri"]


def test_a_builder_queue_builds_one_commit_once(
    stack: DevStack, repository: tuple[str, Path]
) -> None:
    url, work = repository
    tag = git("rev-list", "-n", "1", "v1", cwd=work)
    assert run("queue", "apply", str(EXAMPLES / "queues" / "built.yaml"))[0] == 0
    assert stack.cloudbuild is not None
    before = stack.cloudbuild.app.counters["CreateBuild"]
    for item_id in ("git-built-1", "git-built-2"):
        code, _, err = run(
            "enqueue", "-q", "built", "--item-id", item_id, "--git", url, "--ref", tag,
            "--subdir", "trainer", "--module", "trainer.task", "--args", "--epochs 50",
        )  # fmt: skip
        assert code == 0, err
        if item_id == "git-built-1":  # built before the second arrives: it finds the image
            deadline = time.monotonic() + 90
            while _state(item_id) in (None, "BUILDING"):
                assert time.monotonic() < deadline, "git-built-1 was not built"
                time.sleep(0.5)
    first, second = _wait("built", "git-built-1"), _wait("built", "git-built-2")
    assert (first["state"], second["state"]) == ("SUCCEEDED", "SUCCEEDED")
    assert stack.cloudbuild.app.counters["CreateBuild"] == before + 1
    assert first["build"]["digest"] == second["build"]["digest"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--ref", "no-such-branch"), "--ref 'no-such-branch' does not resolve"),
        (("--subdir", "nowhere"), "--subdir 'nowhere' is not a directory"),
        (("--subdir", "../etc"), "must be a path inside the repository"),
    ],
    ids=["ref", "subdir", "outside"],
)
def test_what_cannot_be_checked_out_is_refused_before_publishing(
    stack: DevStack, repository: tuple[str, Path], extra: tuple[str, ...], message: str
) -> None:
    url, _ = repository
    assert run("queue", "apply", str(EXAMPLES / "queues" / "source.yaml"))[0] == 0
    code, out, err = run("enqueue", "-q", "source", "--git", url, "--module", "trainer.task",
                         *extra)  # fmt: skip
    assert code == 2
    assert message in err
    assert out == ""


def test_a_url_with_credentials_is_refused(stack: DevStack) -> None:
    assert run("queue", "apply", str(EXAMPLES / "queues" / "source.yaml"))[0] == 0
    code, _, err = run(
        "enqueue", "-q", "source", "--git", "https://me:ghp_secret@example.com/org/repo.git",
        "--module", "trainer.task",
    )  # fmt: skip
    assert code == 2
    assert "holds credentials" in err
    assert "ghp_secret" not in err
