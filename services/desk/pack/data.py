"""What a pack is made from, read from the projection in a few queries.

Every query is narrowed to the pack's area when it has one (and the timeliness report's
rules for obligations without an area apply: they belong to no area's pack, only to the
partnership's). Times are bounded by `as_of`, the moment the pack is "as of": audit
records, dead letters and arrivals after it are not counted, so the same command with
the same `as_of` on the same data reads the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, literal, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.desk.pack.findings import PATTERNS
from services.desk.pack.period import Period
from services.desk.schema import (
    alerts,
    audit_records,
    dead_letters,
    notification_events,
    obligations,
    offender_managers,
    refused_fulfilments,
    source_days,
)
from services.desk.timeliness import ObligationState

OLDEST = 5  # open cases listed per rule

# A child's areas: those of its alerts and of the obligations its view lists.
_CHILD_AREAS = text(
    "SELECT subject_id, area FROM alerts WHERE subject_kind = 'child' "
    "AND subject_id = ANY(:ids) AND area IS NOT NULL "
    "UNION SELECT c.child_id, o.value ->> 'area' FROM children c "
    "CROSS JOIN LATERAL jsonb_array_elements(c.view -> 'obligations') AS o(value) "
    "WHERE c.child_id = ANY(:ids) AND o.value ->> 'area' IS NOT NULL"
)


@dataclass(frozen=True)
class OpenCase:
    """An obligation still open at `as_of` (past its due time for the oldest cases)."""

    rule: str
    area: str | None
    subject_kind: str | None
    subject_id: str | None
    triggered_at: datetime
    due_at: datetime


@dataclass
class PackData:
    """Everything the figures are computed from."""

    states: list[ObligationState] = field(default_factory=list)
    # (due, rule, seconds) of each fulfilment recorded late: the backdated ones.
    recorded_late: list[tuple[float, str, float]] = field(default_factory=list)
    open_counts: list[tuple[str | None, str, int, int]] = field(default_factory=list)
    oldest: list[OpenCase] = field(default_factory=list)
    patterns: dict[str, int] = field(default_factory=dict)
    escalations: dict[int, int] = field(default_factory=dict)  # level -> escalations
    top_level_alerts: int = 0  # alerts that reached level 3 in the period
    caseloads: list[tuple[str, str, int]] = field(default_factory=list)  # area, manager, n
    dead_letters: list[tuple[str | None, str, int]] = field(default_factory=list)
    refused: list[tuple[str, str, int]] = field(default_factory=list)  # rule, source, n
    sources: list[tuple[str, datetime | None, int]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    child_areas: dict[str, set[str]] = field(default_factory=dict)
    alert_areas: dict[str, str | None] = field(default_factory=dict)


def _area(column: Any, area: str | None) -> Any:  # noqa: ANN401 - SQLAlchemy expressions
    return literal(value=True) if area is None else column == area


async def read(
    connection: AsyncConnection,
    period: Period,
    history: list[Period],
    area: str | None,
    as_of: datetime,
) -> PackData:
    """Read what a pack of `period` (and its `history`) for `area` needs."""
    data = PackData()
    await _states(connection, data, (history or [period])[0].start, period.end, area)
    await read_open(connection, data, area, as_of)
    await _alerts(connection, data, period, area, as_of)
    await _capacity_and_quality(connection, data, period, area, as_of)
    await _audit(connection, data, period, as_of)
    return data


async def _states(
    connection: AsyncConnection, data: PackData, start: datetime, end: datetime, area: str | None
) -> None:
    o = obligations.c
    rows = await connection.execute(
        select(
            o.rule,
            o.area,
            o.triggered_at,
            o.due_at,
            o.fulfilled_at,
            o.closed_at,
            o.close_reason,
            o.recorded_late_by_seconds,
            o.transfer_requested_at,
            o.transfer_refused_at,
        ).where(o.due_at >= start, o.due_at < end, o.rule.is_not(None), _area(o.area, area))
    )
    for row in rows:
        late = row.recorded_late_by_seconds
        if late is not None:
            data.recorded_late.append((row.due_at.timestamp(), row.rule, float(late)))
        data.states.append(
            ObligationState(
                rule=row.rule,
                area=row.area,
                triggered=row.triggered_at.timestamp() if row.triggered_at else None,
                due=row.due_at.timestamp(),
                fulfilled=row.fulfilled_at.timestamp() if row.fulfilled_at else None,
                closed=row.closed_at.timestamp() if row.closed_at else None,
                reason=row.close_reason,
                recorded_late=late is not None,
                transfer_requested=row.transfer_requested_at is not None,
                transfer_refused=row.transfer_refused_at is not None,
            )
        )


async def read_open(
    connection: AsyncConnection, data: PackData, area: str | None, as_of: datetime
) -> None:
    """Read the open obligations per area and rule, and the oldest overdue per rule."""
    o = obligations.c
    still_open = and_(
        o.rule.is_not(None),
        o.fulfilled_at.is_(None),
        o.closed_at.is_(None),
        o.triggered_at <= as_of,
        _area(o.area, area),
    )
    counts = await connection.execute(
        select(
            o.area,
            o.rule,
            func.count(),
            func.count().filter(o.due_at <= as_of),
        )
        .where(still_open)
        .group_by(o.area, o.rule)
    )
    data.open_counts = sorted(
        ((r[0], r[1], int(r[2]), int(r[3])) for r in counts), key=lambda r: (r[0] or "", r[1])
    )
    ranked = (
        select(
            o.rule,
            o.area,
            o.subject_kind,
            o.subject_id,
            o.triggered_at,
            o.due_at,
            func.row_number()
            .over(partition_by=o.rule, order_by=(o.due_at, o.obligation_id))
            .label("rank"),
        )
        .where(still_open, o.due_at <= as_of)
        .subquery()
    )
    rows = await connection.execute(select(ranked).where(ranked.c.rank <= OLDEST))
    data.oldest = sorted(
        (
            OpenCase(r.rule, r.area, r.subject_kind, r.subject_id, r.triggered_at, r.due_at)
            for r in rows
        ),
        key=lambda c: (c.rule, c.due_at, c.subject_id or ""),
    )


async def _alerts(
    connection: AsyncConnection, data: PackData, period: Period, area: str | None, as_of: datetime
) -> None:
    a = alerts.c
    end = min(period.end, as_of)
    patterns = await connection.execute(
        select(a.rule, func.count())
        .where(
            a.rule.in_(PATTERNS),
            a.raised_at >= period.start,
            a.raised_at < end,
            _area(a.area, area),
        )
        .group_by(a.rule)
    )
    data.patterns = {rule: int(n) for rule, n in patterns}
    e = notification_events.c
    level = e.data["level"].as_integer()
    escalated = (
        select(e.alert_id, level.label("level"))
        .select_from(notification_events.join(alerts, alerts.c.alert_id == e.alert_id))
        .where(e.type == "alert.escalated", e.at >= period.start, e.at < end, _area(a.area, area))
        .subquery()
    )
    rows = await connection.execute(
        select(
            escalated.c.level, func.count(), func.count(escalated.c.alert_id.distinct())
        ).group_by(escalated.c.level)
    )
    for lvl, n, distinct in rows:
        data.escalations[int(lvl)] = int(n)
        if int(lvl) >= 3:  # noqa: PLR2004 - the strategic lead's level
            data.top_level_alerts += int(distinct)


async def _capacity_and_quality(
    connection: AsyncConnection, data: PackData, period: Period, area: str | None, as_of: datetime
) -> None:
    m = offender_managers.c
    rows = await connection.execute(
        select(m.area, m.manager_id, func.count())
        .where(m.assigned_at <= as_of, _area(m.area, area))
        .group_by(m.area, m.manager_id)
    )
    data.caseloads = sorted((r[0], r[1], int(r[2])) for r in rows)
    end = min(period.end, as_of)
    r = refused_fulfilments.c
    rows = await connection.execute(
        select(r.rule, r.source, func.count())
        .where(r.recorded_at >= period.start, r.recorded_at < end, _area(r.area, area))
        .group_by(r.rule, r.source)
    )
    data.refused = sorted((x[0], x[1], int(x[2])) for x in rows)
    if area is not None:
        return  # dead letters and sources belong to no area: the partnership's pack shows them
    d = dead_letters.c
    rows = await connection.execute(
        select(d.source, d.reason, func.count())
        .where(d.failed_at >= period.start, d.failed_at < end)
        .group_by(d.source, d.reason)
    )
    data.dead_letters = sorted(
        ((x[0], x[1], int(x[2])) for x in rows), key=lambda x: (x[0] or "", x[1])
    )
    s = source_days.c
    seen = func.max(
        text(
            "CASE WHEN source_days.last_at <= :as_of THEN source_days.last_at "
            "WHEN source_days.first_at <= :as_of THEN source_days.first_at END"
        ).bindparams(as_of=as_of)
    )
    days = func.count().filter(s.day >= period.start.date(), s.day < period.end.date())
    rows = await connection.execute(
        select(s.source, seen, days).where(s.first_at <= as_of).group_by(s.source)
    )
    data.sources = sorted((x[0], x[1], int(x[2])) for x in rows)


async def _audit(
    connection: AsyncConnection, data: PackData, period: Period, as_of: datetime
) -> None:
    r = audit_records.c
    end = min(period.end, as_of)
    rows = await connection.execute(
        select(r.action, r.actor, r.child_id, r.alert_id, r.principal)
        .where(r.at >= period.start, r.at < end)
        .order_by(r.at, r.source, r.record_id)
    )
    data.audit = [dict(row._mapping) for row in rows]  # noqa: SLF001 - SQLAlchemy's row mapping
    read_children = sorted({a["child_id"] for a in data.audit if a["child_id"]})
    alert_ids = sorted({a["alert_id"] for a in data.audit if a["alert_id"]})
    if read_children:
        found = await connection.execute(_CHILD_AREAS, {"ids": read_children})
        for child_id, child_area in found:
            if child_area is not None:
                data.child_areas.setdefault(str(child_id), set()).add(str(child_area))
    if alert_ids:
        areas = await connection.execute(
            select(alerts.c.alert_id, alerts.c.area).where(alerts.c.alert_id.in_(alert_ids))
        )
        data.alert_areas = {str(k): v for k, v in areas}
