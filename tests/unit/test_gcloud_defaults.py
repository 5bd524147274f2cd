"""Default project and region for offline commands, found where Google's tools find them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from launchq_cli import main
from launchq_client.gcloud_defaults import (
    PROJECT_VARIABLES,
    REGION_VARIABLES,
    Found,
    active_config_file,
    default_project,
    default_region,
)

DATA = Path(__file__).resolve().parents[1] / "data"
SEED = DATA / "queues" / "seed_default.yaml"  # sets neither project nor region
ITEM = DATA / "items" / "default.json"


def write_config(root: Path, name: str, text: str, *, active: bool = True) -> Path:
    """A gcloud configuration as `gcloud config set` writes it."""
    (root / "configurations").mkdir(parents=True, exist_ok=True)
    path = root / "configurations" / f"config_{name}"
    path.write_text(text)
    if active:
        (root / "active_config").write_text(name)
    return path


@pytest.fixture
def gcloud_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty gcloud config dir, and none of the variables set (the machine's must not leak)."""
    for variable in (*PROJECT_VARIABLES, *REGION_VARIABLES, "CLOUDSDK_ACTIVE_CONFIG_NAME"):
        monkeypatch.delenv(variable, raising=False)
    root = tmp_path / "gcloud"
    root.mkdir()
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(root))
    return root


def test_nothing_anywhere(gcloud_dir: Path) -> None:
    assert default_project() is None
    assert default_region() is None


def test_the_active_configuration_is_read(gcloud_dir: Path) -> None:
    write_config(gcloud_dir, "default", "[core]\nproject = wrong-one\n", active=False)
    path = write_config(
        gcloud_dir,
        "work",
        "[core]\naccount = a@b.c\nproject = my-project\n\n[ai]\nregion = europe-west4\n",
    )
    assert default_project() == Found("my-project", f"gcloud config core/project ({path})")
    assert default_region() == Found("europe-west4", f"gcloud config ai/region ({path})")


def test_without_active_config_the_default_configuration_is_read(gcloud_dir: Path) -> None:
    path = write_config(gcloud_dir, "default", "[core]\nproject = from-default\n", active=False)
    assert active_config_file() == gcloud_dir / "configurations" / "config_default"
    assert default_project() == Found("from-default", f"gcloud config core/project ({path})")


def test_cloudsdk_active_config_name_picks_another_configuration(
    gcloud_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(gcloud_dir, "default", "[core]\nproject = from-default\n")
    path = write_config(gcloud_dir, "other", "[core]\nproject = from-other\n", active=False)
    monkeypatch.setenv("CLOUDSDK_ACTIVE_CONFIG_NAME", "other")
    assert default_project() == Found("from-other", f"gcloud config core/project ({path})")


def test_compute_region_is_the_last_resort(gcloud_dir: Path) -> None:
    path = write_config(gcloud_dir, "default", "[compute]\nregion = us-east1\nzone = us-east1-b\n")
    assert default_region() == Found("us-east1", f"gcloud config compute/region ({path})")
    write_config(gcloud_dir, "default", "[compute]\nregion = us-east1\n[ai]\nregion = asia-east1\n")
    assert default_region() == Found("asia-east1", f"gcloud config ai/region ({path})")


def test_environment_wins_over_the_file_in_order(
    gcloud_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(gcloud_dir, "default", "[core]\nproject = from-file\n[ai]\nregion = from-file\n")
    monkeypatch.setenv("CLOUDSDK_CORE_PROJECT", "from-cloudsdk")
    monkeypatch.setenv("CLOUDSDK_COMPUTE_REGION", "us-west1")
    assert default_project() == Found("from-cloudsdk", "$CLOUDSDK_CORE_PROJECT")
    assert default_region() == Found("us-west1", "$CLOUDSDK_COMPUTE_REGION")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-google")
    monkeypatch.setenv("CLOUDSDK_AI_REGION", "us-south1")
    assert default_project() == Found("from-google", "$GOOGLE_CLOUD_PROJECT")
    assert default_region() == Found("us-south1", "$CLOUDSDK_AI_REGION")


def test_a_broken_file_is_no_default(gcloud_dir: Path) -> None:
    write_config(gcloud_dir, "default", "project = no section header\n")
    assert default_project() is None


# -- `launchq queue render` ---------------------------------------------------------------------


def render(*extra: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["queue", "render", str(SEED), "--item", str(ITEM), *extra])
    return result.exit_code, result.stdout, result.stderr


def test_render_takes_project_and_region_from_gcloud_and_says_so(gcloud_dir: Path) -> None:
    path = write_config(
        gcloud_dir, "default", "[core]\nproject = my-project\n[ai]\nregion = europe-west4\n"
    )
    code, out, err = render()
    assert code == 0, err
    assert json.loads(out)["displayName"] == "baseline"
    assert err == (
        f"# project my-project (from gcloud config core/project ({path}))\n"
        f"# region europe-west4 (from gcloud config ai/region ({path}))\n"
        "# POST https://europe-west4-aiplatform.googleapis.com/v1/projects/my-project/locations/"
        "europe-west4/customJobs\n"
    )


def test_render_flags_and_environment(gcloud_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(gcloud_dir, "default", "[core]\nproject = from-file\n[ai]\nregion = from-file\n")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "env-project")
    code, _, err = render("--region", "us-central1")
    assert code == 0, err
    assert err == (
        "# project env-project (from $GOOGLE_CLOUD_PROJECT)\n"
        "# POST https://us-central1-aiplatform.googleapis.com/v1/projects/env-project/locations/"
        "us-central1/customJobs\n"
    )


def test_the_queue_config_wins_and_nothing_is_looked_up(
    gcloud_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "env-project")
    monkeypatch.setenv("CLOUDSDK_AI_REGION", "env-region")
    queue = tmp_path / "seed_default.yaml"
    queue.write_text("project: queue-project\nregion: us-east4\n" + SEED.read_text())
    result = CliRunner().invoke(main, ["queue", "render", str(queue), "--item", str(ITEM)])
    assert result.exit_code == 0, result.stderr
    assert result.stderr == (
        "# POST https://us-east4-aiplatform.googleapis.com/v1/projects/queue-project/locations/"
        "us-east4/customJobs\n"
    )


def test_render_with_no_default_anywhere_says_where_to_set_one(gcloud_dir: Path) -> None:
    code, out, err = render()
    assert code == 2  # an invalid queue config is a usage error, as in `queue apply`
    assert out == ""
    assert err == (
        "error: invalid queue config (2 errors):\n"
        "  - project: not set in the queue config, and no default was found; pass --project, set "
        "$GOOGLE_CLOUD_PROJECT or $CLOUDSDK_CORE_PROJECT, or run `gcloud config set project "
        "PROJECT`\n"
        "  - region: not set in the queue config, and no default was found; pass --region, set "
        "$CLOUDSDK_AI_REGION or $CLOUDSDK_COMPUTE_REGION, or run `gcloud config set ai/region "
        "REGION`\n"
    )
