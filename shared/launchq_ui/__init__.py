"""The read-only web dashboard (`launchq ui`): queues, items, one item, charts.

It reads what the CLI reads (`launchq_cli.ops`, `launchq.store.Store`) through the same
`launchq_cli.common.Backends`, and its one action, cancel, publishes the same control message as
`launchq cancel` (`launchq_cli.items.request_cancel`). It never writes Firestore or calls Vertex.
"""
