"""Dispatch function: a Pub/Sub `messagePublished` CloudEvent in, a Vertex CustomJob out.

All logic lives in the `launchq` package; an exception here becomes a 500, which Pub/Sub treats
as a nack and redelivers (only transient failures raise).
"""

import functions_framework
from cloudevents.http.event import CloudEvent

from launchq.functions import handle_pubsub_event


@functions_framework.cloud_event
def dispatch(event: CloudEvent) -> None:
    handle_pubsub_event(event.data or {}, source=event["source"])
