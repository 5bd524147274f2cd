"""What every launchq front end needs, without a front end: backends, reads, cancel, configs, logs.

The CLI (`launchq_cli`), the dashboard (`launchq_ui`), the demo (`launchq_demo`) and the
benchmarks all talk to a launchq install the same way; this package is that way, so none of them
has to import another. It imports only the core (`launchq`), never Click or Rich: presentation
(tables, colours, exit codes, HTML) stays in each front end, which maps this package's typed
errors (`launchq_client.errors`) to its own. docs/architecture.md ("Packages") has the layering,
tests/unit/test_architecture.py checks it.
"""
