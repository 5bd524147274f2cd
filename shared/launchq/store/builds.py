"""`builds/{key}` on Firestore: one document per image build key (`launchq.builds` decides
what goes in it; this module only reads and writes it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from launchq.store.base import BUILDS, StoredDocument
from launchq.store.client import FirestoreBase


class FirestoreBuilds(FirestoreBase):
    """`launchq.store.protocols.BuildStore` on `builds/{key}`: a build claimed with `create()`,
    joined with an array union, restarted with a compare-and-swap on the failed document."""

    def build_ref(self, key: str) -> firestore.DocumentReference:
        return self.db.collection(BUILDS).document(key)

    def create_build(self, key: str, document: Mapping[str, Any]) -> bool:
        try:
            self.build_ref(key).create(dict(document))
        except gexc.AlreadyExists:
            return False
        return True

    def get_build(self, key: str) -> StoredDocument | None:
        snap = self.build_ref(key).get()
        if not snap.exists:
            return None
        return StoredDocument(snap.to_dict() or {}, snap.update_time)

    def update_build(self, key: str, changes: Mapping[str, Any]) -> None:
        self.build_ref(key).update(dict(changes))

    def join_build(self, key: str, waiter: str) -> None:
        self.build_ref(key).update({"waiting": firestore.ArrayUnion([waiter])})

    def leave_build(self, key: str, waiter: str) -> None:
        self.build_ref(key).update({"waiting": firestore.ArrayRemove([waiter])})

    def restart_build(
        self,
        key: str,
        fields: Mapping[str, Any],
        clear: Sequence[str],
        waiter: str,
        failed_attempt: Mapping[str, Any],
        version: datetime | None,
    ) -> bool:
        restart = {
            **fields,
            **dict.fromkeys(clear, firestore.DELETE_FIELD),
            "waiting": firestore.ArrayUnion([waiter]),
            "failed_attempts": firestore.ArrayUnion([dict(failed_attempt)]),
        }
        try:
            self.build_ref(key).update(
                restart, option=self.db.write_option(last_update_time=version)
            )
        except (gexc.FailedPrecondition, gexc.Aborted):
            return False
        return True
