"""Whether an obligation was met in time: one classification for reports, backtests and metrics.

An obligation is *met on time* when its fulfilment happened at or before its due time
(exactly at the deadline counts as met), *met late* after it; a closure by hand is never
a fulfilment; one with neither is *not yet due* while its due time is ahead of `now`, and
*open overdue* from its due time on.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TypeVar


class Timeliness(StrEnum):
    """Where an obligation stands against its deadline."""

    MET_ON_TIME = "met_on_time"
    MET_LATE = "met_late"
    OPEN_OVERDUE = "open_overdue"
    CLOSED_BY_HAND = "closed_by_hand"
    NOT_YET_DUE = "not_yet_due"


# Datetimes, or seconds since the epoch where a report counts many thousands of them.
Moment = TypeVar("Moment", datetime, float)


def classify(
    due: Moment, fulfilled: Moment | None, now: Moment, *, closed_by_hand: bool = False
) -> Timeliness:
    """Classify an obligation due at `due`, fulfilled at `fulfilled` (if ever), as of `now`.

    A fulfilment wins over a closure by hand: it is the fact the rule asked for.
    """
    if fulfilled is not None:
        return Timeliness.MET_ON_TIME if fulfilled <= due else Timeliness.MET_LATE
    if closed_by_hand:
        return Timeliness.CLOSED_BY_HAND
    return Timeliness.NOT_YET_DUE if due > now else Timeliness.OPEN_OVERDUE
