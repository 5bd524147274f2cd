"""The emulator harness without the emulators: discovery messages, env handling, process groups.

Fake SDK trees stand in for a machine where gcloud, Java or a component is missing, and fake
launchers (small shell scripts, shaped like the real ones) exercise start-up failures and the
process-group shutdown without paying for a JVM.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from launchq_local import emulators
from launchq_local.emulators import (
    EmulatorInstall,
    EmulatorNotInstalled,
    EmulatorStartError,
    apply_env,
    emulator_env,
    group_members,
    locate_install,
    new_project_id,
    restore_env,
    start_stack,
)


def _executable(path: Path, body: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _fake_sdk(root: Path, components: tuple[str, ...] = ("pubsub", "firestore")) -> Path:
    """A Cloud SDK tree with bin/gcloud and the requested emulator launchers."""
    _executable(root / "bin" / "gcloud")
    (root / "platform").mkdir(parents=True, exist_ok=True)
    for spec in emulators.SPECS:
        if spec.name in components:
            _executable(root / spec.launcher)
    return root


@pytest.fixture
def java_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    directory = tmp_path / "javabin"
    _executable(directory / "java")
    return directory


# --------------------------------------------------------------------------- missing pieces


def test_missing_java_names_java_and_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    sdk = _fake_sdk(tmp_path / "sdk")
    with pytest.raises(EmulatorNotInstalled) as caught:
        locate_install(path=str(sdk / "bin"))
    assert "Java" in caught.value.missing
    assert "apt-get install openjdk-17-jre-headless" in str(caught.value)


def test_java_home_is_enough_without_java_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    java_home = tmp_path / "jdk"
    _executable(java_home / "bin" / "java")
    monkeypatch.setenv("JAVA_HOME", str(java_home))
    sdk = _fake_sdk(tmp_path / "sdk")
    install = locate_install(path=str(sdk / "bin"))
    assert install.java == java_home / "bin" / "java"


def test_missing_gcloud_says_how_to_install_the_cli(java_dir: Path) -> None:
    with pytest.raises(EmulatorNotInstalled) as caught:
        locate_install(path=str(java_dir))
    assert "gcloud" in caught.value.missing
    assert "google-cloud-cli" in str(caught.value)
    assert "https://cloud.google.com/sdk/docs/install" in str(caught.value)


def test_missing_both_components_gives_both_install_commands(
    tmp_path: Path, java_dir: Path
) -> None:
    sdk = _fake_sdk(tmp_path / "sdk", components=())
    with pytest.raises(EmulatorNotInstalled) as caught:
        locate_install(path=f"{java_dir}{os.pathsep}{sdk / 'bin'}")
    message = str(caught.value)
    assert "Pub/Sub emulator and Firestore emulator" in message
    assert "gcloud components install pubsub-emulator cloud-firestore-emulator" in message
    assert (
        "apt-get install google-cloud-cli-pubsub-emulator google-cloud-cli-firestore-emulator"
        in message
    )
    assert str(sdk / "platform" / "pubsub-emulator") in message  # where it looked


def test_missing_firestore_component_names_only_firestore(tmp_path: Path, java_dir: Path) -> None:
    sdk = _fake_sdk(tmp_path / "sdk", components=("pubsub",))
    with pytest.raises(EmulatorNotInstalled) as caught:
        locate_install(path=f"{java_dir}{os.pathsep}{sdk / 'bin'}")
    message = str(caught.value)
    assert "Firestore emulator" in message
    assert "gcloud components install cloud-firestore-emulator" in message
    assert "google-cloud-cli-firestore-emulator" in message
    assert "pubsub-emulator" not in message


def test_missing_pubsub_component_with_explicit_sdk_root(tmp_path: Path, java_dir: Path) -> None:
    sdk = _fake_sdk(tmp_path / "sdk", components=("firestore",))
    with pytest.raises(EmulatorNotInstalled) as caught:
        locate_install(sdk_root=sdk, path=str(java_dir))  # no gcloud needed with sdk_root
    assert "gcloud components install pubsub-emulator" in str(caught.value)
    assert "google-cloud-cli-pubsub-emulator" in str(caught.value)


def test_sdk_root_is_found_through_the_gcloud_symlink(tmp_path: Path, java_dir: Path) -> None:
    """Debian puts /usr/bin/gcloud -> /usr/lib/google-cloud-sdk/bin/gcloud; so does Homebrew."""
    sdk = _fake_sdk(tmp_path / "sdk")
    usr_bin = tmp_path / "usr-bin"
    usr_bin.mkdir()
    (usr_bin / "gcloud").symlink_to(sdk / "bin" / "gcloud")
    install = locate_install(path=f"{java_dir}{os.pathsep}{usr_bin}")
    assert install.sdk_root == sdk
    assert install.launchers["pubsub"] == sdk / "platform/pubsub-emulator/bin/cloud-pubsub-emulator"


# --------------------------------------------------------------------------- env and ids


def test_env_mapping_names_every_variable_the_clients_read() -> None:
    env = emulator_env("p-1", "127.0.0.1:1", "127.0.0.1:2")
    assert env == {
        "PUBSUB_EMULATOR_HOST": "127.0.0.1:1",
        "PUBSUB_PROJECT_ID": "p-1",
        "FIRESTORE_EMULATOR_HOST": "127.0.0.1:2",
        "GOOGLE_CLOUD_PROJECT": "p-1",
    }


def test_apply_env_then_restore_puts_everything_back() -> None:
    environ = {"PUBSUB_EMULATOR_HOST": "old:1", "UNRELATED": "x"}
    previous = apply_env(emulator_env("p", "new:1", "new:2"), environ)
    assert environ["PUBSUB_EMULATOR_HOST"] == "new:1"
    assert environ["FIRESTORE_EMULATOR_HOST"] == "new:2"
    restore_env(previous, environ)
    assert environ == {"PUBSUB_EMULATOR_HOST": "old:1", "UNRELATED": "x"}


def test_project_ids_are_unique_and_valid() -> None:
    ids = {new_project_id() for _ in range(50)}
    assert len(ids) == 50
    for project in ids:
        # GCP project ids: 6-30 chars, lowercase letters, digits, hyphens, start with a letter.
        assert re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", project), project
        assert project.startswith("launchq-test-")


def test_free_port_is_bindable_on_loopback() -> None:
    port = emulators.free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_start_error_carries_the_emulator_output() -> None:
    error = EmulatorStartError("it died", log_tail="java.net.BindException: Address in use")
    assert "it died" in str(error)
    assert "java.net.BindException" in str(error)
    assert error.is_bind_failure
    assert not EmulatorStartError("it died", log_tail="OutOfMemoryError").is_bind_failure


# --------------------------------------------------------------------------- fake launchers

# Like the real Firestore launcher, this script forks its server instead of exec'ing it, so a
# stop that only killed the direct child would leave the "JVM" behind.
_FAKE_SERVER = textwrap.dedent(
    """\
    import http.server, sys
    port = int([a for a in sys.argv if a.startswith("--port=")][0].split("=")[1])
    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b"Ok")
        def log_message(self, *args): pass
    http.server.HTTPServer(("127.0.0.1", port), Ok).serve_forever()
    """
)


def _fake_install(tmp_path: Path, launcher_body: str) -> EmulatorInstall:
    server = tmp_path / "fake_server.py"
    server.write_text(_FAKE_SERVER)
    body = launcher_body.format(python=sys.executable, server=server)
    launchers = {
        spec.name: _executable(tmp_path / f"{spec.name}-launcher", "#!/bin/sh\n" + body)
        for spec in emulators.SPECS
    }
    return EmulatorInstall(sdk_root=tmp_path, java=Path("/bin/true"), launchers=launchers)


@pytest.fixture
def logs_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A failed start keeps its logs on purpose; keep them out of the real /tmp."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


@pytest.mark.usefixtures("logs_in_tmp")
def test_an_emulator_that_dies_reports_its_own_output(tmp_path: Path) -> None:
    install = _fake_install(tmp_path, 'echo "Unsupported class file major version 65" >&2\nexit 3')
    with pytest.raises(EmulatorStartError) as caught:
        start_stack("p-unit", install=install, timeout=10)
    assert "exited with status 3" in str(caught.value)
    assert "Unsupported class file major version 65" in str(caught.value)
    log_path = re.search(r"\(log: (\S+)\)", str(caught.value))
    assert log_path is not None
    assert "major version 65" in Path(log_path.group(1)).read_text()  # kept for a post-mortem


@pytest.mark.usefixtures("logs_in_tmp")
def test_a_silent_emulator_times_out_and_its_whole_group_is_killed(tmp_path: Path) -> None:
    install = _fake_install(tmp_path, 'echo "booting"\nsleep 300 &\nsleep 300 &\nwait\n')
    # Other tests' stacks (e.g. the session's) may be registered; only ours must be gone.
    before = emulators._REGISTRY.snapshot()
    started = time.monotonic()
    with pytest.raises(EmulatorStartError) as caught:
        start_stack("p-unit", install=install, timeout=0.5)
    assert "did not answer" in str(caught.value)
    assert "booting" in str(caught.value)
    assert time.monotonic() - started < 15
    # The registry is a set: compare members, not the order a snapshot happens to list them in.
    assert set(emulators._REGISTRY.snapshot()) == set(before)


def test_stop_kills_forked_grandchildren_and_restores_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    install = _fake_install(tmp_path, '"{python}" "{server}" "$@"\n')  # forks, like Firestore's
    stack = start_stack("p-unit", install=install, timeout=20)
    pgids = [e.pgid for e in stack.emulators]
    assert all(len(group_members(pgid)) == 2 for pgid in pgids)  # sh + its python child
    stack.apply_env()
    assert os.environ["FIRESTORE_EMULATOR_HOST"] == stack.firestore.host_port
    stack.stop()
    assert all(group_members(pgid) == [] for pgid in pgids)
    assert "FIRESTORE_EMULATOR_HOST" not in os.environ
    assert not stack.log_dir.exists()
    stack.stop()  # idempotent


# --------------------------------------------------------------------------- never skip


def test_fixtures_fail_loudly_instead_of_skipping(tmp_path: Path) -> None:
    """A machine without Java must see a failing suite naming Java, never a green one."""
    (tmp_path / "test_needs_stack.py").write_text("def test_it(gcp_project):\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env |= {"PATH": str(tmp_path), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    command = [sys.executable, "-m", "pytest", "-p", "tests.fixtures.emulators", "-q", "-rA"]
    command += ["-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)]
    result = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1, result.stdout
    assert "1 error" in result.stdout
    assert "skipped" not in result.stdout
    assert "cannot start the local emulators: Java" in result.stdout
    assert "openjdk-17-jre-headless" in result.stdout


@pytest.mark.usefixtures("logs_in_tmp")
def test_a_bind_failure_in_a_jvm_that_stays_alive_fails_fast(tmp_path: Path) -> None:
    """The real Pub/Sub JVM logs a BindException for a taken port and keeps running."""
    body = 'echo "Exception in thread "main" java.net.BindException: Address already in use"\n'
    install = _fake_install(tmp_path, body + "sleep 300\n")
    started = time.monotonic()
    with pytest.raises(EmulatorStartError) as caught:
        start_stack("p-unit", install=install, pubsub_port=1, firestore_port=2, timeout=60)
    assert time.monotonic() - started < 15
    assert "failed to start" in str(caught.value)
    assert caught.value.is_bind_failure
