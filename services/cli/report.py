"""`safeguard report timeliness`: the desk's timeliness report, in a terminal.

    safeguard report timeliness --from 2026-01-01 --to 2026-07-01 [--rule R] [--area A]
                                [--over 25d] [--output table|json|csv]

Asks `GET /v1/reports/timeliness` (role `read`; the token's areas limit what it covers)
and prints per rule and area, then per month: obligations due, met on time, met late,
still open and overdue, closed by hand, % on time, median and 90th percentile lateness,
and the inspector's sentence ("4 of 10 over 25 days"). `csv` is the API's own CSV.
"""

# Typer reads the annotations at run time: no `from __future__ import annotations` here.

import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Any

import httpx
import typer

from services.cli.api import TIMEOUT_SECONDS, ApiError
from services.cli.pack import pack_command
from services.desk.timeliness import readable

report_app = typer.Typer(help="Reports from the desk.", no_args_is_help=True)
report_app.command("pack")(pack_command)  # `report pack`: services/cli/pack.py

DEFAULT_URL = "http://127.0.0.1:8084"
PATH = "/v1/reports/timeliness"


class ReportOutput(StrEnum):
    """How the report is printed."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"


def fetch(
    url: str,
    token: str | None,
    params: dict[str, str],
    *,
    csv: bool = False,
    transport: httpx.BaseTransport | None = None,
) -> str:
    """Return the report's body (JSON or CSV text); raise ApiError when refused."""
    headers = {"Accept": "text/csv" if csv else "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with httpx.Client(
            base_url=url.rstrip("/"), headers=headers, timeout=TIMEOUT_SECONDS, transport=transport
        ) as client:
            response = client.get(PATH, params=params)
    except httpx.HTTPError as exc:
        raise ApiError(0, f"cannot reach {url}: {type(exc).__name__}") from None
    if response.is_success:
        return response.text
    try:
        body = response.json()
        message = f"{body.get('error', 'error')}: {body['message']}"
    except (ValueError, KeyError, AttributeError):
        message = response.reason_phrase or "unexpected answer"
    raise ApiError(response.status_code, f"{response.status_code} {message}")


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _figures(row: dict[str, Any]) -> list[object]:
    reasons = ",".join(f"{k}:{v}" for k, v in row["closed_by_hand_by_reason"].items())
    by_hand = f"{row['closed_by_hand']} ({reasons})" if reasons else row["closed_by_hand"]
    percent = row["on_time_percent"]
    return [
        row["due"],
        row["met_on_time"],
        row["met_late"],
        row["open_overdue"],
        by_hand,
        None if percent is None else f"{percent:.1f}%",
        readable(row["lateness_median_seconds"]),
        readable(row["lateness_p90_seconds"]),
        row["sentence"],
    ]


FIGURES = ["DUE", "ON TIME", "LATE", "OVERDUE", "BY HAND", "% ON TIME", "MEDIAN", "P90", "OVER"]


def print_report(body: dict[str, Any]) -> None:
    """Print the report as two tables: per rule and area, then per month."""
    typer.echo(f"obligations due from {body['from']} to {body['to']}; as of {body['generated_at']}")
    _table(
        ["RULE", "AREA", *FIGURES],
        [[r["rule"], r["area"] or "(none)", *_figures(r)] for r in body["rows"]],
    )
    months = [m for m in body["months"] if m["due"]]
    if months:
        typer.echo("")
        _table(
            ["MONTH", "RULE", "AREA", *FIGURES],
            [[m["month"], m["rule"], m["area"] or "(none)", *_figures(m)] for m in months],
        )


@report_app.command("timeliness")
def timeliness_command(  # noqa: PLR0913, PLR0917 - one parameter per option
    start: Annotated[
        str | None, typer.Option("--from", help="first due date, e.g. 2026-01-01 (UTC)")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="due before this date, e.g. 2026-07-01")
    ] = None,
    rule: Annotated[str | None, typer.Option(help="only this rule")] = None,
    area: Annotated[str | None, typer.Option(help="only this area")] = None,
    over: Annotated[
        str | None, typer.Option(help="the sentence's threshold, e.g. 25d (default 25d)")
    ] = None,
    url: Annotated[
        str, typer.Option(envvar="SAFEGUARD_URL", help="base URL of the desk")
    ] = DEFAULT_URL,
    token: Annotated[
        str | None,
        typer.Option(envvar="SAFEGUARD_TOKEN", help="bearer token (better: SAFEGUARD_TOKEN)"),
    ] = None,
    output: Annotated[
        ReportOutput, typer.Option("--output", "-o", help="table, json or csv")
    ] = ReportOutput.TABLE,
) -> None:
    """How many obligations were met on time, per rule, area and month (default: 6 months)."""
    given = {"from": start, "to": end, "rule": rule, "area": area, "over": over}
    params = {k: v for k, v in given.items() if v is not None}
    try:
        text = fetch(url, token, params, csv=output is ReportOutput.CSV)
    except ApiError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    if output is ReportOutput.CSV:
        typer.echo(text, nl=False)
    elif output is ReportOutput.JSON:
        typer.echo(json.dumps(json.loads(text), indent=2))
    else:
        print_report(json.loads(text))
