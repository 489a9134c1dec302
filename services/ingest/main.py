"""Entry point of the ingest service: `safeguard-ingest`."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from services.common.auth import TokenConfigError
from services.common.clock import SystemClock
from services.common.environment import load_settings
from services.common.logging import configure_logging
from services.common.metrics import service_registry
from services.ingest.http import create_app
from services.ingest.producer import EventWriter
from services.ingest.settings import IngestSettings


def build(settings: IngestSettings, registry: CollectorRegistry | None = None) -> web.Application:
    """Compose the application from its settings; the writer closes with the app."""
    # Tokens first: a refused token file stops start-up before anything connects.
    auth = settings.authenticator()
    writer = EventWriter(
        settings.kafka,
        timeout_seconds=settings.produce_timeout_seconds,
        readiness_timeout_seconds=settings.readiness_timeout_seconds,
        producer=settings.producer,
    )
    app = create_app(
        settings,
        writer,
        auth,
        SystemClock(),
        registry if registry is not None else service_registry(),
    )

    async def close_writer(_app: web.Application) -> None:
        writer.close()

    app.on_cleanup.append(close_writer)
    return app


def main() -> None:
    """Start the ingest HTTP server in the foreground."""
    settings = load_settings(IngestSettings, "ingest")
    configure_logging(json=settings.log_json, level=settings.log_level)
    try:
        app = build(settings)
    except TokenConfigError as exc:
        # Said plainly on stderr, exit status 1: the operator must read why.
        raise SystemExit(f"safeguard-ingest: {exc}") from None
    web.run_app(app, host=settings.host, port=settings.port, print=None, **server_options(settings))


def server_options(settings: IngestSettings) -> dict[str, Any]:
    """Return how the HTTP server runs the application (for `run_app` and `AppRunner`)."""
    # aiohttp's keep-alive timer runs from the connection's start and closes a connection
    # still waiting for a whole request when it fires: it bounds slowly sent headers too.
    return {"access_log": None, "keepalive_timeout": settings.header_timeout_seconds}


if __name__ == "__main__":
    main()
