"""The read-only web dashboard (`launchq ui`): queues, items, one item, charts.

It reads what the CLI reads (`launchq_client.reads`, `launchq_client.queues`) through the same
`launchq_client.backends.Backends`, and its one action, cancel, publishes the same control
message as `launchq cancel` (`launchq_client.cancel.request_cancel`). It never writes Firestore
or calls Vertex, and it imports neither the CLI nor the local stack.
"""
