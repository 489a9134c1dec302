"""HTTP pages every Faust-based service serves: `/healthz`, `/readyz`, `/metrics`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry

from services.common.auth import Authenticator, Principal, Role
from services.common.metrics import CONTENT_TYPE_LATEST, exposition


def add_probe_pages(
    app: faust.App, registry: CollectorRegistry, *, ready: Callable[[], bool]
) -> None:
    """Register the liveness, readiness and metrics pages on a Faust app."""

    @app.page("/healthz")
    async def healthz(self: View, _request: Request) -> Response:
        return self.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(self: View, _request: Request) -> Response:
        if ready():
            return self.json({"status": "ready"})
        return self.json({"status": "starting"}, status=503)

    @app.page("/metrics")
    async def metrics(self: View, _request: Request) -> Response:
        # aiohttp adds the charset itself and refuses one inside content_type.
        content_type = CONTENT_TYPE_LATEST.split("; charset")[0]
        return self.text(exposition(registry).decode(), content_type=content_type)


def authorise(
    view: View, request: Request, auth: Authenticator, role: Role
) -> tuple[Principal | None, Response | None]:
    """Return the caller, or the 401/403 response to send instead."""
    principal = auth.authenticate(request.headers.get("Authorization"))
    if principal is None:
        return None, view.json(
            {"error": "unauthenticated", "message": "a valid bearer token is required"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="safeguard"'},
        )
    if not principal.has(role):
        return None, view.json(
            {"error": "forbidden", "message": f"token lacks the {role.value!r} role"}, status=403
        )
    return principal, None


def error(view: View, status: int, code: str, message: str, **extra: Any) -> Response:  # noqa: ANN401
    """Return a JSON error body in the same shape as the ingest service's."""
    return view.json({"error": code, "message": message, **extra}, status=status)


def unavailable(view: View, what: str) -> Response:
    """Return the 503 for an action that could not be recorded or published."""
    return view.json(
        {"error": "unavailable", "message": f"the broker did not take {what}; retry later"},
        status=503,
        headers={"Retry-After": "5"},
    )


def out_of_scope(view: View, area: str | None) -> Response:
    """Return the 403 for a token whose areas do not include the thing's area."""
    message = f"token may not act on area {area!r}"
    return view.json(
        {"error": "forbidden", "message": message, "errors": [{"loc": "area", "msg": message}]},
        status=403,
    )
