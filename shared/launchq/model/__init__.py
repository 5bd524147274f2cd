"""The record and its vocabulary: item states and their transitions (`states`), every recorded
reason with its text (`reasons`), the typed records the store returns (`records`), failure
classes and the retry decision (`failures`), and why a waiting item waits now (`waiting`).

Imports only `launchq.spec` and `launchq.errors` (tests/unit/test_architecture.py).
"""
