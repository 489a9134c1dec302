"""Fixtures shared by every test package, registered once."""

import os

import pytest

from services.common.environment import DEVELOPMENT, ENV_VARIABLE

# The tests run in development mode (the development token, http:// webhook receivers),
# and so does every service process they start, which inherits this environment. Tests
# of production-mode refusals pass `development=False` or clear the variable themselves.
os.environ[ENV_VARIABLE] = DEVELOPMENT

pytest_plugins = [
    "tests.fixtures.broker",
    "tests.fixtures.webhook",
    "tests.fixtures.postgres",
    "tests.fixtures.stack",
    "tests.fixtures.smtp",
    "tests.fixtures.ingest",
    "tests.fixtures.netproxy",
    "tests.fixtures.paging",
]

# The modules that take longest start first. With `--dist loadfile` pytest-xdist hands
# whole modules to the workers in turn; by default it orders them by their number of
# tests, which put the long fault and end-to-end modules (one to five tests each) last,
# each then running while the other workers had finished (67 s between the first and the
# last worker to end). `make test` passes `--no-loadscope-reorder` so that this order
# holds. Measured with `--durations`.
LONGEST_FIRST = (
    "tests/e2e/test_network_faults.py",
    "tests/e2e/test_desk_pods.py",
    "tests/e2e/test_two_of_each.py",
    "tests/integration/test_risk_durability.py",
    "tests/browser/test_desk_console.py",
    "tests/integration/test_notify_escalation.py",
    "tests/integration/test_stream_faults.py",
    "tests/e2e/test_timeliness_report.py",
)
LAYERS = ("tests/e2e/", "tests/browser/", "tests/integration/", "tests/ops/", "tests/unit/")


def _weight(path: str) -> tuple[int, int]:
    if path in LONGEST_FIRST:
        return (0, LONGEST_FIRST.index(path))
    layer = next((n for n, prefix in enumerate(LAYERS) if path.startswith(prefix)), len(LAYERS))
    return (1, layer)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order modules longest first; a module's own tests keep their order (a stable sort)."""
    items.sort(key=lambda item: _weight(item.nodeid.split("::", 1)[0]))
