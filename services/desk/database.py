"""The desk's PostgreSQL: an asyncio engine (psycopg 3) whose failures become one error.

Every way the database can fail to answer (refused connections, a server gone mid-query,
a statement or connection timeout, an exhausted pool) is raised as `DatabaseUnavailable`
(503 with `Retry-After`); anything else is a bug and stays what it is. Connections are
checked before use (`pool_pre_ping`), so a restarted server costs one failed request at
most per stale connection, not a broken pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import exc, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from services.desk.errors import DatabaseUnavailable
from services.desk.migrate import SchemaState, state_of

if TYPE_CHECKING:
    from services.desk.settings import DatabaseSettings

log = structlog.get_logger(__name__)

# Failures of the connection or the server, not of the statement's own logic.
_UNAVAILABLE = (exc.OperationalError, exc.InterfaceError, TimeoutError, OSError)


def driver_url(url: str) -> str:
    """Return `url` with the psycopg 3 driver named (`postgresql://` is accepted too)."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres", "postgresql+psycopg"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    else:
        raise ValueError("DESK_DATABASE_URL must be a postgresql:// URL")
    return parsed.render_as_string(hide_password=False)


class Database:
    """The engine, and connections that fail as `DatabaseUnavailable`."""

    def __init__(self, url: str, settings: DatabaseSettings, *, pooled: bool = True) -> None:
        self.settings = settings
        connect_args = {
            "connect_timeout": max(1, round(settings.connect_timeout_seconds)),
            "options": f"-c statement_timeout={int(settings.statement_timeout_seconds * 1000)}",
        }
        # The pages share a pool; the projector (one transaction at a time, each a batch)
        # opens a connection per transaction, so no connection that outlived a server
        # restart is ever reused by it, and it never waits for the pages' pool.
        pool: dict[str, object] = (
            {
                "pool_size": settings.pool_size,
                "max_overflow": settings.max_overflow,
                "pool_timeout": settings.connect_timeout_seconds,
                "pool_pre_ping": True,
            }
            if pooled
            else {"poolclass": NullPool}
        )
        self.engine: AsyncEngine = create_async_engine(
            driver_url(url), connect_args=connect_args, **pool
        )

    @property
    def _deadline(self) -> float:
        return self.settings.connect_timeout_seconds + self.settings.statement_timeout_seconds

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """Yield a connection for reads (its transaction is rolled back at the end)."""
        try:
            async with asyncio.timeout(self._deadline), self.engine.connect() as connection:
                yield connection
        except _UNAVAILABLE as error:
            raise unavailable(error) from None

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """Yield a connection in a transaction, committed when the block ends without error."""
        try:
            async with asyncio.timeout(self._deadline), self.engine.begin() as connection:
                yield connection
        except _UNAVAILABLE as error:
            raise unavailable(error) from None

    async def schema(self) -> SchemaState:
        """Return where the database's schema stands against this code."""
        async with self.read() as connection:
            return await connection.run_sync(state_of)

    async def ping(self) -> None:
        """Raise DatabaseUnavailable unless the database answers a trivial query."""
        async with self.read() as connection:
            await connection.execute(text("SELECT 1"))

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


def unavailable(error: BaseException) -> DatabaseUnavailable:
    """Return the 503 for a database failure, logged by type only (messages quote SQL)."""
    log.warning("database_unavailable", error=type(error).__name__)
    return DatabaseUnavailable("the database did not answer; retry shortly")
