"""Reading gcloud's default project and region: its files vs `gcloud config get-value`.

`launchq queue render` takes the project and region a queue config leaves open from gcloud's
active configuration (`launchq_client.gcloud_defaults`). This measures, in one process and against
one throw-away configuration directory, the two ways to get them:

- baseline: `gcloud config get-value project` and `... ai/region`, as a subprocess each;
- launchq: `default_project()` and `default_region()`, which read the INI files.

Both are measured with the properties set, and with them unset (gcloud then probes the GCE
metadata server before answering "(unset)"). Reports medians and the ratio baseline/launchq.

    .venv/bin/python -m bench.gcloud_defaults [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from launchq_client.gcloud_defaults import default_project, default_region


def _median_seconds(call: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _gcloud_get(gcloud: str, env: dict[str, str], prop: str) -> str:
    result = subprocess.run(
        [gcloud, "config", "get-value", prop], env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def measure(runs: int) -> dict[str, Any]:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise SystemExit(
            "gcloud is not on PATH: install the Google Cloud CLI to run this benchmark"
        )
    results: dict[str, Any] = {"runs": runs}
    for case in ("set", "unset"):
        with tempfile.TemporaryDirectory(prefix="launchq-gcloud-") as directory:
            env = {
                key: value
                for key, value in os.environ.items()
                if not key.startswith("CLOUDSDK_") and key != "GOOGLE_CLOUD_PROJECT"
            }
            env["CLOUDSDK_CONFIG"] = directory
            if case == "set":
                for prop, value in (("project", "bench-project"), ("ai/region", "europe-west4")):
                    subprocess.run([gcloud, "config", "set", prop, value], env=env,
                                   capture_output=True, check=True)  # fmt: skip
            results[case] = _measure_case(gcloud, env, runs)
    return results


def _measure_case(gcloud: str, env: dict[str, str], runs: int) -> dict[str, Any]:
    def read_files() -> tuple[str, str]:
        project, region = default_project(env), default_region(env)
        return (project.value if project else "", region.value if region else "")

    def spawn_gcloud() -> tuple[str, str]:
        return (_gcloud_get(gcloud, env, "project"), _gcloud_get(gcloud, env, "ai/region"))

    # The two ways must agree before their speed is compared.
    assert read_files() == spawn_gcloud(), (read_files(), spawn_gcloud())
    read_s = _median_seconds(read_files, 200)
    spawn_s = _median_seconds(spawn_gcloud, runs)
    return {
        "read_files_ms": round(read_s * 1000, 3),
        "gcloud_get_value_ms": round(spawn_s * 1000, 1),
        "ratio": round(spawn_s / read_s),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gcloud_defaults")
    parser.add_argument("--runs", type=int, default=5, help="gcloud spawns per case")
    args = parser.parse_args(argv)
    json.dump(measure(args.runs), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
