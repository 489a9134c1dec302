"""The timeliness report's pure parts (the desk's): the figures, the CSV, the page, the query."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from services.desk.errors import InvalidQuery
from services.desk.merge import reason_code
from services.desk.report_page import render_page
from services.desk.reports import parse_query, representation
from services.desk.timeliness import (
    ObligationState,
    Query,
    percentile,
    readable,
    sentence,
    timeliness,
    to_csv,
)

D = timedelta(days=1)
H = timedelta(hours=1)
NOW = datetime(2026, 2, 1, tzinfo=UTC)
RULE = "social-care-referral"


def obligation(
    due: datetime,
    *,
    fulfilled: datetime | None = None,
    closed: datetime | None = None,
    reason: str | None = None,
    rule: str = RULE,
    area: str | None = "north",
    window: timedelta = D,
    recorded_late: bool = False,
    requested: bool = False,
    refused: bool = False,
) -> ObligationState:
    return ObligationState(
        rule=rule,
        area=area,
        triggered=(due - window).timestamp(),
        due=due.timestamp(),
        fulfilled=fulfilled.timestamp() if fulfilled else None,
        closed=closed.timestamp() if closed else None,
        reason=reason,
        recorded_late=recorded_late,
        transfer_requested=requested,
        transfer_refused=refused,
    )


def jan(day: int) -> datetime:
    return datetime(2026, 1, day, 12, tzinfo=UTC)


# The inspection's finding, as a known set: of ten referrals (due in January, 24 h after
# the incident), four took over 25 days from the incident.
KNOWN = [
    # four referrals 26, 27, 30 and 40 days after the incident: 25, 26, 29, 39 days late
    obligation(jan(2), fulfilled=jan(2) + 25 * D),
    obligation(jan(3), fulfilled=jan(3) + 26 * D),
    obligation(jan(4), fulfilled=jan(4) + 29 * D),
    obligation(jan(5), fulfilled=jan(5) + 39 * D),
    # four on time (an hour early), one 2 hours late
    *[obligation(jan(d), fulfilled=jan(d) - H) for d in (6, 7, 8, 9)],
    obligation(jan(10), fulfilled=jan(10) + 2 * H),
    # still open, due 20 January: 11.5 days late at NOW, 12.5 days since the incident
    obligation(jan(20)),
    # closed by hand, never fulfilled: apart from the ten
    obligation(jan(11), closed=jan(12), reason="duplicate"),
    # open with time left (due in February): not judged yet
    obligation(datetime(2026, 2, 10, tzinfo=UTC)),
    # outside the period, another area, another rule
    obligation(datetime(2025, 12, 20, tzinfo=UTC), fulfilled=datetime(2025, 12, 20, tzinfo=UTC)),
    obligation(jan(6), fulfilled=jan(6) + 30 * D, area="south"),
    obligation(jan(6), fulfilled=jan(6), rule="welfare-check", window=12 * H),
]

QUERY = Query(
    start=datetime(2026, 1, 1, tzinfo=UTC),
    end=datetime(2026, 3, 1, tzinfo=UTC),
    over=25 * D,
    rule=RULE,
    area="north",
)


def test_the_known_set_gives_the_inspectors_figures() -> None:
    body = timeliness(KNOWN, QUERY, NOW).to_json()

    [row] = body["rows"]
    assert (row["rule"], row["area"]) == (RULE, "north")
    assert row["due"] == 11
    assert (row["met_on_time"], row["met_late"], row["open_overdue"]) == (4, 5, 1)
    assert row["closed_by_hand"] == 1
    assert row["closed_by_hand_by_reason"] == {"duplicate": 1}
    assert row["not_yet_due"] == 1
    assert row["on_time_percent"] == 36.4  # 4 of 11
    # lateness, sorted: 0 0 0 0 2h 11.5d 25d 26d 29d 39d (nearest rank: 5th and 9th)
    assert row["lateness_median_seconds"] == 2 * 3600
    assert row["lateness_p90_seconds"] == 29 * 86400
    assert (row["over"], row["measured"]) == (4, 10)
    assert row["sentence"] == "4 of 10 over 25 days"


def test_months_split_by_due_time_and_add_up() -> None:
    body = timeliness(KNOWN, QUERY, NOW).to_json()

    months = {m["month"]: m for m in body["months"]}
    assert set(months) == {"2026-01", "2026-02"}
    assert months["2026-01"]["due"] == 11
    assert months["2026-01"]["sentence"] == "4 of 10 over 25 days"
    assert months["2026-02"]["due"] == 0
    assert months["2026-02"]["not_yet_due"] == 1
    assert months["2026-02"]["on_time_percent"] is None
    assert body["total"]["due"] == sum(m["due"] for m in body["months"])


def test_without_filters_every_rule_and_area_in_the_period_counts() -> None:
    query = Query(start=QUERY.start, end=QUERY.end, over=25 * D)
    body = timeliness(KNOWN, query, NOW).to_json()

    keys = {(r["rule"], r["area"]) for r in body["rows"]}
    assert keys == {(RULE, "north"), (RULE, "south"), ("welfare-check", "north")}
    assert body["total"]["due"] == 13
    assert {r["rule"]: r["due"] for r in body["rules"]} == {RULE: 12, "welfare-check": 1}
    assert body["rules"][0]["sentence"] == "5 of 11 over 25 days"


def test_areas_the_caller_may_not_see_are_left_out() -> None:
    query = Query(start=QUERY.start, end=QUERY.end, over=25 * D)
    body = timeliness(KNOWN, query, NOW, visible=lambda area: area in {None, "south"}).to_json()

    assert [(r["rule"], r["area"]) for r in body["rows"]] == [(RULE, "south")]


def test_lateness_distribution_by_rule() -> None:
    body = timeliness(KNOWN, QUERY, NOW).to_json()

    buckets = {b["bucket"]: b["count"] for b in body["lateness_distribution"][RULE]}
    assert buckets == {
        "on time": 4,
        "up to 1 h": 0,
        "1 h to 1 d": 1,
        "1 to 7 d": 0,
        "7 to 25 d": 2,  # 11.5 days open, 25 days exactly
        "over 25 d": 3,
    }


def test_csv_parses_back_to_the_json_figures() -> None:
    report = timeliness(KNOWN, QUERY, NOW)
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))

    whole = rows[0]
    assert whole["period"] == "2026-01-01T00:00:00Z/2026-03-01T00:00:00Z"
    assert (whole["rule"], whole["area"], whole["due"]) == (RULE, "north", "11")
    assert whole["closed_by_hand_by_reason"] == "duplicate=1"
    assert whole["sentence"] == "4 of 10 over 25 days"
    assert [r["period"] for r in rows[1:]] == ["2026-01", "2026-02"]
    assert rows[2]["on_time_percent"] == ""


def test_percentile_and_sentence() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 90) == 3.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.0
    assert percentile([float(n) for n in range(1, 11)], 90) == 9.0
    assert sentence(1, 1, timedelta(days=1)) == "1 of 1 over 1 day"
    assert sentence(0, 3, timedelta(hours=36)) == "0 of 3 over 1d12h"


def test_reason_codes_are_bounded() -> None:
    assert reason_code(None) == "unspecified"
    assert reason_code("no_further_action") == "no_further_action"
    assert reason_code("Mrs Smith moved away") == "other"


def test_lateness_for_people() -> None:
    assert [readable(s) for s in (None, 0.0, -5.0, 90.0, 7.5 * 3600, 31.2 * 86400)] == [
        "-",
        "0",
        "0",
        "2 min",
        "7.5 h",
        "31.2 d",
    ]


def test_the_page_draws_each_rule_and_escapes_what_it_shows() -> None:
    odd = obligation(jan(6), fulfilled=jan(6), rule="<script>", area="<b>")
    page = render_page(timeliness([*KNOWN, odd], Query(QUERY.start, QUERY.end, 25 * D), NOW))

    assert "4 of 10 over 25 days" in page
    assert page.count('aria-label="Percent met on time by month') == 3
    assert page.count('aria-label="Lateness distribution') == 3
    assert "<script>" not in page
    assert "&lt;script&gt;" in page


def test_query_parameters() -> None:
    query = parse_query(
        {"from": "2026-01-01", "to": "2026-07-01T00:00:00+01:00", "over": "14d"}, NOW
    )
    assert (query.start, query.end) == (
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 6, 30, 23, tzinfo=UTC),
    )
    assert query.over == 14 * D
    default = parse_query({}, NOW)  # 1 February: August to February, February included
    assert (default.start, default.end, default.over) == (
        datetime(2025, 8, 1, tzinfo=UTC),
        datetime(2026, 3, 1, tzinfo=UTC),
        25 * D,
    )
    for bad in (
        {"from": "2026-07-01", "to": "2026-01-01"},
        {"from": "yesterday"},
        {"to": "2026-01-01T00:00:00"},
        {"over": "0d"},
        {"over": "a while"},
        {"over": "99999999999999999999d"},
        {"to": "0001-01-01"},
        {"rule": "Mrs Smith"},
    ):
        with pytest.raises(InvalidQuery, match=r"from|to|over|rule"):
            parse_query(bad, NOW)


def test_representation_by_format_then_accept() -> None:
    assert representation(None, None) == "json"
    assert representation(None, "text/csv") == "csv"
    assert representation(None, "text/html,application/xhtml+xml") == "html"
    assert representation("json", "text/csv") == "json"
    with pytest.raises(InvalidQuery, match="format"):
        representation("xml", None)


def test_a_backdated_fulfilment_is_met_recorded_late_never_on_time() -> None:
    states = [
        obligation(jan(6), fulfilled=jan(6) - H),
        obligation(jan(7), fulfilled=jan(7) - H, recorded_late=True),
        # Recorded late but late as claimed too: late is late.
        obligation(jan(8), fulfilled=jan(8) + H, recorded_late=True),
    ]
    row = timeliness(states, QUERY, NOW).to_json()["rows"][0]

    assert (row["due"], row["met_on_time"], row["met_recorded_late"], row["met_late"]) == (
        3,
        1,
        1,
        1,
    )
    assert row["on_time_percent"] == 33.3
    # On time as claimed: no lateness past the due time, but measured like any met one.
    assert row["measured"] == 3
    assert row["lateness_median_seconds"] == 0


def test_custody_transfers_requested_made_and_refused() -> None:
    custody = "child-in-custody"
    states = [
        # requested and made on time
        obligation(jan(2), fulfilled=jan(2) - H, rule=custody, window=4 * H, requested=True),
        # requested, refused, still held
        obligation(jan(3), rule=custody, window=4 * H, requested=True, refused=True),
        # refused first, made late
        obligation(jan(4), fulfilled=jan(4) + H, rule=custody, window=4 * H, refused=True),
        # never requested, closed by hand (bail granted after all)
        obligation(jan(5), closed=jan(5) + H, reason="other", rule=custody, window=4 * H),
        # not yet due: counted in the transfers all the same
        obligation(datetime(2026, 2, 20, tzinfo=UTC), rule=custody, requested=True),
    ]
    query = Query(start=QUERY.start, end=QUERY.end, over=25 * D)
    body = timeliness(states, query, NOW).to_json()

    [row] = body["rows"]
    assert row["transfers"] == {"requested": 3, "made": 2, "refused": 2}
    assert body["total"]["transfers"] == row["transfers"]
    assert (row["met_on_time"], row["met_late"], row["open_overdue"], row["closed_by_hand"]) == (
        1,
        1,
        1,
        1,
    )
    lines = list(csv.DictReader(io.StringIO(to_csv(timeliness(states, query, NOW)))))
    assert (lines[0]["transfers_requested"], lines[0]["transfers_made"]) == ("3", "2")
    assert lines[0]["transfers_refused"] == "2"


def test_csv_carries_the_recorded_late_column() -> None:
    states = [obligation(jan(7), fulfilled=jan(7) - H, recorded_late=True)]
    [line] = list(csv.DictReader(io.StringIO(to_csv(timeliness(states, QUERY, NOW)))))[:1]
    assert line["met_recorded_late"] == "1"
    assert line["met_on_time"] == "0"
    assert line["transfers_requested"] == ""
