"""Publishing to a queue's topic: the one thing a researcher's credentials do besides reads.

`roles/pubsub.publisher` on the queue's topic is what launching and cancelling need; the
dispatcher does the rest with launchq's own credentials. Enqueueing (the CLI) and cancelling
(the CLI and the dashboard, `launchq_client.cancel`) publish through here, so both carry the same
attributes, the same unverified submitter claim and the same answer to a missing topic.
"""

from __future__ import annotations

import json
from typing import Any

from launchq_client.backends import Backends
from launchq_client.errors import Unreachable


def publish(backends: Backends, payload: dict[str, Any], **attributes: str) -> str:
    """Publish `payload` to its queue's topic (`attributes["queue"]` when the payload names
    none); the message id. Raises `Unreachable` when the topic does not exist."""
    import getpass

    from google.api_core import exceptions as gexc

    from launchq.spec.topics import SUBMITTED_BY_ATTRIBUTE

    data = json.dumps(payload, ensure_ascii=False).encode()
    queue = str(payload.get("queue") or attributes.pop("queue", ""))
    topic = backends.topic_path_for(queue)
    try:
        # Pub/Sub carries no publisher identity: this is the publisher's word, recorded as
        # unverified (docs/message-format.md).
        claimed = getpass.getuser()
    except Exception:  # no user name in this environment (a container): say nothing
        claimed = ""
    extra = {SUBMITTED_BY_ATTRIBUTE: claimed} if claimed else {}
    try:
        future = backends.publisher.publish(
            topic,
            data,
            queue=queue,
            item_id=str(payload["item_id"]),
            **extra,
            **attributes,
        )
        return str(future.result(timeout=60))
    except gexc.NotFound:
        raise Unreachable(
            f"topic {topic} does not exist: a queue's topic is created with the queue by the "
            "platform's Terraform (or by `launchq dev` when the queue is applied); a single-team "
            "install with one shared topic sets --queue-topic/LAUNCHQ_QUEUE_TOPIC"
        ) from None
