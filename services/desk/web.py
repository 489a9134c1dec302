"""HTTP plumbing of the desk: refusals mapped to answers in one place, metrics, probes.

`errors_middleware` turns every `DeskError` into its status: a JSON body on the API, the
console's problem page under `/console` (services.desk.console renders it). A request
that reaches no route is a 404 in the same shape. `metrics_middleware` counts requests
by route template (never the path itself: paths hold ids).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from services.common.auth import Authenticator, Principal, Role
from services.desk.errors import DeskError, Forbidden, Unauthenticated, Unavailable
from services.desk.metrics import DeskMetrics

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ProblemPage = Callable[[web.Request, DeskError], Awaitable[web.StreamResponse]]

# Header values arrive decoded with surrogate escapes; a token can only be printable ASCII.
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]*$")
METRICS_KEY = web.AppKey("metrics", DeskMetrics)
PROBLEM_PAGE_KEY: web.AppKey[ProblemPage] = web.AppKey("problem_page")


def json_response(
    body: object, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """Return a JSON answer."""
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer a refusal with its status, as JSON or as the console's problem page."""
    try:
        return await handler(request)
    except DeskError as error:
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
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
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
    if not principal.has(role):
        raise Forbidden(
            f"the token lacks the {role.value!r} role",
            errors=[{"loc": "(root)", "msg": f"this token may not use this route ({role.value})"}],
        )
    return principal


def out_of_scope(area: str | None) -> Forbidden:
    """Return the 403 for a thing of an area outside the caller's (area codes are not personal)."""
    message = f"the token's areas do not include {area!r}"
    return Forbidden(
        message, errors=[{"loc": "area", "msg": f"this token may not act on area {area}"}]
    )
