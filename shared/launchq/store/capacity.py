"""The creation budget's tokens (`budgets/{token}`, see `launchq.capacity`) and a queue's quota
backoff (the `capacity_backoff` field of its queue document), on Firestore."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime

from google.api_core import exceptions as gexc
from google.cloud import firestore

from launchq.errors import Conflict
from launchq.model.records import QueueBackoff
from launchq.store.base import BACKOFF_FIELD, BUDGETS, backoff_from
from launchq.store.client import EXISTS, FirestoreBase


class FirestoreCapacity(FirestoreBase):
    """`launchq.store.protocols.CapacityStore`: creation-budget tokens (`budgets/`, one
    document per grant, each created once) and a queue's quota backoff (a field of its
    document, updated with a compare-and-swap)."""

    def take_token(self, token_ids: Sequence[str], expire_at: datetime) -> bool:
        """Create the first of `token_ids` nobody has created yet; False if all exist.

        Each token document is written exactly once (its `create()`), and `expire_at` lets a
        Firestore TTL policy delete it later.
        """
        budgets = self.db.collection(BUDGETS)
        now = self.clock()
        for token_id in token_ids:
            try:
                budgets.document(token_id).create({"taken_at": now, "expire_at": expire_at})
            except EXISTS:
                continue
            return True
        return False

    def update_backoff(
        self, queue: str, change: Callable[[QueueBackoff | None], QueueBackoff]
    ) -> QueueBackoff | None:
        """Compare-and-swap the queue's quota backoff; None if the queue changed meanwhile (the
        other writer's backoff stands)."""
        ref = self.queue_ref(queue)
        snap = ref.get()
        if not snap.exists:
            return None
        current = backoff_from(snap.to_dict() or {})
        new = change(current)
        if new == current:
            return current
        batch = self.db.batch()
        batch.update(ref, {BACKOFF_FIELD: asdict(new)}, option=self._unchanged(snap.update_time))
        try:
            self._commit(batch)
        except Conflict:
            return None
        return new

    def clear_backoff(self, queue: str) -> None:
        with contextlib.suppress(gexc.NotFound):
            self.queue_ref(queue).update({BACKOFF_FIELD: firestore.DELETE_FIELD})
