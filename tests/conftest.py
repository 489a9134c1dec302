"""Fixtures shared by every test package, registered once."""

pytest_plugins = [
    "tests.fixtures.broker",
    "tests.fixtures.webhook",
    "tests.fixtures.stack",
    "tests.fixtures.smtp",
    "tests.fixtures.ingest",
]
