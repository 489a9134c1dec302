"""The calendars: working days, and school days per area from terms and bank holidays."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest
from prometheus_client import CollectorRegistry

from services.common.clock import FakeClock
from services.risk.calendar import SchoolCalendar, add_working_days, is_bank_holiday
from services.risk.metrics import register_calendar

AUTUMN = (date(2026, 9, 2), date(2026, 10, 23))
WINTER = (date(2026, 11, 2), date(2026, 12, 18))
SPRING = (date(2027, 1, 5), date(2027, 2, 12))
CALENDAR = SchoolCalendar({"default": [AUTUMN, WINTER, SPRING], "south": [WINTER]})


def due(incident: str, area: str | None = "north", calendar: SchoolCalendar = CALENDAR) -> str:
    return calendar.next_school_day_at(
        datetime.fromisoformat(incident), at=time(9), timezone="Europe/London", area=area
    ).isoformat()


@pytest.mark.parametrize(
    ("incident", "expected"),
    [
        ("2026-11-02T10:00:00+00:00", "2026-11-03T09:00:00+00:00"),  # Monday -> Tuesday
        ("2026-11-06T19:30:00+00:00", "2026-11-09T09:00:00+00:00"),  # Friday evening -> Monday
        ("2026-11-07T12:00:00+00:00", "2026-11-09T09:00:00+00:00"),  # Saturday -> Monday
        ("2026-11-08T23:59:00+00:00", "2026-11-09T09:00:00+00:00"),  # Sunday night -> Monday
        # An offset other than UTC is read as the same instant.
        ("2026-11-03T01:00:00+02:00", "2026-11-03T09:00:00+00:00"),
        # Half-term (26-30 October) is no school day: the Friday before -> Monday 2 November.
        ("2026-10-23T12:00:00+01:00", "2026-11-02T09:00:00+00:00"),
        # The Christmas holidays, then the spring term starts on Tuesday 5 January.
        ("2026-12-18T20:00:00+00:00", "2027-01-05T09:00:00+00:00"),
    ],
)
def test_next_school_day_within_the_terms(incident: str, expected: str) -> None:
    assert due(incident) == expected


def test_an_area_with_its_own_terms_uses_them() -> None:
    # `south` lists the winter term only: the half-term before it is known to be closed...
    assert due("2026-10-23T12:00:00+01:00", "south") == "2026-11-02T09:00:00+00:00"
    # ...and after 18 December its calendar is not known: the next working day counts.
    assert CALENDAR.known_until("south") == date(2026, 12, 18)
    assert CALENDAR.known_until("east") == date(2027, 2, 12)  # no terms of its own: default


def test_past_the_known_calendar_every_working_day_counts() -> None:
    # After the last known term (12 February 2027) a school holiday cannot be known: the
    # first working day counts, so an alert may come early, never late.
    assert due("2027-02-12T18:00:00+00:00") == "2027-02-15T09:00:00+00:00"
    # Bank holidays still never count: Good Friday and Easter Monday 2027.
    assert due("2027-03-25T18:00:00+00:00") == "2027-03-30T08:00:00+00:00"


def test_bank_holidays_are_never_school_days_even_in_term() -> None:
    calendar = SchoolCalendar({"default": [(date(2027, 4, 1), date(2027, 6, 30))]})
    assert is_bank_holiday(date(2027, 5, 3))  # early May bank holiday
    # Friday 30 April -> Tuesday 4 May (Monday is the bank holiday), 09:00 BST.
    assert due("2027-04-30T18:00:00+00:00", calendar=calendar) == "2027-05-04T08:00:00+00:00"


def test_closures_listed_in_the_policy_are_skipped() -> None:
    calendar = SchoolCalendar({"default": [WINTER]}, closures=[date(2026, 11, 3)])
    assert due("2026-11-02T10:00:00+00:00", calendar=calendar) == "2026-11-04T09:00:00+00:00"


def test_without_any_terms_every_working_day_counts() -> None:
    empty = SchoolCalendar({})
    assert empty.known_until(None) is None
    # Clocks go forward on Sunday 29 March 2026: Monday 09:00 local is 08:00 UTC.
    assert due("2026-03-27T18:00:00+00:00", calendar=empty) == "2026-03-30T08:00:00+00:00"
    # 23:30 UTC on Thursday 2 July is already Friday in London (BST): due Monday 08:00 UTC.
    assert due("2026-07-02T23:30:00+00:00", calendar=empty) == "2026-07-06T08:00:00+00:00"


@pytest.mark.parametrize(
    ("start", "days", "expected"),
    [
        ("2026-11-02T10:00:00+00:00", 1, "2026-11-03T10:00:00+00:00"),  # Monday -> Tuesday
        ("2026-11-06T15:00:00+00:00", 1, "2026-11-09T15:00:00+00:00"),  # Friday -> Monday
        ("2026-11-06T15:00:00+00:00", 2, "2026-11-10T15:00:00+00:00"),
        ("2026-11-07T15:00:00+00:00", 1, "2026-11-10T00:00:00+00:00"),  # Saturday: all Monday
        # Christmas Eve: Christmas Day, the weekend and Boxing Day observed (28th) skipped.
        ("2026-12-24T15:00:00+00:00", 1, "2026-12-29T15:00:00+00:00"),
        # Local wall-clock time across the clocks going forward (Friday 27 March 2026).
        ("2026-03-27T15:00:00+00:00", 1, "2026-03-30T14:00:00+00:00"),
    ],
)
def test_working_days(start: str, days: int, expected: str) -> None:
    got = add_working_days(datetime.fromisoformat(start), days, timezone="Europe/London")
    assert got == datetime.fromisoformat(expected).astimezone(UTC)


def test_the_metric_says_how_many_days_ahead_each_areas_terms_are_known() -> None:
    registry = CollectorRegistry()
    clock = FakeClock(datetime(2026, 12, 1, 10, tzinfo=UTC))
    register_calendar(registry, CALENDAR, clock)
    name = "safeguard_risk_school_calendar_known_days"
    assert (
        registry.get_sample_value(name, {"area": "default"})
        == (date(2027, 2, 12) - date(2026, 12, 1)).days
    )
    assert registry.get_sample_value(name, {"area": "south"}) == 17.0
    clock.set(datetime(2027, 1, 1, tzinfo=UTC))
    assert registry.get_sample_value(name, {"area": "south"}) == -14.0  # past: fires
    empty = CollectorRegistry()
    register_calendar(empty, SchoolCalendar({}), clock)
    assert empty.get_sample_value(name, {"area": "default"}) == 0.0  # nothing known
