"""The cohort config: queues that share a project's accelerator quota in one region.

A platform team writes one cohort file per (project, region) it shares out: the quota limits
launchq keeps its jobs within, the member queues with their shares (weights) and how much each may
borrow beyond its share while others leave it idle, and the half-life of the usage that orders
members against each other. `launchq cohort apply` stores it; admission (`launchq.cohorts`) and
the policy (`launchq.model.fairshare`) give it behaviour. docs/cohorts.md has worked examples.

    name: gpu-central
    project: acme-ml
    region: us-central1
    quotas:
      custom_model_training_nvidia_l4_gpus: 16
    half_life_seconds: 3600
    members:
      - {queue: team-a, share: 1}
      - {queue: team-b, share: 1, borrowing_limit: 4}
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from launchq.spec.accelerators import ACCELERATOR_METRIC_NAMES, SERVICE
from launchq.spec.budgets import Budget
from launchq.spec.config import ProjectId, Region
from launchq.spec.fields import QUEUE_NAME_PATTERN, QueueName, is_unicode
from launchq.spec.validation import ConfigError, Issue, issues_from_pydantic

CohortName = Annotated[str, Field(pattern=QUEUE_NAME_PATTERN)]
MAX_UNITS = 4096  # accelerators one quota may declare: one document each (docs/data-model.md)
MAX_MEMBERS = 50


class Member(BaseModel):
    """A queue of the cohort: its weight, and how far beyond its share it may borrow."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue: QueueName = Field(description="A queue name (it need not exist yet).")
    share: float = Field(
        default=1.0,
        gt=0,
        le=1000,
        description="Weight: the member's nominal share of each quota is limit * share / "
        "(sum of the members' shares).",
    )
    borrowing_limit: int | None = Field(
        default=None,
        ge=0,
        description="Accelerators of a quota the member may hold beyond its nominal share while "
        "others leave them idle; null: no limit, 0: never borrow.",
    )


class CohortConfig(BaseModel):
    """Queues sharing a project's accelerator quotas in one region (docs/cohorts.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: CohortName
    project: ProjectId = Field(description="GCP project whose quotas are shared.")
    region: Region = Field(description="Vertex AI region of the quotas.")
    quotas: dict[str, int] = Field(
        min_length=1,
        description="Quota metric (custom_model_training_<accelerator>, optionally with "
        "'aiplatform.googleapis.com/') -> the limit in accelerators launchq may use.",
    )
    half_life_seconds: int = Field(
        default=3600,
        ge=1,
        le=30 * 86400,
        description="Half-life of the usage (accelerator-seconds) that orders members.",
    )
    quota_recheck_seconds: int = Field(
        default=30,
        ge=1,
        le=3600,
        description="After Vertex refuses a create although the declared quota had room (someone "
        "outside launchq uses it), admission treats launchq's own use as the limit this long.",
    )
    read_quotas: bool = Field(
        default=False,
        description="Also read each quota's enforced limit from the Cloud Quotas API (the sweep, "
        "every LAUNCHQ_QUOTA_READ_SECONDS; needs roles/cloudquotas.viewer) and keep within the "
        "lower of it and the declared limit.",
    )
    members: list[Member] = Field(min_length=1, max_length=MAX_MEMBERS)
    budget: Budget | None = Field(
        default=None,
        description="Monthly limit on the members' attempts together (docs/budgets.md).",
    )

    @field_validator("quotas")
    @classmethod
    def _metrics(cls, quotas: dict[str, int]) -> dict[str, int]:
        bare: dict[str, int] = {}
        for name, limit in quotas.items():
            metric = name.strip().removeprefix(f"{SERVICE}/")
            if metric not in ACCELERATOR_METRIC_NAMES:
                near = difflib.get_close_matches(metric, sorted(ACCELERATOR_METRIC_NAMES), 1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                raise ValueError(
                    f"{name!r} is not a Vertex accelerator quota metric{hint} "
                    "(docs/cohorts.md lists them)"
                )
            if isinstance(limit, bool) or not 0 <= limit <= MAX_UNITS:
                raise ValueError(f"{name}: a limit is a whole number from 0 to {MAX_UNITS}")
            bare[metric] = limit
        return bare

    @model_validator(mode="after")
    def _unique_members(self) -> CohortConfig:
        seen: set[str] = set()
        for member in self.members:
            if member.queue in seen:
                raise ValueError(f"queue {member.queue!r} is listed twice in members")
            seen.add(member.queue)
        return self

    def member(self, queue: str) -> Member | None:
        return next((m for m in self.members if m.queue == queue), None)

    def pool_id(self, metric: str) -> str:
        return pool_id(self.project, self.region, metric)

    def nominal(self, queue: str, metric: str) -> float:
        """The member's nominal share of a quota, in accelerators (may be fractional)."""
        member = self.member(queue)
        total = sum(m.share for m in self.members)
        if member is None or total <= 0:
            return 0.0
        return self.quotas.get(metric, 0) * member.share / total


def pool_id(project: str, region: str, metric: str) -> str:
    """The document id of one quota's units: `pools/{project}~{region}~{metric}`."""
    return f"{project}~{region}~{metric}"


class CohortConfigError(ConfigError):
    """The cohort config (the platform team's document) is invalid."""

    kind = "cohort config"


def parse_cohort_config(data: object, *, name: str | None = None) -> CohortConfig:
    """Validate a cohort document, reporting every problem with its path; raises ConfigError."""
    if not isinstance(data, Mapping):
        shape = "a cohort config is a mapping with project, region, quotas and members"
        raise CohortConfigError([Issue("", shape)])
    if not is_unicode(data):
        unpaired = "contains an unpaired surrogate (text is not valid Unicode)"
        raise CohortConfigError([Issue("", unpaired)])
    document = dict(data)
    if name is not None and "name" not in document:
        document["name"] = name
    try:
        return CohortConfig.model_validate(document)
    except ValidationError as exc:
        raise CohortConfigError(issues_from_pydantic(exc, CohortConfig)) from None
