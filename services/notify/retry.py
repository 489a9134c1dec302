"""When to try a failed notification again: exponential backoff with jitter, `Retry-After`.

Pure: the random draw is passed in, so tests pin it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class Backoff:
    """Delay before attempt n+1: `initial * 2**(n-1)`, capped, then jittered."""

    initial_seconds: float = 1.0
    max_seconds: float = 60.0

    def delay(self, attempt: int, *, retry_after: float | None, draw: float) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based).

        `draw` in [0, 1) spreads the wait over its upper half ("equal jitter"), so
        many notifications failing together do not all come back at the same moment
        yet none returns at once. A `Retry-After` is a floor: the receiver asked for it.
        """
        base = min(self.max_seconds, self.initial_seconds * 2.0 ** (attempt - 1))
        jittered = base / 2 + base / 2 * draw
        return max(jittered, retry_after or 0.0)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Read `Retry-After` as seconds: delta-seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
