"""HTTP plumbing of the desk: refusals mapped to answers in one place, metrics, headers.

`errors_middleware` turns every `DeskError` into its status: a JSON body on the API, the
console's problem page under `/console` (services.desk.console renders it). A request
that reaches no route is a 404 in the same shape. Every refusal of access (401, 403,
429: no or a wrong token, a role or an area the caller lacks, a failed or throttled
sign-in) is logged and audited as `request.refused`, by the caller's name when it is
known and by its address when not; the record is written in the background, so the
refusal is answered at once whether or not the broker takes it.

`body_middleware` reads every request body before the handler runs, within
`DESK_BODY_TIMEOUT_SECONDS` (else 408) and `DESK_MAX_BODY_BYTES` (else 413); the
server's keep-alive timer (`DESK_HEADER_TIMEOUT_SECONDS`, services.desk.main) bounds
slowly sent headers. `headers_middleware` puts the security headers on every answer
(pages set their own Content-Security-Policy). `metrics_middleware` counts requests by
route template (never the path itself: paths hold ids).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from services.common.audit import client_actor
from services.common.auth import Authenticator, Principal, Role
from services.common.environment import is_development
from services.desk.errors import (
    DeskError,
    Forbidden,
    InvalidBody,
    RequestTimeout,
    Unauthenticated,
    Unavailable,
)
from services.desk.metrics import DeskMetrics
from services.desk.throttle import client_address

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ProblemPage = Callable[[web.Request, DeskError], Awaitable[web.StreamResponse]]

# Header values arrive decoded with surrogate escapes; a token can only be printable ASCII.
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]*$")
METRICS_KEY = web.AppKey("metrics", DeskMetrics)
PROBLEM_PAGE_KEY: web.AppKey[ProblemPage] = web.AppKey("problem_page")
#: Records a refusal in the background: (actor, status, route template).
Refusals = Callable[[str, int, str], None]
REFUSALS_KEY: web.AppKey[Refusals] = web.AppKey("refusals")
#: Who the request is from, once known (a token's name, a person's subject).
ACTOR_KEY: web.RequestKey[str] = web.RequestKey("desk_actor")
#: The client's address as the throttle and refusals name it (set by the sign-in pages).
ADDRESS_KEY: web.RequestKey[str] = web.RequestKey("desk_address")
BODY_TIMEOUT_KEY: web.AppKey[float] = web.AppKey("body_timeout", float)
#: How many trusted proxies append to X-Forwarded-For (services.desk.throttle.client_address).
FORWARDED_HOPS_KEY: web.AppKey[int] = web.AppKey("forwarded_hops", int)
REFUSED = frozenset({401, 403, 429})
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    # Answers other than the console's pages (which set their own) run nothing.
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


def json_response(
    body: object, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """Return a JSON answer."""
    return web.json_response(body, status=status, headers=headers)


def route_of(request: web.Request) -> str:
    """Return the request's route template (`/v1/alerts/{alert_id}`), never its path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def refused(request: web.Request, status: int) -> None:
    """Log and audit a refused request: by its caller's name, or its client address."""
    address = request.get(ADDRESS_KEY) or client_address(
        request, request.app.get(FORWARDED_HOPS_KEY, 0)
    )
    actor = request.get(ACTOR_KEY) or client_actor(address)
    route = route_of(request)
    log.warning("access_refused", status=status, actor=actor, route=route)
    if REFUSALS_KEY in request.app:
        request.app[REFUSALS_KEY](actor, status, route)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer a refusal with its status, as JSON or as the console's problem page."""
    try:
        return await handler(request)
    except DeskError as error:
        if error.status in REFUSED:
            refused(request, error.status)
        if isinstance(error, Unavailable):
            request.app[METRICS_KEY].unavailable.labels(
                dependency="database" if error.code == "database_unavailable" else "broker"
            ).inc()
        if request.path.startswith("/console") and PROBLEM_PAGE_KEY in request.app:
            problem: ProblemPage = request.app[PROBLEM_PAGE_KEY]
            return await problem(request, error)
        return json_response(error.body(), error.status, error.headers)
    except web.HTTPNotFound:
        if request.path.startswith("/console") and PROBLEM_PAGE_KEY in request.app:
            missing: ProblemPage = request.app[PROBLEM_PAGE_KEY]
            return await missing(request, _NoPage("no such page"))
        return json_response({"error": "not_found", "message": "no such resource"}, 404)
    except web.HTTPMethodNotAllowed:
        return json_response(
            {"error": "method_not_allowed", "message": "this resource does not take that method"},
            405,
        )


@web.middleware
async def body_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Read the request's body before the handler, bounded in time and size."""
    if request.can_read_body:
        try:
            async with asyncio.timeout(request.app[BODY_TIMEOUT_KEY]):
                await request.read()  # kept by aiohttp: request.post() and .read() reuse it
        except TimeoutError:
            raise RequestTimeout("the request body did not arrive in time") from None
        except web.HTTPRequestEntityTooLarge:
            raise InvalidBody(413, "too_large", "the request body is too large", []) from None
    return await handler(request)


@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Put the security headers on every answer, redirects and refusals included."""
    extra = dict(SECURITY_HEADERS)
    if not is_development():
        extra["Strict-Transport-Security"] = "max-age=31536000"
    try:
        response = await handler(request)
    except web.HTTPException as exception:
        for name, value in extra.items():
            exception.headers.setdefault(name, value)
        raise
    if request.path.startswith("/console/static/") or request.path == "/metrics":
        extra.pop("Cache-Control")  # style sheets cache; Prometheus sets its own
    for name, value in extra.items():
        response.headers.setdefault(name, value)
    return response


class _NoPage(DeskError):
    status = 404
    code = "not_found"
    title = "Not found"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time requests by route template and status."""
    started = time.monotonic()
    status = 500
    try:
        response = await handler(request)
    except web.HTTPException as exception:
        status = exception.status
        raise
    else:
        status = response.status
        return response
    finally:
        route = route_of(request)
        metrics = request.app[METRICS_KEY]
        metrics.requests.labels(route=route, method=request.method, status=str(status)).inc()
        metrics.latency.labels(route=route).observe(time.monotonic() - started)


def principal_of(request: web.Request, auth: Authenticator, role: Role) -> Principal:
    """Return the caller of an API request, or raise the 401 or 403."""
    header = request.headers.get("Authorization")
    principal = (
        auth.authenticate(header) if header is not None and _PRINTABLE_ASCII.match(header) else None
    )
    if principal is None:
        raise Unauthenticated("a valid bearer token is required")
    request[ACTOR_KEY] = principal.name
    if not principal.has(role):
        raise Forbidden(
            f"the token lacks the {role.value!r} role",
            errors=[{"loc": "(root)", "msg": f"this token may not use this route ({role.value})"}],
        )
    return principal


def out_of_scope(area: str | None) -> Forbidden:
    """Return the 403 for a report asked for an area outside the caller's.

    Only a report's `area` parameter is answered so: the caller named the area. An alert
    or child outside the caller's areas is answered exactly as an unknown one (404).
    """
    message = f"the token's areas do not include {area!r}"
    return Forbidden(
        message, errors=[{"loc": "area", "msg": f"this token may not act on area {area}"}]
    )
