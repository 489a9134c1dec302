"""`safeguard db`: the desk's database schema, migrated by hand or by a Job before a rollout.

    safeguard db upgrade [--url URL]     apply every migration the code has
    safeguard db status  [--url URL]     the database's revision against the code's

The URL is `DESK_DATABASE_URL` unless `--url` is given (a postgresql:// URL). Exit codes:
0 done (or up to date), 1 the database is unreachable or behind (`status`).
"""

# Typer reads the annotations at run time: no `from __future__ import annotations` here.

from typing import Annotated

import sqlalchemy
import typer

from services.desk import migrate
from services.desk.database import driver_url

db_app = typer.Typer(
    help="The desk's database: migrate it, see where it stands.", no_args_is_help=True
)

UrlOption = Annotated[
    str,
    typer.Option(envvar="DESK_DATABASE_URL", help="the database (default: DESK_DATABASE_URL)"),
]


def _url(url: str) -> str:
    try:
        return driver_url(url)
    except ValueError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1) from None


@db_app.command("upgrade")
def upgrade(url: UrlOption) -> None:
    """Apply every migration the code has (safe to run again: nothing left to do)."""
    try:
        migrate.upgrade(_url(url))
    except sqlalchemy.exc.OperationalError as error:
        typer.echo(f"the database does not answer ({type(error.orig).__name__})", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"database at revision {migrate.head()}")


@db_app.command("status")
def status(url: UrlOption) -> None:
    """Say which revision the database is at and which one the code needs."""
    engine = sqlalchemy.create_engine(_url(url))
    try:
        with engine.connect() as connection:
            state = migrate.state_of(connection)
    except sqlalchemy.exc.OperationalError as error:
        typer.echo(f"the database does not answer ({type(error.orig).__name__})", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    typer.echo(f"database at {state.current or 'no schema'}; the code needs {state.needed}")
    if state.problem is not None:
        typer.echo(state.problem, err=True)
        raise typer.Exit(1)
