"""Reporting periods: months (`2026-07`), quarters (`2026-Q3`) and ISO weeks (`2026-W36`).

Periods are in UTC, as the timeliness report's are (an obligation belongs to the period
of its due time). Each knows its predecessors, for the trend beside every figure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


class BadPeriod(ValueError):
    """A period that is none of `2026-07`, `2026-Q3` or `2026-W36`."""


@dataclass(frozen=True, order=True)
class Period:
    """A half-open span [start, end) of UTC time with its label."""

    start: datetime
    end: datetime
    label: str
    kind: str  # month | quarter | week

    def previous(self, count: int = 1) -> Period:
        """Return the period `count` before this one, of the same kind."""
        if self.kind == "week":
            return week_of(self.start - timedelta(weeks=count))
        months = 3 if self.kind == "quarter" else 1
        index = self.start.year * 12 + self.start.month - 1 - count * months
        first = datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)
        return quarter_of(first) if self.kind == "quarter" else month_of(first)

    def history(self, count: int) -> list[Period]:
        """Return the `count` periods before this one, oldest first."""
        return [self.previous(n) for n in range(count, 0, -1)]

    @property
    def title(self) -> str:
        """Say the period for people: `July 2026`, `2026 Q3 (July to September)`."""
        if self.kind == "month":
            return self.start.strftime("%B %Y")
        if self.kind == "quarter":
            last = self.end - timedelta(days=1)
            return f"{self.label} ({self.start:%B} to {last:%B %Y})"
        last = self.end - timedelta(days=1)
        return f"week {self.label} ({self.start:%d %b} to {last:%d %b %Y})"


def month_of(moment: datetime) -> Period:
    """Return the month holding `moment`."""
    start = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    index = moment.year * 12 + moment.month
    end = datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)
    return Period(start, end, f"{moment.year:04d}-{moment.month:02d}", "month")


def quarter_of(moment: datetime) -> Period:
    """Return the quarter holding `moment`."""
    quarter = (moment.month - 1) // 3
    start = datetime(moment.year, quarter * 3 + 1, 1, tzinfo=UTC)
    index = moment.year * 12 + quarter * 3 + 3
    end = datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)
    return Period(start, end, f"{moment.year:04d}-Q{quarter + 1}", "quarter")


def week_of(moment: datetime) -> Period:
    """Return the ISO week (Monday to Monday, UTC) holding `moment`."""
    day = moment.astimezone(UTC).date()
    monday = day - timedelta(days=day.weekday())
    start = datetime.combine(monday, datetime.min.time(), UTC)
    year, week, _ = monday.isocalendar()
    return Period(start, start + timedelta(weeks=1), f"{year:04d}-W{week:02d}", "week")


def parse_period(text: str) -> Period:
    """Return the period `text` names; BadPeriod for anything else."""
    if match := _MONTH.fullmatch(text):
        year, month = int(match[1]), int(match[2])
        if 1 <= month <= 12 and year >= 1970:  # noqa: PLR2004 - months of a year
            return month_of(datetime(year, month, 1, tzinfo=UTC))
    elif match := _QUARTER.fullmatch(text):
        year, quarter = int(match[1]), int(match[2])
        if year >= 1970:  # noqa: PLR2004 - the epoch
            return quarter_of(datetime(year, quarter * 3 - 2, 1, tzinfo=UTC))
    elif match := _WEEK.fullmatch(text):
        year, week = int(match[1]), int(match[2])
        try:
            monday = date.fromisocalendar(year, week, 1)
        except ValueError:
            pass
        else:
            if year >= 1970:  # noqa: PLR2004 - the epoch
                return week_of(datetime.combine(monday, datetime.min.time(), UTC))
    raise BadPeriod("period must be a month (2026-07), a quarter (2026-Q3) or a week (2026-W36)")
