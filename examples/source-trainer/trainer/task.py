"""Fit y = 3x + 2 by gradient descent (stdlib only) and save the model where Vertex says.

Run as a Python package (`python -m trainer.task`), the way Vertex runs `python_package_spec`:

    python -m trainer.task --epochs 3 --metrics /gcs/my-bucket/metrics/run.json

`AIP_MODEL_DIR` (set by Vertex from the job's base output directory) receives `model.json`;
`--metrics` is a path under the GCS FUSE mount `/gcs/<bucket>/...`. Exit status 3 with
`--fail`, with the reason on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

from trainer import __doc__ as package_doc

FAIL_EXIT_CODE = 3


def train(epochs: int, learning_rate: float, seed: int) -> tuple[float, float, float]:
    rng = random.Random(seed)
    data = [(x, 3.0 * x + 2.0) for x in (rng.uniform(-1, 1) for _ in range(64))]
    w = b = 0.0
    loss = 0.0
    for _ in range(epochs):
        grad_w = grad_b = loss = 0.0
        for x, y in data:
            err = w * x + b - y
            grad_w += 2 * err * x / len(data)
            grad_b += 2 * err / len(data)
            loss += err * err / len(data)
        w -= learning_rate * grad_w
        b -= learning_rate * grad_b
    return w, b, loss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=package_doc)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--metrics", help="where to write metrics JSON (e.g. /gcs/bucket/m.json)")
    parser.add_argument("--fail", action="store_true", help="fail on purpose (exit 3)")
    args = parser.parse_args(argv)
    if args.fail:
        print("asked to fail with --fail", file=sys.stderr)
        return FAIL_EXIT_CODE
    w, b, loss = train(args.epochs, args.learning_rate, args.seed)
    print(f"epochs={args.epochs} w={w:.4f} b={b:.4f} loss={loss:.6f}")
    model_dir = os.environ.get("AIP_MODEL_DIR")
    if not model_dir:
        print("AIP_MODEL_DIR is not set (is this running on Vertex?)", file=sys.stderr)
        return 2
    model = {"w": w, "b": b, "epochs": args.epochs, "greeting": os.environ.get("GREETING")}
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    (Path(model_dir) / "model.json").write_text(json.dumps(model, sort_keys=True))
    if args.metrics:
        Path(args.metrics).parent.mkdir(parents=True, exist_ok=True)
        Path(args.metrics).write_text(json.dumps({"loss": loss}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
