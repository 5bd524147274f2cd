"""Each applied queue's topic and push subscription on the Pub/Sub emulator.

In Google Cloud the Terraform module creates a topic per queue (`launchq-q-<queue>`) with a push
subscription to the dispatcher. Locally the same happens in two places, both through
`ensure_queue_topics`:

- `launchq queue apply` against the local stack (`LAUNCHQ_DEV_DISPATCHER_URL` is set by
  `launchq dev`'s exports) creates the queue's topic at once, so the next `enqueue` finds it;
- the dev stack, before every sweep, creates the topics of queues that appeared in Firestore by
  any other way (a test, a script, an older stack's data). One queue listing per sweep interval.

The push endpoint path is `/projects/P/topics/T`, which functions-framework turns into a
`messagePublished` CloudEvent whose `source` names the topic, as Eventarc does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from launchq.spec.topics import queue_topic

# Set by `launchq dev` in the exports it prints: where the local dispatcher listens.
DISPATCHER_URL_VARIABLE = "LAUNCHQ_DEV_DISPATCHER_URL"


def push_subscription(topic: str) -> str:
    return f"{topic}-dispatch"


def ensure_push_subscription(subscriber: Any, name: str, topic_path: str, endpoint: str) -> None:
    """A push subscription from `topic_path` to `endpoint` (existing: left as it is), with the
    backoff a 500 from a local function is redelivered after: 1 s, doubling to 10 s."""
    from google.api_core import exceptions as gexc
    from google.cloud.pubsub_v1 import types

    with contextlib.suppress(gexc.AlreadyExists):
        subscriber.create_subscription(
            request={
                "name": name,
                "topic": topic_path,
                "push_config": types.PushConfig(push_endpoint=endpoint),
                "ack_deadline_seconds": 60,
                "retry_policy": {
                    "minimum_backoff": {"seconds": 1},
                    "maximum_backoff": {"seconds": 10},
                },
            }
        )


def ensure_push_topic(project: str, topic: str, dispatcher_url: str) -> bool:
    """Create `topic` and its push subscription to the dispatcher; True if the topic was new."""
    from google.api_core import exceptions as gexc
    from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient

    publisher = PublisherClient()
    subscriber = SubscriberClient()
    created = True
    try:
        path = publisher.topic_path(project, topic)
        try:
            publisher.create_topic(name=path)
        except gexc.AlreadyExists:
            created = False
        name = subscriber.subscription_path(project, push_subscription(topic))
        ensure_push_subscription(subscriber, name, path, f"{dispatcher_url}/{path}")
    finally:
        subscriber.close()
    return created


def ensure_queue_topics(project: str, queues: Iterable[str], dispatcher_url: str) -> list[str]:
    """Every queue's topic and push subscription; returns the queues whose topic was new."""
    return [q for q in queues if ensure_push_topic(project, queue_topic(q), dispatcher_url)]
