"""The timeliness report from SQL: its query, its representation, its figures.

`GET /v1/reports/timeliness` and the console's page take the same parameters
(`from`, `to`, `rule`, `area`, `over`, `format`); the obligations due in the period are
read from the projected `obligations` table (the caller's areas applied in SQL) and
counted by the pure `services.desk.timeliness.timeliness`, in a thread: a year of a
large force's obligations takes a moment to count, and the event loop serves meanwhile.

The report forgets a finished obligation (fulfilled, or closed by hand) once its last
date is older than `DESK_REPORTS__RETENTION_DAYS` (three years): `prune` deletes them in
SQL; an open obligation is kept however old.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.audit import is_identifier
from services.common.auth import Principal
from services.common.durations import parse_duration
from services.desk.errors import InvalidQuery
from services.desk.schema import obligations
from services.desk.timeliness import ObligationState, Query, Report, timeliness

DEFAULT_OVER = timedelta(days=25)
DEFAULT_MONTHS = 6


def parse_query(query: Any, now: datetime) -> Query:  # noqa: ANN401 - aiohttp's MultiDict
    """Return the report's query from `from`, `to`, `rule`, `area` and `over`.

    `from` and `to` are dates (`2026-01-01`, midnight UTC) or RFC 3339 times; the period
    is [from, to). Without them: the last six whole months and the current one. Raises
    InvalidQuery (a 422) for anything else, extreme dates and durations included.
    """
    try:
        return _parse_query(query, now)
    except OverflowError:
        raise InvalidQuery("from, to or over is out of range") from None


def _parse_query(query: Any, now: datetime) -> Query:  # noqa: ANN401 - aiohttp's MultiDict
    end = _moment(query.get("to"), "to")
    if end is None:
        end = _month_start(now, 1)
    start = _moment(query.get("from"), "from")
    if start is None:
        start = _month_start(end - timedelta(days=1), -DEFAULT_MONTHS)
    if start >= end:
        raise InvalidQuery("from must be before to")
    raw_over = query.get("over") or None
    try:
        over = parse_duration(raw_over) if raw_over is not None else DEFAULT_OVER
    except ValueError:
        raise InvalidQuery("over must be a duration such as 25d, 36h or 14d") from None
    if over <= timedelta(0):
        raise InvalidQuery("over must be more than 0s")
    rule, area = query.get("rule") or None, query.get("area") or None
    for name, value in (("rule", rule), ("area", area)):
        # Identifiers only: they are echoed in the answer, so free text must not get in.
        if value is not None and not is_identifier(value):
            raise InvalidQuery(f"{name} must be an identifier (letters, digits, . _ : -)")
    return Query(start=start, end=end, over=over, rule=rule, area=area)


def _moment(text: str | None, name: str) -> datetime | None:
    if not text:
        return None
    try:
        if len(text) == len("2026-01-01"):
            return datetime.combine(date.fromisoformat(text), time(), UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidQuery(f"{name} must be a date (2026-01-01) or an RFC 3339 time") from None
    if moment.utcoffset() is None:
        raise InvalidQuery(f"{name}: a time needs an offset (Z or +01:00)")
    return moment.astimezone(UTC)


def _month_start(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def representation(fmt: str | None, accept: str | None) -> str:
    """Return `json`, `csv` or `html`: `format=` wins, then the Accept header, then JSON."""
    if fmt is not None:
        if fmt not in {"json", "csv", "html"}:
            raise InvalidQuery("format must be json, csv or html")
        return fmt
    accept = (accept or "").lower()
    if "text/csv" in accept:
        return "csv"
    if "text/html" in accept:
        return "html"
    return "json"


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


async def states(
    connection: AsyncConnection, query: Query, principal: Principal
) -> list[ObligationState]:
    """Return the obligations due in the query's period that the caller may see."""
    conditions = [
        obligations.c.due_at >= query.start,
        obligations.c.due_at < query.end,
        obligations.c.rule.is_not(None),
    ]
    if query.rule is not None:
        conditions.append(obligations.c.rule == query.rule)
    if query.area is not None:
        conditions.append(obligations.c.area == query.area)
    if principal.areas is not None:
        conditions.append(
            obligations.c.area.in_(sorted(principal.areas))  # fail closed: no area, no row
        )
    result = await connection.execute(
        select(
            obligations.c.rule,
            obligations.c.area,
            obligations.c.triggered_at,
            obligations.c.due_at,
            obligations.c.fulfilled_at,
            obligations.c.closed_at,
            obligations.c.close_reason,
            obligations.c.recorded_late_by_seconds,
            obligations.c.transfer_requested_at,
            obligations.c.transfer_refused_at,
        ).where(*conditions)
    )
    return [
        ObligationState(
            rule=row.rule,
            area=row.area,
            triggered=_epoch(row.triggered_at),
            due=_epoch(row.due_at),
            fulfilled=_epoch(row.fulfilled_at),
            closed=_epoch(row.closed_at),
            reason=row.close_reason,
            recorded_late=row.recorded_late_by_seconds is not None,
            transfer_requested=row.transfer_requested_at is not None,
            transfer_refused=row.transfer_refused_at is not None,
        )
        for row in result
    ]


async def report(
    connection: AsyncConnection, query: Query, principal: Principal, now: datetime
) -> Report:
    """Return the report of what `query` asks for, of the areas `principal` may see."""
    found = await states(connection, query, principal)
    return await asyncio.to_thread(timeliness, found, query, now, principal.may_see_area)


async def prune(connection: AsyncConnection, horizon: datetime) -> int:
    """Delete finished obligations whose last date is before `horizon`; return how many.

    Finished: fulfilled, or closed by hand (a closure of an alert no outcome described
    included). The last of the due, fulfilment and closure times decides; an open
    obligation is never deleted.
    """
    o = obligations.c
    result = await connection.execute(
        delete(obligations).where(
            or_(o.fulfilled_at.is_not(None), o.closed_at.is_not(None)),
            or_(o.due_at < horizon, o.due_at.is_(None)),
            func.greatest(o.due_at, o.fulfilled_at, o.closed_at) < horizon,
        )
    )
    return int(result.rowcount or 0)
