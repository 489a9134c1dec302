"""The in-memory deadline index."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from services.common.stream.schedule import CHECK_BATCH, DeadlineSchedule, send_due_checks
from tests.fixtures.events import T0


def test_pops_only_what_is_due_grouped_by_partition_in_due_order() -> None:
    schedule = DeadlineSchedule()
    schedule.push(T0 + timedelta(seconds=2), 1, "child:b")
    schedule.push(T0, 0, "child:a")
    schedule.push(T0 + timedelta(seconds=1), 1, "child:c")
    schedule.push(T0 + timedelta(hours=1), 0, "child:later")
    assert schedule.pop_due(T0 + timedelta(seconds=2)) == {
        0: ["child:a"],
        1: ["child:c", "child:b"],
    }
    assert len(schedule) == 1
    assert schedule.pop_due(T0 + timedelta(minutes=59)) == {}


def test_same_entry_twice_is_kept_once_and_a_key_is_returned_once() -> None:
    schedule = DeadlineSchedule()
    schedule.push(T0, 0, "child:a")
    schedule.push(T0, 0, "child:a")
    schedule.push(T0 + timedelta(seconds=1), 0, "child:a")
    assert len(schedule) == 2
    assert schedule.pop_due(T0 + timedelta(seconds=5)) == {0: ["child:a"]}
    schedule.push(T0, 0, "child:x")
    schedule.clear()
    assert schedule.pop_due(T0 + timedelta(days=1)) == {}


def test_due_checks_are_sent_in_batches_per_partition() -> None:
    schedule = DeadlineSchedule()
    for n in range(CHECK_BATCH + 1):
        schedule.push(T0, 2, f"child:{n}")
    schedule.push(T0, 0, "child:x")
    sent: list[tuple[int, int]] = []

    async def send(partition: int, keys: list[str]) -> None:
        sent.append((partition, len(keys)))

    asyncio.run(send_due_checks(schedule, T0, send))
    assert sorted(sent) == [(0, 1), (2, 1), (2, CHECK_BATCH)]
    assert len(schedule) == 0


def test_a_failed_send_keeps_the_keys_for_the_next_tick() -> None:
    schedule = DeadlineSchedule()
    schedule.push(T0, 1, "child:a")

    async def send(_partition: int, _keys: list[str]) -> None:
        raise ConnectionError

    asyncio.run(send_due_checks(schedule, T0 + timedelta(seconds=1), send))
    assert schedule.pop_due(T0 + timedelta(seconds=1)) == {1: ["child:a"]}
