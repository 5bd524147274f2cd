"""Budget ledgers on Firestore: `spend/{queue|cohort}~{name}~{YYYY-MM}` (`launchq.model.budgets`).

A ledger holds integers: `spent_*` (ended attempts), `reserved_*` (attempts holding slots), and
`attempts` (claims counted). A claim adds its reservation in the claim's own batch under the
ledger's update-time precondition, so two admitters deciding on the same picture cannot both
commit; the write that ends an attempt moves its reservation to `spent_*` with atomic
increments and no precondition (an end never waits for, or loses to, a claim).

Writes per ledger: two per attempt of a budgeted scope (claim, end). That is the ledger's
whole write rate: at 0.5 s per write sustained, about one attempt starting and one ending per
second per budget before claims start losing races to each other (they retry, as every
compare-and-swap here does); docs/budgets.md has the figure measured by bench/fairshare.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from launchq.model.budgets import (
    Charge,
    Ledger,
    Settlement,
    ledger_deltas,
    reservation_deltas,
)
from launchq.store.base import SETTINGS, SPEND
from launchq.store.client import FirestoreBase

PRICES = "prices"


class FirestoreSpend(FirestoreBase):
    """`launchq.store.protocols.SpendStore` on `spend/`."""

    def get_ledgers(self, ledgers: Sequence[str], create: bool = True) -> list[Ledger]:
        """The ledgers named, created empty if absent (so a claim always has a version to
        write under; `create=False`, for readers: an absent one reads as empty); one batched
        read."""
        refs = [ledger_ref(self, name) for name in ledgers]
        found = {snap.id: snap for snap in self.db.get_all(refs) if snap.exists}
        missing = [name for name in ledgers if name not in found] if create else []
        for name in missing:
            scope, _, rest = name.partition("~")
            owner, _, period = rest.rpartition("~")
            fields = {"scope": scope, "name": owner, "period": period, "created_at": self.clock()}
            # Another admitter may have created it first: then read theirs.
            with contextlib.suppress(gexc.AlreadyExists, gexc.Conflict):
                ledger_ref(self, name).create(fields)
        if missing:
            refs = [ledger_ref(self, name) for name in missing]
            found.update({snap.id: snap for snap in self.db.get_all(refs) if snap.exists})
        return [
            Ledger.from_document(name, found[name].to_dict(), found[name].update_time)
            if name in found
            else Ledger(name)
            for name in ledgers
        ]

    def list_ledgers(self, period: str) -> list[tuple[dict[str, Any], Ledger]]:
        """Every ledger of a month, with its stored fields (scope, name)."""
        query = self.db.collection(SPEND).where(
            filter=firestore.FieldFilter("period", "==", period)
        )
        return [
            (snap.to_dict() or {}, Ledger.from_document(snap.id, snap.to_dict(), snap.update_time))
            for snap in query.stream()
        ]

    def get_prices(self) -> dict[str, Any] | None:
        snap = self.db.collection(SETTINGS).document(PRICES).get()
        return snap.to_dict() if snap.exists else None

    def put_prices(self, document: Mapping[str, Any] | None) -> None:
        ref = self.db.collection(SETTINGS).document(PRICES)
        if document is None:
            ref.delete()
        else:
            ref.set({**document, "updated_at": self.clock()})


def ledger_ref(base: FirestoreBase, ledger: str) -> firestore.DocumentReference:
    return base.db.collection(SPEND).document(ledger)


def reserve(
    base: FirestoreBase, batch: firestore.WriteBatch, charge: Charge, ledgers: Iterable[Ledger]
) -> None:
    """A claim's reservation in each ledger, under the version the decision was made on."""
    deltas = reservation_deltas(charge)
    for ledger in ledgers:
        update: dict[str, Any] = {k: firestore.Increment(v) for k, v in deltas.items()}
        update["updated_at"] = base.clock()
        batch.update(ledger_ref(base, ledger.id), update, option=base._unchanged(ledger.version))


def settle(base: FirestoreBase, batch: firestore.WriteBatch, settled: Settlement) -> None:
    """An ended attempt's reservation turned into its cost, in each ledger it reserved in."""
    deltas = ledger_deltas(settled)
    for ledger in settled.ledgers:
        update: dict[str, Any] = {k: firestore.Increment(v) for k, v in deltas.items()}
        update["updated_at"] = base.clock()
        # set+merge: an end is never lost to a ledger that went missing (deleted by hand).
        batch.set(ledger_ref(base, ledger), update, merge=True)
