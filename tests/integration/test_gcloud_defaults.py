"""What real gcloud writes is what `launchq_client.gcloud_defaults` reads (no gcloud spawned there).

gcloud is a requirement of the local stack (its emulators), so it is here; a machine without it
fails with the install command, as the emulator tests do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from launchq_client.gcloud_defaults import Found, default_project, default_region
from launchq_local.emulators import INSTALL_GCLOUD


def test_properties_set_with_gcloud_are_read_from_its_files(tmp_path: Path) -> None:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        pytest.fail(f"gcloud (the Google Cloud CLI) is missing. To install it: {INSTALL_GCLOUD}")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CLOUDSDK_") and key != "GOOGLE_CLOUD_PROJECT"
    }
    env["CLOUDSDK_CONFIG"] = str(tmp_path)
    for command in (
        ["config", "set", "project", "default-project"],  # in the 'default' configuration
        ["config", "configurations", "create", "work"],  # a second one, made active
        ["config", "set", "project", "work-project-1"],
        ["config", "set", "ai/region", "europe-west4"],
    ):
        subprocess.run([gcloud, *command], env=env, capture_output=True, check=True, timeout=60)
    written = tmp_path / "configurations" / "config_work"
    assert default_project(env) == Found(
        "work-project-1", f"gcloud config core/project ({written})"
    )
    assert default_region(env) == Found("europe-west4", f"gcloud config ai/region ({written})")
    env["CLOUDSDK_ACTIVE_CONFIG_NAME"] = "default"
    assert default_project(env) == Found(
        "default-project",
        f"gcloud config core/project ({tmp_path / 'configurations' / 'config_default'})",
    )
    assert default_region(env) is None
