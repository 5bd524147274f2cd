"""`launchq vertex-emulator` in the foreground: serves, and Ctrl-C stops it with its jobs."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1.services.job_service import JobServiceClient

from launchq_local.standin import AdminClient
from tests.fixtures.standin import make_job, wait_for_state

pytestmark = pytest.mark.integration


def test_cli_serves_and_ctrl_c_kills_executed_jobs(tmp_path: Path) -> None:
    entry = "from launchq_cli import main; main()"
    command = [sys.executable, "-c", entry, "vertex-emulator", "--port", "0", "--mode", "execute"]
    command += ["--work-dir", str(tmp_path), "--queued-delay", "0", "--pending-delay", "0"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", banner)
        assert match is not None, banner
        url = match.group(0)
        client = JobServiceClient(
            transport="rest",
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=url),
        )
        sleeper = make_job(command=[sys.executable, "-c", "import time; time.sleep(60)"])
        job = client.create_custom_job(
            parent="projects/cli-test/locations/us-central1", custom_job=sleeper
        )
        wait_for_state(client, job.name, "JOB_STATE_RUNNING")
        pid = AdminClient(url).job(job.name)["execution"]["pid"]
        assert Path(f"/proc/{pid}").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists()
