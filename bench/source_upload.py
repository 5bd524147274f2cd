"""Pack + upload of a source tree, first time and deduplicated, against `tar czf` of the same tree.

    .venv/bin/python -m bench.source_upload                  # 1,000 files / 20 MB
    .venv/bin/python -m bench.source_upload --files 50 --mb 1

Everything is measured in one process on one machine, so the figures are ratios against the
baseline run in the same run, `tar czf` of the same tree (GNU tar + gzip -6, no determinism):

- `pack_ratio`: `launchq_client.source.pack` (sorted, normalised, sha256) / `tar czf`.
- `first_ratio`: pack + upload to an empty bucket of the GCS emulator / `tar czf`.
- `dedup_ratio`: pack + upload of the unchanged tree (one metadata look-up, 0 bytes sent).
- `size_ratio`: our archive's bytes / `tar czf`'s bytes.

The tree is synthetic and seeded: 1,000 files of base64 text (compresses like source, about
4:3), spread over 20 directories, `--mb` megabytes in all. The GCS emulator is fake-gcs-server
on loopback, so "upload" measures the client's and the emulator's work, not a network.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from launchq_client.source import SourceUploader, pack


def make_tree(root: Path, files: int, total_bytes: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    per_file = max(1, total_bytes // files)
    for index in range(files):
        path = root / f"pkg{index % 20:02d}" / f"mod_{index:05d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = rng.randbytes(per_file * 3 // 4)
        path.write_bytes(base64.encodebytes(raw))


def _timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def measure(
    client: Any, *, files: int = 1000, mb: float = 20.0, repeats: int = 3
) -> dict[str, Any]:
    """Build the tree, time tar czf and pack (median of `repeats`), then two uploads."""
    work = Path(tempfile.mkdtemp(prefix="launchq-bench-src-"))
    try:
        tree = work / "tree"
        make_tree(tree, files, int(mb * 1024 * 1024))
        tar_s: list[float] = []
        tar_bytes = 0
        for run in range(repeats):
            out = work / f"tar{run}.tar.gz"
            seconds, _ = _timed(
                lambda out=out: subprocess.run(
                    ["tar", "czf", str(out), "-C", str(work), "tree"], check=True
                )
            )
            tar_s.append(seconds)
            tar_bytes = out.stat().st_size
        pack_s: list[float] = []
        packed = None
        for run in range(repeats):
            seconds, packed = _timed(lambda run=run: pack(tree, work / f"pack{run}", use_git=False))
            pack_s.append(seconds)
        assert packed is not None
        bucket = client.create_bucket(f"bench-{secrets.token_hex(4)}")
        uploader = SourceUploader(client, bucket.name)

        def pack_and_upload(tag: str) -> Any:
            return uploader.upload(pack(tree, work / tag, use_git=False))

        first_s, first = _timed(lambda: pack_and_upload("first"))
        dedup_s, dedup = _timed(lambda: pack_and_upload("dedup"))
        tar_median = statistics.median(tar_s)
        return {
            "files": files,
            "tree_mb": mb,
            "archive_bytes": packed.size,
            "tar_czf_bytes": tar_bytes,
            "tar_czf_s_median": round(tar_median, 3),
            "pack_s_median": round(statistics.median(pack_s), 3),
            "first_upload_s": round(first_s, 3),
            "dedup_upload_s": round(dedup_s, 3),
            "first_bytes_sent": first.bytes_sent,
            "dedup_bytes_sent": dedup.bytes_sent,
            "dedup_already_present": dedup.already_present,
            "pack_ratio": round(statistics.median(pack_s) / tar_median, 2),
            "first_ratio": round(first_s / tar_median, 2),
            "dedup_ratio": round(dedup_s / tar_median, 2),
            "size_ratio": round(packed.size / tar_bytes, 3),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--mb", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from launchq_local.gcs import start_gcs

    with start_gcs(backend="memory") as gcs:
        result = measure(
            gcs.client("launchq-bench"), files=args.files, mb=args.mb, repeats=args.repeats
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
