#!/usr/bin/env python3
"""A real, tiny training job: fits y = w*x + b by gradient descent, stdlib only.

It behaves like a Vertex AI training container: it reads `AIP_MODEL_DIR` (Vertex sets it from
the job's `base_output_directory`; the local stand-in maps `gs://` to a local folder), prints
progress to stdout, writes `model.json` there, and exits non-zero on failure with the reason on
stderr (Vertex quotes the end of stderr in the job's error).

    python examples/trainer/train.py --epochs 200 --learning-rate 0.05
    python examples/trainer/train.py --fail          # exit 3: a failing job, on purpose

Resume, not restart: with a checkpoint directory (`--checkpoint-dir`, default launchq's
`LAUNCHQ_CHECKPOINT_DIR`, the same for every attempt of an item), it saves `checkpoint.json`
after every epoch and, when one is there at start (a preempted or moved attempt wrote it),
continues from it. A `gs://` directory is read and written through the Cloud Storage FUSE mount
(`/gcs/BUCKET/...` on Vertex; the local stand-in's `LAUNCHQ_GCS_MOUNT`).

Runs anywhere Python 3.8+ runs; no numpy, so the stand-in can execute it with any interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

TRUE_W, TRUE_B = 3.0, 2.0
FAIL_EXIT_CODE = 3


def make_data(n: int, seed: int) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    points = []
    for _ in range(n):
        x = rng.uniform(-1.0, 1.0)
        points.append((x, TRUE_W * x + TRUE_B + rng.gauss(0.0, 0.1)))
    return points


def mse(data: list[tuple[float, float]], w: float, b: float) -> float:
    return sum((w * x + b - y) ** 2 for x, y in data) / len(data)


def fuse_path(uri: str) -> Path:
    """`gs://bucket/path` as a file path on the Cloud Storage FUSE mount; a path stays as is."""
    if uri.startswith("gs://"):
        return Path(os.environ.get("LAUNCHQ_GCS_MOUNT", "/gcs")) / uri[len("gs://") :]
    return Path(uri)


def load_checkpoint(directory: Path | None) -> dict[str, float] | None:
    if directory is None or not (directory / "checkpoint.json").is_file():
        return None
    return dict(json.loads((directory / "checkpoint.json").read_text()))


def save_checkpoint(directory: Path | None, epoch: int, w: float, b: float) -> None:
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / "checkpoint.json.partial"  # never a half-written checkpoint
    partial.write_text(json.dumps({"epoch": epoch, "w": w, "b": b}))
    partial.replace(directory / "checkpoint.json")


def train(args: argparse.Namespace) -> dict[str, float]:
    data = make_data(args.samples, args.seed)
    w = b = 0.0
    checkpoints = fuse_path(args.checkpoint_dir) if args.checkpoint_dir else None
    start = 1
    saved = load_checkpoint(checkpoints)
    if saved is not None:
        w, b, start = saved["w"], saved["b"], int(saved["epoch"]) + 1
        print(f"resuming from the checkpoint of epoch {start - 1} in {args.checkpoint_dir}",
              flush=True)  # fmt: skip
    report_every = max(args.epochs // 5, 1)
    for epoch in range(start, args.epochs + 1):
        grad_w = sum(2 * (w * x + b - y) * x for x, y in data) / len(data)
        grad_b = sum(2 * (w * x + b - y) for x, y in data) / len(data)
        w -= args.learning_rate * grad_w
        b -= args.learning_rate * grad_b
        if args.epoch_seconds:
            time.sleep(args.epoch_seconds)
        if epoch % report_every == 0 or epoch == args.epochs:
            print(
                f"epoch {epoch}/{args.epochs} loss={mse(data, w, b):.5f} w={w:.3f} b={b:.3f}",
                flush=True,
            )
        if args.fail and epoch >= args.epochs // 2:
            print(f"error: loss diverged at epoch {epoch} (--fail was given)", file=sys.stderr)
            sys.exit(FAIL_EXIT_CODE)
        save_checkpoint(checkpoints, epoch, w, b)
    return {"w": w, "b": b, "loss": mse(data, w, b), "resumed_from": start - 1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--epoch-seconds",
        type=float,
        default=0.0,
        help="sleep per epoch, to make a demo job visibly run",
    )
    parser.add_argument("--fail", action="store_true", help=f"fail half-way, exit {FAIL_EXIT_CODE}")
    parser.add_argument(
        "--model-dir",
        default=os.environ.get("AIP_MODEL_DIR", "model"),
        help="where model.json goes (default: $AIP_MODEL_DIR)",
    )
    parser.add_argument(
        "--checkpoint-dir",
        default=os.environ.get("LAUNCHQ_CHECKPOINT_DIR"),
        help="save and resume from here (default: $LAUNCHQ_CHECKPOINT_DIR; none: no checkpoints)",
    )
    args = parser.parse_args(argv)
    job = os.environ.get("CLOUD_ML_JOB_ID", "local")
    print(
        f"job {job}: training y = w*x + b on {args.samples} samples, "
        f"{args.epochs} epochs, lr {args.learning_rate}",
        flush=True,
    )
    model = train(args)
    out = Path(args.model_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.json"
    attempt = os.environ.get("LAUNCHQ_ATTEMPT", "1")
    path.write_text(
        json.dumps({**model, "epochs": args.epochs, "job": job, "attempt": attempt}, indent=2)
        + "\n"
    )
    print(f"wrote {path}: w={model['w']:.3f} b={model['b']:.3f} (true 3.0, 2.0)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
