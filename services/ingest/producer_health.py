"""When ingest gives up on a kafka-python producer and starts a fresh one.

After a network partition an idempotent kafka-python producer can stay wedged for good:
every write times out although the broker is back and a fresh producer writes at once.
Mere silence is therefore not waited out forever. A producer is retired when

- `max_consecutive_timeouts` writes in a row timed out (writes that overlap count as
  one: they saw the same stall), or
- a send it accepted is still unsettled (neither acknowledged nor failed) after
  `stale_after` seconds. kafka-python promises to settle every record within its
  delivery timeout, so one that stays open past it means the producer no longer works.

Pure bookkeeping with the times passed in, so it is tested without a broker or a clock.
"""

from __future__ import annotations

from enum import StrEnum
from itertools import count


class RetirementReason(StrEnum):
    """Why a producer was replaced; the values are the metric's `reason` label."""

    TIMEOUTS = "timeouts"
    STALE_SEND = "stale_send"
    BROKER_ERROR = "broker_error"
    READINESS = "readiness"


class ProducerHealth:
    """What one producer did lately, and whether it should be replaced."""

    def __init__(self, *, stale_after: float, max_consecutive_timeouts: int = 2) -> None:
        if stale_after <= 0 or max_consecutive_timeouts < 1:
            raise ValueError("stale_after must be positive and max_consecutive_timeouts >= 1")
        self._stale_after = stale_after
        self._max_timeouts = max_consecutive_timeouts
        self._consecutive_timeouts = 0
        self._last_timeout: float | None = None
        self._tokens = count()
        # Dicts keep insertion order and sends are registered in time order, so the first
        # entry is always the oldest unsettled send.
        self._unsettled: dict[int, float] = {}

    @property
    def consecutive_timeouts(self) -> int:
        """Return how many writes in a row timed out."""
        return self._consecutive_timeouts

    def sent(self, now: float) -> int:
        """Record records handed to the producer at `now`; return a token for `settled`."""
        token = next(self._tokens)
        self._unsettled[token] = now
        return token

    def settled(self, token: int) -> None:
        """Record that the producer acknowledged or failed the send of `token`."""
        self._unsettled.pop(token, None)

    def acknowledged(self) -> None:
        """Record a write the broker acknowledged in time."""
        self._consecutive_timeouts = 0

    def timed_out(self, *, started: float, now: float) -> None:
        """Record a write begun at `started` and found unacknowledged at `now`.

        Writes that were already under way when the last timeout was counted saw the same
        stall (one request writes its events and its audit records at once; concurrent
        requests share the producer), so they count once: the next timeout that counts is
        of a write begun after it, a second stall.
        """
        if self._last_timeout is not None and started < self._last_timeout:
            return
        self._consecutive_timeouts += 1
        self._last_timeout = now

    def oldest_unsettled_age(self, now: float) -> float:
        """Return how long the oldest unsettled send has waited (0 when none waits)."""
        oldest = next(iter(self._unsettled.values()), None)
        return 0.0 if oldest is None else now - oldest

    def retire_reason(self, now: float) -> RetirementReason | None:
        """Return why the producer should be replaced now, or None to keep it."""
        if self._consecutive_timeouts >= self._max_timeouts:
            return RetirementReason.TIMEOUTS
        if self.oldest_unsettled_age(now) > self._stale_after:
            return RetirementReason.STALE_SEND
        return None
