"""Cohorts and their quota pools on Firestore (`launchq.cohorts`).

- `cohorts/{name}`: the cohort config as applied, plus what admission keeps about it: each
  member's decayed `usage` (written by the sweep leader, at most once a second) and `refusals`
  (a quota Vertex refused although its units had room: written on such a refusal, rare).
- `pools/{project~region~metric}/units/{n}`: one document per accelerator of a declared quota.
  `holder` is the item doc id holding it and `queue` its queue, or both null. Like a queue's
  slots, holding units *is* admission against the quota: an item takes the units its job needs
  in the same atomic write as its claim, so no number of concurrent admitters can exceed the
  limit, and gives them back in the write that ends its attempt. Each unit is written twice per
  job (take, release), whatever the number of jobs, where one counter per quota would be written
  by every admission and every end.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath

from launchq.model.records import Slot
from launchq.store.base import COHORTS, POOLS, UNITS, FieldKey, unit_from
from launchq.store.client import FirestoreBase, Snapshot, count
from launchq.store.queues import BatchWriter, resize


def _unit(pool: str, snap: Snapshot) -> Slot:
    return unit_from(pool, snap.id, snap.to_dict() or {}, snap.update_time)


class FirestoreCohorts(FirestoreBase):
    """`launchq.store.protocols.CohortStore` on `cohorts/` and `pools/{pool}/units/`."""

    def put_cohort(self, name: str, document: Mapping[str, Any], pools: Mapping[str, int]) -> None:
        """Write a cohort's config (keeping its usage) and bring each pool to its unit count.

        Growing adds free units; shrinking deletes free units above the limit and marks held
        ones `retire`, so their holder's release deletes them: running jobs are never cut off.
        """
        now = self.clock()
        fields = {**document, "name": name, "updated_at": now}
        # Each field given replaces the stored one whole (a quota removed is gone); the fields
        # admission keeps (usage, refusals) are left as they are. (`merge` takes field paths;
        # the stubs say bool.)
        ref = self.db.collection(COHORTS).document(name)
        ref.set(fields, merge=list(fields))  # type: ignore[arg-type]
        writer = BatchWriter(self.db)
        for pool, wanted in pools.items():
            pool_ref = self.db.collection(POOLS).document(pool)
            writer.batch().set(pool_ref, {"limit": wanted, "cohort": name, "updated_at": now})
            resize(writer, pool_ref.collection(UNITS), wanted, {"queue": None, "since": now})
        writer.flush()

    def get_cohort(self, name: str) -> dict[str, Any] | None:
        snap = self.db.collection(COHORTS).document(name).get()
        return snap.to_dict() if snap.exists else None

    def delete_cohort(self, name: str) -> None:
        """Delete the cohort document (its pools are brought to 0 first by the caller)."""
        self.db.collection(COHORTS).document(name).delete()

    def list_cohorts(self) -> list[dict[str, Any]]:
        return [s.to_dict() or {} for s in self.db.collection(COHORTS).stream()]

    def update_cohort(self, name: str, changes: Mapping[FieldKey, Any]) -> None:
        """Set fields of the cohort document; a tuple key is a path into a map field
        (`("refusals", pool)` sets one pool's, whatever characters the pool id holds)."""
        update = {
            FieldPath(*(key if isinstance(key, tuple) else (key,))).to_api_repr(): value
            for key, value in changes.items()
        }
        self.db.collection(COHORTS).document(name).update(update)

    def free_units(self, pool: str, limit: int) -> list[Slot]:
        query = (
            self.db.collection(POOLS)
            .document(pool)
            .collection(UNITS)
            .where(filter=firestore.FieldFilter("holder", "==", None))
            .limit(limit)
        )
        return [_unit(pool, snap) for snap in query.stream()]

    def held_units(self, pool: str) -> list[Slot]:
        query = (
            self.db.collection(POOLS)
            .document(pool)
            .collection(UNITS)
            .where(filter=firestore.FieldFilter("holder", "!=", None))
        )
        return [_unit(pool, snap) for snap in query.stream()]

    def count_held_units(self, pool: str, queue: str) -> int:
        """Units of `pool` held by `queue`'s items: one aggregation, not one read per unit."""
        query = (
            self.db.collection(POOLS)
            .document(pool)
            .collection(UNITS)
            .where(filter=firestore.FieldFilter("queue", "==", queue))
        )
        return count(query)
