"""The console's assurance pack page (`/console/reports/pack`), for roles `lead` and `audit`.

The same pack as the API (scoped, audited, the same figures and hash), shown inside the
console, with the PDF and the figures to download. The page follows the console's
Content-Security-Policy: the pack's style sheet is served from its own path.
"""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web
from jinja2 import ChoiceLoader, Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from services.desk import console
from services.desk.app import DESK_KEY
from services.desk.errors import Forbidden
from services.desk.pack import render
from services.desk.pack.api import PACK_ROLES, answer, area_of
from services.desk.pack.service import FORMATS, parse, scoped_area

PATH = "/console/reports/pack"
STYLESHEET = "/console/reports/pack/static/pack.css"
_ENV = Environment(
    loader=ChoiceLoader(
        [
            PackageLoader("services.desk.pack", "templates"),
            PackageLoader("services.desk", "templates"),
        ]
    ),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def add_routes(app: web.Application) -> None:
    """Register the page and its style sheet."""
    app.router.add_get(PATH, page)
    app.router.add_get(STYLESHEET, stylesheet)


async def page(request: web.Request) -> web.StreamResponse:
    """Show the form, and the pack once a period is chosen (or download it)."""
    session = await console.current(request)
    if session is None:
        raise web.HTTPSeeOther("/console/sign-in", headers=console.HEADERS)
    principal = session.principal
    if not any(principal.has(role) for role in PACK_ROLES):
        raise Forbidden("Your token may not make assurance packs (lead or audit).")
    desk = request.app[DESK_KEY]
    request[console.STALE_KEY] = await desk.staleness()
    query = request.query
    context = {
        "action": PATH,
        "stylesheet": STYLESHEET,
        "period": query.get("period"),
        "area": query.get("area"),
        "areas": principal.areas,
        "body": None,
    }
    if query.get("period"):
        fmt = query.get("format") or "html"
        if fmt not in FORMATS:
            fmt = "html"
        period, as_of = parse(query.get("period"), query.get("as_of"), desk.clock.now())
        area = scoped_area(principal, area_of(query.get("area")))
        made = await desk.packs.make(principal, period, area, as_of)
        if fmt != "html":
            return answer(made, fmt, console.HEADERS)
        given = {"period": period.label, "as_of": made.figures["provenance"]["as_of"]}
        if area is not None:
            given["area"] = area
        context |= {
            "body": Markup(  # noqa: S704 - rendered by the autoescaping template
                render.body(
                    made.figures,
                    made.sha256,
                    generated_at=made.figures["provenance"]["as_of"],
                    caught_up=None,
                    json_name=made.json_name,
                )
            ),
            "sha": made.sha256,
            "pdf_href": f"{PATH}?{urlencode({**given, 'format': 'pdf'})}",
            "json_href": f"{PATH}?{urlencode({**given, 'format': 'json'})}",
        }
    html = _ENV.get_template("pack_page.html").render(**console.base(request, session), **context)
    return console.page(html)


async def stylesheet(_request: web.Request) -> web.Response:
    """Serve the pack's style sheet (the CSP allows no inline styles)."""
    return web.Response(text=render.CSS, content_type="text/css", headers=console.HEADERS)
