"""The in-memory index of what falls due: a heap of `(due_at, partition, key)`.

Risk keeps its deadlines here (keyed by subject), notify its escalation steps (keyed by
alert). It is only an index: the table is the truth. Entries may be stale (the
obligation was met, the alert acknowledged); popping one only asks the stream to check
that key, which is harmless when there is nothing to do. It is rebuilt from the table
whenever partitions are assigned, so a restart loses nothing. The partition travels with
the key because the check must run on the partition that owns the key's state.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Awaitable, Callable
from datetime import datetime

import structlog

log = structlog.get_logger(__name__)

CHECK_BATCH = 500  # keys per check message, well under the broker's message size limit
# Deadlines popped and sent at a time; 8 check messages of 500 keys with one partition.
CHECK_SLICE = 4000

Entry = tuple[datetime, int, str]


class DeadlineSchedule:
    """A min-heap of deadlines; a repeated `(due_at, partition, key)` is kept once."""

    def __init__(self) -> None:
        self._heap: list[Entry] = []
        self._entries: set[Entry] = set()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, due_at: datetime, partition: int, key: str) -> None:
        """Watch `key` (owned by `partition`) at `due_at`."""
        entry = (due_at, partition, key)
        if entry not in self._entries:
            self._entries.add(entry)
            heapq.heappush(self._heap, entry)

    def pop_due(self, now: datetime, limit: int | None = None) -> dict[int, list[str]]:
        """Remove entries due at or before `now` (at most `limit`); return keys by partition."""
        due: dict[int, dict[str, None]] = {}  # a dict keeps first-due order without repeats
        taken = 0
        while self._heap and self._heap[0][0] <= now and (limit is None or taken < limit):
            entry = heapq.heappop(self._heap)
            self._entries.discard(entry)
            due.setdefault(entry[1], {})[entry[2]] = None
            taken += 1
        return {partition: list(keys) for partition, keys in due.items()}

    def earliest(self) -> datetime | None:
        """Return the earliest due time on the schedule, if any."""
        return self._heap[0][0] if self._heap else None

    def clear(self) -> None:
        """Forget everything (before a rebuild)."""
        self._heap.clear()
        self._entries.clear()


async def send_due_checks(
    schedule: DeadlineSchedule,
    now: datetime,
    send: Callable[[int, list[str]], Awaitable[object]],
) -> None:
    """Ask each partition's owner to check its due keys, from a Faust timer.

    The heap is drained in slices of `CHECK_SLICE` entries: each slice's check messages
    (up to `CHECK_BATCH` keys each, per partition) are sent together and awaited
    together, and the event loop is yielded to between slices, so a burst of 100,000
    deadlines neither blocks the consumer while the heap is emptied nor waits a round
    trip per message. An exception in a Faust timer stops the worker, so a slice whose
    send fails puts its keys back for the next tick instead of raising (a key checked
    twice is harmless; what was not popped yet stays on the schedule).
    """
    while due := schedule.pop_due(now, CHECK_SLICE):
        sends = [
            send(partition, keys[start : start + CHECK_BATCH])
            for partition, keys in due.items()
            for start in range(0, len(keys), CHECK_BATCH)
        ]
        failed = [
            result
            for result in await asyncio.gather(*sends, return_exceptions=True)
            if isinstance(result, BaseException)
        ]
        if failed:
            log.error(
                "check_send_failed",
                keys=sum(len(k) for k in due.values()),
                error=type(failed[0]).__name__,
            )
            for partition, keys in due.items():
                for key in keys:
                    schedule.push(now, partition, key)
            return
        await asyncio.sleep(0)
