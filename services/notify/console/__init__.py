"""The duty-manager console, served by notify on its own port under `/console`.

Server-rendered with Jinja2 (autoescaped), a few lines of plain JavaScript that refresh
the work queue's rows by polling, no build step. Pages read through the same read model
as the alert API (`AlertReads`: the index and the table) and act through the same
`AlertActions`, so every read and act is scoped to the person's areas and audited
exactly as the API does it (`alerts.listed` for each queue page and refresh,
`alert.viewed` per alert page; acknowledging and resolving as the API). The child page
fetches risk's child view server-side with the person's own credential, so risk scopes
and audits it as its own.

Sign-in, sessions and CSRF are in `sessions.py`. Every form POST carries the session's
CSRF token; a POST without it, or with another's, is refused 403 before anything else.
Roles and areas decide which buttons are shown, and are checked again on the POST.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, cast
from urllib.parse import quote, urlencode

import aiohttp
import faust
import structlog
from aiohttp import web
from faust.web import Request, Response, View
from jinja2 import Environment, PackageLoader, select_autoescape

from schemas.alerts import Severity
from schemas.audit import AuditAction
from schemas.notifications import ResolutionReason
from services.common.audit import AuditUnavailable, is_identifier
from services.common.auth import Role
from services.common.clock import Clock
from services.common.environment import is_development
from services.notify.console import present
from services.notify.console.sessions import (
    PRE_SESSION_COOKIE,
    SESSION_COOKIE,
    IdentityProvider,
    Session,
    Sessions,
    same,
)
from services.notify.http import ActionRequest, AlertActions, AlertReads, Audit
from services.notify.index import AlertFilter, AlertSummary, InvalidCursor, decode_urgent_cursor
from services.notify.ledger import AlertRecord, AlertStatus

log = structlog.get_logger(__name__)

PAGE_SIZE = 25
# After an acknowledgement or resolution is published, the page waits this long for the
# worker to apply it, so the page it returns to shows the new state.
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
    "": frozenset({AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED}),
    "open": frozenset({AlertStatus.OPEN}),
    "acknowledged": frozenset({AlertStatus.ACKNOWLEDGED}),
}
_ENV = Environment(
    loader=PackageLoader("services.notify.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class ConsoleConfig:
    """What the console needs beyond the read model and actions."""

    risk_url: str | None
    refresh_seconds: float
    secure_cookies: bool

    @classmethod
    def of(cls, *, risk_url: str | None, refresh_seconds: float) -> ConsoleConfig:
        """Cookies are `Secure` everywhere but development (plain http on loopback)."""
        return cls(risk_url, refresh_seconds, secure_cookies=not is_development())


def render(name: str, **context: Any) -> str:  # noqa: ANN401 - template values
    """Render a template (autoescaped)."""
    return _ENV.get_template(name).render(**context)


class QueryError(ValueError):
    """A filter or cursor the console did not offer."""


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
        if values["severity"] and values["severity"] not in set(Severity):
            raise QueryError("unknown severity")
        if values["status"] not in QUEUE_STATUSES:
            raise QueryError("unknown status")
        for key in ("area", "rule"):
            if values[key] and not is_identifier(values[key]):
                raise QueryError(f"unknown {key}")
        after = (query.get("after") or "").strip() or None
        if after is not None:
            decode_urgent_cursor(after)  # raises InvalidCursor
        return cls(
            area=values["area"] or None,
            rule=values["rule"] or None,
            severity=values["severity"] or None,
            status=values["status"],
            after=after,
        )

    def matches(self, session: Session, *, severity: bool = True) -> AlertFilter:
        """Return the index filter for this query and the person's areas."""
        return AlertFilter(
            statuses=QUEUE_STATUSES[self.status],
            rule=self.rule,
            severity=self.severity if severity else None,
            area=self.area,
            visible=session.principal.may_see_area,
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


def add_console(  # noqa: C901, PLR0913, PLR0915 - one closure per page
    app: faust.App,
    reads: AlertReads,
    *,
    actions: AlertActions,
    audit: Audit,
    clock: Clock,
    identity: IdentityProvider,
    sessions: Sessions,
    config: ConsoleConfig,
) -> None:
    """Register the console's pages on notify's Faust app."""

    def page(view: View, html: str, status: int = 200, **headers: str) -> Response:
        return view.html(html, status=status, headers={**HEADERS, **headers})

    def redirect(view: View, location: str) -> Response:
        return page(view, "", 303, Location=location)

    def session_of(request: Request) -> Session | None:
        return sessions.find(request.cookies.get(SESSION_COOKIE))

    def problem(
        view: View, status: int, title: str, message: str, session: Session | None
    ) -> Response:
        html = render("problem.html", title=title, message=message, session=session)
        return page(view, html, status)

    def set_cookie(response: Response, name: str, value: str) -> None:
        _web(response).set_cookie(
            name,
            value,
            httponly=True,
            secure=config.secure_cookies,
            samesite="Strict",
            path="/console",
        )

    async def form_of(request: Request) -> dict[str, str]:
        data = await request.post()
        return {k: v for k, v in data.items() if isinstance(v, str)}

    def base(session: Session | None, **context: Any) -> dict[str, Any]:  # noqa: ANN401
        return {"session": session, "Role": Role, **context}

    @app.page("/console")
    async def console_root(self: View, request: Request) -> Response:
        return redirect(self, "/console/queue" if session_of(request) else "/console/sign-in")

    @app.page("/console/static/{name}")
    async def static(self: View, _request: Request, name: str) -> Response:
        if name not in STATIC:
            return self.text("not found", status=404)
        body = resources.files("services.notify.console").joinpath("static", name).read_bytes()
        return self.bytes(
            body,
            content_type=STATIC[name],
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "max-age=300"},
        )

    @app.page("/console/sign-in")
    class SignIn(View):
        async def get(self, request: Request) -> Response:
            if session_of(request) is not None:
                return redirect(self, "/console/queue")
            pre = request.cookies.get(PRE_SESSION_COOKIE) or _random()
            html = render("sign_in.html", **base(None, pre=pre, fields=identity.fields))
            response = page(self, html)
            set_cookie(response, PRE_SESSION_COOKIE, pre)
            return response

        async def post(self, request: Request) -> Response:
            form = await form_of(request)
            # Login CSRF: the form's value must match the cookie only this site could set.
            if not same(request.cookies.get(PRE_SESSION_COOKIE, ""), form.get("csrf")):
                return problem(self, 403, "Refused", "The form was not this console's.", None)
            who = identity.complete(form)
            if who is None:
                html = render(
                    "sign_in.html",
                    **base(
                        None,
                        pre=request.cookies.get(PRE_SESSION_COOKIE),
                        fields=identity.fields,
                        error="That token is not valid.",
                    ),
                )
                return page(self, html, 401)
            if not who.principal.has(Role.READ):
                return problem(self, 403, "No access", "This token may not read alerts.", None)
            session = sessions.start(who)
            log.info("console_signed_in", principal=who.principal.name)
            response = redirect(self, "/console/queue")
            set_cookie(response, SESSION_COOKIE, session.id)
            _web(response).del_cookie(PRE_SESSION_COOKIE, path="/console")
            return response

    @app.page("/console/sign-out")
    class SignOut(View):
        async def post(self, request: Request) -> Response:
            session = session_of(request)
            if session is None:
                return redirect(self, "/console/sign-in")
            form = await form_of(request)
            if not same(session.csrf, form.get("csrf")):
                return problem(self, 403, "Refused", "The form was not this session's.", session)
            sessions.end(session.id)
            log.info("console_signed_out", principal=session.principal.name)
            response = redirect(self, "/console/sign-in")
            _web(response).del_cookie(SESSION_COOKIE, path="/console")
            return response

    async def queue_context(
        view: View, request: Request, session: Session
    ) -> tuple[dict[str, Any] | None, Response | None]:
        try:
            query = QueueQuery.parse(request.query)
        except (QueryError, InvalidCursor) as exc:
            return None, problem(view, 422, "Not a filter", str(exc), session)
        try:
            await audit(AuditAction.ALERTS_LISTED, session.principal, None)
        except AuditUnavailable:
            return None, problem(view, 503, "Try again", "The audit trail is unavailable.", session)
        after = decode_urgent_cursor(query.after) if query.after else None
        found, cursor = reads.index.urgent_page(query.matches(session), PAGE_SIZE, after)
        now = clock.now()
        counts = reads.index.severity_counts(query.matches(session, severity=False))
        # The filters offer every area and rule the person can see, whatever is chosen.
        choices = reads.index.choices(
            AlertFilter(
                statuses=QUEUE_STATUSES[query.status], visible=session.principal.may_see_area
            )
        )
        return {
            "query": query,
            "rows": [present.row(s, now) for s in found],
            "counts": counts,
            "total": sum(counts.values()),
            "next": query.link(after=cursor) if cursor else None,
            "first": query.link() if query.after else None,
            "choices": choices,
            "severities": [s.value for s in sorted(Severity, reverse=True)],
            "partitions": sorted(reads.partitions()),
            "now": present.stamp(now),
            "refresh_ms": int(config.refresh_seconds * 1000),
            "live_src": "/console/queue/live"
            + (f"?{request.query_string}" if request.query_string else ""),
        }, None

    @app.page("/console/queue")
    async def queue(self: View, request: Request) -> Response:
        session = session_of(request)
        if session is None:
            return redirect(self, "/console/sign-in")
        context, refusal = await queue_context(self, request, session)
        if refusal is not None:
            return refusal
        return page(self, render("queue.html", **base(session, **(context or {}))))

    @app.page("/console/queue/live")
    async def queue_live(self: View, request: Request) -> Response:
        session = session_of(request)
        if session is None:
            return self.text("signed out", status=401, headers=HEADERS)
        context, refusal = await queue_context(self, request, session)
        if refusal is not None:
            return refusal
        return page(self, render("queue_live.html", **base(session, **(context or {}))))

    def visible_record(
        view: View, session: Session, alert_id: str
    ) -> tuple[AlertRecord | None, Response | None]:
        record = reads.get(alert_id) if is_identifier(alert_id) else None
        if record is None:
            return None, problem(view, 404, "Not found", "No such alert on this worker.", session)
        if not session.principal.may_see_area(record.alert.area):
            message = f"Your areas do not include {record.alert.area}."
            return None, problem(view, 403, "Not your area", message, session)
        return record, None

    @app.page("/console/alerts/{alert_id}")
    async def alert_page(self: View, request: Request, alert_id: str) -> Response:
        session = session_of(request)
        if session is None:
            return redirect(self, "/console/sign-in")
        record, refusal = visible_record(self, session, alert_id)
        if refusal is not None:
            return refusal
        assert record is not None  # noqa: S101 - one or the other
        try:
            await audit(AuditAction.ALERT_VIEWED, session.principal, alert_id)
        except AuditUnavailable:
            return problem(self, 503, "Try again", "The audit trail is unavailable.", session)
        now = clock.now()
        alert = record.alert
        since = alert.due_at or alert.raised_at
        principal = session.principal
        html = render(
            "alert.html",
            **base(
                session,
                record=record,
                alert=alert,
                status="re-opened"
                if record.reopened_at is not None and record.status is AlertStatus.OPEN
                else record.status.value,
                overdue_for=present.span(now - since),
                overdue_since=present.stamp(since),
                raised_at=present.stamp(alert.raised_at),
                ladder=present.ladder(record),
                timeline=present.timeline(record),
                outcome=present.outcome(record),
                acknowledgement=record.acknowledgement,
                ack_at=present.stamp(record.acknowledgement.acknowledged_at)
                if record.acknowledgement
                else None,
                may_ack=principal.may(Role.ACKNOWLEDGE, alert.area)
                and record.status is AlertStatus.OPEN,
                may_resolve=principal.may(Role.RESOLVE, alert.area)
                and record.status in {AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED},
                reasons=present.REASON_LABELS,
                flash=session.flash[:],
            ),
        )
        session.flash.clear()
        return page(self, html)

    async def act(view: View, request: Request, alert_id: str, role: Role) -> Response:
        session = session_of(request)
        if session is None:
            return problem(view, 401, "Signed out", "Sign in again to act.", None)
        form = await form_of(request)
        if not same(session.csrf, form.get("csrf")):
            return problem(view, 403, "Refused", "The form was not this session's.", session)
        reason = form.get("reason") or None
        if role is Role.RESOLVE and reason not in set(ResolutionReason):
            return problem(view, 422, "Reason needed", "Choose why the alert is resolved.", session)
        try:
            body = ActionRequest(
                by=session.principal.name,
                note=form.get("note") or None,
                reason=ResolutionReason(reason) if role is Role.RESOLVE and reason else None,
            )
        except ValueError:
            return problem(
                view, 422, "Not accepted", "The note has characters it may not have.", session
            )
        before = reads.get(alert_id) if is_identifier(alert_id) else None
        result = await actions.act(session.principal, alert_id, role, body)
        if result.status != 202:  # noqa: PLR2004 - accepted
            titles = {
                403: "Not allowed",
                404: "Not found",
                409: "Already changed",
                503: "Try again",
            }
            return problem(
                view, result.status, titles.get(result.status, "Refused"), result.message, session
            )
        done = "Acknowledged" if role is Role.ACKNOWLEDGE else "Resolved"
        if await _settled(reads, alert_id, before):
            session.flash.append(f"{done}.")
        else:
            session.flash.append(f"{done}: recorded, the page shows it in a moment.")
        return redirect(view, f"/console/alerts/{quote(alert_id)}")

    @app.page("/console/alerts/{alert_id}/acknowledge")
    class Acknowledge(View):
        async def post(self, request: Request, alert_id: str) -> Response:
            return await act(self, request, alert_id, Role.ACKNOWLEDGE)

    @app.page("/console/alerts/{alert_id}/resolve")
    class Resolve(View):
        async def post(self, request: Request, alert_id: str) -> Response:
            return await act(self, request, alert_id, Role.RESOLVE)

    @app.page("/console/children/{child_id}")
    async def child_page(self: View, request: Request, child_id: str) -> Response:
        session = session_of(request)
        if session is None:
            return redirect(self, "/console/sign-in")
        if not is_identifier(child_id):
            return problem(self, 404, "Not found", "No such child.", session)
        child, status = await _child_view(config.risk_url, child_id, session.who.credential)
        if status in {401, 403}:
            return problem(self, 403, "Not allowed", "Your token may not see this child.", session)
        try:
            await audit(AuditAction.ALERTS_LISTED, session.principal, None)
        except AuditUnavailable:
            return problem(self, 503, "Try again", "The audit trail is unavailable.", session)
        alerts = [
            record
            for s in reads.index.subject("child", child_id)
            if session.principal.may_see_area(s.area)
            and (record := reads.get(s.alert_id)) is not None
        ]
        notice = {
            None: "The risk service is not configured (NOTIFY_RISK_URL).",
            404: "The risk service knows no events about this child on the worker that answered.",
            503: "The risk service did not answer; the chronology shows notify's alerts only.",
        }
        html = render(
            "child.html",
            **base(
                session,
                child_id=child_id,
                child=child,
                notice=notice.get(status) if status != 200 else None,  # noqa: PLR2004
                chronology=present.chronology(child, alerts),
                factors=[
                    {**f, "at": present.stamp(_parse(f["at"]))}
                    for f in (child or {}).get("factors", [])
                ],
                alerts=[present.row(_summary(r), clock.now()) for r in alerts],
            ),
        )
        return page(self, html)


async def _child_view(
    risk_url: str | None, child_id: str, credential: str
) -> tuple[dict[str, Any] | None, int | None]:
    """Fetch risk's child view as the signed-in person; (None, status) when not shown."""
    if risk_url is None:
        return None, None
    url = f"{risk_url.rstrip('/')}/v1/children/{quote(child_id)}"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as client,
            client.get(url, headers={"Authorization": f"Bearer {credential}"}) as response,
        ):
            if response.status != 200:  # noqa: PLR2004
                return None, response.status
            body: dict[str, Any] = await response.json()
            return body, 200
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("child_view_unavailable", error=type(exc).__name__)
        return None, 503


async def _settled(reads: AlertReads, alert_id: str, before: AlertRecord | None) -> bool:
    """Wait briefly until the worker has applied an action (the status changed)."""
    old = before.status if before is not None else None
    for _ in range(int(SETTLE_SECONDS / 0.1)):
        record = reads.get(alert_id)
        if record is not None and record.status is not old:
            return True
        await asyncio.sleep(0.1)
    return False


def _web(response: Response) -> web.Response:
    # Faust's aiohttp driver answers with aiohttp responses; its own type does not say so.
    return cast("web.Response", response)


def _random() -> str:
    return secrets.token_urlsafe(32)


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _summary(record: AlertRecord) -> AlertSummary:
    return AlertSummary.of(record)
