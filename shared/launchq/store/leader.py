"""`leases/{name}` on Firestore: who runs the sweep now (a compare-and-swap like the rest)."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from launchq.errors import Conflict
from launchq.store.base import LEASES
from launchq.store.client import EXISTS, FirestoreBase


class FirestoreLeader(FirestoreBase):
    """`launchq.store.protocols.LeaderStore`: which sweep runs now, as a document in `leases/`
    taken and renewed with a compare-and-swap on its update time."""

    def take_leadership(self, name: str, holder: str, seconds: float) -> bool:
        """Take `leases/{name}` unless another holder's lease is still running.

        Compare-and-swap like everything else: two sweeps started together cannot both win.
        """
        ref = self.db.collection(LEASES).document(name)
        snap = ref.get()
        now = self.clock()
        data = snap.to_dict() or {}
        if data.get("holder") not in (None, holder) and data.get("until", now) > now:
            return False
        lease = {"holder": holder, "until": now + timedelta(seconds=seconds), "taken_at": now}
        batch = self.db.batch()
        if snap.exists:
            batch.update(ref, lease, option=self._unchanged(snap.update_time))
        else:
            batch.create(ref, lease)
        try:
            self._commit(batch)
        except (Conflict, *EXISTS):
            return False
        return True

    def give_up_leadership(self, name: str, holder: str) -> None:
        ref = self.db.collection(LEASES).document(name)
        snap = ref.get()
        if snap.exists and (snap.to_dict() or {}).get("holder") == holder:
            batch = self.db.batch()
            # Clearing the holder frees it whatever the clocks say (not `until = now`, which a
            # sweeper with a skewed clock would turn into a lease that is still running).
            batch.update(
                ref,
                {"holder": None, "released_at": self.clock()},
                option=self._unchanged(snap.update_time),
            )
            with contextlib.suppress(Conflict):  # somebody took it over: theirs now
                self._commit(batch)
