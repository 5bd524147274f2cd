"""`notices/{key}` on Firestore: one document per notification (launchq.model.notices), claimed
with `create()` or a compare-and-swap on its update time, so two senders never hold one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from launchq.errors import Conflict
from launchq.model.notices import Notice, claim_fields
from launchq.store.base import NOTICES
from launchq.store.client import CONFLICTS, FirestoreBase


class FirestoreNotices(FirestoreBase):
    """`launchq.store.protocols.NoticeStore` on `notices/{key}`."""

    def _notice_ref(self, key: str) -> firestore.DocumentReference:
        return self.db.collection(NOTICES).document(key)

    def claim_notice(self, key: str, document: Mapping[str, Any]) -> Notice | None:
        now = self.clock()
        ref = self._notice_ref(key)
        fresh = {**document, **claim_fields(now, 1), "created_at": now}
        try:
            result = ref.create(fresh)
        except gexc.AlreadyExists:
            pass
        else:
            return Notice.from_document(key, fresh, result.update_time)
        snap = ref.get()
        if not snap.exists:
            return None  # deleted in between (by hand): the next delivery creates it
        found = Notice.from_document(key, snap.to_dict() or {}, snap.update_time)
        if not found.claimable(now):
            return None
        update = claim_fields(now, found.attempts + 1)
        try:
            result = ref.update(update, option=self._unchanged(found.version))
        except CONFLICTS:
            return None  # another sender claimed it first
        return Notice.from_document(key, {**found.document, **update}, result.update_time)

    def finish_notice(self, notice: Notice, changes: Mapping[str, Any]) -> Notice:
        ref = self._notice_ref(notice.key)
        update = {**changes, "updated_at": self.clock()}
        try:
            result = ref.update(update, option=self._unchanged(notice.version))
        except CONFLICTS as exc:
            raise Conflict(str(exc)) from exc
        return Notice.from_document(notice.key, {**notice.document, **update}, result.update_time)

    def get_notice(self, key: str) -> Notice | None:
        snap = self._notice_ref(key).get()
        return (
            Notice.from_document(key, snap.to_dict() or {}, snap.update_time)
            if snap.exists
            else None
        )
