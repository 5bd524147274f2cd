"""`make demo` as a test: run `python -m launchq_demo` and assert the outcomes it prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.demo]
ROOT = Path(__file__).resolve().parents[2]

EXPECTED = {
    "demo-train": "SUCCEEDED",
    "demo-fail": "FAILED",
    "demo-first": "SUCCEEDED",
    "demo-low": "SUCCEEDED",
    "demo-urgent": "SUCCEEDED",
    "demo-invalid": "REJECTED",
    "demo-source": "SUCCEEDED",
    "demo-wandb": "SUCCEEDED",
    "demo-sweep": "SUCCEEDED",
    "demo-git-1": "SUCCEEDED",
    "demo-git-2": "SUCCEEDED",
}


def test_make_demo_passes_and_prints_the_story() -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "launchq_demo"],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "130"},
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    elapsed = time.monotonic() - started
    out = result.stdout
    assert result.returncode == 0, out[-6000:] + result.stderr[-3000:]
    assert elapsed < 90
    assert "demo passed" in out
    assert "✗" not in out
    for item_id, state in EXPECTED.items():
        row = next(line for line in out.splitlines() if line.startswith(f"│ {item_id} "))
        assert re.search(rf"│ {state}\s+│ {state}\s+│", row), row
        assert f"✓ {item_id} ended {state}" in out
    assert "demo-train's trainer wrote $AIP_MODEL_DIR/model.json: w=3.00" in out
    assert "✓ demo-source ran from source: w=3.00 b=2.00 after 300 epochs" in out
    assert "✓ demo-urgent (critical) was submitted" in out
    assert "✓ demo-wandb ran W&B run " in out
    assert "✓ demo-sweep expanded into 12 children with 12 distinct parameter sets" in out
    assert "12/12 done" in out
    assert "✓ demo-git-1 and demo-git-2 ran commit " in out
    assert "✓ demo-fail shows Vertex's error: The replica workerpool0-0 exited" in out
    # trainer.yaml's notify rule: one signed webhook about demo-fail, taken by the receiver.
    assert re.search(
        r"demo-fail\s+FAILED ✉ notified: webhook team-hook, signature verified  "
        r"The replica workerpool0-0 exited",
        out,
    ), out[-6000:]
    assert (
        "✓ demo-fail's failure was notified once: webhook team-hook, signature verified, "
        "'The replica workerpool0-0 exited" in out
    )
    assert "none for the 12 items that succeeded" in out
    assert "✓ neither the webhook's signing key nor its URL's token is in any item record" in out
    assert "✓ demo-invalid was rejected: template_variables.epochs: 0 is below the minimum 1" in out
    assert "✓ the CLI refused the invalid item before publishing (exit 2)" in out
    assert "error: invalid queue item (2 errors):" in out
    assert "no process left behind" in out
