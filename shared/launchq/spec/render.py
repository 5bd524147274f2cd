"""`render(queue_config, item, context)`: the one pure function from a queue item to a job body.

The dispatch Cloud Function calls this on every item, so two rules shape it:

- It returns the `CustomJob` as a plain dict exactly as it goes on the REST wire (proto3 JSON,
  see `launchq.spec.mapping`) and never imports `google.cloud.aiplatform`, which costs 1.7-3.9 s of
  cold start. `to_custom_job` parses a body strictly into `aiplatform_v1.CustomJob` (importing it
  lazily) for write-time validation and tests.
- It is deterministic: the same config, item and context give the same body and `body_hash`.
  Time and ids come in through `RenderContext`; nothing reads the clock or the environment.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from launchq.spec import bootstrap, wandb
from launchq.spec.buildplan import plan_for
from launchq.spec.config import QueueConfig, SourceSettings
from launchq.spec.item import ItemSource, QueueItem
from launchq.spec.labels import LAUNCHQ_LABELS, MAX_LABELS, job_labels, validate_labels
from launchq.spec.ladder import placed_config
from launchq.spec.mapping.body import BodyContext, to_body
from launchq.spec.mapping.checks import check_inputs
from launchq.spec.mapping.table import wants_text
from launchq.spec.mapping.vocabulary import MAX_DISPLAY_NAME, MAX_ENV
from launchq.spec.placements import placement_name, rewrite_images
from launchq.spec.templates import (
    Macro,
    Scalar,
    references,
    resolve,
    sample_value,
    substitute,
)
from launchq.spec.validation import ConfigError, Issue, ItemError, LaunchqValidationError

RESERVED_ENV_PREFIXES = ("AIP_", "CLOUD_ML_", "LAUNCHQ_")
RESERVED_ENV_NAMES = frozenset({"TF_CONFIG", "CLUSTER_SPEC"})
IMAGE_MACRO = "${image_uri}"
PLACEHOLDER_IMAGE = "us-docker.pkg.dev/launchq/placeholder/image:latest"
PLACEHOLDER_SHA256 = "0" * 64
PLACEHOLDER_MODULE = "launchq_placeholder.task"
# Where Vertex mounts Cloud Storage in every job container (Cloud Storage FUSE).
GCS_MOUNT = "/gcs"
# What launchq tells every pool of every attempt (docs/placements.md, "Resume, not restart").
# Vertex derives its own AIP_CHECKPOINT_DIR from base_output_directory (`<dir>/checkpoints/`), a
# directory that moves with the placement's bucket; LAUNCHQ_CHECKPOINT_DIR stays the same for
# every attempt of an item, wherever it runs.
ATTEMPT_ENV = "LAUNCHQ_ATTEMPT"
CHECKPOINT_ENV = "LAUNCHQ_CHECKPOINT_DIR"
PLACEMENT_ENV = "LAUNCHQ_PLACEMENT"
# A sweep's or an array's child (launchq.spec.family): its index (0-based) and its parent's id.
ARRAY_INDEX_ENV = "LAUNCHQ_ARRAY_INDEX"
SWEEP_ENV = "LAUNCHQ_SWEEP"
CHECKPOINT_PATH = "launchq/checkpoints"
# Room kept for what launchq sets: attempt, checkpoint dir, placement, a child's sweep and index.
LAUNCHQ_ENV_COUNT = 5
_ENV_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


@dataclass(frozen=True)
class RenderContext:
    """Everything `render` needs that is neither config nor item.

    `item_id` is the item's `item_id` or, when it has none, the id the dispatcher assigned.
    `project`/`region` are the deployment's defaults, used when the queue config sets none.
    """

    now: datetime
    item_id: str
    queue: str
    project: str | None = None
    region: str | None = None
    # A child of a sweep or array: its parent's item id and its index (0-based).
    sweep: str | None = None
    array_index: int | None = None


@dataclass(frozen=True)
class RenderedJob:
    """A rendered job: the REST body plus where to send it."""

    body: dict[str, Any]
    """The CustomJob in proto3 JSON, as sent; treat it as read-only (`body_hash` covers it)."""
    project: str
    region: str
    parent: str
    body_hash: str

    def to_json(self, indent: int | None = 2) -> str:
        """The body as sent: `POST https://{region}-aiplatform.googleapis.com/v1/{parent}/customJobs`."""
        return json.dumps(self.body, indent=indent, ensure_ascii=False)


def content_hash(body: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of `body` (sorted keys, no whitespace)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------


def render(
    config: QueueConfig,
    item: QueueItem,
    context: RenderContext,
    checkpoint_bucket: str | None = None,
) -> RenderedJob:
    """Render `item` on the queue `config` into the `CustomJob` body to submit.

    Raises `ItemError` (every problem at once) when the item asks for something the queue does
    not allow, and `ConfigError` when neither the queue nor the context says where to run.
    `checkpoint_bucket` (gs://BUCKET) is where the item's checkpoints live when it is not the
    body's own output bucket (a placement other than the first: one location for every attempt).
    """
    project, region = _location(config, context)
    queue = _queue_name(config, item, context)
    display = item.display_name or f"{queue}-{context.item_id}"[:MAX_DISPLAY_NAME]
    variables, issues = resolve(
        config.template_variables, item.template_variables, "template_variables"
    )
    macros = {
        "image_uri": _image(config, item), "item_id": context.item_id, "queue": queue,
        "project": project, "region": region, "display_name": display,
        "run_id": context.item_id, "run_name": display,
        "project_name": _metadata_text(item, "project_name"),
        "entity_name": _metadata_text(item, "entity_name"),
        "author": _metadata_text(item, "author"),
    }  # fmt: skip
    issues += _missing_macros(config, macros)
    issues += [
        Issue(f"env.{name}", problem)
        for name in item.env
        if (problem := env_name_problem(name) or wandb.env_problem(name, config.wandb is not None))
        is not None
    ]
    issues += [
        Issue(path, problem) for path, problem in wandb.item_issues(config.wandb, item.wandb)
    ]
    issues += _label_issues(config, item)
    source_issues = _source_issues(config, item, queue)
    if item.source is not None and config.source is None and config.builder is None:
        # not also "image_uri: required"
        issues = [issue for issue in issues if issue.path != "image_uri"]
    issues += source_issues
    if issues:
        raise ItemError(issues)
    values = {name: value for name, value in macros.items() if value is not None}
    spec = substitute(config.spec, values, variables, wants_text("spec"))
    run = substitute(config.run, values, variables, wants_text("run"))
    if item.source is not None and config.source is not None and config.builder is None:
        issues += _apply_source(spec, item, item.source, config.source)
    else:
        issues += _apply_item(spec, item, target_pools(config.spec))
    if issues:
        raise ItemError(issues)
    inputs, problems = check_inputs(spec, run)
    if inputs is None:
        raise ItemError(problems)
    body = to_body(inputs, BodyContext(context.now, project, region))
    labels = {**inputs.spec.labels, **item.labels, **job_labels(queue, context.item_id)}
    body = {"displayName": inputs.spec.display_name or display, **body, "labels": labels}
    checkpoint = checkpoint_dir(checkpoint_bucket or bucket_of(body), queue, context.item_id)
    code_pools = (
        config.source.pools
        if item.source is not None and config.source is not None and config.builder is None
        else target_pools(config.spec)
    )
    ours = {ATTEMPT_ENV: "1", CHECKPOINT_ENV: checkpoint}
    if context.sweep is not None:
        ours |= {SWEEP_ENV: context.sweep, ARRAY_INDEX_ENV: str(context.array_index)}
    body = with_launchq_env(body, ours, code_pools)
    _check_queue_env(body)
    if config.wandb is not None:
        body = _as_run(body, config.wandb, item, queue, context.item_id, code_pools)
    return RenderedJob(
        body=body,
        project=project,
        region=region,
        parent=f"projects/{project}/locations/{region}",
        body_hash=content_hash(body),
    )


def render_placements(
    config: QueueConfig, item: QueueItem, context: RenderContext
) -> list[tuple[str, RenderedJob]]:
    """The item's job in every placement of the queue, in order, each with its placement's
    name; one (the config as written) for a queue without placements. Every placement's
    checkpoint directory is the first placement's: resuming after a move reads what the
    previous attempt wrote."""
    if not config.placements:
        job = render(config, item, context)
        return [(placement_name(None, job.region, job_strategy(job.body)), job)]
    first = render(placed_config(config, 0), item, context)
    bucket = bucket_of(first.body)
    jobs: list[tuple[str, RenderedJob]] = []
    for index, placement in enumerate(config.placements):
        job = first if index == 0 else render(placed_config(config, index), item, context, bucket)
        name = placement_name(placement, job.region, job_strategy(job.body))
        body = rewrite_images(job.body, placement.image_prefixes)
        body = with_launchq_env(body, {PLACEMENT_ENV: name})
        jobs.append((name, replace(job, body=body, body_hash=content_hash(body))))
    return jobs


def _check_queue_env(body: Mapping[str, Any]) -> None:
    """A queue may not put a W&B API key in its jobs' environment either (docs/wandb.md)."""
    issues = []
    for index, pool in enumerate(body.get("jobSpec", {}).get("workerPoolSpecs", [])):
        for task in ("containerSpec", "pythonPackageSpec"):
            for entry in (pool.get(task) or {}).get("env", []):
                problem = wandb.env_problem(str(entry.get("name", "")), False)
                if problem is not None:
                    path = f"spec.worker_pool_specs[{index}].{task}.env.{entry.get('name')}"
                    issues.append(Issue(path, problem))
    if issues:
        raise ConfigError(issues)


def _as_run(
    body: dict[str, Any],
    settings: wandb.WandbSettings,
    item: QueueItem,
    queue: str,
    item_id: str,
    code_pools: Sequence[int],
) -> dict[str, Any]:
    """The job as a W&B run: W&B's variables in the code pools, and with `api_key_secret` each
    code pool's command run through the bootstrap that fetches the key (launchq.spec.bootstrap).
    Refuses what the bootstrap cannot wrap, and a pool past Vertex's variable limit."""
    run = wandb.run_of(settings, item.wandb, queue, item_id, str(body.get("displayName")))
    out = with_launchq_env(
        body, wandb.job_env(settings, item.wandb, run, queue, item_id), code_pools
    )
    issues: list[Issue] = []
    pools = [dict(p) for p in out.get("jobSpec", {}).get("workerPoolSpecs", [])]
    for index in code_pools:
        if index >= len(pools):
            continue
        pool = pools[index]
        tasks = ("containerSpec", "pythonPackageSpec")
        env_count = max(len((pool.get(task) or {}).get("env", [])) for task in tasks)
        if env_count > MAX_ENV:
            issues.append(Issue("env", f"pool {index} would have {env_count} environment "
                                f"variables with W&B's; Vertex allows {MAX_ENV}"))  # fmt: skip
        if settings.api_key_secret is None:
            continue
        container = pool.get("containerSpec")
        if not isinstance(container, Mapping):
            issues.append(Issue("wandb.api_key_secret", f"pool {index} runs a python package: "
                                "the key is fetched by a wrapper around a container's command "
                                "(use run_as: container on a source queue)"))  # fmt: skip
            continue
        command = list(container.get("command") or [])
        if not command:
            issues.append(Issue("command", f"pool {index} has no command: with "
                                "wandb.api_key_secret the job's command runs through launchq's "
                                "bootstrap, which cannot read an image's ENTRYPOINT; set "
                                "container_spec.command (queue) or command (item)"))  # fmt: skip
            continue
        if not bootstrap.is_wrapped(command):
            pool["containerSpec"] = {**container, "command": bootstrap.wrapped(command)}
    if issues:
        raise ItemError(issues)
    job_spec = {**out.get("jobSpec", {}), "workerPoolSpecs": pools}
    return {**out, "jobSpec": job_spec}


def wandb_run(config: QueueConfig, item: QueueItem, queue: str, item_id: str,
              display: str) -> dict[str, Any] | None:  # fmt: skip
    """The item's W&B run as stored on its record (`wandb_run`); None on a queue without W&B."""
    if config.wandb is None:
        return None
    return wandb.run_of(config.wandb, item.wandb, queue, item_id, display)


def job_strategy(body: Mapping[str, Any]) -> str:
    """The job body's scheduling strategy (STANDARD when it sets none)."""
    scheduling = body.get("jobSpec", {}).get("scheduling", {})
    return str(scheduling.get("strategy") or "STANDARD")


def bucket_of(body: Mapping[str, Any]) -> str | None:
    """gs://BUCKET of the job's output directory, or None when it has none."""
    prefix = body.get("jobSpec", {}).get("baseOutputDirectory", {}).get("outputUriPrefix")
    if not isinstance(prefix, str) or not prefix.startswith("gs://"):
        return None
    return "gs://" + prefix.removeprefix("gs://").split("/", 1)[0]


def checkpoint_dir(bucket: str | None, queue: str, item_id: str) -> str | None:
    """`gs://BUCKET/launchq/checkpoints/QUEUE/ITEM/`: the same for every attempt of an item."""
    if bucket is None:
        return None
    return f"{bucket}/{CHECKPOINT_PATH}/{queue}/{item_id}/"


def with_launchq_env(
    body: Mapping[str, Any], values: Mapping[str, str | None], pools: Sequence[int] | None = None
) -> dict[str, Any]:
    """`body` with launchq's variables set in the container or package of `pools` (the pools
    running the item's code), replacing an earlier value (items and queues may not set
    LAUNCHQ_*). `pools=None`: the pools that already carry launchq's variables (a new attempt)."""
    wanted = {name: value for name, value in values.items() if value is not None}
    out = dict(body)
    job_spec = dict(out.get("jobSpec", {}))
    specs = []
    for index, original in enumerate(job_spec.get("workerPoolSpecs", [])):
        pool = dict(original)
        for task in ("containerSpec", "pythonPackageSpec"):
            spec = pool.get(task)
            if not isinstance(spec, Mapping):
                continue
            env = list(spec.get("env", []))
            ours = any(e.get("name") == ATTEMPT_ENV for e in env)
            if (index in pools) if pools is not None else ours:
                # In place where set already (the order of a pool's env stays the same from
                # one attempt to the next), appended otherwise.
                env = [{**e, "value": wanted[e["name"]]} if e.get("name") in wanted else e
                       for e in env]  # fmt: skip
                have = {e.get("name") for e in env}
                env += [{"name": n, "value": v} for n, v in wanted.items() if n not in have]
                pool[task] = {**spec, "env": env}
        specs.append(pool)
    if specs:
        job_spec["workerPoolSpecs"] = specs
        out["jobSpec"] = job_spec
    return out


def _location(config: QueueConfig, context: RenderContext) -> tuple[str, str]:
    project = config.project or context.project
    region = config.region or context.region
    missing = [
        Issue(key, "not set in the queue config, and the deployment gives no default")
        for key, value in (("project", project), ("region", region))
        if not value
    ]
    if missing or project is None or region is None:
        raise ConfigError(missing)
    return project, region


def _queue_name(config: QueueConfig, item: QueueItem, context: RenderContext) -> str:
    if config.name is not None and config.name != context.queue:
        raise ConfigError([Issue("name", f"the config is for queue {config.name!r}, "
                                 f"but is used as queue {context.queue!r}")])  # fmt: skip
    if item.item_id is not None and item.item_id != context.item_id:
        raise ValueError(f"context item_id {context.item_id!r} is not the item's {item.item_id!r}")
    if item.queue is not None and item.queue != context.queue:
        raise ItemError([Issue("queue", f"the item is for queue {item.queue!r}, "
                               f"not {context.queue!r}")])  # fmt: skip
    return context.queue


def _image(config: QueueConfig, item: QueueItem) -> str | None:
    """`${image_uri}`: the item's image; for a source item the image built from it (by tag:
    the dispatcher pins it by digest once built), else the queue's executor image."""
    if item.source is not None and config.builder is not None:
        return plan_for(item.source, config.builder).tag_uri
    if item.source is not None and config.source is not None:
        return config.source.executor_image_uri
    return item.image_uri


def _metadata_text(item: QueueItem, key: str) -> str | None:
    value = item.metadata.get(key)
    return value if isinstance(value, str) else None


def _missing_macros(config: QueueConfig, macros: Mapping[str, str | None]) -> list[Issue]:
    """A macro the queue uses but the item cannot fill is the item's error, not a blank."""
    issues: list[Issue] = []
    seen: set[str] = set()
    for section, tree in (("spec", config.spec), ("run", config.run)):
        for path, ref in references(tree, section):
            if isinstance(ref, Macro) and macros.get(ref.name) is None and ref.name not in seen:
                seen.add(ref.name)
                field = "image_uri" if ref.name == "image_uri" else f"metadata.{ref.name}"
                issues.append(Issue(field, f"required: the queue uses ${{{ref.name}}} (at {path})"))
    return issues


# ---------------------------------------------------------------------------------------------
# What an item may change


def target_pools(spec: Mapping[str, Any]) -> list[int]:
    """The pools running the item's code: those whose image is `${image_uri}`, else the chief.

    The item's command, args and env go to these pools only, so a pool the admin pinned to
    another image (a reduction server, a sidecar) keeps its own entrypoint. W&B overwrites the
    command in every pool.
    """
    pools = spec.get("worker_pool_specs")
    if not isinstance(pools, list):
        return [0]
    chosen = [
        index
        for index, pool in enumerate(pools)
        if isinstance(pool, Mapping)
        and isinstance(pool.get("container_spec"), Mapping)
        and pool["container_spec"].get("image_uri") == IMAGE_MACRO
    ]
    return chosen or [0]


def env_name_problem(name: str) -> str | None:
    if not name or name[0].isdigit() or not set(name) <= _ENV_NAME_CHARS:
        return "environment variable names are letters, digits and '_', not starting with a digit"
    upper = name.upper()
    if upper.startswith(RESERVED_ENV_PREFIXES) or upper in RESERVED_ENV_NAMES:
        return "reserved: Vertex AI sets AIP_*, CLOUD_ML_*, TF_CONFIG and CLUSTER_SPEC itself"
    return None


def _apply_item(spec: Any, item: QueueItem, targets: list[int]) -> list[Issue]:
    """Put the item's command/args/env into the target pools of the substituted `spec`."""
    issues: list[Issue] = []
    pools = spec.get("worker_pool_specs") if isinstance(spec, dict) else None
    if not isinstance(pools, list):
        return issues
    for index in targets:
        if index < len(pools) and isinstance(pools[index], dict):
            issues += _apply_to_pool(pools[index], index, item)
    return issues


def _apply_to_pool(pool: dict[str, Any], index: int, item: QueueItem) -> list[Issue]:
    task_key = "container_spec" if "container_spec" in pool else "python_package_spec"
    task = pool.get(task_key)
    if not isinstance(task, dict):
        return []
    issues: list[Issue] = []
    if item.command is not None:
        if task_key == "python_package_spec":
            issues.append(Issue("command", f"pool {index} runs a python_package_spec, which has "
                                "no command; set args instead"))  # fmt: skip
        else:
            task["command"] = list(item.command)
    if item.args is not None:
        task["args"] = list(item.args)
    if item.env:
        env = task.get("env", [])
        if not isinstance(env, list):
            return issues
        queue_names = {entry.get("name") for entry in env if isinstance(entry, dict)}
        issues += [
            Issue(f"env.{name}", "the queue sets this variable; items may only add new ones")
            for name in item.env
            if name in queue_names
        ]
        if len(env) + len(item.env) + LAUNCHQ_ENV_COUNT > MAX_ENV:
            issues.append(
                Issue(
                    "env",
                    f"{len(env)} variables from the queue plus "
                    f"{len(item.env)} from the item and {LAUNCHQ_ENV_COUNT} from launchq; "
                    f"Vertex allows {MAX_ENV}",
                )
            )
        task["env"] = [*env, *({"name": k, "value": v} for k, v in item.env.items())]
    return issues


# ---------------------------------------------------------------------------------------------
# Source items: code, not an image


def _source_issues(config: QueueConfig, item: QueueItem, queue: str) -> list[Issue]:
    if item.source is None:
        return []
    if config.builder is not None:
        return _built_source_issues(item)
    if config.source is None:
        return [
            Issue(
                "source",
                f"queue {queue!r} does not run source items (its config has no "
                "source block); publish an image_uri, or use a queue with a source block",
            )
        ]
    issues: list[Issue] = []
    if item.image_uri is not None:
        issues.append(Issue("image_uri", "set image_uri or source, not both: a source item runs "
                            "on the queue's executor image"))  # fmt: skip
    if item.command is not None:
        issues.append(Issue("command", "a source item runs `python -m MODULE`; pass the "
                            "module's arguments in args"))  # fmt: skip
    return issues


def _built_source_issues(item: QueueItem) -> list[Issue]:
    issues: list[Issue] = []
    if item.image_uri is not None:
        issues.append(Issue("image_uri", "set image_uri or source, not both: a source item runs "
                            "the image the queue builds from it"))  # fmt: skip
    return issues


def source_command(source: ItemSource, args: list[str]) -> str:
    """The `sh -c` script a plain container runs a source with (the SDK's fallback for images
    that are not prebuilt): install the archive from the Cloud Storage FUSE mount, then run the
    module. Every argument is shell-quoted: item args are data, never shell syntax."""
    package = f"{GCS_MOUNT}/{source.bucket}/{source.object_name}"
    words = ["python", "-m", source.module, *args]
    return f"pip install {shlex.quote(package)} && " + " ".join(shlex.quote(w) for w in words)


def _apply_source(
    spec: Any, item: QueueItem, source: ItemSource, settings: SourceSettings
) -> list[Issue]:
    """Turn the queue's source pools into runs of the item's package.

    `python_package`: the pool's task becomes a `python_package_spec`; the queue's env stays,
    its command and args do not (they were written for another entrypoint). `container`: the
    pool keeps its image and env, and runs `source_command`.
    """
    issues: list[Issue] = []
    pools = spec.get("worker_pool_specs") if isinstance(spec, dict) else None
    if not isinstance(pools, list):
        return issues
    for index in settings.pools:
        pool = pools[index] if index < len(pools) else None
        if not isinstance(pool, dict):
            continue  # the config's own checks report a missing pool
        if settings.run_as == "python_package":
            old = pool.pop("container_spec", None)
            old = pool.pop("python_package_spec", None) if old is None else old
            env = old.get("env", []) if isinstance(old, dict) else []
            pool["python_package_spec"] = {
                "executor_image_uri": settings.executor_image_uri,
                "package_uris": [source.uri],
                "python_module": source.module,
                "env": env,
            }
            issues += _apply_to_pool(pool, index, item)
        else:
            task = pool.get("container_spec")
            if not isinstance(task, dict):
                continue
            task["command"] = ["sh", "-c", source_command(source, list(item.args or []))]
            task["args"] = []
            issues += _apply_to_pool(pool, index, item.model_copy(update={"args": None}))
    return issues


def _label_issues(config: QueueConfig, item: QueueItem) -> list[Issue]:
    """Label keys are never templated, so the queue's label keys are known before rendering."""
    raw = config.spec.get("labels")
    queue_labels = raw if isinstance(raw, dict) else {}
    issues = validate_labels(item.labels, "labels")
    issues += [
        Issue(f"labels.{key}", "the queue sets this label; items may only add new ones")
        for key in item.labels
        if key in queue_labels
    ]
    # Count what Vertex receives: launchq's labels include the attempt label, which the
    # dispatcher adds at submit time (counting only the two in the body let an item with the
    # documented maximum pass here, then fail at Vertex with "at most 64 entries").
    ours = len(LAUNCHQ_LABELS)
    total = len(queue_labels) + len(item.labels) + ours
    if total > MAX_LABELS:
        issues.append(Issue("labels", f"{len(queue_labels)} labels from the queue, "
                            f"{len(item.labels)} from the item and {ours} from launchq; "
                            f"a job can carry at most {MAX_LABELS}"))  # fmt: skip
    return issues


# ---------------------------------------------------------------------------------------------
# Write-time checks: render with defaults and a placeholder item


PLACEHOLDER_TIME = datetime(2000, 1, 1, tzinfo=UTC)


def placeholder_item(config: QueueConfig) -> QueueItem:
    """An item that fills every macro and sets every required variable to a valid sample."""
    samples: dict[str, Scalar] = {
        name: sample_value(decl)
        for name, decl in config.template_variables.items()
        if decl.required
    }
    return QueueItem(
        image_uri=PLACEHOLDER_IMAGE,
        display_name="launchq-validate",
        template_variables=samples,
        metadata={
            "project_name": "placeholder",
            "entity_name": "placeholder",
            "author": "placeholder",
        },
    )


def placeholder_context(config: QueueConfig) -> RenderContext:
    return RenderContext(
        now=PLACEHOLDER_TIME,
        item_id="launchq-validate",
        queue=config.name or "queue",
        project=config.project or "placeholder-project",
        region=config.region or "us-central1",
    )


def placeholder_source_item(config: QueueConfig) -> QueueItem:
    """`placeholder_item` running a source in the queue's staging bucket instead of an image."""
    bucket = staging_bucket_of(config) or "placeholder-bucket"
    uri = f"gs://{bucket}/launchq/sources/{PLACEHOLDER_SHA256}.tar.gz"
    source = ItemSource(uri=uri, sha256=PLACEHOLDER_SHA256, module=PLACEHOLDER_MODULE)
    return placeholder_item(config).model_copy(update={"image_uri": None, "source": source})


def staging_bucket_of(config: QueueConfig) -> str | None:
    """The bucket a queue's sources must live in, from the config as written: the bucket of
    `spec.base_output_dir`, else of `spec.staging_bucket` (the one the job's output directory
    is built from, as `to_body` does). None when the bucket part is templated, or neither is set.
    """
    for key in ("base_output_dir", "staging_bucket"):
        value = config.spec.get(key)
        if isinstance(value, str) and value:
            bucket = value.removeprefix("gs://").split("/", 1)[0]
            return None if "{{" in bucket or "${" in bucket else bucket
    return None


def render_placeholder(config: QueueConfig) -> RenderedJob:
    return render(config, placeholder_item(config), placeholder_context(config))


def render_placeholders(config: QueueConfig) -> list[RenderedJob]:
    """The default render, and for a queue with a source block the default source render."""
    jobs = [render_placeholder(config)]
    if config.source is not None or config.builder is not None:
        item = placeholder_source_item(config)
        jobs.append(render(config, item, placeholder_context(config)))
    return jobs


def render_all_placeholders(config: QueueConfig) -> list[RenderedJob]:
    """`render_placeholders` in every placement, as submitted (write-time strict checks)."""
    if not config.placements:
        return render_placeholders(config)
    first = placed_config(config, 0)
    item, context = placeholder_item(first), placeholder_context(first)
    jobs = [job for _, job in render_placements(config, item, context)]
    for index in range(len(config.placements)):
        jobs += render_placeholders(placed_config(config, index))[1:]  # the source renders
    return jobs


def placeholder_issues(config: QueueConfig) -> list[Issue]:
    """What goes wrong rendering `config` with its defaults (these are the config's errors)."""
    try:
        render_placeholders(config)
    except LaunchqValidationError as exc:
        return list(exc.issues)
    return []
