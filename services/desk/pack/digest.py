# ruff: noqa: E501, RUF001 - the module holds the message's HTML template, and dashes are typography
"""The weekly digest to an area's strategic lead: the trend, not single alerts.

On-time % per rule in the week against each of the four weeks before, the rules below
the policy's floor, and the oldest obligations still open past their deadline (by
pseudonymous id, with how many days overdue). Plain text and HTML with the same facts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from jinja2 import Environment, select_autoescape

from services.common.auth import Principal
from services.desk.pack import data as pack_data
from services.desk.pack.figures import iso
from services.desk.pack.period import Period
from services.desk.pack.policy import Assurance
from services.desk.reports import states
from services.desk.timeliness import Query, timeliness

WEEKS = 4
OVER = timedelta(days=25)


@dataclass(frozen=True)
class Digest:
    """One area's digest of one week."""

    area: str
    week: str
    as_of: str
    rules: list[dict[str, Any]]
    oldest: list[dict[str, Any]]

    @property
    def below_floor(self) -> list[str]:
        """Return the rules under their floor this week."""
        return [r["rule"] for r in self.rules if r["below_floor"]]


async def build(
    connection: Any,  # noqa: ANN401 - an AsyncConnection
    week: Period,
    area: str,
    as_of: datetime,
    policy: Assurance,
) -> Digest:
    """Return the digest of `week` for `area`, as of `as_of`."""
    weeks = [*week.history(WEEKS), week]
    reader = Principal(name="desk", sources=(), roles=frozenset(), areas=frozenset({area}))
    wide = Query(start=weeks[0].start, end=week.end, over=OVER, area=area)
    found = await states(connection, wide, reader)
    reports = [
        timeliness(found, Query(start=w.start, end=w.end, over=OVER, area=area), as_of)
        for w in weeks
    ]
    rules = sorted({rule for r in reports for rule in r.rules})
    rows = []
    for rule in rules:
        series = [r.rules[rule].on_time_percent if rule in r.rules else None for r in reports]
        current = reports[-1].rules.get(rule)
        due = current.due if current else 0
        floor = policy.floor(rule)
        rows.append(
            {
                "rule": rule,
                "due": due,
                "series": series,
                "floor": floor,
                "below_floor": due >= policy.min_judged
                and series[-1] is not None
                and series[-1] < floor,
            }
        )
    opened = pack_data.PackData()
    await pack_data.read_open(connection, opened, area, as_of)
    oldest = [
        {
            "rule": c.rule,
            "subject": f"{c.subject_kind} {c.subject_id}",
            "days_overdue": int((as_of - c.due_at).total_seconds() // 86400),
        }
        for c in sorted(opened.oldest, key=lambda c: (c.due_at, c.rule))[:10]
    ]
    return Digest(area=area, week=week.label, as_of=iso(as_of) or "", rules=rows, oldest=oldest)


_ENV = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_HTML = _ENV.from_string(
    """<!doctype html><html lang="en-GB"><head><meta charset="utf-8">
<title>Safeguard weekly digest {{ d.area }} {{ d.week }}</title></head><body>
<h1>Weekly digest: {{ d.area }}, week {{ d.week }}</h1>
<p>As of {{ d.as_of }}. On-time share of the obligations due each week, this week last.</p>
<table><caption>% met on time per rule, the four weeks before and this one</caption>
<thead><tr><th scope="col">Rule</th>{% for w in weeks %}<th scope="col">{{ w }}</th>{% endfor %}<th scope="col">Floor</th><th scope="col">Due this week</th></tr></thead>
<tbody>{% for r in d.rules %}<tr><th scope="row">{{ r.rule }}{% if r.below_floor %} (below the floor){% endif %}</th>
{% for v in r.series %}<td>{{ "–" if v is none else v ~ "%" }}</td>{% endfor %}<td>{{ r.floor }}%</td><td>{{ r.due }}</td></tr>
{% else %}<tr><td colspan="{{ weeks | length + 3 }}">Nothing was due.</td></tr>{% endfor %}</tbody></table>
<h2>The oldest obligations still open past their deadline</h2>
<table><thead><tr><th scope="col">Subject (pseudonymous id)</th><th scope="col">Rule</th><th scope="col">Days overdue</th></tr></thead>
<tbody>{% for o in d.oldest %}<tr><td>{{ o.subject }}</td><td>{{ o.rule }}</td><td>{{ o.days_overdue }}</td></tr>
{% else %}<tr><td colspan="3">None.</td></tr>{% endfor %}</tbody></table>
</body></html>"""
)


def message(digest: Digest, weeks: list[str], sender: str, to: list[str]) -> EmailMessage:
    """Return the digest as an email (plain text and HTML)."""
    below = digest.below_floor
    subject = f"[Safeguard] Weekly digest {digest.area}, {digest.week}: " + (
        f"{len(below)} rule{'s' if len(below) != 1 else ''} below the floor"
        if below
        else "no rule below the floor"
    )
    lines = [
        f"Weekly digest for {digest.area}, week {digest.week} (as of {digest.as_of}).",
        "",
        "% met on time per rule (" + ", ".join(weeks) + "):",
    ]
    for r in digest.rules:
        series = " ".join("-" if v is None else f"{v}%" for v in r["series"])
        flag = "  BELOW THE FLOOR" if r["below_floor"] else ""
        lines.append(f"  {r['rule']}: {series} (floor {r['floor']}%, {r['due']} due){flag}")
    lines += ["", "Oldest obligations still open past their deadline:"]
    lines += [f"  {o['subject']} {o['rule']}: {o['days_overdue']} days" for o in digest.oldest]
    if not digest.oldest:
        lines.append("  none")
    mail = EmailMessage()
    mail["Subject"] = subject
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    mail.set_content("\n".join(lines) + "\n")
    mail.add_alternative(_HTML.render(d=digest, weeks=weeks), subtype="html")
    return mail
