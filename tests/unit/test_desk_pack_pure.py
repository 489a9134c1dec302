"""The pack's pure parts: periods, when scheduled sends fall due, scopes, the trend chart."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from services.common.auth import Principal, Role
from services.desk.errors import Forbidden, InvalidQuery
from services.desk.pack.period import BadPeriod, parse_period
from services.desk.pack.policy import Assurance
from services.desk.pack.render import trend
from services.desk.pack.schedule import due_periods
from services.desk.pack.service import parse, scoped_area

LONDON = ZoneInfo("Europe/London")


def test_periods_and_the_ones_before() -> None:
    q3 = parse_period("2026-Q3")
    assert (q3.start, q3.end) == (
        datetime(2026, 7, 1, tzinfo=UTC),
        datetime(2026, 10, 1, tzinfo=UTC),
    )
    assert [p.label for p in q3.history(4)] == ["2025-Q3", "2025-Q4", "2026-Q1", "2026-Q2"]
    assert [p.label for p in parse_period("2026-02").history(3)] == [
        "2025-11",
        "2025-12",
        "2026-01",
    ]
    week = parse_period("2026-W01")
    assert week.start == datetime(2025, 12, 29, tzinfo=UTC)
    assert week.previous().label == "2025-W52"
    assert parse_period("2026-07").title == "July 2026"
    for bad in ("2026-13", "2026-Q5", "2026-W54", "26-07", "2026-07-01", "1969-01"):
        with pytest.raises(BadPeriod):
            parse_period(bad)


def test_the_digest_falls_due_on_the_policys_weekday_and_local_time() -> None:
    policy = Assurance()  # Mondays 07:00, the 3rd at 07:00, Europe/London
    # Monday 2 November 2026, 06:59 GMT: last week's digest not yet due.
    before = due_periods("digest", policy, LONDON, datetime(2026, 11, 2, 6, 59, tzinfo=UTC))
    assert before[-1].period.label == "2026-W43"
    after = due_periods("digest", policy, LONDON, datetime(2026, 11, 2, 7, 0, tzinfo=UTC))
    assert (after[-1].period.label, after[-1].at) == (
        "2026-W44",
        datetime(2026, 11, 2, 7, 0, tzinfo=UTC),
    )
    # British Summer Time: 07:00 in London is 06:00 UTC.
    summer = due_periods("digest", policy, LONDON, datetime(2026, 7, 6, 6, 0, tzinfo=UTC))
    assert summer[-1].at == datetime(2026, 7, 6, 6, 0, tzinfo=UTC)
    assert len(after) == 4  # the latest and the three before, for a desk that was down


def test_the_monthly_pack_falls_due_on_the_policys_day() -> None:
    policy = Assurance()
    due = due_periods("pack", policy, LONDON, datetime(2026, 11, 3, 7, 0, tzinfo=UTC))
    assert (due[-1].period.label, due[-1].at) == (
        "2026-10",
        datetime(2026, 11, 3, 7, 0, tzinfo=UTC),
    )
    assert (
        due_periods("pack", policy, LONDON, datetime(2026, 11, 3, 6, 59, tzinfo=UTC))[
            -1
        ].period.label
        == "2026-09"
    )


def test_scopes_fail_closed() -> None:
    def lead(areas: set[str] | None) -> Principal:
        return Principal(
            name="l",
            sources=(),
            roles=frozenset({Role.LEAD}),
            areas=None if areas is None else frozenset(areas),
        )

    assert scoped_area(lead({"north"}), None) == "north"
    assert scoped_area(lead({"north"}), "north") == "north"
    assert scoped_area(lead(None), None) is None
    assert scoped_area(lead(None), "south") == "south"
    with pytest.raises(Forbidden):
        scoped_area(lead({"north"}), "south")
    with pytest.raises(Forbidden):
        scoped_area(lead({"north", "east"}), None)


def test_the_moment_defaults_to_now_to_the_minute_and_is_never_ahead() -> None:
    now = datetime(2026, 10, 2, 9, 30, 41, tzinfo=UTC)
    period, as_of = parse("2026-Q3", None, now)
    assert (period.label, as_of) == ("2026-Q3", datetime(2026, 10, 2, 9, 30, tzinfo=UTC))
    for bad_period, bad_as_of in (
        (None, None),
        ("2026-W40", None),
        ("2026-Q3", "tomorrow"),
        ("2026-Q3", "2026-10-01T00:00:00"),
        ("2026-Q3", "2026-12-01T00:00:00Z"),
        ("2026-Q4", "2026-10-01T00:00:00Z"),
    ):
        with pytest.raises(InvalidQuery):
            parse(bad_period, bad_as_of, now)


def test_the_trend_chart_says_its_figures_in_words() -> None:
    row = {
        "rule": "welfare-check",
        "worse": True,
        "trend": [
            {"period": "2026-Q1", "on_time_percent": None},
            {"period": "2026-Q2", "on_time_percent": 90.0},
            {"period": "2026-Q3", "on_time_percent": 45.5},
        ],
    }
    svg = str(trend(row))
    assert svg.startswith('<svg role="img" aria-label="welfare-check, % met on time by period:')
    assert "2026-Q1 –; 2026-Q2 90.0%; 2026-Q3 45.5%" in svg  # noqa: RUF001 - the dash shown
    assert "<title>" in svg
    assert svg.count("<rect") == 3
    assert "#d4351c" in svg  # the period that got worse stands out
