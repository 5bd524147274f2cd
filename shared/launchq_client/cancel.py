"""Cancelling an item: the gate `launchq cancel` and the dashboard's cancel button share.

A cancel is a control message on the item's queue topic; the dispatcher carries it out with
launchq's own credentials (a waiting item is CANCELLED at once, a submitted one through
CancelCustomJob). Whoever may launch onto a queue may cancel in it, and needs no other right.
"""

from __future__ import annotations

from launchq.model.states import ItemState
from launchq.spec.topics import ACTION_ATTRIBUTE, CANCEL_ACTION
from launchq_client.backends import Backends
from launchq_client.publish import publish
from launchq_client.reads import find_item_data


def request_cancel(
    backends: Backends, item_id: str, queue_name: str | None
) -> tuple[str, ItemState, str | None]:
    """Publish a cancel request to the item's queue topic unless the item already ended.
    Returns (queue, state, message id or None when nothing was published because the item is
    terminal). Raises `NotFound`/`Ambiguous` from the look-up."""
    data = find_item_data(backends.store, item_id, queue_name)
    queue, state = str(data["queue"]), ItemState(data["state"])
    if state.is_terminal:
        return queue, state, None
    message_id = publish(
        backends, {"item_id": item_id}, queue=queue, **{ACTION_ATTRIBUTE: CANCEL_ACTION}
    )
    return queue, state, message_id
