"""Fixtures shared by every test package, registered once."""

import os

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
