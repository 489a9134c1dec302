"""The in-memory index of what falls due: a heap of `(due_at, partition, key)`.

Risk keeps its deadlines here (keyed by subject), notify its escalation steps (keyed by
alert). It is only an index: the table is the truth. Entries may be stale (the
obligation was met, the alert acknowledged); popping one only asks the stream to check
that key, which is harmless when there is nothing to do. It is rebuilt from the table
whenever partitions are assigned, so a restart loses nothing. The partition travels with
the key because the check must run on the partition that owns the key's state.
"""

from __future__ import annotations

import heapq
from collections.abc import Awaitable, Callable
from datetime import datetime

import structlog

log = structlog.get_logger(__name__)

CHECK_BATCH = 500  # keys per check message, well under the broker's message size limit

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

    def pop_due(self, now: datetime) -> dict[int, list[str]]:
        """Remove the entries due at or before `now`; return their keys by partition."""
        due: dict[int, dict[str, None]] = {}  # a dict keeps first-due order without repeats
        while self._heap and self._heap[0][0] <= now:
            entry = heapq.heappop(self._heap)
            self._entries.discard(entry)
            due.setdefault(entry[1], {})[entry[2]] = None
        return {partition: list(keys) for partition, keys in due.items()}

    def clear(self) -> None:
        """Forget everything (before a rebuild)."""
        self._heap.clear()
        self._entries.clear()


async def send_due_checks(
    schedule: DeadlineSchedule,
    now: datetime,
    send: Callable[[int, list[str]], Awaitable[object]],
) -> None:
    """Ask each partition's owner to check its due keys, in batches, from a Faust timer.

    An exception in a Faust timer stops the worker, so a failed send puts the keys back
    for the next tick instead of raising.
    """
    due = schedule.pop_due(now)
    try:
        for partition, keys in due.items():
            for start in range(0, len(keys), CHECK_BATCH):
                await send(partition, keys[start : start + CHECK_BATCH])
    except Exception:
        log.exception("check_send_failed", keys=sum(len(k) for k in due.values()))
        for partition, keys in due.items():
            for key in keys:
                schedule.push(now, partition, key)
