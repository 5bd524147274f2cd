"""What a queue and an item are, and the `CustomJob` body they render to: pure functions and
models, no I/O, shared by the functions and the CLI.

`config` (the queue config), `item` (the queue item), `fields` (types both use), `validation`
(errors with paths and suggestions), `templates` and `render` (item + config -> job body),
`mapping` (the W&B-style `spec`/`run` keys -> `CustomJob` fields), `checks` (a config checked
whole), `labels`, `sanitize` (untrusted data made storable), `buildplan` (what a source item
needs built), `topics` (which queue a topic is for), `schemas` (the JSON Schemas in docs/).

Nothing here imports the rest of the core except `launchq.errors`
(tests/unit/test_architecture.py).
"""
