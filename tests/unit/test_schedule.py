"""The in-memory deadline index."""

from __future__ import annotations

from datetime import timedelta

from services.common.schedule import DeadlineSchedule
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
