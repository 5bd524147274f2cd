"""A budget: how much a queue, or a cohort of queues, may spend in a calendar month.

    budget:
      gpu_hours: 500         # accelerator-hours (GPUs and TPU chips alike)
      usd: 2000              # estimated dollars, from the price table (launchq.spec.prices)
      on_exceed: wait        # or reject

Either limit may be given, or both. Spending is counted per calendar month (UTC) from each
attempt's accelerators and machines over its run time (`launchq.model.budgets`); an attempt is
admitted only if its *most* it can cost (its accelerators for the job's whole `timeout`, which
Vertex enforces: 7 days when the queue sets none) fits in what is left, so a budget is never
exceeded, and the attempt gives back what it did not use when it ends. docs/budgets.md has the
arithmetic and its consequences (set a realistic `run.timeout` on a budgeted queue).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Budget(BaseModel):
    """Monthly limits on a queue's or a cohort's estimated spend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu_hours: float | None = Field(
        default=None,
        gt=0,
        le=10_000_000,
        description="Accelerator-hours a month (every accelerator of every replica).",
    )
    usd: float | None = Field(
        default=None,
        gt=0,
        le=100_000_000,
        description="Estimated US dollars a month, from the price table (`launchq prices`).",
    )
    on_exceed: Literal["wait", "reject"] = Field(
        default="wait",
        description="An item whose attempt would not fit: wait (reason `budget`) until the "
        "month ends or the budget is raised, or fail it at once (`over_budget`).",
    )

    @model_validator(mode="after")
    def _some_limit(self) -> Budget:
        if self.gpu_hours is None and self.usd is None:
            raise ValueError("a budget sets gpu_hours, usd or both")
        return self
