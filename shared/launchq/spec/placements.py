"""Placements: the rungs of a queue's capacity ladder, and what an item's job looks like on each.

A queue config may list `placements`, in order of preference. Each entry overrides where and how
the queue's job runs (region, scheduling strategy, the machine of some pools, the staging bucket,
image registries), and nothing else: the rest of `spec`/`run` is the queue's. A placement is a
*config transformation* (`launchq.spec.ladder.placed_config`): the placed config is rendered,
validated and checked exactly like a queue without placements, so every rule the renderer and
the write-time checks apply (FLEX_START's accelerators, its same-machine rule, label and env
limits) applies to every placement, with the placement's index in the error path.

`launchq.spec.render.render_placements` renders an item once per placement at dispatch time;
the item stores every body (`placements` on its document), so moving it to another placement
after a stockout is one write of fields it already has: no re-render, no config read in the
middle of a move.
A queue without `placements` has one implicit placement (the config as written) and never
moves an item.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from launchq.spec.mapping.models import Seconds
from launchq.spec.mapping.vocabulary import ACCELERATOR_TYPES

PlacementName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,39}$")]
Region = Annotated[str, Field(pattern=r"^[a-z]+(?:-[a-z]+)+\d+$")]
Strategy = Literal["STANDARD", "SPOT", "FLEX_START"]
BucketUri = Annotated[str, Field(pattern=r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]/?$")]
ImagePrefix = Annotated[str, Field(min_length=3, max_length=300, pattern=r"^[a-z0-9][^\s]*$")]


class PoolMachine(BaseModel):
    """The machine one worker pool gets in this placement (unset keys keep the queue's)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    pool: int = Field(default=0, ge=0, le=3, description="Worker pool index (0 = chief).")
    machine_type: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")] | None = None
    accelerator_type: str | None = Field(default=None, description="e.g. NVIDIA_A100_80GB.")
    accelerator_count: int | None = Field(default=None, ge=0, le=64)

    @field_validator("accelerator_type")
    @classmethod
    def _known_accelerator(cls, value: str | None) -> str | None:
        if value is not None and value not in ACCELERATOR_TYPES:
            raise ValueError(f"unknown accelerator type {value!r}")
        return value


class Placement(BaseModel):
    """One rung of the ladder: where and how the queue's job runs if it runs here."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: PlacementName | None = Field(
        default=None, description="Shown in status and history (default: region/strategy)."
    )
    region: Region | None = Field(default=None, description="Vertex AI region (default: queue's).")
    scheduling_strategy: Strategy | None = Field(
        default=None, description="STANDARD, SPOT or FLEX_START (default: the queue's run.*)."
    )
    max_wait_duration: Seconds | None = Field(
        default=None, description="FLEX_START only: how long Vertex may wait for capacity."
    )
    machines: list[PoolMachine] = Field(
        default=[], description="Machine overrides per worker pool."
    )
    staging_bucket: BucketUri | None = Field(
        default=None,
        description="gs://BUCKET in this region (Vertex needs the job's bucket in its region); "
        "replaces the bucket of spec.base_output_dir / spec.staging_bucket.",
    )
    image_prefixes: dict[ImagePrefix, ImagePrefix] = Field(
        default={},
        description="Registry prefixes rewritten in every pool's image, e.g. "
        "us-central1-docker.pkg.dev/p/repo -> us-east4-docker.pkg.dev/p/repo.",
    )

    @model_validator(mode="after")
    def _flex_only(self) -> Placement:
        if self.max_wait_duration is not None and self.scheduling_strategy != "FLEX_START":
            raise ValueError("max_wait_duration applies only to scheduling_strategy FLEX_START")
        pools = [machine.pool for machine in self.machines]
        if len(pools) != len(set(pools)):
            raise ValueError("each pool may appear once in machines")
        return self


class Failover(BaseModel):
    """Where the next attempt goes after a failure that is the placement's, not the job's."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    policy: Literal["eager_next", "same_first"] = Field(
        default="eager_next",
        description="eager_next: move to the next placement at once, the failed one is tried "
        "last; same_first: retry the same placement `same_tries` times first.",
    )
    same_tries: int = Field(
        default=2, ge=1, le=20, description="same_first: attempts in a placement before moving."
    )


# ---------------------------------------------------------------------------------------------
# Rendered placements: what an item stores


@dataclass(frozen=True)
class PlacedJob:
    """An item's job in one placement, as stored on the item (`placements[i]`)."""

    index: int
    name: str
    region: str
    project: str
    parent: str
    strategy: str
    body: dict[str, Any]
    body_hash: str

    def document(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "region": self.region,
            "project": self.project,
            "parent": self.parent,
            "strategy": self.strategy,
            "body": self.body,
            "body_hash": self.body_hash,
        }


def placement_name(placement: Placement | None, region: str, strategy: str) -> str:
    if placement is not None and placement.name:
        return placement.name
    return f"{region}-{strategy.lower().replace('_', '-')}"


def rewrite_images(body: dict[str, Any], prefixes: Mapping[str, str]) -> dict[str, Any]:
    """`body` with every pool image whose registry prefix is in `prefixes` moved to the mapped
    one (longest prefix first: a repository entry beats its registry's)."""
    if not prefixes:
        return body
    out = copy.deepcopy(body)
    ordered = sorted(prefixes.items(), key=lambda pair: -len(pair[0]))
    for pool in out.get("jobSpec", {}).get("workerPoolSpecs", []):
        for task, key in (("containerSpec", "imageUri"), ("pythonPackageSpec", "executorImageUri")):
            spec = pool.get(task)
            if not isinstance(spec, dict) or not isinstance(spec.get(key), str):
                continue
            for old, new in ordered:
                if spec[key].startswith(old):
                    spec[key] = new + spec[key][len(old) :]
                    break
    return out
