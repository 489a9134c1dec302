"""The audit search, for the role `audit` (a data-protection officer).

Who read or acted on a given child, alert or the timeliness report, or everything one
principal (a token's name) did, in a period, newest first. Exactly one of `child_id`,
`alert_id`, `principal` or `report=timeliness` is asked for; the period is `from` to
`to` (dates or RFC 3339 times, default the last 30 days). A child's search includes the
acts on the alerts about that child (acknowledgements and resolutions name the alert,
not the child). JSON, CSV or the console's page; the search itself is audited
(`audit.searched`, naming what was searched for) before anything is answered.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.audit import AuditAction
from services.common.audit import is_identifier
from services.common.csv_cells import safe_row
from services.desk.errors import InvalidQuery
from services.desk.queries import decode_cursor, encode_cursor
from services.desk.schema import alerts, audit_records

DEFAULT_DAYS = 30
DEFAULT_LIMIT = 200
MAX_LIMIT = 1000
KINDS = ("child_id", "alert_id", "principal", "report")
_ACTOR = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True)
class AuditQuery:
    """One search: what about, the period [start, end), the page."""

    kind: str
    value: str | None
    start: datetime
    end: datetime
    limit: int
    after: tuple[datetime, str, str] | None = None

    def params(self) -> dict[str, str]:
        """Return the query string that asks for this search (for links)."""
        about = {self.kind: self.value or "timeliness"}
        return {**about, "from": self.start.isoformat(), "to": self.end.isoformat()}


def _moment(text: str | None, name: str) -> datetime | None:
    if not text:
        return None
    try:
        if len(text) == len("2026-01-01"):
            return datetime.combine(date.fromisoformat(text), time(), UTC)
        moment = datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        raise InvalidQuery(f"{name} must be a date (2026-01-01) or an RFC 3339 time") from None
    if moment.utcoffset() is None:
        raise InvalidQuery(f"{name}: a time needs an offset (Z or +01:00)")
    return moment.astimezone(UTC)


def _about(query: Any) -> tuple[str, str | None]:  # noqa: ANN401 - aiohttp's MultiDict
    asked = [k for k in KINDS if query.get(k)]
    if len(asked) != 1:
        raise InvalidQuery(
            "give exactly one of child_id, alert_id, principal or report",
            errors=[{"loc": "(query)", "msg": "one of child_id, alert_id, principal, report"}],
        )
    kind = asked[0]
    value: str = query.get(kind)
    if kind == "report":
        if value != "timeliness":
            raise InvalidQuery(
                "report must be timeliness", errors=[{"loc": "report", "msg": "unknown report"}]
            )
        return kind, None
    if kind == "principal":
        if not _ACTOR.fullmatch(value):
            raise InvalidQuery(
                "principal must be a token name",
                errors=[{"loc": "principal", "msg": "not a token name"}],
            )
    elif not is_identifier(value):
        raise InvalidQuery(
            f"{kind} must be an identifier", errors=[{"loc": kind, "msg": "not an identifier"}]
        )
    return kind, value


def parse(query: Any, now: datetime) -> AuditQuery:  # noqa: ANN401 - aiohttp's MultiDict
    """Return the search a query string asks for, or raise InvalidQuery naming the problem."""
    kind, value = _about(query)
    # By default up to now, the records of this very second included.
    end = _moment(query.get("to"), "to") or now + timedelta(seconds=1)
    start = _moment(query.get("from"), "from") or end - timedelta(days=DEFAULT_DAYS)
    if start >= end:
        raise InvalidQuery("from must be before to")
    raw = query.get("limit", str(DEFAULT_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidQuery(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    after = None
    if query.get("cursor"):
        at, source, record_id = decode_cursor(query.get("cursor"), 3)
        try:
            after = (datetime.fromisoformat(str(at)), str(source), str(record_id))
        except ValueError:
            raise InvalidQuery("the cursor is not one this service issued") from None
    return AuditQuery(kind=kind, value=value, start=start, end=end, limit=int(raw), after=after)


def audited_as(search: AuditQuery) -> dict[str, str | None]:
    """Return the ids the search's own audit record names."""
    return {
        "child_id": search.value if search.kind == "child_id" else None,
        "alert_id": search.value if search.kind == "alert_id" else None,
        "searched_principal": search.value if search.kind == "principal" else None,
    }


_SERVICES = {
    "urn:safeguard:ingest",
    "urn:safeguard:risk",
    "urn:safeguard:notify",
    "urn:safeguard:desk",
}


def _row(row: Any) -> dict[str, Any]:  # noqa: ANN401 - a Row
    return {
        "at": row.at.isoformat(),
        "actor": row.actor,
        "action": row.action,
        "service": row.source.rsplit(":", 1)[-1] if row.source in _SERVICES else row.source,
        "child_id": row.child_id,
        "alert_id": row.alert_id,
        "event": {"source": row.event_source, "id": row.event_id} if row.event_id else None,
        "principal": row.principal,
        "record_id": row.record_id,
    }


async def search(
    connection: AsyncConnection, query: AuditQuery
) -> tuple[list[dict[str, Any]], str | None]:
    """Return a page of matching records, newest first, and the next page's cursor."""
    t = audit_records.c
    conditions = [t.at >= query.start, t.at < query.end]
    if query.kind == "child_id":
        about_child = select(alerts.c.alert_id).where(
            alerts.c.subject_kind == "child", alerts.c.subject_id == query.value
        )
        conditions.append(or_(t.child_id == query.value, t.alert_id.in_(about_child)))
    elif query.kind == "alert_id":
        conditions.append(t.alert_id == query.value)
    elif query.kind == "principal":
        conditions.append(t.actor == query.value)
    else:
        conditions.append(t.action == AuditAction.REPORT_VIEWED.value)
    if query.after is not None:
        at, source, record_id = query.after
        conditions.append(
            or_(
                t.at < at,
                and_(t.at == at, tuple_(t.source, t.record_id) > tuple_(source, record_id)),
            )
        )
    statement = (
        select(audit_records)
        .where(*conditions)
        .order_by(t.at.desc(), t.source, t.record_id)
        .limit(query.limit + 1)
    )
    rows = list(await connection.execute(statement))
    cursor = None
    if len(rows) > query.limit:
        last = rows[query.limit - 1]
        cursor = encode_cursor([last.at.isoformat(), last.source, last.record_id])
        rows = rows[: query.limit]
    return [_row(r) for r in rows], cursor


CSV_COLUMNS = (
    "at",
    "actor",
    "action",
    "service",
    "child_id",
    "alert_id",
    "event",
    "principal",
    "record_id",
)


def to_csv(records: list[dict[str, Any]]) -> str:
    """Return the records as CSV, one line each (an event as `source|id`)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for record in records:
        event = record["event"]
        values = {**record, "event": f"{event['source']}|{event['id']}" if event else ""}
        writer.writerow(safe_row(["" if values[c] is None else values[c] for c in CSV_COLUMNS]))
    return out.getvalue()
