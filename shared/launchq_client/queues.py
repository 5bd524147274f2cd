"""Queues as operators see them: summaries, one queue's document, its current state, pause.

The dispatcher and the sweep own every item change (`launchq.store`); this module reads the
queue documents they admit by and shapes them for `launchq queue ls/get`, `launchq watch` and the
dashboard. Every summary is a plain JSON-safe dict: that dict *is* the documented `--json` shape
(docs/cli.md), so the table and the JSON never disagree.

The one write here is `set_paused`: an operator's switch on the queue document that the
dispatcher re-reads at every admission (`QueueSource.get(fresh=True)`), so it needs no
compare-and-swap and touches no item. A config is written by `launchq_client.configs.apply_queue`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from launchq.cohorts import CohortSource
from launchq.errors import NotFound
from launchq.model.waiting import QueueState
from launchq.store import Store, backoff_from
from launchq_client.budgets import budget_summary
from launchq_client.errors import did_you_mean
from launchq_client.values import iso, plain


def queue_summary(store: Store, document: Mapping[str, Any]) -> dict[str, Any]:
    """One row of `launchq queue ls`: running / max_jobs, waiting, paused, budget."""
    name = str(document.get("name"))
    config = document.get("config") or {}
    return {
        "name": name,
        "max_jobs": document.get("max_jobs"),
        "running": store.count_holding_slots(name),
        "waiting": store.count_waiting(name),
        "paused": bool(document.get("paused", False)),
        "priority": config.get("priority") if isinstance(config, Mapping) else None,
        "updated_at": iso(document.get("updated_at")),
        # This month's spend against the queue's budget (launchq_client.budgets), if it has one.
        "budget": budget_summary(
            store,
            "queue",
            name,
            config.get("budget") if isinstance(config, Mapping) else None,
            store.clock(),
        ),
    }


def list_queue_summaries(store: Store) -> list[dict[str, Any]]:
    documents = sorted(store.list_queues(), key=lambda d: str(d.get("name")))
    return [queue_summary(store, d) for d in documents]


def queue_document(store: Store, name: str) -> dict[str, Any]:
    document = store.get_queue(name)
    if document is None:
        raise NotFound(unknown_queue_message(store, name))
    return document


def unknown_queue_message(store: Store, name: str) -> str:
    """`no queue named 'trainr'; did you mean 'trainer'? (queues: ...)`, and, when an example
    config in this checkout defines the queue, the command that applies it."""
    known = sorted(str(d.get("name")) for d in store.list_queues())
    listing = ", ".join(known) if known else "none: apply one with `launchq queue apply FILE`"
    message = f"no queue named {name!r}"
    guess = did_you_mean(name, known)
    if guess:
        message += f"; did you mean {guess!r}?"
    example = example_queue_file(name)
    if example is not None:
        message += f"; `launchq queue apply {example}` defines it"
    return f"{message} (queues: {listing})"


def example_queue_file(name: str) -> str | None:
    """`examples/queues/NAME.yaml` of a launchq checkout (the one in the working directory, or
    the one this package runs from), as a path the user can type; None outside a checkout."""
    here = Path.cwd()
    for root in (here, Path(__file__).resolve().parents[2]):
        candidate = root / "examples" / "queues" / f"{name}.yaml"
        if candidate.is_file():
            try:
                return str(candidate.relative_to(here))
            except ValueError:
                return str(candidate)
    return None


def queue_detail(store: Store, name: str) -> dict[str, Any]:
    """`launchq queue get --json`: the summary plus the config exactly as applied."""
    document = queue_document(store, name)
    return {**queue_summary(store, document), "config": plain(document.get("config"))}


# -- a queue's current state, what a waiting item's reason is read from ---------------------


def queue_state(
    document: Mapping[str, Any],
    running: int,
    store: Store | None = None,
    cohorts: CohortSource | None = None,
) -> QueueState:
    """A queue document (and its count of slot holders) as `launchq.model.waiting` reads it;
    with `store`, also why its cohort holds its next item back (`launchq_client.cohorts`, from
    `cohorts` when a listing shares one)."""
    from launchq_client.cohorts import member_waits

    max_jobs = document.get("max_jobs")
    name = str(document.get("name") or "")
    cohort = member_waits(store, name, source=cohorts) if store is not None and name else None
    config = document.get("config") or {}
    per = config.get("max_jobs_per_submitter") if isinstance(config, Mapping) else None
    return QueueState(
        paused=bool(document.get("paused", False)),
        max_jobs=int(max_jobs) if isinstance(max_jobs, int) else -1,
        running=running,
        backoff=backoff_from(document),
        cohort=cohort,
        submitter_limit=per if isinstance(per, int) else None,
        held_by_submitter=SubmitterCounts(store, name) if store is not None else {},
    )


class SubmitterCounts(Mapping[str, int]):
    """Slots each submitter holds in a queue, counted when first asked (one aggregation per
    submitter a display shows), for `max_jobs_per_submitter` reasons."""

    def __init__(self, store: Store, queue: str) -> None:
        self._store, self._queue = store, queue
        self._counts: dict[str, int] = {}

    def __getitem__(self, submitter: str) -> int:
        if submitter not in self._counts:
            self._counts[submitter] = self._store.count_submitter_holding(self._queue, submitter)
        return self._counts[submitter]

    def __iter__(self) -> Iterator[str]:
        return iter(self._counts)

    def __len__(self) -> int:
        return len(self._counts)


class QueueStates:
    """Queues' current states, each read once (two requests) for a listing or a page."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._read: dict[str, QueueState | None] = {}
        self._cohorts = CohortSource(store)  # read once, when a waiting item's queue is

    def get(self, name: str) -> QueueState | None:
        if name not in self._read:
            document = self._store.get_queue(name)
            self._read[name] = (
                None
                if document is None
                else queue_state(
                    document, self._store.count_holding_slots(name), self._store, self._cohorts
                )
            )
        return self._read[name]


def set_paused(store: Store, name: str, paused: bool) -> dict[str, Any]:
    """Pause or resume a queue: only the `paused` field changes, the config stays as applied.

    Pausing stops admissions at once (running jobs continue); resuming lets the next dispatch or
    sweep admit what waits.
    """
    queue_document(store, name)
    store.set_paused(name, paused)
    return queue_summary(store, queue_document(store, name))
