"""HTTP pages the stream services serve: `/healthz`, `/readyz`, `/metrics`, nothing else."""

from __future__ import annotations

from collections.abc import Callable

import faust
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry

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
