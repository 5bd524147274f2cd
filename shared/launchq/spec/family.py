"""A sweep or a job array: one item (the parent) and the children it expands into.

Pure: what the children of an item are, each computed on its own from the parent's payload and
its number, so an expansion that crashed or was redelivered re-creates any child exactly.

- A child's id is `<parent>~NNNNN` (1-based, five digits: at most `MAX_CHILDREN`). `~` is not
  allowed in a published item id (`launchq.spec.fields.ITEM_ID_PATTERN`), so no item a publisher
  sends can take a child's id; the store keeps children beside every other item.
- A child's payload is the parent's without `sweep`/`array`, with its parameters where the
  sweep's `parameters_to` says: `args` (appended `--name=value`, as W&B's agent passes
  `${args}`; nested names dotted), `template_variables` (the queue's declared variables), or
  `run_config` (merged into `wandb.run_config`, W&B's `overrides.run_config`). The dispatcher
  validates every child against the queue exactly as a single item; one invalid child rejects
  the whole sweep with its number.
- A random sweep's seed is the item's `sweep.seed`, or one derived from the item's payload hash:
  a redelivered message draws the same children.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from launchq.spec.item import QueueItem
from launchq.spec.sweeps import MAX_CHILDREN, Sweep, parse_sweep

CHILD_SEPARATOR = "~"
CHILD_DIGITS = len(str(MAX_CHILDREN))
_CHILD_ID = re.compile(rf"^(?P<parent>.+){CHILD_SEPARATOR}(?P<number>[0-9]{{{CHILD_DIGITS}}})$")
FAMILY_FIELDS = ("sweep", "array")  # the parent's payload keys no child carries


def child_id(parent: str, number: int) -> str:
    return f"{parent}{CHILD_SEPARATOR}{number:0{CHILD_DIGITS}d}"


def parent_of(item_id: str) -> tuple[str, int] | None:
    """(parent id, child number) when `item_id` names a child, else None."""
    match = _CHILD_ID.fullmatch(item_id)
    if match is None:
        return None
    number = int(match["number"])
    return (match["parent"], number) if 1 <= number <= MAX_CHILDREN else None


@dataclass(frozen=True)
class Family:
    """What a parent expands into: `count` children, at most `max_parallel` holding slots."""

    kind: str  # "sweep" or "array"
    count: int
    max_parallel: int | None
    sweep: Sweep | None

    def child_payload(self, payload: Mapping[str, Any], number: int) -> dict[str, Any]:
        """Child `number`'s item, as a single item with these parameters would be sent."""
        child = {
            key: value
            for key, value in payload.items()
            if key not in FAMILY_FIELDS and key not in ("item_id", "queue")
        }
        if isinstance(child.get("display_name"), str):
            suffix = f"-{number}"
            child["display_name"] = child["display_name"][: 128 - len(suffix)] + suffix
        if self.sweep is None:
            return child
        params = self.sweep.child(number)
        target = self.sweep.parameters_to
        if target == "args":
            args = child.get("args")
            base = list(args) if isinstance(args, list) else []
            child["args"] = base + [f"--{name}={_arg(value)}" for name, value in _flat(params)]
        elif target == "template_variables":
            given = child.get("template_variables")
            child["template_variables"] = {**(given if isinstance(given, dict) else {}), **params}
        else:
            wandb = child.get("wandb")
            block = dict(wandb) if isinstance(wandb, dict) else {}
            run_config = block.get("run_config")
            block["run_config"] = _merge(run_config if isinstance(run_config, dict) else {}, params)
            child["wandb"] = block
        return child

    def document(self) -> dict[str, Any]:
        """What the parent's record keeps of it (`sweep` field; docs/data-model.md)."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "count": self.count,
            "max_parallel": self.max_parallel,
        }
        if self.sweep is not None:
            out.update(
                method=self.sweep.method,
                seed=str(self.sweep.seed),  # a string: a seed may pass int64's sign
                parameters_to=self.sweep.parameters_to,
            )
        return out


def family_of(item: QueueItem, payload_hash: str) -> Family | None:
    """The item's family, or None for a single item. The item was validated by `parse_item`,
    so its sweep config parses."""
    if item.array is not None:
        return Family("array", item.array.count, item.array.max_parallel, None)
    if item.sweep is None:
        return None
    sweep = parse_sweep(item.sweep, seed=int(payload_hash[:15], 16))
    return Family("sweep", sweep.count, sweep.max_parallel, sweep)


def _flat(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for name, value in params.items():
        if isinstance(value, dict):
            out += _flat(value, f"{prefix}{name}.")
        else:
            out.append((f"{prefix}{name}", value))
    return out


def _arg(value: Any) -> str:
    """A value as W&B's agent writes it into `--name=value`: Python's str for scalars (so
    `True`, `0.001`), JSON for a list or mapping."""
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        current = out.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            out[key] = _merge(current, value)
        else:
            out[key] = value
    return out
