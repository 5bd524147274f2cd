"""A training script that logs to W&B, as launched by a queue with a `wandb` block.

It calls `wandb.init()` with no arguments: the run's id, project, entity, name and config come
from the environment launchq sets (docs/wandb.md), and WANDB_API_KEY from the bootstrap that
read it from Secret Manager when the container started. It prints one JSON line saying what the
run was, and never the key (only whether one was set, and its SHA-256, which the tests compare).

`--fail-first-attempt` exits 3 on the first attempt (LAUNCHQ_ATTEMPT=1) after logging a step, so
a queue that retries user errors shows the second attempt resuming the same run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import wandb


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--fail-first-attempt", action="store_true")
    args = parser.parse_args()
    attempt = int(os.environ.get("LAUNCHQ_ATTEMPT", "1"))
    key = os.environ.get("WANDB_API_KEY", "")
    run = wandb.init()
    for step in range(args.steps):
        wandb.log({"loss": 1.0 / (step + 1), "attempt": attempt})
    print(
        json.dumps(
            {
                "run_id": run.id,
                "project": run.project,
                "entity": os.environ.get("WANDB_ENTITY"),
                "name": run.name,
                "config": dict(run.config),
                "resume": run.settings.resume,
                "attempt": attempt,
                "has_key": bool(key),
                "key_sha256": hashlib.sha256(key.encode()).hexdigest() if key else None,
                "secret_name_left_in_env": "LAUNCHQ_WANDB_API_KEY_SECRET" in os.environ,
                "offline_dir": run.dir,
            }
        ),
        flush=True,
    )
    run.finish()
    if args.fail_first_attempt and attempt == 1:
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
