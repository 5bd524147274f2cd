"""What the stand-in's quota check costs a create, against the same store without quotas.

    .venv/bin/python -m bench.standin_quota_check --active 10000 --creates 500

In one process, straight on the job store (no HTTP, which would hide the difference): seed
`active` jobs that stay QUEUED, then time `creates` more A100 jobs with no quota, and again with
an A100 quota too large to refuse anything. Two cases: the seeded jobs are CPU-only (they hold
nothing the quota limits: the realistic case) or each holds an A100 (every one of them is looked
at on every create: the worst case, which needs a quota of `active` GPUs to arise). Prints
milliseconds per create and the ratio with/without.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from google.cloud.aiplatform_v1 import types

from launchq_local.standin.jobs import JobStore
from launchq_local.standin.lifecycle import Delays
from launchq_local.standin.limits import Limits
from launchq_local.standin.names import Parent

A100 = "custom_model_training_nvidia_a100_gpus"


def _job(gpus: int) -> Any:
    machine = types.MachineSpec(machine_type="n1-standard-4")
    if gpus:
        machine = types.MachineSpec(
            machine_type="a2-highgpu-1g",
            accelerator_type=types.AcceleratorType.NVIDIA_TESLA_A100,
            accelerator_count=gpus,
        )
    pool = types.WorkerPoolSpec(
        machine_spec=machine,
        replica_count=1,
        container_spec=types.ContainerSpec(image_uri="us-docker.pkg.dev/p/r/img:1"),
    )
    job = types.CustomJob(display_name="q", job_spec=types.CustomJobSpec(worker_pool_specs=[pool]))
    return types.CustomJob.pb(job)


def _ms_per_create(limits: Limits, seed: Any, active: int, creates: int) -> float:
    store = JobStore(delays=Delays(queued=None), limits=limits)  # every job stays active
    parent = Parent("1", "us-central1")
    gpu = _job(1)
    for _ in range(active):
        job = type(seed)()
        job.CopyFrom(seed)
        store.create(parent, job)
    started = time.perf_counter()
    for _ in range(creates):
        job = type(gpu)()
        job.CopyFrom(gpu)
        store.create(parent, job)
    return (time.perf_counter() - started) / creates * 1000


def measure(active: int = 10_000, creates: int = 500) -> dict[str, Any]:
    quota = Limits({A100: 10**9})
    out: dict[str, Any] = {"active": active, "creates": creates}
    for case, seed in (("cpu_only_active", _job(0)), ("a100_holders_active", _job(1))):
        off = _ms_per_create(Limits(), seed, active, creates)
        on = _ms_per_create(quota, seed, active, creates)
        out[case] = {"ms_no_quota": off, "ms_with_quota": on, "ratio": on / off}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--active", type=int, default=10_000)
    parser.add_argument("--creates", type=int, default=500)
    args = parser.parse_args()
    print(json.dumps(measure(args.active, args.creates), indent=2))


if __name__ == "__main__":
    main()
