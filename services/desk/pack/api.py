"""`GET /v1/reports/pack`: the assurance pack as JSON (its figures), HTML or PDF.

Roles `lead` (a strategic lead) and `audit` (a data-protection officer); an area-scoped
token gets its own area's pack only (services.desk.pack.service). The JSON answer is
the canonical figures themselves, byte for byte: its SHA-256 is the one the document
prints (also sent as `X-Safeguard-Figures-SHA256` with every format).
"""

from __future__ import annotations

import re

from aiohttp import web

from services.common.auth import Principal, Role
from services.desk.app import DESK_KEY
from services.desk.errors import Forbidden, InvalidQuery, Unauthenticated
from services.desk.pack.service import FORMATS, Pack, parse, scoped_area

PACK_ROLES = (Role.LEAD, Role.AUDIT)
SHA_HEADER = "X-Safeguard-Figures-SHA256"
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]*$")
_AREA = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def add_routes(app: web.Application) -> None:
    """Register the pack's route."""
    app.router.add_get("/v1/reports/pack", pack)


def caller(request: web.Request) -> Principal:
    """Return the caller, who must hold `lead` or `audit` (401, 403 otherwise)."""
    header = request.headers.get("Authorization")
    desk = request.app[DESK_KEY]
    principal = (
        desk.auth.authenticate(header)
        if header is not None and _PRINTABLE_ASCII.match(header)
        else None
    )
    if principal is None:
        raise Unauthenticated("a valid bearer token is required")
    if not any(principal.has(role) for role in PACK_ROLES):
        raise Forbidden(
            "the token lacks the 'lead' or 'audit' role",
            errors=[{"loc": "(root)", "msg": "this token may not use this route (lead, audit)"}],
        )
    return principal


def area_of(value: str | None) -> str | None:
    """Return the `area` parameter (an area code), or 422."""
    if not value:
        return None
    if not _AREA.fullmatch(value):
        raise InvalidQuery("area must be an area code (letters, digits, . _ : -)")
    return value


def answer(made: Pack, fmt: str, headers: dict[str, str] | None = None) -> web.Response:
    """Return the pack in `fmt`, named for download, with its figures' hash."""
    extra = {SHA_HEADER: made.sha256, **(headers or {})}
    if fmt == "json":
        return web.Response(
            body=made.figures_bytes,
            content_type="application/json",
            headers={**extra, "Content-Disposition": f'inline; filename="{made.json_name}"'},
        )
    if fmt == "pdf":
        return web.Response(
            body=made.pdf(),
            content_type="application/pdf",
            headers={**extra, "Content-Disposition": f'attachment; filename="{made.name}.pdf"'},
        )
    return web.Response(text=made.html, content_type="text/html", headers=extra)


async def pack(request: web.Request) -> web.Response:
    """`GET /v1/reports/pack?period=2026-Q3&area=north&format=pdf&as_of=...`."""
    desk = request.app[DESK_KEY]
    principal = caller(request)
    fmt = request.query.get("format") or "json"
    if fmt not in FORMATS:
        raise InvalidQuery("format must be json, html or pdf")
    period, as_of = parse(request.query.get("period"), request.query.get("as_of"), desk.clock.now())
    area = scoped_area(principal, area_of(request.query.get("area")))
    made = await desk.packs.make(principal, period, area, as_of)
    return answer(made, fmt)
