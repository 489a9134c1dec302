"""The desk's timeliness report, pure: the inspectors' known set, backdated fulfilments
counted apart, custody transfers requested, made and refused, and the CSV.

`KNOWN` and `QUERY` are the desk's own known set (the API test projects it through the
real projector and expects these figures).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from services.desk.timeliness import ObligationState, Query, timeliness, to_csv

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
    assert row["met_recorded_late"] == 0
    assert row["closed_by_hand_by_reason"] == {"duplicate": 1}
    assert row["not_yet_due"] == 1
    assert row["on_time_percent"] == 36.4
    assert row["lateness_median_seconds"] == 2 * 3600
    assert row["lateness_p90_seconds"] == 29 * 86400
    assert row["sentence"] == "4 of 10 over 25 days"
    assert "transfers" not in row


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
