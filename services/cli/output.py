"""How the `safeguard` commands print: aligned tables by default, JSON for scripts."""

# Typer reads the annotations at run time: no `from __future__ import annotations` here.

import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, NoReturn

import typer


class Output(StrEnum):
    """How a command prints its result."""

    TABLE = "table"
    JSON = "json"


OutputOption = Annotated[Output, typer.Option("--output", "-o", help="table or json")]


def fail(message: str) -> NoReturn:
    """Print `message` on stderr and exit 1."""
    typer.echo(message, err=True)
    raise typer.Exit(1)


def print_json(data: object) -> None:
    """Print `data` as indented JSON."""
    typer.echo(json.dumps(data, indent=2, default=str))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print rows in aligned columns (plain text, so it pipes and diffs well)."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def cell(value: object) -> str:
    """Return one table cell: `-` for nothing, floats to one decimal."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)
