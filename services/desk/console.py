"""The duty-manager console, served by the desk under `/console`.

Server-rendered with Jinja2 (autoescaped), a few lines of plain JavaScript that refresh
the work queue's rows by polling, no build step. Pages read the projection through the
same queries as the API and act through the same `Actions`, so every read and act is
scoped to the person's areas and audited exactly as the API does it (`alerts.listed` for
each queue page and refresh, `alert.viewed` per alert page, `child.viewed` per child
page, `report.viewed`, `audit.searched`; acknowledging and resolving as the API).

Sessions are in PostgreSQL (`sessions.py`): any desk pod serves any page. Every form
POST carries the session's CSRF token; a POST without it, or with another's, is refused
403 before anything else. Roles and areas decide which buttons are shown, and are
checked again on the POST. Each page says when the projection is behind.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

import structlog
from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from schemas.audit import AuditAction
from schemas.notifications import ResolutionReason
from schemas.views import AlertStatus, AlertView
from services.common.audit import is_identifier
from services.common.auth import Principal, Role
from services.common.environment import is_development
from services.desk import api, audit_search, present, queries, reports
from services.desk.actions import ActionRequest
from services.desk.app import DESK_KEY, Desk
from services.desk.errors import DeskError, Forbidden, InvalidBody, InvalidQuery, NotFound
from services.desk.report_page import CSS, render_console_page
from services.desk.sessions import PRE_SESSION_COOKIE, SESSION_COOKIE, Session, same
from services.desk.timeliness import to_csv
from services.desk.web import PROBLEM_PAGE_KEY

log = structlog.get_logger(__name__)

PAGE_SIZE = 25
# After an acknowledgement or resolution is published, the page waits this long for the
# projection to show it, so the page it returns to shows the new state.
SETTLE_SECONDS = 3.0
STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
QUEUE_STATUSES = {
    "": frozenset({"open", "acknowledged"}),
    "open": frozenset({"open"}),
    "acknowledged": frozenset({"acknowledged"}),
}
REPORT_PATH = "/console/reports/timeliness"
REPORT_STYLESHEET = "/console/reports/static/report.css"
SESSION_KEY: web.RequestKey[Session | None] = web.RequestKey("desk_session")
STALE_KEY: web.RequestKey[str | None] = web.RequestKey("desk_stale")
DONE = {
    "acknowledged": "Acknowledged.",
    "resolved": "Resolved.",
    "acknowledged-pending": "Acknowledged: recorded, the page shows it in a moment.",
    "resolved-pending": "Resolved: recorded, the page shows it in a moment.",
}
AUDIT_KINDS = (
    ("child_id", "A child (id)"),
    ("alert_id", "An alert (id)"),
    ("principal", "Everything a token did (name)"),
    ("report", "Who viewed the timeliness report"),
)
_ENV = Environment(
    loader=PackageLoader("services.desk", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(name: str, **context: Any) -> str:  # noqa: ANN401 - template values
    """Render a template (autoescaped)."""
    return _ENV.get_template(name).render(**context)


def page(html: str, status: int = 200, **headers: str) -> web.Response:
    """Return an HTML page with the console's security headers."""
    return web.Response(
        text=html, status=status, content_type="text/html", headers={**HEADERS, **headers}
    )


def redirect(location: str) -> web.Response:
    """Return a 303 to `location`."""
    return web.Response(status=303, headers={**HEADERS, "Location": location})


def secure_cookies() -> bool:
    """Cookies are `Secure` everywhere but development (plain http on loopback)."""
    return not is_development()


def set_cookie(response: web.Response, name: str, value: str) -> None:
    """Set one of the console's cookies: HttpOnly, SameSite=Strict, path /console."""
    response.set_cookie(
        name, value, httponly=True, secure=secure_cookies(), samesite="Strict", path="/console"
    )


def base(request: web.Request, session: Session | None, **context: Any) -> dict[str, Any]:  # noqa: ANN401
    """Return what every page's layout needs."""
    return {"session": session, "Role": Role, "stale": request.get(STALE_KEY), **context}


async def problem_page(request: web.Request, error: DeskError) -> web.StreamResponse:
    """Render a refusal as the console's problem page (the one place for console errors)."""
    session = request.get(SESSION_KEY)
    if error.status == 401 and session is None and request.method == "GET":  # noqa: PLR2004
        return redirect("/console/sign-in")
    html = render(
        "problem.html", **base(request, session, title=error.title, message=error.message)
    )
    return page(html, error.status, **error.headers)


async def current(request: web.Request) -> Session | None:
    """Return the request's session, if its cookie names a live one."""
    session = await request.app[DESK_KEY].sessions.find(request.cookies.get(SESSION_COOKIE))
    request[SESSION_KEY] = session
    return session


async def signed_in(request: web.Request, role: Role = Role.READ) -> Session:
    """Return the session, or go to the sign-in page; refuse a role the person lacks."""
    session = await current(request)
    if session is None:
        raise web.HTTPSeeOther("/console/sign-in", headers=HEADERS)
    if not session.principal.has(role):
        raise Forbidden(f"Your token may not do this ({role.value}).")
    request[STALE_KEY] = await request.app[DESK_KEY].staleness()
    return session


async def form_of(request: web.Request) -> dict[str, str]:
    """Return the submitted form's text fields."""
    data = await request.post()
    return {k: v for k, v in data.items() if isinstance(v, str)}


def add_routes(app: web.Application) -> None:
    """Register the console's pages."""
    app[PROBLEM_PAGE_KEY] = problem_page
    add = app.router
    add.add_get("/console", root)
    add.add_get("/console/static/{name}", static)
    add.add_get("/console/sign-in", sign_in_page)
    add.add_post("/console/sign-in", sign_in)
    add.add_post("/console/sign-out", sign_out)
    add.add_get("/console/queue", queue)
    add.add_get("/console/queue/live", queue_live)
    add.add_get("/console/alerts/{alert_id}", alert_page)
    add.add_post("/console/alerts/{alert_id}/acknowledge", acknowledge)
    add.add_post("/console/alerts/{alert_id}/resolve", resolve)
    add.add_get("/console/children/{child_id}", child_page)
    add.add_get(REPORT_PATH, report_page)
    add.add_get(REPORT_STYLESHEET, report_css)
    add.add_get("/console/audit", audit_page)


async def root(request: web.Request) -> web.Response:
    """Go to the queue (the audit search for an auditor only), or to sign in."""
    session = await current(request)
    if session is None:
        return redirect("/console/sign-in")
    return redirect(home(session.principal))


def home(principal: Principal) -> str:
    """Return a person's first page: the queue, else the audit search, else the pack."""
    if principal.has(Role.READ):
        return "/console/queue"
    if principal.has(Role.AUDIT):
        return "/console/audit"
    return "/console/reports/pack"


async def static(request: web.Request) -> web.Response:
    """Serve the console's style sheet and script."""
    name = request.match_info["name"]
    if name not in STATIC:
        raise NotFound("no such file")
    body = resources.files("services.desk").joinpath("static", name).read_bytes()
    return web.Response(
        body=body,
        content_type=STATIC[name],
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "max-age=300"},
    )


def _random() -> str:
    return secrets.token_urlsafe(32)


async def sign_in_page(request: web.Request) -> web.Response:
    """Show the sign-in form (with a double-submit value against login CSRF)."""
    if await current(request) is not None:
        return redirect("/console/queue")
    desk = request.app[DESK_KEY]
    pre = request.cookies.get(PRE_SESSION_COOKIE) or _random()
    response = page(
        render("sign_in.html", **base(request, None, pre=pre, fields=desk.identity.fields))
    )
    set_cookie(response, PRE_SESSION_COOKIE, pre)
    return response


async def sign_in(request: web.Request) -> web.Response:
    """Exchange what the identity provider checks for a session."""
    desk = request.app[DESK_KEY]
    form = await form_of(request)
    if not same(request.cookies.get(PRE_SESSION_COOKIE, ""), form.get("csrf")):
        raise Forbidden("The form was not this console's.")
    who = desk.identity.complete(form)
    if who is None:
        html = render(
            "sign_in.html",
            **base(
                request,
                None,
                pre=request.cookies.get(PRE_SESSION_COOKIE),
                fields=desk.identity.fields,
                error="That token is not valid.",
            ),
        )
        return page(html, 401)
    principal = who.principal
    if not any(principal.has(role) for role in (Role.READ, Role.AUDIT, Role.LEAD)):
        raise Forbidden("This token may not read alerts, the audit trail or assurance packs.")
    session_id, _session = await desk.sessions.start(who)
    log.info("console_signed_in", principal=principal.name)
    response = redirect(home(principal))
    set_cookie(response, SESSION_COOKIE, session_id)
    response.del_cookie(PRE_SESSION_COOKIE, path="/console")
    return response


async def sign_out(request: web.Request) -> web.Response:
    """End the session."""
    session = await current(request)
    if session is None:
        return redirect("/console/sign-in")
    form = await form_of(request)
    if not same(session.csrf, form.get("csrf")):
        raise Forbidden("The form was not this session's.")
    await request.app[DESK_KEY].sessions.end(request.cookies.get(SESSION_COOKIE))
    log.info("console_signed_out", principal=session.principal.name)
    response = redirect("/console/sign-in")
    response.del_cookie(SESSION_COOKIE, path="/console")
    return response


@dataclass(frozen=True)
class QueueQuery:
    """The work queue's filters and page, validated."""

    area: str | None
    rule: str | None
    severity: str | None
    status: str
    after: str | None

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> QueueQuery:
        """Validate the query string; empty values mean no filter."""
        values = {k: (query.get(k) or "").strip() for k in ("area", "rule", "severity", "status")}
        if values["severity"] and values["severity"] not in queries.SEVERITIES:
            raise InvalidQuery("Unknown severity.")
        if values["status"] not in QUEUE_STATUSES:
            raise InvalidQuery("Unknown status.")
        for key in ("area", "rule"):
            if values[key] and not is_identifier(values[key]):
                raise InvalidQuery(f"Unknown {key}.")
        after = (query.get("after") or "").strip() or None
        if after is not None:
            queries.queue_cursor(after)  # raises InvalidQuery
        return cls(
            area=values["area"] or None,
            rule=values["rule"] or None,
            severity=values["severity"] or None,
            status=values["status"],
            after=after,
        )

    def matches(self, session: Session, *, severity: bool = True) -> queries.AlertFilter:
        """Return the filter for this query and the person's areas."""
        return queries.AlertFilter.for_principal(
            session.principal,
            statuses=QUEUE_STATUSES[self.status],
            rule=self.rule,
            severity=self.severity if severity else None,
            area=self.area,
        )

    def link(self, **changes: str | None) -> str:
        """Return the queue's URL with these filters, changed as given."""
        params = {
            "area": self.area,
            "rule": self.rule,
            "severity": self.severity,
            "status": self.status,
            "after": None,
        }
        params.update(changes)
        kept = {k: v for k, v in params.items() if v}
        return "/console/queue" + (f"?{urlencode(kept)}" if kept else "")


async def queue_context(request: web.Request, session: Session) -> dict[str, Any]:
    """Return the work queue's page: rows, counts, filters (audited as `alerts.listed`)."""
    desk = request.app[DESK_KEY]
    query = QueueQuery.parse(request.query)
    after = queries.queue_cursor(query.after) if query.after else None
    async with desk.database.read() as connection:
        found, cursor = await queries.queue_page(
            connection, query.matches(session), PAGE_SIZE, after
        )
        counts = await queries.severity_counts(connection, query.matches(session, severity=False))
        # The filters offer every area and rule the person can see, whatever is chosen.
        choices = await queries.choices(
            connection,
            queries.AlertFilter.for_principal(
                session.principal, statuses=QUEUE_STATUSES[query.status]
            ),
        )
    await desk.auditor.record(AuditAction.ALERTS_LISTED, session.principal)
    now = desk.clock.now()
    return {
        "query": query,
        "rows": [present.row(s, now) for s in found],
        "counts": counts,
        "total": sum(counts.values()),
        "next": query.link(after=cursor) if cursor else None,
        "first": query.link() if query.after else None,
        "choices": choices,
        "severities": list(queries.SEVERITIES),
        "now": present.stamp(now),
        "refresh_ms": int(desk.settings.console.refresh_seconds * 1000),
        "live_src": "/console/queue/live"
        + (f"?{request.query_string}" if request.query_string else ""),
    }


async def queue(request: web.Request) -> web.Response:
    """Show the work queue."""
    session = await signed_in(request)
    context = await queue_context(request, session)
    return page(render("queue.html", **base(request, session, **context)))


async def queue_live(request: web.Request) -> web.Response:
    """Render the work queue's rows, for the page's refresh."""
    session = await current(request)
    if session is None:
        return web.Response(text="signed out", status=401, headers=HEADERS)
    if not session.principal.has(Role.READ):
        raise Forbidden("Your token may not read alerts.")
    request[STALE_KEY] = await request.app[DESK_KEY].staleness()
    context = await queue_context(request, session)
    return page(render("queue_live.html", **base(request, session, **context)))


async def alert_page(request: web.Request) -> web.Response:
    """One alert: what is overdue, the ladder, the timeline, and the actions."""
    session = await signed_in(request)
    desk = request.app[DESK_KEY]
    alert_id = request.match_info["alert_id"]
    found = await api.visible_alert(desk, session.principal, alert_id)
    await desk.auditor.record(AuditAction.ALERT_VIEWED, session.principal, alert_id=alert_id)
    view = AlertView.model_validate(found.view)
    now = desk.clock.now()
    alert = view.alert
    since = alert.due_at or alert.raised_at
    principal = session.principal
    html = render(
        "alert.html",
        **base(
            request,
            session,
            alert=alert,
            status=present.status_label(view),
            overdue_for=present.span(now - since),
            overdue_since=present.stamp(since),
            raised_at=present.stamp(alert.raised_at),
            ladder=present.ladder(view),
            timeline=present.timeline(view),
            outcome=present.outcome(view),
            acknowledgement=view.acknowledgement,
            ack_at=present.stamp(view.acknowledgement.acknowledged_at)
            if view.acknowledgement
            else None,
            may_ack=principal.may(Role.ACKNOWLEDGE, alert.area) and view.status is AlertStatus.OPEN,
            may_resolve=principal.may(Role.RESOLVE, alert.area)
            and view.status in {AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED},
            reasons=present.REASON_LABELS,
            flash=DONE.get(request.query.get("done", "")),
        ),
    )
    return page(html)


async def _act(request: web.Request, role: Role) -> web.Response:
    session = await current(request)
    if session is None:
        raise Forbidden("Sign in again to act.")
    desk = request.app[DESK_KEY]
    form = await form_of(request)
    if not same(session.csrf, form.get("csrf")):
        raise Forbidden("The form was not this session's.")
    alert_id = request.match_info["alert_id"]
    reason = form.get("reason") or None
    if role is Role.RESOLVE and reason not in set(ResolutionReason):
        raise InvalidBody(422, "invalid_body", "Choose why the alert is resolved.", [])
    try:
        body = ActionRequest(
            by=session.principal.name,
            note=form.get("note") or None,
            reason=ResolutionReason(reason) if role is Role.RESOLVE and reason else None,
        )
    except ValueError:
        raise InvalidBody(
            422, "invalid_body", "The note has characters it may not have.", []
        ) from None
    before = None
    if is_identifier(alert_id):
        async with desk.database.read() as connection:
            before = await queries.status_of(connection, alert_id)
    await desk.actions.act(session.principal, alert_id, role, body)
    done = "acknowledged" if role is Role.ACKNOWLEDGE else "resolved"
    if not await _settled(desk, alert_id, before):
        done += "-pending"
    return redirect(f"/console/alerts/{quote(alert_id)}?done={done}")


async def _settled(desk: Desk, alert_id: str, before: str | None) -> bool:
    """Wait briefly until the projection shows the action (the status changed)."""
    for _ in range(int(SETTLE_SECONDS / 0.1)):
        async with desk.database.read() as connection:
            if await queries.status_of(connection, alert_id) != before:
                return True
        await asyncio.sleep(0.1)
    return False


async def acknowledge(request: web.Request) -> web.Response:
    """Take the alert page's acknowledge form."""
    return await _act(request, Role.ACKNOWLEDGE)


async def resolve(request: web.Request) -> web.Response:
    """Take the alert page's resolve form."""
    return await _act(request, Role.RESOLVE)


async def child_page(request: web.Request) -> web.Response:
    """Show a child's chronology: risk level and factors, events, obligations, alerts."""
    session = await signed_in(request)
    desk = request.app[DESK_KEY]
    child_id = request.match_info["child_id"]
    body = await api.chronology(desk, session.principal, child_id)
    await desk.auditor.record(AuditAction.CHILD_VIEWED, session.principal, child_id=child_id)
    child = None
    if body["level"] is not None:
        child = {"level": body["level"], "score": body["score"]}
    now = desk.clock.now()
    async with desk.database.read() as connection:
        about = await queries.alerts_about(
            connection, "child", child_id, queries.AlertFilter.for_principal(session.principal)
        )
    html = render(
        "child.html",
        **base(
            request,
            session,
            child_id=child_id,
            child=child,
            notice=None if child else "No risk view of this child has been published yet.",
            chronology=body["chronology"],
            factors=[
                {**f, "at": present.stamp(datetime.fromisoformat(f["at"]))} for f in body["factors"]
            ],
            alerts=[present.row(a.summary, now) for a in about],
        ),
    )
    return page(html)


async def report_page(request: web.Request) -> web.Response:
    """Show the timeliness report inside the console (or its CSV with `format=csv`)."""
    session = await signed_in(request)
    desk = request.app[DESK_KEY]
    principal = session.principal
    now = desk.clock.now()
    query = reports.parse_query(request.query, now)
    kind = reports.representation(request.query.get("format") or "html", None)
    if query.area is not None and not principal.may_see_area(query.area):
        raise Forbidden(f"Your token's areas do not include {query.area}.")
    async with desk.database.read() as connection:
        report = await reports.report(connection, query, principal, now)
    await desk.auditor.record(AuditAction.REPORT_VIEWED, principal)
    if kind == "csv":
        return web.Response(
            text=to_csv(report),
            content_type="text/csv",
            headers={**HEADERS, "Content-Disposition": 'attachment; filename="timeliness.csv"'},
        )
    if kind == "json":
        return web.json_response(report.to_json(), headers=HEADERS)
    given = {k: v for k, v in request.query.items() if k != "format" and v}
    html = render_console_page(
        report,
        session=session,
        action=REPORT_PATH,
        csv_href=f"{REPORT_PATH}?{urlencode({**given, 'format': 'csv'})}",
        stylesheet=REPORT_STYLESHEET,
        extra={"Role": Role, "stale": request.get(STALE_KEY)},
    )
    return page(html)


async def report_css(_request: web.Request) -> web.Response:
    """Serve the report page's own style sheet (the CSP allows no inline styles)."""
    return web.Response(text=CSS, content_type="text/css", headers=HEADERS)


async def audit_page(request: web.Request) -> web.Response:
    """Show the audit search, for the role `audit`."""
    session = await signed_in(request, Role.AUDIT)
    desk = request.app[DESK_KEY]
    kind = request.query.get("kind") or ""
    value = (request.query.get("value") or "").strip()
    start, end = request.query.get("from") or "", request.query.get("to") or ""
    context: dict[str, Any] = {
        "kinds": AUDIT_KINDS,
        "kind": kind,
        "value": value,
        "start": start,
        "end": end,
        "records": None,
        "next": None,
        "csv_href": None,
    }
    if kind:
        if kind not in dict(AUDIT_KINDS):
            raise InvalidQuery("Choose what to search for.")
        params = {kind: "timeliness" if kind == "report" else value}
        if start:
            params["from"] = start
        if end:
            params["to"] = end
        if request.query.get("cursor"):
            params["cursor"] = request.query["cursor"]
        search = audit_search.parse(params, desk.clock.now())
        async with desk.database.read() as connection:
            records, cursor = await audit_search.search(connection, search)
        await desk.auditor.record(
            AuditAction.AUDIT_SEARCHED, session.principal, **audit_search.audited_as(search)
        )
        if request.query.get("format") == "csv":
            return web.Response(
                text=audit_search.to_csv(records),
                content_type="text/csv",
                headers={**HEADERS, "Content-Disposition": 'attachment; filename="audit.csv"'},
            )
        shown = {k: v for k, v in request.query.items() if k not in {"cursor", "format"}}
        context.update(
            records=records,
            next=f"/console/audit?{urlencode({**shown, 'cursor': cursor})}" if cursor else None,
            csv_href=f"/console/audit?{urlencode({**shown, 'format': 'csv'})}",
        )
    return page(render("audit.html", **base(request, session, **context)))
