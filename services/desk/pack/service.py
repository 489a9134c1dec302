"""Making a pack: scope, read, compute, audit, render.

One path for the API, the console and the scheduled sends.

Scopes fail closed: a person whose token is scoped to areas gets a pack of one of their
areas only (their one area when they name none); only an unscoped token gets the whole
partnership's. Every generation is recorded on the audit topic (`pack.generated`)
before anything is returned, and is refused (503) when the broker does not take it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.audit import AuditAction
from services.common.auth import Principal
from services.common.metrics import build_labels
from services.desk import queries
from services.desk.errors import Forbidden, InvalidQuery
from services.desk.pack import data as pack_data
from services.desk.pack import render
from services.desk.pack.figures import compute, figures_json, iso, sha256
from services.desk.pack.period import BadPeriod, Period, parse_period
from services.desk.pack.policy import AssurancePolicy
from services.desk.web import out_of_scope

HISTORY = 4  # periods shown beside each figure
FORMATS = ("json", "html", "pdf")


@dataclass(frozen=True)
class Pack:
    """A generated pack: its figures (and their canonical bytes and hash), its document."""

    figures: dict[str, Any]
    figures_bytes: bytes
    sha256: str
    html: str
    name: str

    @property
    def json_name(self) -> str:
        """Return the file name of the figures shipped beside the document."""
        return f"{self.name}.json"

    def pdf(self) -> bytes:
        """Return the PDF (rendered on demand: the JSON and HTML need none)."""
        return render.pdf(self.html)


def parse(period: str | None, as_of: str | None, now: datetime) -> tuple[Period, datetime]:
    """Return the period and the moment the figures are as of (422 for bad input).

    `as_of` defaults to now, to the whole minute: two runs in the same minute on the same
    data give the same figures. It may not be ahead of now, nor before the period began.
    """
    if not period:
        raise InvalidQuery("period is required: a month (2026-07) or a quarter (2026-Q3)")
    try:
        chosen = parse_period(period)
    except BadPeriod as error:
        raise InvalidQuery(str(error)) from None
    if chosen.kind == "week":
        raise InvalidQuery("a pack covers a month (2026-07) or a quarter (2026-Q3)")
    moment = now.astimezone(UTC).replace(second=0, microsecond=0)
    if as_of:
        try:
            moment = datetime.fromisoformat(as_of)
        except ValueError:
            raise InvalidQuery("as_of must be an RFC 3339 time (2026-10-01T00:00:00Z)") from None
        if moment.utcoffset() is None:
            raise InvalidQuery("as_of needs an offset (Z or +01:00)")
        moment = moment.astimezone(UTC)
        if moment > now + timedelta(minutes=1):
            raise InvalidQuery("as_of may not be in the future")
    if moment <= chosen.start:
        raise InvalidQuery("as_of must be after the period began")
    return chosen, moment


def scoped_area(principal: Principal, area: str | None) -> str | None:
    """Return the area the pack covers for `principal` (None: the partnership), or 403."""
    if principal.areas is None:
        return area
    if area is None:
        if len(principal.areas) == 1:
            return next(iter(principal.areas))
        raise Forbidden(
            "a token scoped to several areas must name one (area=...)",
            errors=[{"loc": "area", "msg": "the whole partnership's pack needs an unscoped token"}],
        )
    if area not in principal.areas:
        raise out_of_scope(area)
    return area


class PackMaker:
    """Generates packs from the desk's database, audited."""

    def __init__(self, desk: Any, policy: AssurancePolicy) -> None:  # noqa: ANN401 - the Desk (circular)
        self.desk = desk
        self.policy = policy

    async def make(
        self, principal: Principal, period: Period, area: str | None, as_of: datetime
    ) -> Pack:
        """Return the pack of `period` for `area` as of `as_of`, after auditing it."""
        desk = self.desk
        history = period.history(HISTORY)
        async with desk.database.read() as connection:
            read = await pack_data.read(connection, period, history, area, as_of)
            caught = await queries.caught_up_at(connection, list(desk.kinds))
        labels = build_labels()
        software = f"safeguard {labels['version']} (revision {labels['revision']})"
        figures = await asyncio.to_thread(
            compute,
            read,
            period=period,
            history=history,
            area=area,
            as_of=as_of,
            policy=self.policy.assurance,
            policy_version=self.policy.version,
            software_version=software,
            roles_of=lambda name: _names(desk.auth.roles_of(name)),
            scope_of=desk.auth.areas_of,
        )
        canonical = figures_json(figures)
        digest = sha256(figures)
        await desk.auditor.record(AuditAction.PACK_GENERATED, principal)
        name = f"safeguard-assurance-{period.label}-{area or 'partnership'}"
        html = await asyncio.to_thread(
            render.document,
            figures,
            digest,
            generated_at=iso(desk.clock.now()),
            caught_up=iso(caught),
            json_name=f"{name}.json",
        )
        return Pack(figures, canonical, digest, html, name)


def _names(roles: frozenset[Any] | None) -> frozenset[str] | None:
    return None if roles is None else frozenset(str(getattr(r, "value", r)) for r in roles)
