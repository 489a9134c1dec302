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
import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, Literal, cast, get_args
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
from services.desk.audit import audit_list, listing
from services.desk.errors import (
    Conflict,
    DeskError,
    Forbidden,
    InvalidBody,
    InvalidQuery,
    NotFound,
    Unauthenticated,
)
from services.desk.report_page import CSS, render_console_page
from services.desk.sessions import SESSION_COOKIE, Session, same
from services.desk.timeliness import to_csv
from services.desk.web import ACTOR_KEY, PROBLEM_PAGE_KEY

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
QUEUE_GROUPS: dict[str, present.GroupBy | None] = {
    "": None,
    "child": "child",
    "incident": "incident",
}
# Grouped, the queue gathers this many of the most urgent alerts into their groups.
GROUPED_LIMIT = 500
# One group acknowledgement acts on at most this many alerts (each its own command).
GROUP_ACK_LIMIT = 100
HANDOVER_PATH = "/console/handover"
HANDOVER_DEFAULT = timedelta(hours=12)
HANDOVER_LONGEST = timedelta(days=7)
HANDOVER_LIMIT = 1000
# The page a person asked for before signing in, kept in a cookie through the sign-in
# (its form is the identity provider's): console pages only, never another site.
NEXT_COOKIE = "safeguard_next"
_NEXT_PATH = re.compile(
    r"^/console/(queue|handover|audit|reports/timeliness|"
    r"(alerts|children)/[A-Za-z0-9._:-]{1,64})$"
)
_NEXT_QUERY = re.compile(r"^[A-Za-z0-9._~%=&+:-]{0,512}$")
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
    desk = request.app[DESK_KEY]
    return {
        "session": session,
        "Role": Role,
        "stale": request.get(STALE_KEY),
        "server_now": present.when(desk.clock.now(), desk.policy.zone),
        "path": request.path,
        **context,
    }


def next_target(request: web.Request) -> str | None:
    """Return the console page asked for, as the sign-in will return to it, if it is one."""
    if request.method != "GET" or not _NEXT_PATH.match(request.path):
        return None
    query = request.rel_url.raw_query_string  # as sent: decoding could change its meaning
    if not _NEXT_QUERY.match(query):
        return request.path
    return request.path + (f"?{query}" if query else "")


def kept_target(request: web.Request) -> str | None:
    """Return the page kept in the cookie through the sign-in, checked again."""
    raw = request.cookies.get(NEXT_COOKIE)
    if not raw:
        return None
    try:
        target = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    path, _, query = target.partition("?")
    if not _NEXT_PATH.match(path) or not _NEXT_QUERY.match(query):
        return None
    return target


def to_sign_in(request: web.Request) -> web.Response:
    """Send a signed-out person to sign in, and back to this page afterwards.

    A link followed from an email or a chat is a cross-site navigation, which does not
    carry the session cookie (SameSite=Strict): the page first reloads itself from this
    site, which does, so a person signed in already is not asked again.
    """
    target = next_target(request)
    if target is not None and request.headers.get("Sec-Fetch-Site") == "cross-site":
        return page(render("reload.html", target=target))
    response = redirect("/console/sign-in")
    if target is not None:
        value = base64.urlsafe_b64encode(target.encode("ascii")).decode().rstrip("=")
        set_cookie(response, NEXT_COOKIE, value)
    return response


async def problem_page(request: web.Request, error: DeskError) -> web.StreamResponse:
    """Render a refusal as the console's problem page (the one place for console errors)."""
    session = request.get(SESSION_KEY)
    if error.code == "unauthenticated" and session is None and request.method == "GET":
        return to_sign_in(request)
    html = render(
        "problem.html", **base(request, session, title=error.title, message=error.message)
    )
    return page(html, error.status, **error.headers)


async def current(request: web.Request, *, touch: bool = True) -> Session | None:
    """Return the request's session, if its cookie names a live one (`touch`: not a poll)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    session = await request.app[DESK_KEY].sessions.find(cookie, touch=touch)
    request[SESSION_KEY] = session
    if session is not None:
        request[ACTOR_KEY] = session.principal.name
    return session


async def signed_in(request: web.Request, role: Role = Role.READ) -> Session:
    """Return the session, or go to the sign-in page; refuse a role the person lacks."""
    session = await current(request)
    if session is None:
        raise Unauthenticated("sign in to see this page")
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
    add.add_get("/console/queue", queue)
    add.add_get("/console/queue/live", queue_live)
    add.add_post("/console/queue/acknowledge", acknowledge_group)
    add.add_get(HANDOVER_PATH, handover_page)
    add.add_get("/console/alerts/{alert_id}", alert_page)
    add.add_post("/console/alerts/{alert_id}/acknowledge", acknowledge)
    add.add_post("/console/alerts/{alert_id}/resolve", resolve)
    add.add_get("/console/children/{child_id}", child_page)
    add.add_get(REPORT_PATH, report_page)
    add.add_get(REPORT_STYLESHEET, report_css)
    add.add_get("/console/audit", audit_page)


async def root(request: web.Request) -> web.Response:
    """Go to the page kept through sign-in or the person's first page, or to sign in."""
    session = await current(request)
    if session is None:
        return redirect("/console/sign-in")
    if not session.principal.has(Role.READ):
        return redirect(home(session.principal))
    response = redirect(kept_target(request) or "/console/queue")
    response.del_cookie(NEXT_COOKIE, path="/console")
    return response


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


@dataclass(frozen=True)
class QueueQuery:
    """The work queue's filters, grouping and page, validated."""

    area: str | None
    rule: str | None
    severity: str | None
    status: str
    after: str | None
    group: str = ""

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> QueueQuery:
        """Validate the query string; empty values mean no filter."""
        keys = ("area", "rule", "severity", "status", "group")
        values = {k: (query.get(k) or "").strip() for k in keys}
        if values["severity"] and values["severity"] not in queries.SEVERITIES:
            raise InvalidQuery("Unknown severity: choose critical, high or medium.")
        if values["status"] not in QUEUE_STATUSES:
            raise InvalidQuery(
                "Unknown status: the queue holds open and acknowledged alerts "
                "(resolved ones are in the handover)."
            )
        if values["group"] not in QUEUE_GROUPS:
            raise InvalidQuery("Unknown grouping: group by child or by incident.")
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
            group=values["group"],
        )

    @property
    def grouped(self) -> present.GroupBy | None:
        """Return how the queue is grouped, if it is."""
        return QUEUE_GROUPS[self.group]

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
            "group": self.group,
            "after": None,
        }
        params.update(changes)
        kept = {k: v for k, v in params.items() if v}
        return "/console/queue" + (f"?{urlencode(kept)}" if kept else "")


def _count(query: Mapping[str, str], name: str) -> int:
    """Return a small count from the query string (a flash after acting), 0 if not one."""
    raw = query.get(name) or ""
    return int(raw) if raw.isdigit() and len(raw) <= 4 else 0  # noqa: PLR2004


async def queue_context(request: web.Request, session: Session) -> dict[str, Any]:
    """Return the work queue's page: rows, counts, filters (audited as `alerts.listed`)."""
    desk = request.app[DESK_KEY]
    query = QueueQuery.parse(request.query)
    grouped = query.grouped
    after = queries.queue_cursor(query.after) if query.after and grouped is None else None
    limit = GROUPED_LIMIT if grouped else PAGE_SIZE
    async with desk.database.read() as connection:
        found, cursor = await queries.queue_page(connection, query.matches(session), limit, after)
        counts = await queries.severity_counts(connection, query.matches(session, severity=False))
        # The filters offer every area and rule the person can see, whatever is chosen.
        choices = await queries.choices(
            connection,
            queries.AlertFilter.for_principal(
                session.principal, statuses=QUEUE_STATUSES[query.status]
            ),
        )
    shown = listing(
        {
            "view": "queue",
            "area": query.area,
            "rule": query.rule,
            "severity": query.severity,
            "status": query.status,
            "group": query.group,
            "page": "next" if query.after else None,
        },
        [s.alert_id for s in found],
    )
    await audit_list(desk.auditor, desk.sessions, session, shown)
    now = desk.clock.now()
    zone = desk.policy.zone
    rows = [present.row(s, now, zone) for s in found]
    principal = session.principal
    return {
        "query": query,
        "rows": rows,
        "groups": present.groups(rows, grouped) if grouped else None,
        "more_than_grouped": grouped is not None and cursor is not None,
        "grouped_limit": GROUPED_LIMIT,
        "may_ack_area": {r.area: principal.may(Role.ACKNOWLEDGE, r.area) for r in rows},
        "counts": counts,
        "total": sum(counts.values()),
        "next": query.link(after=cursor) if cursor and grouped is None else None,
        "first": query.link() if query.after and grouped is None else None,
        "choices": choices,
        "severities": list(queries.SEVERITIES),
        "now": present.when(now, zone),
        "refresh_ms": int(desk.settings.console.refresh_seconds * 1000),
        "live_src": "/console/queue/live"
        + (f"?{request.query_string}" if request.query_string else ""),
    }


async def queue(request: web.Request) -> web.Response:
    """Show the work queue, who is on duty, and what a group acknowledgement did."""
    session = await signed_in(request)
    desk = request.app[DESK_KEY]
    context = await queue_context(request, session)
    acked, skipped = _count(request.query, "acked"), _count(request.query, "skipped")
    flash = None
    if acked or skipped:
        flash = f"Acknowledged {acked} alert{'s' if acked != 1 else ''}." + (
            f" {skipped} had already been acknowledged or resolved by someone else."
            if skipped
            else ""
        )
    now = desk.clock.now()
    zone = desk.policy.zone
    return page(
        render(
            "queue.html",
            **base(
                request,
                session,
                **context,
                flash=flash,
                has_policy=desk.policy.policy is not None,
                duty=present.on_duty(desk.policy.on_duty(session.principal.areas, now), zone),
                zone=zone,
            ),
        )
    )


async def queue_live(request: web.Request) -> web.Response:
    """Render the work queue's rows for the page's refresh: a poll, which keeps no session alive."""
    session = await current(request, touch=False)
    if session is None:
        return web.Response(text="signed out", status=401, headers=HEADERS)
    if not session.principal.has(Role.READ):
        raise Forbidden("Your token may not read alerts.")
    request[STALE_KEY] = await request.app[DESK_KEY].staleness()
    context = await queue_context(request, session)
    return page(render("queue_live.html", **base(request, session, **context)))


def _focus(request: web.Request) -> str | None:
    """Return the act a message's link asked to focus (`?act=acknowledge`), if any."""
    act = request.query.get("act")
    if act is None or act == "":
        return None
    if act != "acknowledge":
        raise InvalidQuery("Unknown act: a link may ask for act=acknowledge only.")
    return act


async def alert_page(request: web.Request) -> web.Response:
    """One alert: what is overdue, what happens next, what to do, and the actions."""
    session = await signed_in(request)
    desk = request.app[DESK_KEY]
    alert_id = request.match_info["alert_id"]
    act = _focus(request)
    found = await api.visible_alert(desk, session.principal, alert_id)
    await desk.auditor.record(AuditAction.ALERT_VIEWED, session.principal, alert_id=alert_id)
    view = AlertView.model_validate(found.view)
    now = desk.clock.now()
    zone = desk.policy.zone
    alert = view.alert
    principal = session.principal
    may_ack = principal.may(Role.ACKNOWLEDGE, alert.area) and view.status is AlertStatus.OPEN
    html = render(
        "alert.html",
        **base(
            request,
            session,
            alert=alert,
            status=present.status_label(view),
            late=present.lateness(alert.due_at, alert.raised_at, view.resolved_at, now, zone),
            raised_at=present.when(alert.raised_at, zone),
            next=present.next_step(view.next_step, now, zone)
            if view.status is not AlertStatus.RESOLVED
            else None,
            guidance=desk.policy.guidance(alert.rule),
            has_policy=desk.policy.policy is not None,
            ladder=present.ladder(view, zone),
            timeline=present.timeline(view, zone),
            outcome=present.outcome(view, zone),
            acknowledgement=view.acknowledgement,
            ack_at=present.when(view.acknowledgement.acknowledged_at, zone)
            if view.acknowledgement
            else None,
            may_ack=may_ack,
            may_resolve=principal.may(Role.RESOLVE, alert.area)
            and view.status in {AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED},
            focus_ack=act == "acknowledge" and may_ack,
            asked_to_ack=act == "acknowledge",
            reasons=present.REASON_LABELS,
            flash=DONE.get(request.query.get("done", "")),
        ),
    )
    return page(html)


def _action_body(form: Mapping[str, str], role: Role) -> ActionRequest:
    """Return the acknowledgement or resolution a form asks for (422 naming what is wrong)."""
    reason = form.get("reason") or None
    if role is Role.RESOLVE and reason not in set(ResolutionReason):
        raise InvalidBody(422, "invalid_body", "Choose why the alert is resolved.", [])
    try:
        return ActionRequest(
            note=form.get("note") or None,
            reason=ResolutionReason(reason) if role is Role.RESOLVE and reason else None,
        )
    except ValueError:
        raise InvalidBody(
            422, "invalid_body", "The note is too long or has characters it may not have.", []
        ) from None


async def _act(request: web.Request, role: Role) -> web.Response:
    session = await current(request)
    if session is None:
        raise Forbidden("Sign in again to act.")
    desk = request.app[DESK_KEY]
    form = await form_of(request)
    if not same(session.csrf, form.get("csrf")):
        raise Forbidden("The form was not this session's.")
    alert_id = request.match_info["alert_id"]
    body = _action_body(form, role)
    before = None
    if is_identifier(alert_id):
        async with desk.database.read() as connection:
            before = await queries.status_of(connection, alert_id)
    await desk.actions.act(session.principal, alert_id, role, body)
    done = "acknowledged" if role is Role.ACKNOWLEDGE else "resolved"
    if not await _settled(desk, {alert_id: before}):
        done += "-pending"
    return redirect(f"/console/alerts/{quote(alert_id)}?done={done}")


async def _settled(desk: Desk, before: Mapping[str, str | None]) -> bool:
    """Wait briefly until the projection shows the actions (each status changed)."""
    waiting = dict(before)
    for _ in range(int(SETTLE_SECONDS / 0.1)):
        async with desk.database.read() as connection:
            for alert_id, status in list(waiting.items()):
                if await queries.status_of(connection, alert_id) != status:
                    del waiting[alert_id]
        if not waiting:
            return True
        await asyncio.sleep(0.1)
    return False


async def acknowledge(request: web.Request) -> web.Response:
    """Take the alert page's acknowledge form."""
    return await _act(request, Role.ACKNOWLEDGE)


async def resolve(request: web.Request) -> web.Response:
    """Take the alert page's resolve form."""
    return await _act(request, Role.RESOLVE)


@dataclass(frozen=True)
class GroupForm:
    """A group acknowledgement as posted: the group, its open alerts, the one note."""

    by: present.GroupBy
    key: str
    ids: list[str]
    body: ActionRequest


def _group_form(data: Mapping[str, Any]) -> GroupForm:
    """Validate a group acknowledgement's form (422 naming what is wrong)."""
    form = {k: v for k, v in data.items() if isinstance(v, str)}
    by = form.get("group") or ""
    if by not in get_args(present.GroupBy):
        raise InvalidBody(422, "invalid_body", "Say which group: by child or by incident.", [])
    getall = getattr(data, "getall", None)
    ids = [v for v in (getall("alert_id", []) if getall else []) if isinstance(v, str)]
    if not ids:
        raise InvalidBody(422, "invalid_body", "The group has no open alert to acknowledge.", [])
    if len(ids) > GROUP_ACK_LIMIT or len(set(ids)) != len(ids):
        raise InvalidBody(
            422, "invalid_body", f"Acknowledge at most {GROUP_ACK_LIMIT} alerts at once.", []
        )
    if not all(is_identifier(i) for i in ids):
        raise InvalidBody(422, "invalid_body", "An alert id in the form is not one.", [])
    return GroupForm(
        by=cast("present.GroupBy", by),
        key=form.get("key") or "",
        ids=ids,
        body=_action_body(form, Role.ACKNOWLEDGE),
    )


async def _group_statuses(desk: Desk, session: Session, asked: GroupForm) -> dict[str, str | None]:
    """Check every alert of a group form before anything is done; return their statuses."""
    statuses: dict[str, str | None] = {}
    async with desk.database.read() as connection:
        for alert_id in asked.ids:
            found = await queries.alert(connection, alert_id)
            if found is None:
                raise NotFound("An alert of the group is no longer known: reload the queue.")
            if not session.principal.may_see_area(found.summary.area):
                raise Forbidden(f"Your token's areas do not include {found.summary.area}.")
            line = present.row(found.summary, desk.clock.now(), desk.policy.zone)
            if present.group_key(line, asked.by) != asked.key:
                raise InvalidBody(
                    422, "invalid_body", "An alert in the form is not in the group named.", []
                )
            statuses[alert_id] = found.summary.status
    return statuses


async def acknowledge_group(request: web.Request) -> web.Response:
    """Acknowledge every open alert of a group the person saw, with one note for all.

    Each acknowledgement is its own command, checked and audited as one from the alert
    page. All the alerts are checked first (known, in the person's areas, in the group
    named): one that is not refuses the whole form, and nothing is done. An alert that
    someone else acknowledged or resolved meanwhile is counted and left as it is.
    """
    session = await current(request)
    if session is None:
        raise Forbidden("Sign in again to act.")
    desk = request.app[DESK_KEY]
    data = await request.post()
    csrf = data.get("csrf")
    if not same(session.csrf, csrf if isinstance(csrf, str) else None):
        raise Forbidden("The form was not this session's.")
    if not session.principal.has(Role.ACKNOWLEDGE):
        raise Forbidden("Your token may not acknowledge alerts.")
    asked = _group_form(data)
    # The queue to return to, checked before anything is done.
    kept = {k: data.get(f"q_{k}") for k in ("area", "rule", "severity", "status", "group")}
    query = QueueQuery.parse({k: v for k, v in kept.items() if isinstance(v, str)})
    before = await _group_statuses(desk, session, asked)
    acked = skipped = 0
    for alert_id in asked.ids:
        try:
            await desk.actions.act(session.principal, alert_id, Role.ACKNOWLEDGE, asked.body)
        except Conflict:
            skipped += 1
            before.pop(alert_id)
        else:
            acked += 1
    await _settled(desk, before)
    return redirect(query.link(acked=str(acked), skipped=str(skipped) if skipped else None))


async def child_page(request: web.Request) -> web.Response:
    """Show a child's chronology: risk level and factors, events, obligations, alerts."""
    session = await signed_in(request)
    desk = request.app[DESK_KEY]
    child_id = request.match_info["child_id"]
    body = await api.chronology(desk, session.principal, child_id)
    await desk.auditor.record(AuditAction.CHILD_VIEWED, session.principal, child_id=child_id)
    now = desk.clock.now()
    zone = desk.policy.zone
    async with desk.database.read() as connection:
        about = await queries.alerts_about(
            connection, "child", child_id, queries.AlertFilter.for_principal(session.principal)
        )
    risk = None
    if body["level"] is not None:
        breaches = [
            (a.summary.rule, a.summary.severity)
            for a in about
            if a.summary.status in {"open", "acknowledged"}
        ]
        breaches += [
            (o["rule"], o["severity"]) for o in body["obligations"] if o["status"] == "overdue"
        ]
        risk = present.risk_shown(body["level"], body["score"], breaches)
    html = render(
        "child.html",
        **base(
            request,
            session,
            child_id=child_id,
            risk=risk,
            notice=None if risk else "No risk view of this child has been published yet.",
            chronology=[
                {**item, "when": present.when(datetime.fromisoformat(item["iso"]), zone)}
                for item in body["chronology"]
            ],
            factors=[
                {**f, "when": present.when(datetime.fromisoformat(f["at"]), zone)}
                for f in body["factors"]
            ],
            alerts=[present.row(a.summary, now, zone) for a in about],
            others_hold_more=body["others_hold_more"],
        ),
    )
    return page(html)


Bound = Literal["from", "to"]


def _local_moment(raw: str, name: Bound, desk: Desk) -> datetime:
    """Return a moment the handover form gives: local time (no offset) or with an offset."""
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidQuery(
            f"`{name}` is not a date and time: use 2026-12-04T07:00 (local time)",
            errors=[{"loc": name, "msg": "not a date and time"}],
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=desk.policy.zone)
    return moment


def handover_window(query: Mapping[str, str], desk: Desk) -> tuple[datetime, datetime]:
    """Return the shift asked for: `from` and `to`, by default the last 12 hours."""
    now = desk.clock.now().replace(second=0, microsecond=0)
    raw_end = (query.get("to") or "").strip()
    raw_start = (query.get("from") or "").strip()
    end = _local_moment(raw_end, "to", desk) if raw_end else now
    start = _local_moment(raw_start, "from", desk) if raw_start else end - HANDOVER_DEFAULT
    if start >= end:
        raise InvalidQuery(
            "The shift's `from` must be before its `to`.",
            errors=[{"loc": "from", "msg": "not before `to`"}],
        )
    if end - start > HANDOVER_LONGEST:
        raise InvalidQuery(
            "A handover covers at most 7 days: choose a shorter window.",
            errors=[{"loc": "from", "msg": "more than 7 days before `to`"}],
        )
    return start, end


def _utc_minute(at: datetime) -> str:
    """Return a moment as the audit trail's filters hold it (UTC, to the minute)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def _local_input(at: datetime, desk: Desk) -> str:
    """Return a moment as a `datetime-local` input's value, in the deployment's zone."""
    return at.astimezone(desk.policy.zone).strftime("%Y-%m-%dT%H:%M")


async def handover_page(request: web.Request) -> web.Response:
    """Show what a shift raised, acknowledged and resolved, and what it left open."""
    session = await signed_in(request)
    desk = request.app[DESK_KEY]
    start, end = handover_window(request.query, desk)
    async with desk.database.read() as connection:
        found, more = await queries.handover(
            connection,
            queries.AlertFilter.for_principal(session.principal),
            start,
            end,
            HANDOVER_LIMIT,
        )
    shown = listing(
        {"view": "handover", "from": _utc_minute(start), "to": _utc_minute(end)},
        [d.summary.alert_id for d in found],
    )
    await audit_list(desk.auditor, desk.sessions, session, shown)
    now = desk.clock.now()
    zone = desk.policy.zone
    shift = present.handover(
        [(d.summary, AlertView.model_validate(d.view)) for d in found], start, end, now, zone
    )
    hours = [8, 12, 24]
    quick = {
        f"Last {h} h": f"{HANDOVER_PATH}?"
        + urlencode({"from": _local_input(now - timedelta(hours=h), desk)})
        for h in hours
    }
    html = render(
        "handover.html",
        **base(
            request,
            session,
            shift=shift,
            more=more,
            limit=HANDOVER_LIMIT,
            start_value=_local_input(start, desk),
            end_value=_local_input(end, desk),
            zone_name=str(zone),
            quick=quick,
            duty=present.on_duty(desk.policy.on_duty(session.principal.areas, now), zone),
            has_policy=desk.policy.policy is not None,
            printed=present.when(now, zone),
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
        zone = desk.policy.zone
        context.update(
            records=[
                {**r, "when": present.when(datetime.fromisoformat(r["at"]), zone)} for r in records
            ],
            next=f"/console/audit?{urlencode({**shown, 'cursor': cursor})}" if cursor else None,
            csv_href=f"/console/audit?{urlencode({**shown, 'format': 'csv'})}",
        )
    return page(render("audit.html", **base(request, session, **context)))
