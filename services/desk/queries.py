"""Reads of the projection: the alert list, the work queue, one alert, a child, staleness.

Plain functions of a connection and validated filters (`AlertFilter`), returning plain
values. Every query that lists alerts applies the caller's areas in SQL (an alert
without an area is seen only by callers for every area), so nothing outside them is
ever read into the process.
Paging is by keyset (the cursor holds the last row's sort key), so a page costs the
same at the millionth row as at the first, and uses the indexes of services.desk.schema.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, literal, literal_column, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.auth import Principal
from services.desk.errors import InvalidQuery
from services.desk.records import SEVERITY_RANK
from services.desk.schema import alerts, children, projector_offsets

MAX_PAGE = 500
STATUSES = ("open", "acknowledged", "resolved")  # in the order of ix_alerts_queue
SEVERITIES = ("critical", "high", "medium")


@dataclass(frozen=True)
class AlertFilter:
    """What a list may be narrowed by; None matches everything."""

    statuses: frozenset[str] | None = None
    rule: str | None = None
    severity: str | None = None
    area: str | None = None
    areas: frozenset[str] | None = None  # the caller's scope; None: every area
    subject_kind: str | None = None
    subject_id: str | None = None
    trigger_source: str | None = None
    trigger_id: str | None = None

    @classmethod
    def for_principal(cls, principal: Principal, **narrowed: Any) -> AlertFilter:  # noqa: ANN401
        """Return a filter scoped to what `principal` may see."""
        return cls(areas=principal.areas, **narrowed)

    def where(self) -> list[ColumnElement[bool]]:
        """Return the SQL conditions."""
        conditions: list[ColumnElement[bool]] = []
        if self.statuses is not None:
            # Rendered as constants (from the fixed set, so safe): the planner can then
            # prove the work queue's partial index applies, whatever plan it caches.
            chosen = [s for s in STATUSES if s in self.statuses]
            conditions.append(alerts.c.status.in_([literal_column(f"'{s}'") for s in chosen]))
        if self.rule is not None:
            conditions.append(alerts.c.rule == self.rule)
        if self.severity is not None:
            # By rank: the queue's index is ordered by it, so one severity is one range.
            conditions.append(alerts.c.severity_rank == SEVERITY_RANK.get(self.severity, -1))
        if self.area is not None:
            conditions.append(alerts.c.area == self.area)
        if self.areas is not None:
            # Fail closed: an alert without an area is seen by callers for every area only.
            conditions.append(alerts.c.area.in_(sorted(self.areas)))
        if self.subject_kind is not None:
            conditions.append(alerts.c.subject_kind == self.subject_kind)
        if self.subject_id is not None:
            conditions.append(alerts.c.subject_id == self.subject_id)
        if self.trigger_source is not None:
            conditions.append(alerts.c.trigger_source == self.trigger_source)
        if self.trigger_id is not None:
            conditions.append(alerts.c.trigger_id == self.trigger_id)
        return conditions


@dataclass(frozen=True)
class Summary:
    """An alert's line in a list."""

    alert_id: str
    rule: str
    severity: str
    severity_rank: int
    status: str
    level: int
    raised_at: datetime
    due_at: datetime | None
    overdue_since: datetime
    summary: str
    subject_kind: str
    subject_id: str
    area: str | None
    reopened: bool
    acknowledged_by: str | None
    resolved_at: datetime | None
    urgency_tier: int
    urgency_at: datetime
    trigger_source: str
    trigger_id: str
    next_step: dict[str, Any] | None
    """The view's `next_step` as JSON (UTC times): what the ladder does next, and whom."""

    def public(self) -> dict[str, Any]:
        """Return the JSON the API shows (notify's alert list, with the next step)."""
        return {
            "alert_id": self.alert_id,
            "rule": self.rule,
            "severity": self.severity,
            "status": self.status,
            "level": self.level,
            "raised_at": self.raised_at.isoformat(),
            "due_at": self.due_at.isoformat() if self.due_at else None,
            "summary": self.summary,
            "subject_kind": self.subject_kind,
            "subject_id": self.subject_id,
            "area": self.area,
            "next_step": self.next_step,
        }


_SUMMARY_COLUMNS = [
    *(alerts.c[f] for f in Summary.__dataclass_fields__ if f != "next_step"),
    alerts.c.view["next_step"].label("next_step"),
]


def _summary(row: Any) -> Summary:  # noqa: ANN401 - a Row
    return Summary(**{name: getattr(row, name) for name in Summary.__dataclass_fields__})


# -- cursors ------------------------------------------------------------------------------


def encode_cursor(values: list[Any]) -> str:
    """Return the opaque cursor that continues after a row with these sort keys."""
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[Any]:
    """Return the sort keys a cursor holds (422 for one this service did not issue)."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):
        raise InvalidQuery("the cursor is not one this service issued") from None
    if not isinstance(values, list) or len(values) != size:
        raise InvalidQuery("the cursor is not one this service issued")
    return values


def list_cursor(cursor: str) -> tuple[datetime, str]:
    """Return the (raised_at, alert_id) a list cursor continues after."""
    raised, alert_id = decode_cursor(cursor, 2)
    try:
        return datetime.fromisoformat(str(raised)), str(alert_id)
    except ValueError:
        raise InvalidQuery("the cursor is not one this service issued") from None


QueueKey = tuple[int, int, datetime, str]
"""Where the queue continues: (severity rank, urgency tier, urgency time, alert id)."""


def queue_cursor(cursor: str) -> QueueKey:
    """Return the queue's sort key a cursor continues after."""
    rank, tier, at, alert_id = decode_cursor(cursor, 4)
    try:
        return int(rank), int(tier), datetime.fromisoformat(str(at)), str(alert_id)
    except (ValueError, TypeError):
        raise InvalidQuery("the cursor is not one this service issued") from None


# -- lists --------------------------------------------------------------------------------


async def alert_page(
    connection: AsyncConnection,
    matches: AlertFilter,
    limit: int,
    after: tuple[datetime, str] | None = None,
) -> tuple[list[Summary], str | None]:
    """Return up to `limit` alerts, newest raise first (ties by id), after the cursor."""
    conditions = matches.where()
    if after is not None:
        raised, alert_id = after
        conditions.append(
            or_(
                alerts.c.raised_at < raised,
                and_(alerts.c.raised_at == raised, alerts.c.alert_id > alert_id),
            )
        )
    statement = (
        select(*_SUMMARY_COLUMNS)
        .where(*conditions)
        .order_by(alerts.c.raised_at.desc(), alerts.c.alert_id)
        .limit(limit + 1)
    )
    found = [_summary(r) for r in await connection.execute(statement)]
    if len(found) > limit:
        last = found[limit - 1]
        return found[:limit], encode_cursor([last.raised_at.isoformat(), last.alert_id])
    return found, None


async def queue_page(
    connection: AsyncConnection,
    matches: AlertFilter,
    limit: int,
    after: QueueKey | None = None,
) -> tuple[list[Summary], str | None]:
    """Return the work queue's page in urgency order (services.desk.urgency), by id last."""
    conditions = matches.where()
    if after is not None:
        rank, tier, at, alert_id = after
        # Descending rank, then ascending tier, time and id.
        conditions.append(
            or_(
                alerts.c.severity_rank < rank,
                and_(
                    alerts.c.severity_rank == rank,
                    tuple_(alerts.c.urgency_tier, alerts.c.urgency_at, alerts.c.alert_id)
                    > tuple_(literal(tier), literal(at), literal(alert_id)),
                ),
            )
        )
    statement = (
        select(*_SUMMARY_COLUMNS)
        .where(*conditions)
        .order_by(
            alerts.c.severity_rank.desc(),
            alerts.c.urgency_tier,
            alerts.c.urgency_at,
            alerts.c.alert_id,
        )
        .limit(limit + 1)
    )
    found = [_summary(r) for r in await connection.execute(statement)]
    if len(found) > limit:
        last = found[limit - 1]
        return found[:limit], encode_cursor(
            [last.severity_rank, last.urgency_tier, last.urgency_at.isoformat(), last.alert_id]
        )
    return found, None


async def severity_counts(connection: AsyncConnection, matches: AlertFilter) -> dict[str, int]:
    """Return how many alerts match, per severity, most severe first."""
    statement = (
        select(alerts.c.severity_rank, func.count())
        .where(*matches.where())
        .group_by(alerts.c.severity_rank)
    )
    counts = {int(row[0]): int(row[1]) for row in await connection.execute(statement)}
    return {severity: counts.get(SEVERITY_RANK[severity], 0) for severity in SEVERITIES}


async def choices(connection: AsyncConnection, matches: AlertFilter) -> dict[str, list[str]]:
    """Return the areas and rules present among matching alerts (the filters' options)."""
    areas = await connection.execute(
        select(alerts.c.area).where(*matches.where(), alerts.c.area.is_not(None)).distinct()
    )
    rules = await connection.execute(select(alerts.c.rule).where(*matches.where()).distinct())
    return {"area": sorted(r[0] for r in areas), "rule": sorted(r[0] for r in rules)}


# -- one thing --------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertDetail:
    """One alert: its line and its whole view (`schemas.views.AlertView` as JSON)."""

    summary: Summary
    view: dict[str, Any]


async def alert(connection: AsyncConnection, alert_id: str) -> AlertDetail | None:
    """Return one alert, or None when the projection has none by that id."""
    row = (
        await connection.execute(
            select(*_SUMMARY_COLUMNS, alerts.c.view).where(alerts.c.alert_id == alert_id)
        )
    ).first()
    return None if row is None else AlertDetail(_summary(row), dict(row.view))


async def alerts_about(
    connection: AsyncConnection, subject_kind: str, subject_id: str, matches: AlertFilter
) -> list[AlertDetail]:
    """Return the alerts about one subject the filter allows, newest first."""
    statement = (
        select(*_SUMMARY_COLUMNS, alerts.c.view)
        .where(
            alerts.c.subject_kind == subject_kind,
            alerts.c.subject_id == subject_id,
            *matches.where(),
        )
        .order_by(alerts.c.raised_at.desc(), alerts.c.alert_id)
    )
    return [AlertDetail(_summary(r), dict(r.view)) for r in await connection.execute(statement)]


async def handover(
    connection: AsyncConnection, matches: AlertFilter, start: datetime, end: datetime, limit: int
) -> tuple[list[AlertDetail], bool]:
    """Return what a shift from `start` to `end` handed over, and whether there was more.

    Every alert raised before the end that changed since the start (raised, acknowledged,
    re-opened, resolved: each writes its view) or is still open: the page sorts out
    which happened within the window. Oldest raise first; at most `limit`.
    """
    statement = (
        select(*_SUMMARY_COLUMNS, alerts.c.view)
        .where(
            *matches.where(),
            alerts.c.raised_at < end,
            or_(
                alerts.c.updated_at >= start,
                alerts.c.status.in_([literal_column("'open'"), literal_column("'acknowledged'")]),
            ),
        )
        .order_by(alerts.c.raised_at, alerts.c.alert_id)
        .limit(limit + 1)
    )
    found = [AlertDetail(_summary(r), dict(r.view)) for r in await connection.execute(statement)]
    return found[:limit], len(found) > limit


async def child(connection: AsyncConnection, child_id: str) -> dict[str, Any] | None:
    """Return a child's view (`schemas.views.ChildView` as JSON), or None."""
    row = (
        await connection.execute(select(children.c.view).where(children.c.child_id == child_id))
    ).first()
    return None if row is None else dict(row.view)


async def status_of(connection: AsyncConnection, alert_id: str) -> str | None:
    """Return an alert's status (to see an action applied), or None."""
    row = (
        await connection.execute(select(alerts.c.status).where(alerts.c.alert_id == alert_id))
    ).first()
    return None if row is None else str(row.status)


# -- freshness ----------------------------------------------------------------------------


async def caught_up_at(connection: AsyncConnection, topics: list[str]) -> datetime | None:
    """Return when every partition of `topics` the projector knows was last caught up.

    The oldest of the partitions' marks: the projection is at least as fresh as that.
    None when a partition has never been caught up (or none is known yet).
    """
    statement = select(
        func.min(projector_offsets.c.caught_up_at),
        func.count(),
        func.count(projector_offsets.c.caught_up_at),
    ).where(projector_offsets.c.topic.in_(topics))
    oldest, known, marked = (await connection.execute(statement)).one()
    if not known or marked < known:
        return None
    return oldest  # type: ignore[no-any-return]
