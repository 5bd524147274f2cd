"""The price table: what an hour of a Vertex AI training machine or accelerator costs.

Budgets in dollars (`launchq.spec.budgets`) and the estimated cost of each attempt
(`launchq.model.budgets`) are computed from it. Vertex bills custom training per second of each
replica's machine plus each attached accelerator; prices differ by region and by scheduling
strategy (SPOT is cheaper). A rate names what it prices, where and how:

    source: https://cloud.google.com/vertex-ai/pricing
    retrieved: 2026-10-07
    rates:
      - {kind: machine, name: n1-standard-4, region: us-central1, usd_per_hour: 0.21849885}
      - {kind: accelerator, name: NVIDIA_L4, region: "*", strategy: SPOT, usd_per_hour: 0.2}

The most specific rate wins: an exact region beats `*`, then an exact strategy beats `*`.
FLEX_START jobs are priced as STANDARD unless a rate says otherwise.

`DEFAULT_PRICES` is the table launchq ships. It holds only rates the project could read from a
public source, with that source and the date it was read (`docs/budgets.md` says which and how
to supply a complete table): a platform team applies its own (`launchq prices apply`), typically
its contract prices. A job with no rate for one of its parts has no dollar estimate: a dollar
budget holds it back with that reason rather than guessing.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from launchq.spec.mapping.vocabulary import ACCELERATOR_TYPES
from launchq.spec.validation import ConfigError, Issue, issues_from_pydantic

RateKind = Literal["machine", "accelerator"]
RateStrategy = Literal["STANDARD", "SPOT", "FLEX_START", "*"]
AnyRegion = Annotated[str, Field(pattern=r"^(\*|[a-z]+(?:-[a-z]+)+\d+)$")]
MAX_RATES = 5000


class Rate(BaseModel):
    """USD per hour of one machine type or one accelerator, in a region, for a strategy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: RateKind
    name: Annotated[str, Field(min_length=1, max_length=80)] = Field(
        description="A machine type (n1-standard-4) or an AcceleratorType name (NVIDIA_L4)."
    )
    region: AnyRegion = Field(default="*", description="A Vertex region, or * for any.")
    strategy: RateStrategy = Field(default="*", description="Scheduling strategy, or * for any.")
    usd_per_hour: float = Field(ge=0, le=10_000)
    source: str | None = Field(default=None, max_length=300, description="Where it was read.")

    @model_validator(mode="after")
    def _known_accelerator(self) -> Rate:
        if self.kind == "accelerator" and self.name not in ACCELERATOR_TYPES:
            near = difflib.get_close_matches(self.name, sorted(ACCELERATOR_TYPES), 1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ValueError(f"unknown accelerator type {self.name!r}{hint}")
        return self


class PriceTable(BaseModel):
    """Rates with the source and date they were read from (docs/budgets.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(min_length=1, max_length=300, description="Where the rates come from.")
    retrieved: date = Field(description="When they were read: prices change.")
    currency: Literal["USD"] = "USD"
    note: str | None = Field(default=None, max_length=2000)
    rates: list[Rate] = Field(default=[], max_length=MAX_RATES)

    @model_validator(mode="after")
    def _unique(self) -> PriceTable:
        seen: set[tuple[str, str, str, str]] = set()
        for rate in self.rates:
            key = (rate.kind, rate.name, rate.region, rate.strategy)
            if key in seen:
                raise ValueError(
                    f"two rates for {rate.kind} {rate.name} {rate.region} {rate.strategy}"
                )
            seen.add(key)
        return self

    def hourly(self, kind: RateKind, name: str, region: str, strategy: str) -> float | None:
        """USD per hour of `name` in `region` under `strategy`; None if no rate covers it."""
        wanted = [strategy, "*"] if strategy != "FLEX_START" else ["FLEX_START", "STANDARD", "*"]
        best: tuple[int, float] | None = None
        for rate in self.rates:
            if rate.kind != kind or rate.name != name or rate.region not in (region, "*"):
                continue
            if rate.strategy not in wanted:
                continue
            rank = (0 if rate.region == region else 10) + wanted.index(rate.strategy)
            if best is None or rank < best[0]:
                best = (rank, rate.usd_per_hour)
        return None if best is None else best[1]


class PriceTableError(ConfigError):
    """The price table is invalid."""

    kind = "price table"


def parse_price_table(data: object) -> PriceTable:
    """Validate a price table document, reporting every problem with its path."""
    if not isinstance(data, Mapping):
        raise PriceTableError(
            [Issue("", "a price table is a mapping with source, retrieved, rates")]
        )
    try:
        return PriceTable.model_validate(dict(data))
    except ValidationError as exc:
        raise PriceTableError(issues_from_pydantic(exc, PriceTable)) from None


_PAGE = "https://cloud.google.com/vertex-ai/pricing"
# Two rates, as Google's Vertex AI pricing page listed them for custom training in its default
# region (us-central1) when it was read on 2026-10-07 (the page's rate card is long; these are
# the only ones this project could read with a date). Everything else must come from the
# deployment's own table.
DEFAULT_PRICES = PriceTable(
    source=_PAGE,
    retrieved=date(2026, 10, 7),
    note="Vertex AI custom training, on demand, us-central1. Only the rates read from the "
    "public page are listed: apply a complete table with `launchq prices apply`.",
    rates=[
        Rate(
            kind="machine",
            name="n1-standard-4",
            region="us-central1",
            strategy="STANDARD",
            usd_per_hour=0.21849885,
            source=_PAGE,
        ),
        Rate(
            kind="accelerator",
            name="NVIDIA_H100_80GB",
            region="us-central1",
            strategy="STANDARD",
            usd_per_hour=9.79655057,
            source=_PAGE,
        ),
    ],
)
