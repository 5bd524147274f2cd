"""Queues as the functions see them: stored in Firestore, validated, cached briefly.

`launchq_client.configs.apply_queue` is the one way a queue config gets into Firestore (the CLI's
`queue apply` calls it): the config is validated strictly first, so the dispatcher never meets an
invalid queue.
`QueueSource` gives the dispatcher and the sweep a `QueueRuntime` per queue name, cached for
`queue_cache_seconds` so a burst of items costs one Firestore read per queue, not one per item.
Admission decisions use a config at most a second old (`fresh=True`): pausing takes effect
within a second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from launchq.model.reasons import WaitReason
from launchq.model.records import QueueBackoff
from launchq.spec.checks import parse_queue_config
from launchq.spec.config import QueueConfig
from launchq.spec.family import parent_of
from launchq.spec.item import ItemSource, parse_item, payload_hash
from launchq.spec.placements import PlacedJob
from launchq.spec.render import RenderContext, job_strategy, render_placements, wandb_run
from launchq.spec.validation import ConfigError, Issue, ItemError
from launchq.store import Store, backoff_from


@dataclass(frozen=True)
class PreparedItem:
    """An accepted item: validated, rendered, ready to be stored and later submitted."""

    body: dict[str, Any]
    body_hash: str
    payload_hash: str
    parent: str
    project: str
    region: str
    priority: int
    display_name: str
    metadata: dict[str, Any]
    source: ItemSource | None = None  # checked against Cloud Storage before it is accepted
    # Every placement's job when the queue has a capacity ladder (launchq.spec.placements);
    # empty for a queue without placements. The fields above are placement 0's.
    placements: tuple[PlacedJob, ...] = ()
    # The item's W&B run (launchq.spec.wandb) on a queue with a wandb block: id, entity,
    # project, name, url; the same for every attempt and placement.
    wandb_run: dict[str, Any] | None = None


@dataclass(frozen=True)
class QueueRuntime:
    """A queue as the functions use it: its validated config (cached briefly by `Queues`) and
    its quota backoff, with `prepare` to validate and render an item for it."""

    name: str
    config: QueueConfig
    # Set while Vertex refuses the queue's creates for a resource quota (launchq.capacity).
    backoff: QueueBackoff | None = None
    # Each submitter's decayed job-seconds, as the sweep last accrued them
    # (`max_jobs_per_submitter`, launchq.model.submitters).
    submitter_usage: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def paused(self) -> bool:
        return bool(self.config.paused)

    @property
    def max_jobs(self) -> int:
        return int(self.config.max_jobs)

    def prepare(
        self, payload: Mapping[str, Any], item_id: str, now: datetime
    ) -> PreparedItem | list[Issue]:
        """Validate and render an item; the list of every problem if it cannot be accepted."""
        # A sweep's child (launchq.spec.family) is validated as the item it is, without an id
        # of its own in the payload: a child id is not one a publisher may send.
        child = parent_of(item_id)
        try:
            named = {"item_id": item_id} if child is None else {}
            item = parse_item({**payload, "queue": self.name, **named})
            context = RenderContext(
                now=now,
                item_id=item_id,
                queue=self.name,
                sweep=child[0] if child is not None else None,
                array_index=child[1] - 1 if child is not None else None,
            )
            rendered = render_placements(self.config, item, context)
        except (ItemError, ConfigError) as exc:
            return list(exc.issues)
        job = rendered[0][1]
        placed = tuple(
            PlacedJob(
                index=index,
                name=name,
                region=one.region,
                project=one.project,
                parent=one.parent,
                strategy=job_strategy(one.body),
                body=one.body,
                body_hash=one.body_hash,
            )
            for index, (name, one) in enumerate(rendered)
        ) if self.config.placements else ()  # fmt: skip
        return PreparedItem(
            body=job.body,
            body_hash=job.body_hash,
            payload_hash=payload_hash(item),
            parent=job.parent,
            project=job.project,
            region=job.region,
            priority=item.priority_rank(self.config),
            display_name=str(job.body.get("displayName", "")),
            metadata=dict(item.metadata or {}),
            source=item.source,
            placements=placed,
            wandb_run=wandb_run(
                self.config, item, self.name, item_id, str(job.body.get("displayName", ""))
            ),
        )


def item_fields(prepared: PreparedItem, paused: bool) -> dict[str, Any]:
    """The stored fields of an accepted item (the dispatcher's, and a sweep's children's)."""
    return {
        "priority": prepared.priority,
        "job_body": prepared.body,
        "body_hash": prepared.body_hash,
        "payload_hash": prepared.payload_hash,
        "parent": prepared.parent,
        "project": prepared.project,
        "region": prepared.region,
        **(
            {
                "placements": [p.document() for p in prepared.placements],
                "placement": 0,
                "placement_name": prepared.placements[0].name,
            }
            if prepared.placements
            else {}
        ),
        "display_name": prepared.display_name,
        **({"wandb_run": prepared.wandb_run} if prepared.wandb_run else {}),
        "metadata": prepared.metadata,
        "attempt": 0,
        # Why it waited when recorded; displays derive the current reason (launchq.model.waiting).
        "reason": WaitReason.PAUSED if paused else WaitReason.FREE_SLOT,
    }


FRESH_SECONDS = 1.0


class QueueSource:
    """Queue configs by name, with a short per-process cache.

    `fresh=True` (admission decisions) accepts a config at most `FRESH_SECONDS` old, so pausing
    a queue stops admissions within a second without one extra read per dispatched item.
    """

    def __init__(
        self, store: Store, ttl_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._ttl = ttl_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, QueueRuntime | None]] = {}
        self._lock = threading.Lock()

    def get(self, name: str, fresh: bool = False) -> QueueRuntime | None:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(name)
        max_age = min(self._ttl, FRESH_SECONDS) if fresh else self._ttl
        if cached is not None and now - cached[0] < max_age:
            return cached[1]
        document = self._store.get_queue(name)
        runtime = None
        if document is not None:
            config = parse_queue_config(document["config"], name=name)
            runtime = QueueRuntime(
                name,
                _with_state(config, document),
                backoff_from(document),
                document.get("submitter_usage") or {},
            )
        with self._lock:
            self._cache[name] = (now, runtime)
        return runtime

    def forget(self, name: str) -> None:
        """Drop the cached config: the next `get` reads the document (after this process wrote
        it)."""
        with self._lock:
            self._cache.pop(name, None)


def _with_state(config: QueueConfig, document: Mapping[str, Any]) -> QueueConfig:
    """`paused` can change without re-applying the config (`queue pause`): the doc field wins."""
    paused = bool(document.get("paused", config.paused))
    return config if paused == config.paused else config.model_copy(update={"paused": paused})
