"""The school-day calendar for `school-notification`."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

SATURDAY = 5


def next_school_day_at(
    incident_time: datetime, *, at: time, timezone: str, holidays: Collection[date]
) -> datetime:
    """Return `at` local time on the first school day after the incident's local date.

    School days are Monday to Friday, less `holidays`. The result is in UTC.
    """
    zone = ZoneInfo(timezone)
    day = incident_time.astimezone(zone).date() + timedelta(days=1)
    while day.weekday() >= SATURDAY or day in holidays:
        day += timedelta(days=1)
    # zoneinfo resolves the local wall time to the right offset across DST changes.
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)
