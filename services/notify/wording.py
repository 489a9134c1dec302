"""Times and durations as a person reads them on a phone at night.

Local wall-clock time in the deployment's time zone (the policy's `timezone`), to the
minute, with the zone's abbreviation so that a time near a clock change is never
ambiguous (`Sun 25 Oct 2026 01:30 BST`, then `01:30 GMT`); spans in days, hours and
minutes (`6 h 5 min`). Machine-readable copies stay in UTC ISO 8601 beside these.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def local_time(at: datetime, zone: ZoneInfo) -> str:
    """Return `at` as `Fri 4 Dec 2026 03:12 GMT` in `zone`, to the minute."""
    here = at.astimezone(zone)
    return f"{here:%a} {here.day} {here:%b %Y %H:%M} {here.tzname()}"


def clock_time(at: datetime, zone: ZoneInfo) -> str:
    """Return `at` as `03:12 GMT` in `zone`: for times within the day of the message."""
    here = at.astimezone(zone)
    return f"{here:%H:%M} {here.tzname()}"


def span(delta: timedelta) -> str:
    """Return a non-negative span as `20 d 3 h`, `6 h 5 min`, `12 min` or `under 1 min`.

    Whole units, rounded down: a countdown never promises more time than there is.
    """
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, DAY)
    hours, rest = divmod(rest, HOUR)
    minutes = rest // MINUTE
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min"
    return "under 1 min"


def countdown(at: datetime, now: datetime) -> str:
    """Return how long until `at` as `in 12 min`, or `now` when it is due or past."""
    if at <= now:
        return "now"
    return f"in {span(at - now)}"
