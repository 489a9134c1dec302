"""Bounded exponential backoff for transient failures: the one retry loop of the stream core.

Everything that crosses to the broker from a stream (a batch's publish, a delivery's
outcome) is retried this way, for as long as it takes: a fault that passes is never a
reason to drop or dead-letter anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

# Told of each failed attempt (its exception, its 0-based number and the pause before the
# next), so the caller counts and logs it in its own terms.
OnFailure = Callable[[Exception, int, float], None]


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff, and how long one publish may take."""

    first_delay_seconds: float = 0.2
    max_delay_seconds: float = 10.0
    publish_timeout_seconds: float = 15.0

    def delay(self, attempt: int) -> float:
        """Return the pause before retry number `attempt` (0-based)."""
        return float(min(self.max_delay_seconds, self.first_delay_seconds * 2**attempt))


async def retry_until_done(
    operation: Callable[[], Awaitable[T]], policy: RetryPolicy, on_failure: OnFailure
) -> tuple[T, int]:
    """Run `operation` until it succeeds; return its result and how many attempts failed."""
    attempt = 0
    while True:
        try:
            return await operation(), attempt
        except Exception as exc:  # noqa: BLE001 - every failure here is transient by contract
            delay = policy.delay(attempt)
            on_failure(exc, attempt, delay)
            attempt += 1
            await asyncio.sleep(delay)
