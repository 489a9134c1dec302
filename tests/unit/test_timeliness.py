"""One classification of an obligation against its deadline, for reports, backtests and metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.common.timeliness import Timeliness, classify

DUE = datetime(2026, 11, 2, 10, tzinfo=UTC)
SECOND = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("fulfilled", "now", "closed", "expected"),
    [
        (DUE, DUE + SECOND, False, Timeliness.MET_ON_TIME),  # exactly at the deadline: met
        (DUE + SECOND, DUE + SECOND, False, Timeliness.MET_LATE),  # one second after: late
        (DUE - SECOND, DUE - 2 * SECOND, False, Timeliness.MET_ON_TIME),  # met before due
        (None, DUE - SECOND, False, Timeliness.NOT_YET_DUE),
        (None, DUE, False, Timeliness.OPEN_OVERDUE),  # judged from its due time on
        (None, DUE + SECOND, True, Timeliness.CLOSED_BY_HAND),
        (DUE + SECOND, DUE + SECOND, True, Timeliness.MET_LATE),  # a fulfilment wins
    ],
)
def test_an_obligation_is_judged_at_the_deadlines_boundary(
    fulfilled, now, closed, expected
) -> None:
    assert classify(DUE, fulfilled, now, closed_by_hand=closed) is expected
    # The same on seconds since the epoch, as the report counts.
    seconds = None if fulfilled is None else fulfilled.timestamp()
    assert classify(DUE.timestamp(), seconds, now.timestamp(), closed_by_hand=closed) is expected
