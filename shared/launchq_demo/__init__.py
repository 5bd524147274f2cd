"""`make demo`: the whole story on one machine, checked (`python -m launchq_demo`).

The demo sits above everything it shows: it starts the local stack (`launchq_local`), types real
`launchq` commands (`launchq_cli`) and reads the items back (`launchq_client`). Being its own
top package keeps those arrows one way: the local stack never has to import the CLI to host it,
and nothing imports the demo (tests/unit/test_architecture.py checks both).
"""
