"""Whether an obligation was met in time: one classification for reports, backtests and metrics.

An obligation is *met on time* when its fulfilment happened at or before its due time
(exactly at the deadline counts as met), *met late* after it. A fulfilment on time as it
claims but recorded after the deadline, more than the policy's tolerance after the time
it claims, is *met, recorded late*: reported apart, never counted as on time (the caller
says so with `recorded_late`, from `recorded_late_by`). A closure by hand is never
a fulfilment; one with neither is *not yet due* while its due time is ahead of `now`, and
*open overdue* from its due time on.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import TypeVar


class Timeliness(StrEnum):
    """Where an obligation stands against its deadline."""

    MET_ON_TIME = "met_on_time"
    MET_RECORDED_LATE = "met_recorded_late"
    MET_LATE = "met_late"
    OPEN_OVERDUE = "open_overdue"
    CLOSED_BY_HAND = "closed_by_hand"
    NOT_YET_DUE = "not_yet_due"


# Datetimes, or seconds since the epoch where a report counts many thousands of them.
Moment = TypeVar("Moment", datetime, float)


def classify(
    due: Moment,
    fulfilled: Moment | None,
    now: Moment,
    *,
    closed_by_hand: bool = False,
    recorded_late: bool = False,
) -> Timeliness:
    """Classify an obligation due at `due`, fulfilled at `fulfilled` (if ever), as of `now`.

    A fulfilment wins over a closure by hand: it is the fact the rule asked for.
    `recorded_late`: the fulfilment was recorded late (`recorded_late_by`), so one on
    time as claimed is `MET_RECORDED_LATE`.
    """
    if fulfilled is not None:
        if fulfilled > due:
            return Timeliness.MET_LATE
        return Timeliness.MET_RECORDED_LATE if recorded_late else Timeliness.MET_ON_TIME
    if closed_by_hand:
        return Timeliness.CLOSED_BY_HAND
    return Timeliness.NOT_YET_DUE if due > now else Timeliness.OPEN_OVERDUE


def recorded_late_by(
    due: datetime, fulfilled: datetime, recorded: datetime, tolerance: timedelta
) -> int | None:
    """Return how long after the deadline an on-time fulfilment was recorded, when reported apart.

    None unless the fulfilment claims a time at or before `due`, was recorded after `due`,
    and more than `tolerance` after the time it claims: a backdated or very late record
    is never silently on time.
    """
    if fulfilled > due or recorded <= due or recorded - fulfilled <= tolerance:
        return None
    return max(1, int((recorded - due).total_seconds()))
