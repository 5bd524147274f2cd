"""Runs that show up in W&B: the queue's `wandb` block, an item's W&B fields, and the environment
every job of such a queue gets (docs/wandb.md).

    wandb:
      entity: acme-ml
      project: pretraining              # an item may name another (item_may_set)
      base_url: https://api.wandb.ai
      api_key_secret: projects/acme/secrets/wandb-key/versions/3
      item_may_set: [project, name, run_config, sweep_id]

The environment is the one W&B Launch's own runners give a job (wandb/sdk/launch/
_project_spec.py, `get_env_vars_dict`; ../reference/wandb-launch-vertex.md lists it): WANDB_PROJECT,
WANDB_ENTITY, WANDB_BASE_URL, WANDB_RUN_ID, WANDB_NAME, WANDB_LAUNCH=True,
WANDB_LAUNCH_QUEUE_NAME, WANDB_LAUNCH_QUEUE_ENTITY, WANDB_LAUNCH_TRACE_ID (the item id),
WANDB_CONFIG (the item's run config, JSON) and WANDB_SWEEP_ID, plus WANDB_RESUME=allow from the
second attempt on. Left out, with why: WANDB_API_KEY (below), WANDB_DOCKER (the image, which the
job knows), WANDB_USERNAME (launchq knows only an unverified submitter), WANDB_ARTIFACTS and
WANDB_LAUNCH_FILE_OVERRIDES (W&B job artifacts, which launchq does not use).

**The run id** is derived from the queue and the item id (`run_id`): the same for every attempt
and every placement of an item, so a retried or moved job continues the same run.

**The API key is never in the job.** W&B's runners put WANDB_API_KEY in the job spec in plain
text, readable by anyone who may read the CustomJob. Vertex's `ContainerSpec.env` holds plain
values only (`EnvVar` is a name and a value: no reference to a secret), so with
`api_key_secret` the job names the secret version in LAUNCHQ_WANDB_API_KEY_SECRET and runs its
command through launchq's bootstrap (`launchq.spec.bootstrap`), which reads the version with the
job's own service account when the container starts, sets WANDB_API_KEY in its own environment
and execs the command. No rendered job, record, log line or event holds the key; only the job's
service accounts may read the secret (Terraform grants them `secretmanager.secretAccessor` on
that one secret).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

SECRET_VERSION_PATTERN = r"^projects/[^/\s]+/secrets/[A-Za-z0-9_-]{1,255}/versions/(latest|\d+)$"
SECRET_ENV = "LAUNCHQ_WANDB_API_KEY_SECRET"
API_KEY_ENV = "WANDB_API_KEY"
RESUME_ENV = "WANDB_RESUME"
RUN_ID_ENV = "WANDB_RUN_ID"
# W&B splits WANDB_CONFIG into _0.._n chunks past this (launch/utils.py); launchq refuses instead:
# one variable, so a script reading WANDB_CONFIG itself sees all of it.
MAX_CONFIG_CHARS = 32_670
ItemField = Literal["project", "entity", "name", "run_config", "sweep_id"]
Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")]
# Every variable launchq sets for W&B: an item or a queue may not set one itself.
WANDB_ENV = frozenset(
    {
        "WANDB_PROJECT",
        "WANDB_ENTITY",
        "WANDB_BASE_URL",
        RUN_ID_ENV,
        "WANDB_NAME",
        "WANDB_LAUNCH",
        "WANDB_LAUNCH_QUEUE_NAME",
        "WANDB_LAUNCH_QUEUE_ENTITY",
        "WANDB_LAUNCH_TRACE_ID",
        "WANDB_CONFIG",
        "WANDB_SWEEP_ID",
        RESUME_ENV,
    }
)


class WandbSettings(BaseModel):
    """The queue's `wandb` block: where its runs go, and where the API key lives."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    entity: Name | None = Field(default=None, description="W&B entity (team or user).")
    project: Name = Field(description="Default W&B project of the queue's runs.")
    base_url: str = Field(
        default="https://api.wandb.ai", description="W&B server (WANDB_BASE_URL)."
    )
    api_key_secret: Annotated[str, Field(pattern=SECRET_VERSION_PATTERN)] | None = Field(
        default=None,
        description="Secret Manager secret version holding the API key "
        "(projects/P/secrets/S/versions/N); the job reads it at start, it is never in the job.",
    )
    item_may_set: list[ItemField] = Field(
        default=["project", "name", "run_config", "sweep_id"],
        description="W&B fields an item may set (entity is not, by default).",
    )

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError("base_url is an http(s) URL such as https://api.wandb.ai")
        return value.rstrip("/")


class ItemWandb(BaseModel):
    """An item's W&B fields (what W&B's launch_add takes; docs/wandb.md maps one to the other)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    project: Name | None = None
    entity: Name | None = None
    name: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        default=None, description="The run's name (WANDB_NAME); else the job's display name."
    )
    run_config: dict[str, Any] = Field(
        default={}, description="The run's config (WANDB_CONFIG): W&B's overrides.run_config."
    )
    sweep_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,64}$")] | None = Field(
        default=None, description="A W&B sweep the run belongs to (WANDB_SWEEP_ID)."
    )


def run_id(queue: str, item_id: str) -> str:
    """The item's W&B run id: 12 base-36 characters of sha256(queue, item id). The same for
    every attempt (a retry resumes the run); 36^12 ids make a collision in a project of a
    million runs about one in 10^7."""
    digest = int.from_bytes(hashlib.sha256(f"{queue}\0{item_id}".encode()).digest()[:8], "big")
    chars = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    for _ in range(12):
        digest, rest = divmod(digest, 36)
        out += chars[rest]
    return out


def app_url(base_url: str) -> str:
    """The W&B app for an API base URL: api.wandb.ai serves wandb.ai; a dedicated or
    self-hosted server serves both from one host."""
    parts = urlsplit(base_url)
    host = parts.netloc
    if host == "api.wandb.ai":
        host = "wandb.ai"
    elif host.startswith("api."):
        host = host.removeprefix("api.")
    return f"{parts.scheme}://{host}"


def run_url(base_url: str, entity: str | None, project: str, run: str) -> str | None:
    """Where the run is seen; None without an entity (W&B's default entity is the key's)."""
    if entity is None:
        return None
    return f"{app_url(base_url)}/{entity}/{project}/runs/{run}"


def item_issues(settings: WandbSettings | None, item: ItemWandb | None) -> list[tuple[str, str]]:
    """(path, problem) of an item's W&B fields on its queue."""
    if item is None:
        return []
    if settings is None:
        return [("wandb", "this queue has no wandb block: its jobs are not W&B runs")]
    problems = []
    for field in ("project", "entity", "name", "run_config", "sweep_id"):
        value = getattr(item, field)
        if value not in (None, {}) and field not in settings.item_may_set:
            allowed = ", ".join(settings.item_may_set) or "nothing"
            why = f"this queue does not let items set {field} (its wandb.item_may_set: {allowed})"
            problems.append((f"wandb.{field}", why))
    config = json.dumps(item.run_config, separators=(",", ":"), sort_keys=True)
    if len(config) > MAX_CONFIG_CHARS:
        problems.append(("wandb.run_config", f"{len(config)} characters as JSON; at most "
                         f"{MAX_CONFIG_CHARS} (one WANDB_CONFIG variable)"))  # fmt: skip
    return problems


def run_of(
    settings: WandbSettings, item: ItemWandb | None, queue: str, item_id: str, display: str
) -> dict[str, Any]:
    """The item's run: id, entity, project, name and URL (stored on the item as `wandb_run`)."""
    mine = item or ItemWandb()
    project = mine.project or settings.project
    entity = mine.entity or settings.entity
    run = run_id(queue, item_id)
    return {
        "id": run,
        "entity": entity,
        "project": project,
        "name": mine.name or display,
        "url": run_url(settings.base_url, entity, project, run),
    }


def job_env(
    settings: WandbSettings,
    item: ItemWandb | None,
    run: Mapping[str, Any],
    queue: str,
    item_id: str,
) -> dict[str, str]:
    """The variables a run's job gets (module docstring), in a fixed order."""
    mine = item or ItemWandb()
    env = {
        "WANDB_PROJECT": str(run["project"]),
        "WANDB_BASE_URL": settings.base_url,
        RUN_ID_ENV: str(run["id"]),
        "WANDB_NAME": str(run["name"]),
        "WANDB_LAUNCH": "True",
        "WANDB_LAUNCH_QUEUE_NAME": queue,
        "WANDB_LAUNCH_TRACE_ID": item_id,
    }
    if run.get("entity"):
        env["WANDB_ENTITY"] = str(run["entity"])
        env["WANDB_LAUNCH_QUEUE_ENTITY"] = str(run["entity"])
    if mine.run_config:
        env["WANDB_CONFIG"] = json.dumps(mine.run_config, separators=(",", ":"), sort_keys=True)
    if mine.sweep_id:
        env["WANDB_SWEEP_ID"] = mine.sweep_id
    if settings.api_key_secret:
        env[SECRET_ENV] = settings.api_key_secret
    return env


def env_problem(name: str, wandb_queue: bool) -> str | None:
    """Why a queue or an item may not set this variable itself; None if it may."""
    if name.upper() == API_KEY_ENV:
        return (
            "a W&B API key in the job's environment is readable by anyone who may read the job: "
            "name a Secret Manager secret version in the queue's wandb.api_key_secret instead"
        )
    if wandb_queue and name.upper() in WANDB_ENV:
        return "launchq sets this variable for the queue's W&B runs (docs/wandb.md)"
    return None


def attempt_env(body: Mapping[str, Any], attempt: int) -> dict[str, str]:
    """What a W&B run's attempt adds to launchq's variables: from the second attempt on,
    WANDB_RESUME=allow, so the job continues the run instead of refusing its id. Nothing for a
    job that is no W&B run (no pool carries a run id)."""
    if attempt <= 1:
        return {}
    for pool in body.get("jobSpec", {}).get("workerPoolSpecs", []):
        for task in ("containerSpec", "pythonPackageSpec"):
            if any(e.get("name") == RUN_ID_ENV for e in (pool.get(task) or {}).get("env", [])):
                return {RESUME_ENV: "allow"}
    return {}
