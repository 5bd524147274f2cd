"""Notify function: the events topic's CloudEvents in, one message per item outcome out.

All logic lives in the `launchq` package (launchq.notify); a receiver that failed raises, which
becomes a 500, and Pub/Sub redelivers the event with the subscription's backoff.
"""

import functions_framework
from cloudevents.http.event import CloudEvent

from launchq.functions import handle_notify_event


@functions_framework.cloud_event
def notify(event: CloudEvent) -> None:
    handle_notify_event(event.data or {})
