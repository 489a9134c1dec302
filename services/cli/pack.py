"""`safeguard report pack`: the assurance pack of a month or a quarter, from the desk.

    safeguard report pack --period 2026-Q3 [--area north] [--format pdf|html|json]
                          [--as-of 2026-10-01T00:00:00Z] [--out DIR]

Asks `GET /v1/reports/pack` (role `lead` or `audit`; an area-scoped token gets its own
area's pack only) and writes the document with its figures beside it: the JSON whose
SHA-256 the document prints. Both are asked as of the same moment (`--as-of`, default
now to the minute), so they are the same figures; the command checks that they are.
"""

# Typer reads the annotations at run time: no `from __future__ import annotations` here.

import hashlib
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import httpx
import typer

from services.cli.api import TIMEOUT_SECONDS, ApiError

PATH = "/v1/reports/pack"
SHA_HEADER = "X-Safeguard-Figures-SHA256"
DEFAULT_URL = "http://127.0.0.1:8084"


class PackFormat(StrEnum):
    """The document written besides the figures."""

    PDF = "pdf"
    HTML = "html"
    JSON = "json"


def fetch(
    url: str,
    token: str | None,
    params: dict[str, str],
    *,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Response:
    """Return the desk's answer; raise ApiError when it refused (the message says why)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.Client(
            base_url=url.rstrip("/"),
            headers=headers,
            timeout=max(TIMEOUT_SECONDS, 120.0),
            transport=transport,
        ) as client:
            response = client.get(PATH, params=params)
    except httpx.HTTPError as exc:
        raise ApiError(0, f"cannot reach {url}: {type(exc).__name__}") from None
    if response.is_success:
        return response
    try:
        body = response.json()
        message = f"{body.get('error', 'error')}: {body['message']}"
    except (ValueError, KeyError, AttributeError):
        message = response.reason_phrase or "unexpected answer"
    raise ApiError(response.status_code, f"{response.status_code} {message}")


def file_name(response: httpx.Response, fallback: str) -> str:
    """Return the file name the desk gave (`Content-Disposition`), else `fallback`."""
    disposition = response.headers.get("Content-Disposition", "")
    _, _, rest = disposition.partition('filename="')
    name = rest.split('"', 1)[0]
    # A name only: nothing the answer says can write outside the folder.
    return Path(name).name if name else fallback


def pack_command(  # noqa: PLR0913, PLR0917 - one parameter per option
    period: Annotated[str, typer.Option(help="a month (2026-07) or a quarter (2026-Q3)")],
    area: Annotated[
        str | None, typer.Option(help="an area (default: yours, or the whole partnership)")
    ] = None,
    fmt: Annotated[PackFormat, typer.Option("--format", help="pdf, html or json")] = (
        PackFormat.PDF
    ),
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="the figures as of this moment (default: now, to the minute)"),
    ] = None,
    out: Annotated[Path, typer.Option(help="folder to write into")] = Path(),
    url: Annotated[
        str, typer.Option(envvar="SAFEGUARD_URL", help="base URL of the desk")
    ] = DEFAULT_URL,
    token: Annotated[
        str | None,
        typer.Option(envvar="SAFEGUARD_TOKEN", help="bearer token (better: SAFEGUARD_TOKEN)"),
    ] = None,
) -> None:
    """Write the assurance pack (PDF, HTML or JSON) and its figures (JSON) beside it."""
    moment = as_of or datetime.now(UTC).replace(second=0, microsecond=0).isoformat().replace(
        "+00:00", "Z"
    )
    params = {"period": period, "as_of": moment} | ({"area": area} if area else {})
    try:
        figures = fetch(url, token, {**params, "format": "json"})
        document = (
            figures
            if fmt is PackFormat.JSON
            else fetch(url, token, {**params, "format": fmt.value})
        )
    except ApiError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    sha = hashlib.sha256(figures.content).hexdigest()
    if sha != figures.headers.get(SHA_HEADER) or sha != document.headers.get(SHA_HEADER):
        typer.echo("the desk's figures changed between the two answers: run it again", err=True)
        raise typer.Exit(1)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / file_name(figures, f"pack-{period}.json")]
    written[0].write_bytes(figures.content)
    if fmt is not PackFormat.JSON:
        path = out / file_name(document, f"pack-{period}.{fmt.value}")
        path.write_bytes(document.content)
        written.insert(0, path)
    for path in written:
        typer.echo(str(path))
    typer.echo(f"figures as of {moment}, SHA-256 {sha}")
