"""Entry point of the desk: `safeguard-desk`."""

from __future__ import annotations

from typing import Any

import sqlalchemy
from aiohttp import web

from services.common.auth import TokenConfigError
from services.common.environment import load_settings
from services.common.logging import configure_logging
from services.desk.app import create_app
from services.desk.database import driver_url
from services.desk.migrate import state_of
from services.desk.settings import DeskSettings


class SchemaTooOld(RuntimeError):
    """The database's schema is older than this code."""


def check_schema(url: str, timeout: float) -> str | None:
    """Refuse a schema older than the code; return a warning when the database is away."""
    engine = sqlalchemy.create_engine(
        driver_url(url), connect_args={"connect_timeout": max(1, round(timeout))}
    )
    try:
        with engine.connect() as connection:
            state = state_of(connection)
    except sqlalchemy.exc.OperationalError:
        # Started anyway: /readyz says why until the database answers.
        return "the database does not answer yet"
    finally:
        engine.dispose()
    if state.problem is not None:
        raise SchemaTooOld(state.problem)
    return None


def main() -> None:
    """Start the desk in the foreground."""
    settings = load_settings(DeskSettings, "desk")
    configure_logging(json=settings.log_json, level=settings.log_level)
    try:
        warning = check_schema(
            settings.database_url.get_secret_value(), settings.db.connect_timeout_seconds
        )
        app = create_app(settings)
    except (TokenConfigError, SchemaTooOld, ValueError) as error:
        # Said plainly on stderr, exit status 1: the operator must read why.
        raise SystemExit(f"safeguard-desk: refusing to start: {error}") from None
    if warning is not None:
        import structlog  # noqa: PLC0415

        structlog.get_logger(__name__).warning("desk_starting_without_database", reason=warning)
    web.run_app(app, host=settings.host, port=settings.port, print=None, **server_options(settings))


def server_options(settings: DeskSettings) -> dict[str, Any]:
    """Return how the HTTP server runs the application (for `run_app` and `AppRunner`)."""
    # aiohttp's keep-alive timer runs from the connection's start and closes a connection
    # still waiting for a whole request when it fires: it bounds slowly sent headers too.
    # Bodies are bounded by services.desk.web.body_middleware.
    return {"access_log": None, "keepalive_timeout": settings.header_timeout_seconds}


if __name__ == "__main__":
    main()
