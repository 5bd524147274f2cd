"""The `CustomJob` body written from checked inputs, in proto3 JSON exactly as the REST client
sends it: lowerCamelCase names (map keys untouched), int64 as strings, Durations as "Ns", enums
by name, default values omitted.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from launchq.spec.mapping.checks import JobInputs
from launchq.spec.mapping.table import ROW_BY_SOURCE, Kind, Row

# ---------------------------------------------------------------------------------------------
# Building the body


@dataclass(frozen=True)
class BodyContext:
    """What the body needs besides `spec`/`run`: the clock and where the job runs."""

    now: datetime
    project: str
    region: str


def output_dir(staging_bucket: str, now: datetime) -> str:
    """`{bucket}/aiplatform-custom-job-{timestamp}`, byte for byte as the SDK builds it
    (`utils._timestamped_gcs_dir`), except that launchq's clock is UTC, not local time."""
    naive = now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo else now
    stamp = naive.isoformat(sep="-", timespec="milliseconds")
    root = staging_bucket.removesuffix("/")
    path = f"{root}/aiplatform-custom-job-{stamp}"
    return path if path.startswith("gs://") else f"gs://{path}"


def experiment_name(value: str, ctx: BodyContext) -> str:
    if value.startswith("projects/"):
        return value
    return f"projects/{ctx.project}/locations/{ctx.region}/metadataStores/default/contexts/{value}"


def experiment_run_name(value: str, experiment: str, ctx: BodyContext) -> str:
    """The SDK names an ExperimentRun's context `{experiment}-{run}`."""
    if value.startswith("projects/"):
        return value
    experiment_id = experiment.rpartition("/")[2]
    return experiment_name(f"{experiment_id}-{value}", ctx)


def to_body(inputs: JobInputs, ctx: BodyContext) -> dict[str, Any]:
    """Write every set value of `inputs` to its `ROWS` target (labels and display name are
    added by the caller, who merges in the item's and launchq's)."""
    body: dict[str, Any] = {}
    spec = inputs.spec.model_dump(exclude_defaults=True)
    run = inputs.run.model_dump(exclude_defaults=True)
    if "base_output_dir" in spec:
        spec.pop("staging_bucket", None)
    spec.pop("labels", None)
    spec.pop("display_name", None)
    for section, values in (("spec", spec), ("run", run)):
        _walk(body, values, section, (), inputs, ctx)
    return body


def _walk(
    body: dict[str, Any], values: Mapping[str, Any], source: str, index: tuple[int, ...],
    inputs: JobInputs, ctx: BodyContext,
) -> None:  # fmt: skip
    for key, value in values.items():
        path = f"{source}.{key}"
        row = ROW_BY_SOURCE[path]
        if row.kind is Kind.MESSAGE:
            _walk(body, value, path, index, inputs, ctx)
        elif row.kind is Kind.MESSAGE_LIST:
            for position, element in enumerate(value):
                if row.target is not None:
                    _ensure_element(body, f"{row.target}[]", (*index, position))
                _walk(body, element, f"{path}[]", (*index, position), inputs, ctx)
        else:
            _write(body, row, value, index, inputs, ctx)


def _write(
    body: dict[str, Any], row: Row, value: Any, index: tuple[int, ...], inputs: JobInputs,
    ctx: BodyContext,
) -> None:  # fmt: skip
    if row.target is None:
        return
    wire = _wire_value(row, value, inputs, ctx)
    if wire is not None:
        _set(body, row.target, index, wire)


def _wire_value(row: Row, value: Any, inputs: JobInputs, ctx: BodyContext) -> Any:
    kind = row.kind
    if kind is Kind.DURATION:
        return f"{value}s"
    if value in ("", 0, False, []) and not isinstance(value, float):
        return None  # proto3 JSON omits default values
    if kind is Kind.ENUM:
        return None if value.endswith("_UNSPECIFIED") else value
    if kind is Kind.INT64:
        return str(value)
    if kind is Kind.OUTPUT_DIR:
        return output_dir(value, ctx.now)
    if kind is Kind.EXPERIMENT:
        return experiment_name(value, ctx)
    if kind is Kind.EXPERIMENT_RUN:
        return experiment_run_name(value, experiment_name(inputs.run.experiment or "", ctx), ctx)
    if kind is Kind.STRING_LIST:
        return list(value)
    return value


def _segments(target: str) -> list[tuple[str, bool]]:
    return [(part.removesuffix("[]"), part.endswith("[]")) for part in target.split(".")]


def _set(body: dict[str, Any], target: str, index: tuple[int, ...], value: Any) -> None:
    *path, (name, is_list) = _segments(target)
    indices = iter(index)
    node = _descend(body, path, indices)
    if is_list:  # a list target only gets its element created
        _descend(node, [(name, True)], indices)
    else:
        node[name] = value


def _ensure_element(body: dict[str, Any], target: str, index: tuple[int, ...]) -> None:
    """Create the list element at `index` even if it stays `{}` (an unused pool position)."""
    _descend(body, _segments(target), iter(index))


def _descend(node: Any, segments: list[tuple[str, bool]], indices: Iterator[int]) -> Any:
    """Descend along `segments`, creating missing maps and list elements; the last node."""
    for name, is_list in segments:
        if is_list:
            items = node.setdefault(name, [])
            at = next(indices)
            while len(items) <= at:
                items.append({})
            node = items[at]
        else:
            node = node.setdefault(name, {})
    return node
