"""Admission: which waiting items get a queue's free slots, and in what order.

While a queue has a free slot, its best waiting item (priority rank, then enqueue time:
`launchq.records.admission_order`) is claimed and submitted (`launchq.submission`). That may be
another, older item than the one a dispatcher just received: the queue's order wins over
Pub/Sub's arrival order. The dispatcher and the sweep both call `Admission.admit`.

On an unlimited queue every waiting item is admitted, so order cannot matter: a dispatcher claims
just the item it received (`own`) instead of racing every other instance for the head of the
queue (measured: 300 items x 3 deliveries on 24 threads took 26.8 s that way, dominated by
contended waiting-set queries). The sweep admits whatever else waits there.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from launchq.queues import QueueSource
from launchq.records import ItemRecord, Slot
from launchq.store import Store
from launchq.submission import Submitter

MAX_CONFLICTS = 8  # lost claims before an admission round gives way to the other claimers
PAGE = 8  # waiting items and free slots read per round


class Admission:
    def __init__(
        self,
        store: Store,
        queues: QueueSource,
        submitter: Submitter,
        sleep: Callable[[float], None],
    ) -> None:
        self.store = store
        self.queues = queues
        self.submitter = submitter
        self.sleep = sleep

    def admit(self, queue: str, budget: int = 16, own: ItemRecord | None = None) -> list[str]:
        """Claim and submit waiting items while the queue has free slots; returns item ids."""
        runtime = self.queues.get(queue, fresh=True)
        if runtime is None or runtime.paused:
            return []
        if runtime.max_jobs < 0 and own is not None:
            return self._admit_own(own)
        submitted: list[str] = []
        conflicts = 0
        while len(submitted) < budget and conflicts < MAX_CONFLICTS:
            waiting = self.store.waiting_items(queue, limit=PAGE)
            if not waiting:
                break
            slots: list[Slot | None]
            if runtime.max_jobs < 0:
                slots = [None]
            else:
                slots = list(self.store.free_slots(queue, limit=PAGE))
                if not slots:
                    break
            claimed = self._claim_first(waiting, slots)
            if claimed is None:
                conflicts += 1
                self.sleep(random.uniform(0.005, 0.05))
                continue
            if self.submitter.submit(claimed):
                submitted.append(claimed.item_id)
        return submitted

    def _admit_own(self, item: ItemRecord) -> list[str]:
        if not item.ready(self.store.clock()):
            return []
        claimed = self._claim_first([item], [None])
        if claimed is not None and self.submitter.submit(claimed):
            return [item.item_id]
        return []

    def _claim_first(
        self, waiting: list[ItemRecord], slots: list[Slot | None]
    ) -> ItemRecord | None:
        # Spread concurrent claimers over the free slots so they rarely collide.
        random.shuffle(slots)
        for item, slot in zip(waiting, slots * len(waiting), strict=False):
            claimed = self.submitter.claim(item, slot)
            if claimed is not None:
                return claimed
        return None
