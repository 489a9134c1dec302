"""Calendars: working days for the working-day windows, school days for `school-notification`.

Working days are Monday to Friday less the bank holidays of England and Wales, from the
`holidays` library (rule-based, so they never run out; a new one-off bank holiday comes
with an update of the pinned library). School days are the working days inside a term
of the child's area, less the policy's extra closures. Past the last term an area's
calendar lists, every working day counts as a school day: a deadline may then fall in a
school holiday and alert early, never late (docs/contract.md section 3), and the metric
`safeguard_risk_school_calendar_known_days` warns well before that happens.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

SATURDAY = 5
DAY = timedelta(days=1)
DEFAULT_AREA = "default"


@lru_cache(maxsize=1)
def _bank_holidays() -> holidays.HolidayBase:
    # England's list is England and Wales's: the two share every bank holiday.
    return holidays.country_holidays("GB", subdiv="ENG")


def is_bank_holiday(day: date) -> bool:
    """Tell whether `day` is a bank holiday in England and Wales."""
    return day in _bank_holidays()


def is_working_day(day: date) -> bool:
    """Tell whether `day` is Monday to Friday and not a bank holiday."""
    return day.weekday() < SATURDAY and not is_bank_holiday(day)


def add_working_days(start: datetime, days: int, *, timezone: str) -> datetime:
    """Return `start` plus `days` working days, counting only time on working days.

    Local wall-clock time (`timezone`): Friday 15:00 plus one working day is Monday
    15:00; a start on a Saturday counts from Monday 00:00, so it ends Tuesday 00:00. The
    result is in UTC.
    """
    zone = ZoneInfo(timezone)
    at = start.astimezone(zone).replace(tzinfo=None)
    remaining = timedelta(days=days)
    while True:
        midnight = datetime.combine(at.date() + DAY, time())
        if is_working_day(at.date()):
            left = midnight - at
            if remaining <= left:
                return (at + remaining).replace(tzinfo=zone).astimezone(UTC)
            remaining -= left
        at = midnight


class SchoolCalendar:
    """School days per area: terms from the policy, bank holidays, extra closures."""

    def __init__(
        self,
        terms: Mapping[str, Sequence[tuple[date, date]]],
        closures: Collection[date] = (),
    ) -> None:
        self._terms = {area: sorted(spans) for area, spans in terms.items() if spans}
        self._closures = frozenset(closures)

    def areas(self) -> list[str]:
        """Return the areas with their own terms (`default` included when configured)."""
        return sorted(self._terms)

    def _spans(self, area: str | None) -> list[tuple[date, date]]:
        if area is not None and area in self._terms:
            return self._terms[area]
        return self._terms.get(DEFAULT_AREA, [])

    def known_until(self, area: str | None) -> date | None:
        """Return the last day the area's calendar is known for (None: no terms at all)."""
        spans = self._spans(area)
        return spans[-1][1] if spans else None

    def is_school_day(self, day: date, area: str | None) -> bool:
        """Tell whether `day` is a school day in `area`."""
        if not is_working_day(day) or day in self._closures:
            return False
        spans = self._spans(area)
        if not spans or day > spans[-1][1]:
            return True  # past the known calendar: every working day counts
        return any(start <= day <= end for start, end in spans)

    def next_school_day_at(
        self, incident_time: datetime, *, at: time, timezone: str, area: str | None
    ) -> datetime:
        """Return `at` local time on the first school day after the incident's local date.

        The result is in UTC; zoneinfo resolves the wall time across clock changes.
        """
        zone = ZoneInfo(timezone)
        day = incident_time.astimezone(zone).date() + DAY
        while not self.is_school_day(day, area):
            day += DAY
        return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def next_local_time(after: datetime, at: time, *, timezone: str) -> datetime:
    """Return the first moment strictly after `after` whose local time is `at`, in UTC."""
    zone = ZoneInfo(timezone)
    local = after.astimezone(zone)
    candidate = datetime.combine(local.date(), at, tzinfo=zone)
    if candidate <= local:
        candidate = datetime.combine(local.date() + DAY, at, tzinfo=zone)
    return candidate.astimezone(UTC)
