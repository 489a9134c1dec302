"""The timeliness report in the duty-manager console: `/console/reports/timeliness`.

For people signed in to the console (services/notify/console/sessions.py): the same
report as `GET /v1/reports/timeliness`, for the session's token (role `read`, its areas),
audited the same way (`report.viewed`), drawn inside the console's layout with a form
to change the period, rule, area and threshold, and a CSV link. A browser cannot send
the API's bearer header; the session is how a person gets the page. Served with the
console's security headers (its Content-Security-Policy allows the console's own style
sheets only, so the page's sheet is served here too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode

import faust
from faust.web import Request, Response, View

from services.common.audit import AuditUnavailable
from services.common.auth import Role
from services.notify.console import HEADERS, render
from services.notify.console.sessions import SESSION_COOKIE, Session, Sessions
from services.notify.reports.page import CSS, render_console_page
from services.notify.reports.service import parse_query, representation
from services.notify.reports.timeliness import to_csv

if TYPE_CHECKING:
    from services.notify.reports.service import TimelinessReports

PATH = "/console/reports/timeliness"
STYLESHEET = "/console/reports/static/report.css"


def add_console_report(  # noqa: C901 - one closure per page, one refusal per check
    app: faust.App, reports: TimelinessReports, sessions: Sessions
) -> None:
    """Register the console's report page and its style sheet."""

    def problem(view: View, status: int, title: str, message: str, session: Session) -> Response:
        html = render("problem.html", title=title, message=message, session=session)
        return view.html(html, status=status, headers=HEADERS)

    @app.page(PATH)
    async def report_page(self: View, request: Request) -> Response:  # noqa: PLR0911 - one refusal per check
        session = sessions.find(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return self.html("", status=303, headers={**HEADERS, "Location": "/console/sign-in"})
        principal = session.principal
        if not principal.has(Role.READ):
            return problem(self, 403, "Not allowed", "Your token may not read reports.", session)
        try:
            query = parse_query(request.query, reports.clock.now())
            kind = representation(request.query.get("format") or "html", None)
        except ValueError as exc:
            return problem(self, 422, "Not a report", str(exc), session)
        if query.area is not None and not principal.may_see_area(query.area):
            message = f"Your token's areas do not include {query.area}."
            return problem(self, 403, "Not allowed", message, session)
        if not reports.recovered:
            message = "The report's figures are being loaded; try again in a few seconds."
            return problem(self, 503, "Not ready", message, session)
        try:
            report = await reports.viewed(query, principal, kind)
        except AuditUnavailable:
            message = "The record of this read could not be kept; try again shortly."
            return problem(self, 503, "Not available", message, session)
        if kind == "csv":
            return self.text(
                to_csv(report),
                content_type="text/csv",
                headers={**HEADERS, "Content-Disposition": 'attachment; filename="timeliness.csv"'},
            )
        if kind == "json":
            return self.json(report.to_json(), headers=HEADERS)
        given = {k: v for k, v in request.query.items() if k != "format" and v}
        html = render_console_page(
            report,
            session=session,
            action=PATH,
            csv_href=f"{PATH}?{urlencode({**given, 'format': 'csv'})}",
            stylesheet=STYLESHEET,
        )
        return self.html(html, headers=HEADERS)

    @app.page(STYLESHEET)
    async def report_css(self: View, _request: Request) -> Response:
        return self.text(CSS, content_type="text/css", headers=HEADERS)
