"""Alembic's environment for the desk: online migrations only, one advisory lock.

Run through `services.desk.migrate` (`safeguard db upgrade`), never at import or by the
service itself: a Job runs it before a rollout.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

from services.desk.schema import metadata

# Two upgrades started together (two Jobs, a Job and a developer) take turns.
_LOCK = 0x5AFE_DE5C


def run_online() -> None:
    """Apply the migrations over one connection."""
    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("no database URL given to the migrations")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _LOCK})
        connection.commit()
        try:
            context.configure(connection=connection, target_metadata=metadata)
            with context.begin_transaction():
                context.run_migrations()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK})
            connection.commit()
    engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("the desk's migrations run against a database (no --sql mode)")
run_online()
