"""`safeguard desk rebuild`: the desk's database made again from the topics.

    safeguard desk rebuild --url postgresql://.../safeguard_new

Run it where the desk runs (a desk pod: `kubectl exec`), so that it reads the desk's own
settings (`DESK_*`: the broker, the topics); `--url` names the empty database to fill
(default `DESK_DATABASE_URL`). It migrates that database, projects every topic into it up
to the ends they had when it began, prints its progress, and exits 0; then point the
desk at the new database. Exit codes: 0 rebuilt, 1 refused (a database already in use,
a missing topic, settings the desk would refuse).
"""

# Typer reads the annotations at run time: no `from __future__ import annotations` here.

import asyncio
from typing import Annotated

import typer
from pydantic import SecretStr, ValidationError

from services.common.logging import configure_logging
from services.desk.rebuild import Progress, RebuildRefused, rebuild
from services.desk.settings import DeskSettings

desk_app = typer.Typer(
    help="The desk's read side: rebuild it from the topics.", no_args_is_help=True
)


@desk_app.command("rebuild")
def rebuild_command(
    url: Annotated[
        str | None,
        typer.Option(help="the empty database to fill (default: DESK_DATABASE_URL)"),
    ] = None,
    interval: Annotated[float, typer.Option(help="seconds between progress lines")] = 5.0,
) -> None:
    """Fill an empty database from the topics, as the desk's projector would."""
    try:
        settings = DeskSettings(database_url=SecretStr(url)) if url else DeskSettings()
    except ValidationError as error:
        typer.echo(f"the desk's settings are not usable: {error.errors()[0]['loc']}", err=True)
        raise typer.Exit(1) from None
    configure_logging(json=settings.log_json, level="WARNING")

    def report(progress: Progress) -> None:
        typer.echo(f"{progress.written} records written, {progress.remaining} to go")

    try:
        done = asyncio.run(rebuild(settings, report=report, interval=interval))
    except RebuildRefused as refused:
        typer.echo(f"refused: {refused}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"rebuilt: {done.written} records; point DESK_DATABASE_URL at it and restart")
