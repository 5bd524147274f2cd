"""Which queue a message is for: the topic it was published to, by one naming rule.

Each queue has its own Pub/Sub topic, `launchq-q-<queue>`. Granting `roles/pubsub.publisher` on
that topic is what lets a person, group or CI account launch onto (and cancel in) that queue:
Google IAM is the only gate, and the audit trail is Google's. The dispatcher therefore takes the
queue from the topic, never from the message body. Every name the queue-name pattern allows
forms a valid topic name (tests/terraform/test_queues.py checks it; the Terraform module uses
the same prefix).

functions-framework turns a push to `/projects/P/topics/T` into a CloudEvent whose `source` is
`//pubsub.googleapis.com/projects/P/topics/T`, and Eventarc sends the same `source`: that is
where the topic comes from.

A single shared topic, whose items name their queue in the body, is an explicit opt-in for
single-team installs (`LAUNCHQ_QUEUE_TOPIC`; Terraform `shared_items_topic`): everyone who may
publish to it may launch onto every queue.
"""

from __future__ import annotations

import re

QUEUE_TOPIC_PREFIX = "launchq-q-"
# The attribute that makes a message a control message instead of a queue item.
ACTION_ATTRIBUTE = "launchq-action"
CANCEL_ACTION = "cancel"
# The publisher's word for who enqueued (Pub/Sub carries no verified publisher identity).
SUBMITTED_BY_ATTRIBUTE = "launchq-submitted-by"

_SOURCE = re.compile(r"^//pubsub\.googleapis\.com/projects/([^/]+)/topics/([^/]+)$")


def queue_topic(queue: str) -> str:
    """The topic id of `queue`'s topic."""
    return f"{QUEUE_TOPIC_PREFIX}{queue}"


def queue_of_topic(topic: str) -> str | None:
    """The queue whose topic `topic` is, or None for any other topic."""
    if topic.startswith(QUEUE_TOPIC_PREFIX) and len(topic) > len(QUEUE_TOPIC_PREFIX):
        return topic[len(QUEUE_TOPIC_PREFIX) :]
    return None


def topic_of_source(source: str | None) -> str | None:
    """The topic id in a `messagePublished` CloudEvent's `source`, or None if it names none."""
    match = _SOURCE.match(source or "")
    return match.group(2) if match else None
