"""Queue configs at write time: files, the strict Vertex parse, and `apply_queue`.

What the CLI (and the local stack, tests and benchmarks) do when a config is *written*, kept out
of the runtime core the functions ship: YAML needs PyYAML, and the strict parse imports
`google.cloud.aiplatform` (1.7-3.9 s and ~100 MB, see docs/performance.md), neither of which a
dispatch ever needs: the dispatcher only meets configs that passed through here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from launchq.spec.checks import parse_queue_config
from launchq.spec.config import QueueConfig
from launchq.spec.render import render_all_placeholders
from launchq.spec.validation import PARSE, ConfigError, Issue, LaunchqValidationError
from launchq.store import Store


def validate_queue_config(data: object, *, name: str | None = None) -> QueueConfig:
    """`parse_queue_config` plus a strict `aiplatform_v1.CustomJob` parse of the default render.

    Imports aiplatform (seconds): for write time (CLI, apply), not for the dispatch hot path.
    """
    config = parse_queue_config(data, name=name)
    issues = strict_issues(config)
    if issues:
        raise ConfigError(issues)
    return config


def load_document(text: str, source: str = "<config>") -> object:
    """Parse YAML (JSON is YAML) into plain data; syntax errors become a `ConfigError`."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([Issue("", f"{source} is not valid YAML/JSON: {exc}")]) from None


def load_mapping(path: Path, what: str, error: type[ConfigError] = ConfigError) -> dict[str, Any]:
    """A config file (`what`: "a queue config", "a cohort config", "a price table") read and
    parsed; anything but a mapping is `error`, which names the file."""
    raw = load_document(path.read_text(encoding="utf-8"), str(path))
    if not isinstance(raw, dict):
        raise error([Issue("", f"{path} must hold a mapping ({what})")])
    return raw


def name_from_path(path: Path) -> str:
    """A queue name from a file name: `gpu-queue.yaml` -> `gpu-queue`."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", path.stem).strip("-._") or "queue"


def load_queue_file(path: Path, *, strict: bool = True) -> QueueConfig:
    """Read and validate a queue config file; the name defaults to the file's stem."""
    data = load_document(path.read_text(encoding="utf-8"), str(path))
    check = validate_queue_config if strict else parse_queue_config
    return check(data, name=name_from_path(path))


def to_custom_job(body: Mapping[str, Any]) -> Any:
    """Parse `body` strictly as `aiplatform_v1.CustomJob` (unknown fields, bad enums fail).

    Imports aiplatform (seconds): never on the dispatch hot path. Raises
    `google.protobuf.json_format.ParseError`.
    """
    from google.cloud import aiplatform_v1
    from google.protobuf import json_format

    message = aiplatform_v1.CustomJob.pb(aiplatform_v1.CustomJob())
    json_format.Parse(json.dumps(body), message)
    return aiplatform_v1.CustomJob.wrap(message)


def strict_issues(config: QueueConfig) -> list[Issue]:
    """The default renders of `config`, parsed strictly; [] when Vertex would accept them."""
    from google.protobuf import json_format

    try:
        jobs = render_all_placeholders(config)  # every placement, and source items' renders
    except LaunchqValidationError as exc:
        return list(exc.issues)
    for job in jobs:
        try:
            to_custom_job(job.body)
        except json_format.ParseError as exc:
            return [Issue("spec", f"the rendered job does not parse as a Vertex CustomJob: {exc}",
                          code=PARSE)]  # fmt: skip
    return []


def apply_queue(store: Store, name: str, raw: Mapping[str, Any]) -> QueueConfig:
    """Validate a queue config and write it (create or update). Raises ConfigError."""
    config = validate_queue_config(raw, name=name)
    store.put_queue(
        name,
        {"config": dict(raw), "paused": config.paused},
        max_jobs=config.max_jobs,
    )
    return config
