"""What the storability checks add to accepting an item, as a ratio to the rest of the work.

The dispatcher now walks every payload once more (`launchq.spec.sanitize.clean`, inside
`parse_item`) and sizes every new record (`sanitize.firestore_size` over the payload and the
rendered body). Both are measured against `QueueRuntime.prepare` (validate and render: the CPU
work of accepting an item, which now includes the walk) in the same process, for a typical
item and for a large one (a 200 KiB `metadata`).

    .venv/bin/python -m bench.sanitize_cost [--rounds 2000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from launchq.queues import PreparedItem, QueueRuntime
from launchq.spec import sanitize
from launchq.spec.config import parse_queue_config
from tests.fixtures.dispatch import queue_config

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def best_of(fn: Callable[[], Any], rounds: int, repeat: int = 5) -> float:
    """Seconds per call, the best of `repeat` runs of `rounds` calls."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(rounds):
            fn()
        best = min(best, (time.perf_counter() - start) / rounds)
    return best


def measure(name: str, payload: dict[str, Any], rounds: int) -> dict[str, float]:
    runtime = QueueRuntime("q", parse_queue_config(queue_config(), name="q"))
    prepared = runtime.prepare(payload, "item-1", NOW)
    assert isinstance(prepared, PreparedItem), prepared
    record = {"payload": payload, "job_body": prepared.body, "metadata": prepared.metadata}
    prepare = best_of(lambda: runtime.prepare(payload, "item-1", NOW), rounds)
    walk = best_of(lambda: sanitize.clean(payload, under="payload"), rounds)
    size = best_of(lambda: sanitize.firestore_size(record), rounds)
    row = {
        "prepare_us": prepare * 1e6,
        "walk_us": walk * 1e6,
        "size_us": size * 1e6,
        "walk_share_of_prepare": walk / prepare,
        "size_vs_prepare": size / prepare,
    }
    print(
        f"{name:>8}: prepare {row['prepare_us']:8.1f} us | clean {row['walk_us']:8.1f} us "
        f"({row['walk_share_of_prepare']:.1%} of prepare) | record size "
        f"{row['size_us']:8.1f} us ({row['size_vs_prepare']:.1%} of prepare)"
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    rounds = parser.parse_args().rounds
    typical = {
        "image_uri": "gcr.io/p/trainer:1",
        "args": ["--lr", "0.1", "--seed", "7"],
        "env": {"WANDB_PROJECT": "vision"},
        "labels": {"experiment": "resnet50"},
        "priority": "high",
        "metadata": {"submitted_by": "ci", "commit": "3f2a9c1"},
    }
    large = {**typical, "metadata": {f"k{n}": "v" * 40 for n in range(4000)}}
    measure("typical", typical, rounds)
    measure("large", large, max(rounds // 100, 5))


if __name__ == "__main__":
    main()
