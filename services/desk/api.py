"""The desk's JSON API: alerts and acting on them, children, the report, the audit search.

Alerts are listed and read, acknowledged and resolved; a child's chronology, the
timeliness report and the audit search are read.

Every read is answered from the projection and recorded on the audit topic before it is
served (503 when the broker does not take the record); reads and records are scoped to
the token's areas. The shapes are those of notify's and risk's APIs they replace
(docs/contract.md section 6), complete across every partition.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from schemas.audit import AuditAction
from schemas.views import AlertView, ChildView
from services.common.audit import is_identifier
from services.common.auth import Principal, Role
from services.common.bodies import BodyRefused, parse_body
from services.desk import audit_search, present, queries, reports
from services.desk.actions import MAX_BODY_BYTES, ActionRequest
from services.desk.app import DESK_KEY, Desk
from services.desk.audit import listing
from services.desk.errors import InvalidBody, InvalidQuery, NotFound
from services.desk.report_page import render_page
from services.desk.timeliness import to_csv
from services.desk.web import json_response, out_of_scope, principal_of

DEFAULT_PAGE = 100
# A CloudEvents id as the contract allows it (schemas.envelope `CloudEventId`).
_EVENT_ID = re.compile(r"^[A-Za-z0-9._:/-]{1,128}$")


def add_routes(app: web.Application) -> None:
    """Register the API's routes."""
    app.router.add_get("/v1/alerts", list_alerts)
    app.router.add_get("/v1/alerts/{alert_id}", get_alert)
    app.router.add_post("/v1/alerts/{alert_id}/ack", acknowledge)
    app.router.add_post("/v1/alerts/{alert_id}/resolve", resolve)
    app.router.add_get("/v1/children/{child_id}", get_child)
    app.router.add_get("/v1/reports/timeliness", timeliness_report)
    app.router.add_get("/v1/audit", search_audit)


def _identifier(value: str | None, name: str) -> str | None:
    if value is None or value == "":
        return None
    # Identifiers only: a filter is never echoed, but free text has no business here.
    if not is_identifier(value):
        raise InvalidQuery(
            f"{name} must be an identifier", errors=[{"loc": name, "msg": "not an identifier"}]
        )
    return value


ORDERS = ("raised", "urgency")
SUBJECT_KINDS = ("child", "offender", "enquiry")
# The queue's statuses: urgency orders what still needs someone.
QUEUE = frozenset({"open", "acknowledged"})


def _choice(query: Any, name: str, allowed: tuple[str, ...]) -> str | None:  # noqa: ANN401 - a MultiDict
    value = query.get(name)
    if value is not None and value not in allowed:
        raise InvalidQuery(
            f"{name} must be one of {sorted(allowed)}",
            errors=[{"loc": name, "msg": f"unknown {name.replace('_', ' ')}"}],
        )
    return value  # type: ignore[no-any-return]


# The list's query parameters that narrow it, recorded with the ids it returned.
LIST_FILTERS = (
    "status",
    "rule",
    "severity",
    "area",
    "order",
    "subject_kind",
    "subject_id",
    "trigger_id",
)


def alert_filter(query: Any, principal: Principal) -> queries.AlertFilter:  # noqa: ANN401 - a MultiDict
    """Return the list's filter from the query string (422 for a bad one).

    Ordered by urgency (`order=urgency`) the list is the work queue: open and
    acknowledged alerts only, unless `status` names one of them.
    """
    status = _choice(query, "status", queries.STATUSES)
    severity = _choice(query, "severity", queries.SEVERITIES)
    order = _choice(query, "order", ORDERS) or "raised"
    if order == "urgency" and status == "resolved":
        raise InvalidQuery(
            "resolved alerts have no urgency: list them with order=raised",
            errors=[{"loc": "order", "msg": "not with status=resolved"}],
        )
    statuses = frozenset({status}) if status else (QUEUE if order == "urgency" else None)
    subject_id = _identifier(query.get("subject_id"), "subject_id")
    trigger_id = query.get("trigger_id") or None
    if trigger_id is not None and not _EVENT_ID.match(trigger_id):
        raise InvalidQuery(
            "trigger_id must be an event id",
            errors=[{"loc": "trigger_id", "msg": "not an event id"}],
        )
    return queries.AlertFilter.for_principal(
        principal,
        statuses=statuses,
        rule=_identifier(query.get("rule"), "rule"),
        severity=severity,
        area=_identifier(query.get("area"), "area"),
        subject_kind=_choice(query, "subject_kind", SUBJECT_KINDS),
        subject_id=subject_id,
        trigger_id=trigger_id,
    )


def page_limit(query: Any) -> int:  # noqa: ANN401 - a MultiDict
    """Return `limit` (1..500, default 100)."""
    raw = query.get("limit", str(DEFAULT_PAGE))
    if not raw.isdigit() or not 1 <= int(raw) <= queries.MAX_PAGE:
        raise InvalidQuery(
            f"limit must be a whole number from 1 to {queries.MAX_PAGE}",
            errors=[{"loc": "limit", "msg": "out of range"}],
        )
    return int(raw)


async def list_alerts(request: web.Request) -> web.Response:
    """`GET /v1/alerts`: every alert the token may see, newest raise first or by urgency.

    A list narrowed to one child is a consultation of that child: recorded as
    `child.viewed` as well as `alerts.listed`, so the audit search by child finds it.
    """
    desk = request.app[DESK_KEY]
    principal = principal_of(request, desk.auth, Role.READ)
    matches = alert_filter(request.query, principal)
    limit = page_limit(request.query)
    cursor = request.query.get("cursor")
    urgent = request.query.get("order") == "urgency"
    async with desk.database.read() as connection:
        if urgent:
            after_key = queries.queue_cursor(cursor) if cursor else None
            found, next_cursor = await queries.queue_page(connection, matches, limit, after_key)
        else:
            after = queries.list_cursor(cursor) if cursor else None
            found, next_cursor = await queries.alert_page(connection, matches, limit, after)
    filters = {k: request.query.get(k) for k in LIST_FILTERS}
    shown = listing(
        {**filters, "limit": str(limit), "page": "next" if cursor else None},
        [s.alert_id for s in found],
    )
    await desk.auditor.record_list(principal, shown)
    if matches.subject_id is not None and matches.subject_kind in {None, "child"}:
        await desk.auditor.record(AuditAction.CHILD_VIEWED, principal, child_id=matches.subject_id)
    return json_response(
        {
            "alerts": [s.public() for s in found],
            "next_cursor": next_cursor,
            "complete": True,
            "as_of": desk.clock.now().isoformat(),
        }
    )


async def visible_alert(desk: Desk, principal: Principal, alert_id: str) -> queries.AlertDetail:
    """Return an alert the caller may see, or raise 404 / 403."""
    found = None
    if is_identifier(alert_id):
        async with desk.database.read() as connection:
            found = await queries.alert(connection, alert_id)
    # Outside the caller's areas is answered exactly as unknown: nothing says it exists.
    if found is None or not principal.may_see_area(found.summary.area):
        raise NotFound("no such alert")
    return found


async def get_alert(request: web.Request) -> web.Response:
    """`GET /v1/alerts/{alert_id}`: the alert's whole view (ladder, timeline, outcome)."""
    desk = request.app[DESK_KEY]
    principal = principal_of(request, desk.auth, Role.READ)
    alert_id = request.match_info["alert_id"]
    found = await visible_alert(desk, principal, alert_id)
    await desk.auditor.record(AuditAction.ALERT_VIEWED, principal, alert_id=alert_id)
    return json_response(found.view)


async def read_action(request: web.Request) -> ActionRequest:
    """Return the body of an acknowledgement or resolution (400/413/422 otherwise)."""
    # Read already, within the body timeout and the server's size bound (body_middleware).
    raw = await request.read()
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidBody(413, "too_large", f"body over {MAX_BODY_BYTES} bytes", [])
    try:
        return parse_body(raw, ActionRequest, max_bytes=MAX_BODY_BYTES)
    except BodyRefused as refused:
        raise InvalidBody(refused.status, refused.code, refused.message, refused.errors) from None


async def _act(request: web.Request, role: Role) -> web.Response:
    desk = request.app[DESK_KEY]
    principal = principal_of(request, desk.auth, role)
    body = await read_action(request)
    accepted = await desk.actions.act(principal, request.match_info["alert_id"], role, body)
    return json_response(accepted.model_dump(), 202)


async def acknowledge(request: web.Request) -> web.Response:
    """`POST /v1/alerts/{alert_id}/ack`: publish the acknowledgement for notify."""
    return await _act(request, Role.ACKNOWLEDGE)


async def resolve(request: web.Request) -> web.Response:
    """`POST /v1/alerts/{alert_id}/resolve`: publish the closure by hand for notify."""
    return await _act(request, Role.RESOLVE)


async def chronology(desk: Desk, principal: Principal, child_id: str) -> dict[str, Any]:
    """Return a child's chronology for the caller: the parts of it in the caller's areas.

    Every part (alert, obligation, event, risk factor, refused fulfilment) carries its
    area. The caller sees the parts in their areas and, in `others_hold_more`, only the
    fact that other areas hold more; with nothing in their areas the child is answered
    exactly as an unknown one (404). Parts without an area are seen only by callers for
    every area. The risk level is the partnership's one judgement of the child and is
    shown; the score and the other areas' factors behind it are not, when any part is
    held back.
    """
    if not is_identifier(child_id):
        raise NotFound("nothing is known about this child")
    async with desk.database.read() as connection:
        raw = await queries.child(connection, child_id)
        every = await queries.alerts_about(connection, "child", child_id, queries.AlertFilter())
    child = ChildView.model_validate(raw) if raw is not None else None
    sees = principal.may_see_area
    shown = [a for a in every if sees(a.summary.area)]
    obligations = [o for o in (child.obligations if child else []) if sees(o.area)]
    factors = [f for f in (child.factors if child else []) if sees(f.area)]
    events = [e for e in (child.recent_events if child else []) if sees(e.area)]
    refused = [r for r in (child.refused_fulfilments if child else []) if sees(r.area)]
    seen = len(shown) + len(obligations) + len(factors) + len(events) + len(refused)
    total = len(every) + (
        len(child.obligations)
        + len(child.factors)
        + len(child.recent_events)
        + len(child.refused_fulfilments)
        if child
        else 0
    )
    whole = principal.areas is None
    if (child is None and not every) or not (seen or whole):
        raise NotFound("nothing is known about this child")
    withheld = seen < total
    views = [AlertView.model_validate(a.view) for a in shown]
    return {
        "child_id": child_id,
        "as_of": child.as_of.isoformat() if child else None,
        "level": child.level if child else None,
        "score": child.score if child and not withheld else None,
        "factors": [f.model_dump(mode="json") for f in factors],
        "obligations": [o.model_dump(mode="json", exclude_none=True) for o in obligations],
        "open_obligations": [
            {
                "rule": o.rule,
                "area": o.area,
                "due_at": o.due_at.isoformat(),
                "severity": o.severity.value,
                "status": o.status.value,
            }
            for o in sorted(obligations, key=lambda o: o.due_at)
            if o.status.value in {"pending", "overdue"}
        ],
        "recent_events": [e.model_dump(mode="json") for e in events],
        "refused_fulfilments": [r.model_dump(mode="json") for r in refused],
        "alerts": [a.summary.public() for a in shown],
        "others_hold_more": withheld,
        "chronology": present.chronology(
            child.model_copy(update={"obligations": obligations, "recent_events": events})
            if child
            else None,
            views,
        ),
    }


async def get_child(request: web.Request) -> web.Response:
    """`GET /v1/children/{child_id}`: the child's chronology."""
    desk = request.app[DESK_KEY]
    principal = principal_of(request, desk.auth, Role.READ)
    child_id = request.match_info["child_id"]
    body = await chronology(desk, principal, child_id)
    await desk.auditor.record(AuditAction.CHILD_VIEWED, principal, child_id=child_id)
    return json_response(body)


async def timeliness_report(request: web.Request) -> web.Response:
    """`GET /v1/reports/timeliness`: JSON, CSV or HTML."""
    desk = request.app[DESK_KEY]
    principal = principal_of(request, desk.auth, Role.READ)
    now = desk.clock.now()
    query = reports.parse_query(request.query, now)
    kind = reports.representation(request.query.get("format"), request.headers.get("Accept"))
    if query.area is not None and not principal.may_see_area(query.area):
        raise out_of_scope(query.area)
    async with desk.database.read() as connection:
        report = await reports.report(connection, query, principal, now)
    await desk.auditor.record(AuditAction.REPORT_VIEWED, principal)
    if kind == "csv":
        return web.Response(
            text=to_csv(report),
            content_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="timeliness.csv"'},
        )
    if kind == "html":
        return web.Response(text=render_page(report), content_type="text/html")
    return json_response(report.to_json())


async def search_audit(request: web.Request) -> web.Response:
    """`GET /v1/audit`: who read or acted on a child, an alert, the report; what one token did."""
    desk = request.app[DESK_KEY]
    principal = principal_of(request, desk.auth, Role.AUDIT)
    search = audit_search.parse(request.query, desk.clock.now())
    fmt = request.query.get("format")
    if fmt is not None and fmt not in {"json", "csv"}:
        raise InvalidQuery(
            "format must be json or csv", errors=[{"loc": "format", "msg": "unknown format"}]
        )
    as_csv = fmt == "csv" or (fmt is None and "text/csv" in request.headers.get("Accept", ""))
    async with desk.database.read() as connection:
        records, cursor = await audit_search.search(connection, search)
    await desk.auditor.record(
        AuditAction.AUDIT_SEARCHED, principal, **audit_search.audited_as(search)
    )
    if as_csv:
        return web.Response(
            text=audit_search.to_csv(records),
            content_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
        )
    return json_response(
        {
            "query": {
                search.kind: search.value or "timeliness",
                "from": search.start.isoformat(),
                "to": search.end.isoformat(),
            },
            "records": records,
            "next_cursor": cursor,
        }
    )
