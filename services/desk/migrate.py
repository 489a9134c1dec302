"""The desk's schema migrations: apply them (`safeguard db upgrade`) and check a database.

The service never migrates by itself: a migration is reviewed, versioned and run before
the code that needs it (a Job before the rollout). At start, and on every `/readyz`,
the desk compares the database's revision with the newest one its code knows, and
refuses a database that is behind, naming the revision it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    """Return Alembic's configuration for the desk's migrations against `url`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation: a `%` in a password would be read as a reference.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head() -> str:
    """Return the newest revision the code knows."""
    revision = ScriptDirectory.from_config(alembic_config("postgresql://")).get_current_head()
    if revision is None:
        raise RuntimeError("the desk has no migrations")
    return revision


def upgrade(url: str, revision: str = "head") -> None:
    """Apply every migration up to `revision` (the newest by default)."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Undo migrations down to `revision` (`base`: nothing left)."""
    command.downgrade(alembic_config(url), revision)


@dataclass(frozen=True)
class SchemaState:
    """Where a database's schema stands against this code."""

    current: str | None
    needed: str
    known: bool

    @property
    def usable(self) -> bool:
        """Tell whether this code may run on it: at its revision, or a newer unknown one.

        A newer revision is what a rollout looks like (the migration runs before the new
        code replaces the old), so old pods keep serving meanwhile.
        """
        return self.current == self.needed or (self.current is not None and not self.known)

    @property
    def problem(self) -> str | None:
        """Say what is wrong, or None when usable."""
        if self.usable:
            return None
        found = self.current or "no schema"
        return (
            f"the database schema is at {found}; this desk needs revision {self.needed}: "
            "run `safeguard db upgrade`"
        )


def state_of(connection: Connection) -> SchemaState:
    """Return the schema state of the database behind `connection` (synchronous)."""
    current = MigrationContext.configure(connection).get_current_revision()
    script = ScriptDirectory.from_config(alembic_config("postgresql://"))
    known = current is None or current in {r.revision for r in script.walk_revisions()}
    return SchemaState(current=current, needed=head(), known=known)
