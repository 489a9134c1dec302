"""The school-day calendar: next school day after the incident's local date, 09:00 London."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest

from services.risk.calendar import next_school_day_at


def due(incident: str, holidays: tuple[date, ...] = ()) -> str:
    return next_school_day_at(
        datetime.fromisoformat(incident), at=time(9), timezone="Europe/London", holidays=holidays
    ).isoformat()


@pytest.mark.parametrize(
    ("incident", "expected"),
    [
        ("2026-11-02T10:00:00+00:00", "2026-11-03T09:00:00+00:00"),  # Monday -> Tuesday
        ("2026-11-06T19:30:00+00:00", "2026-11-09T09:00:00+00:00"),  # Friday evening -> Monday
        ("2026-11-07T12:00:00+00:00", "2026-11-09T09:00:00+00:00"),  # Saturday -> Monday
        ("2026-11-08T23:59:00+00:00", "2026-11-09T09:00:00+00:00"),  # Sunday night -> Monday
        # 23:30 UTC on Thursday 2 July is already Friday in London (BST): due Monday 08:00 UTC.
        ("2026-07-02T23:30:00+00:00", "2026-07-06T08:00:00+00:00"),
        # An offset other than UTC is read as the same instant.
        ("2026-11-03T01:00:00+02:00", "2026-11-03T09:00:00+00:00"),
    ],
)
def test_next_school_day(incident: str, expected: str) -> None:
    assert due(incident) == expected


def test_holidays_are_skipped() -> None:
    christmas = (
        *tuple(date(2026, 12, d) for d in (21, 22, 23, 24, 25, 28, 29, 30, 31)),
        date(2027, 1, 1),
    )
    assert due("2026-12-18T20:00:00+00:00", christmas) == "2027-01-04T09:00:00+00:00"


def test_clocks_going_forward_keep_nine_local() -> None:
    # Sunday 29 March 2026 is the switch to BST: Monday 09:00 local is 08:00 UTC.
    assert due("2026-03-27T18:00:00+00:00") == "2026-03-30T08:00:00+00:00"
