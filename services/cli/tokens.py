"""`safeguard token new`: make a token of 256 random bits and its entry for a token file.

    safeguard token new NAME --role read --role acknowledge --area north [--file tokens.yaml]
    safeguard token new NAME --role send --source urn:safeguard:source:police --type ...

The token is printed once, on standard output, for the operator to hand to the system
that will use it; the entry (its SHA-256, scopes and the `minted` marker outside
development mode requires) is appended to `--file`, or printed on standard error when
no file is given. Nothing else keeps the token: lost, it is replaced, not recovered.
"""

# Typer reads the annotations at run time: no `from __future__ import annotations` here.

from pathlib import Path
from typing import Annotated

import typer
import yaml

from schemas.envelope import EventType
from services.common.auth import (
    Role,
    TokenConfigError,
    TokenFile,
    minted_entry,
    new_token,
)

token_app = typer.Typer(help="Make tokens for systems (people sign in instead).")


def _entry_document(entry: dict[str, object]) -> dict[str, object]:
    # Absent means "all": unset scopes are left out rather than written as nulls.
    return {
        k: sorted(v) if isinstance(v, list) else v for k, v in entry.items() if v not in (None, [])
    }


@token_app.command("new")
def new(  # noqa: PLR0913, PLR0917 - one parameter per scope
    name: Annotated[str, typer.Argument(help="the system's name: the actor of what it does")],
    role: Annotated[list[Role], typer.Option("--role", help="a role it holds (repeat)")],
    source: Annotated[
        list[str] | None, typer.Option("--source", help="a source it may send for (repeat)")
    ] = None,
    event_type: Annotated[
        list[EventType] | None,
        typer.Option("--type", help="an event type it may send (repeat; absent: every type)"),
    ] = None,
    area: Annotated[
        list[str] | None,
        typer.Option("--area", help="an area it may read and act on (repeat; absent: all)"),
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="the token file to append the entry to")
    ] = None,
) -> None:
    """Make a token; print it once; write its entry (hash, scopes, marker)."""
    token = new_token()
    try:
        entry = minted_entry(
            name,
            token,
            roles=frozenset(role),
            sources=tuple(source or ()),
            types=frozenset(event_type) if event_type else None,
            areas=frozenset(area) if area else None,
        )
    except (TokenConfigError, ValueError) as error:
        typer.echo(f"cannot make the token: {error}", err=True)
        raise typer.Exit(1) from None
    document = _entry_document(entry.model_dump(mode="json"))
    if file is None:
        typer.echo(yaml.safe_dump({"tokens": [document]}, sort_keys=False), err=True, nl=False)
    else:
        existing = yaml.safe_load(file.read_text()) if file.exists() else None
        tokens = list((existing or {}).get("tokens", []))
        if any(item.get("name") == name for item in tokens):
            typer.echo(f"{file} already has a token named {name!r}", err=True)
            raise typer.Exit(1)
        tokens.append(document)
        TokenFile.model_validate({"tokens": tokens})  # the file stays one the services read
        file.write_text(yaml.safe_dump({"tokens": tokens}, sort_keys=False))
        typer.echo(f"entry {name!r} written to {file}", err=True)
    typer.echo(token)
