"""Shared pytest wiring: fixtures live in tests/fixtures/, one module per piece of the stack."""

pytest_plugins = [
    "tests.fixtures.emulators",
    "tests.fixtures.gcs",
    "tests.fixtures.standin",
    "tests.fixtures.cloudbuild",
    "tests.fixtures.dispatch",
    "tests.fixtures.devstack",
]
