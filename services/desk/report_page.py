# ruff: noqa: E501, RUF001 - the module holds the page's HTML template, and dashes are typography
"""The timeliness report as one HTML page with its charts: server-rendered, inline SVG.

No JavaScript and no build step: the charts are SVG drawn here from the same report the
JSON and CSV give (on-time % per rule by month, and the lateness distribution per rule),
with the figures beside them as a table, so the page also reads without the pictures.
Jinja2 autoescapes everything; nothing in a report is personal data (rules, areas,
counts, durations).

Two wrappers around the same body: a standalone page (the API's `text/html`, for a
bearer token) and the console's page (`/console/reports/timeliness`, signed in), which
extends the console's `base.html` and follows its Content-Security-Policy.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from jinja2 import ChoiceLoader, DictLoader, Environment, PackageLoader, select_autoescape

from services.common.durations import format_duration
from services.desk.timeliness import LATENESS_BUCKETS, Figures, Report, readable

# Colours that stay apart for the common colour-vision deficiencies (Okabe-Ito order,
# from on time to furthest late).
BUCKET_COLOURS = ("#009E73", "#56B4E9", "#F0E442", "#E69F00", "#D55E00", "#CC79A7")
BAR_WIDTH, CHART_HEIGHT = 34, 120


@dataclass(frozen=True)
class Bar:
    """One month's bar in a rule's on-time chart."""

    x: int
    height: float
    label: str
    month: str
    title: str


@dataclass(frozen=True)
class Segment:
    """One bucket's part of a rule's lateness bar."""

    x: float
    width: float
    colour: str
    title: str


def _months(report: Report) -> list[str]:
    q = report.query
    months, cursor = [], datetime(q.start.year, q.start.month, 1, tzinfo=UTC)
    last = q.end - timedelta(microseconds=1)
    while cursor <= last:
        months.append(cursor.strftime("%Y-%m"))
        cursor = datetime(cursor.year + cursor.month // 12, cursor.month % 12 + 1, 1, tzinfo=UTC)
    return months


def _month_label(month: str) -> str:
    """`2026-03` -> `Mar`; January says its year (`Jan 27`), so a year's turn shows."""
    moment = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    return moment.strftime("%b") if moment.month != 1 else moment.strftime("%b %y")


def on_time_bars(report: Report) -> dict[str, list[Bar]]:
    """Return, per rule, one bar per month of the period: % met on time (areas together)."""
    by_rule: dict[str, dict[str, Figures]] = defaultdict(dict)
    for (month, rule, _area), figures in report.months.items():
        total = by_rule[rule].setdefault(month, Figures())
        for name in ("due", "met_on_time"):
            setattr(total, name, getattr(total, name) + getattr(figures, name))
    bars: dict[str, list[Bar]] = {}
    for rule in sorted(report.rules):
        row = []
        for i, month in enumerate(_months(report)):
            f = by_rule[rule].get(month, Figures())
            pct = f.on_time_percent
            label = "–" if pct is None else f"{pct:.0f}%"
            title = (
                f"{month}: {f.met_on_time} of {f.due} on time" if f.due else f"{month}: none due"
            )
            height = 0.0 if pct is None else CHART_HEIGHT * pct / 100
            row.append(
                Bar(
                    x=10 + i * (BAR_WIDTH + 8),
                    height=height,
                    label=label,
                    month=_month_label(month),
                    title=title,
                )
            )
        bars[rule] = row
    return bars


def lateness_segments(report: Report, width: float = 600) -> dict[str, list[Segment]]:
    """Return, per rule, the lateness distribution as one stacked horizontal bar."""
    out: dict[str, list[Segment]] = {}
    for rule, counts in sorted(report.distribution.items()):
        total = sum(counts.values())
        x, segments = 0.0, []
        for (name, _bound), colour in zip(LATENESS_BUCKETS, BUCKET_COLOURS, strict=True):
            n = counts[name]
            if not n:
                continue
            w = width * n / total
            segments.append(Segment(x=x, width=w, colour=colour, title=f"{name}: {n} of {total}"))
            x += w
        out[rule] = segments
    return out


# The page's own rules; scoped under `.report` so they sit next to the console's sheet.
CSS = """
.report h1 { font-size: 1.5rem; margin-bottom: .25rem; }
.report h2 { font-size: 1.15rem; margin-top: 2rem; }
.report .meta { color: #505a5f; margin-top: 0; }
.report .charts { display: flex; flex-wrap: wrap; gap: 1.25rem; }
.report figure { margin: 0; border: 1px solid #d8dde0; padding: .5rem .75rem; }
.report figcaption { font-weight: 600; font-size: .9rem; margin-bottom: .25rem; }
.report table.figures { border-collapse: collapse; font-size: .85rem; margin-top: .5rem; width: auto; }
.report .figures th, .report .figures td { border-bottom: 1px solid #d8dde0; padding: .3rem .5rem; text-align: right; white-space: nowrap; }
.report .figures th:first-child, .report .figures td:first-child,
.report .figures th:nth-child(2), .report .figures td:nth-child(2) { text-align: left; }
.report td.sentence { text-align: left; font-weight: 600; }
.report .legend span { display: inline-block; margin-right: 1rem; font-size: .85rem; }
.report .legend svg { vertical-align: -1px; margin-right: .3rem; }
.report svg text { font-size: 11px; fill: #1b1b1b; }
.report form.period { display: flex; flex-wrap: wrap; gap: .75rem; align-items: end; }
.report form.period label { display: flex; flex-direction: column; font-size: .85rem; }
"""

# What both pages show. No `style` attributes (the console's Content-Security-Policy
# allows style sheets from itself only): colours are SVG presentation attributes.
_BODY = """
<div class="report">
<h1>Timeliness report</h1>
<p class="meta">Obligations due from {{ q.start.strftime("%d %b %Y") }} to
{{ (q.end - one_second).strftime("%d %b %Y") }}{% if q.rule %}, rule {{ q.rule }}{% endif %}{% if q.area %},
area {{ q.area }}{% endif %}; as of {{ report.generated_at.strftime("%d %b %Y %H:%M") }} UTC.
"Over {{ over }}" counts the time from the trigger to the fulfilment (or to now, still open).</p>
{% if form_action %}
<form class="period" method="get" action="{{ form_action }}">
<label>From <input type="date" name="from" value="{{ q.start.strftime('%Y-%m-%d') }}"></label>
<label>To (not included) <input type="date" name="to" value="{{ q.end.strftime('%Y-%m-%d') }}"></label>
<label>Rule <input type="text" name="rule" value="{{ q.rule or '' }}" size="22"></label>
<label>Area <input type="text" name="area" value="{{ q.area or '' }}" size="10"></label>
<label>Over <input type="text" name="over" value="{{ over }}" size="6"></label>
<button type="submit">Show</button>
<a href="{{ csv_href }}">CSV</a>
</form>
{% endif %}

<h2>On time, per rule and month</h2>
<div class="charts">
{% for rule, row in bars.items() %}
<figure>
<figcaption>{{ rule }}</figcaption>
<svg role="img" aria-label="Percent met on time by month, {{ rule }}"
     width="{{ 20 + row|length * 42 }}" height="{{ chart_height + 40 }}">
<line x1="6" x2="{{ 14 + row|length * 42 }}" y1="{{ chart_height + 14 }}" y2="{{ chart_height + 14 }}" stroke="#505a5f"/>
{% for bar in row %}
<g><title>{{ bar.title }}</title>
<rect x="{{ bar.x }}" y="{{ chart_height + 14 - bar.height }}" width="{{ bar_width }}" height="{{ bar.height }}" fill="#1d70b8"/>
<text x="{{ bar.x + bar_width / 2 }}" y="{{ chart_height + 10 - bar.height }}" text-anchor="middle">{{ bar.label }}</text>
<text x="{{ bar.x + bar_width / 2 }}" y="{{ chart_height + 30 }}" text-anchor="middle">{{ bar.month }}</text>
</g>
{% endfor %}
</svg>
</figure>
{% else %}
<p>No obligations were due in this period.</p>
{% endfor %}
</div>

<h2>How late, per rule</h2>
<p class="legend">{% for name, colour in buckets %}<span><svg width="12" height="12" aria-hidden="true"><rect width="12" height="12" fill="{{ colour }}"/></svg>{{ name }}</span>{% endfor %}</p>
{% for rule, segments in segments.items() %}
<figure>
<figcaption>{{ rule }}</figcaption>
<svg role="img" aria-label="Lateness distribution, {{ rule }}" width="604" height="26">
{% for s in segments %}<rect x="{{ 2 + s.x }}" y="2" width="{{ s.width }}" height="22" fill="{{ s.colour }}"><title>{{ s.title }}</title></rect>{% endfor %}
</svg>
</figure>
{% endfor %}

<h2>Figures per rule and area</h2>
<table class="figures">
<thead><tr><th>Rule</th><th>Area</th><th>Due</th><th>On time</th><th>On time as claimed, recorded late</th><th>Late</th><th>Open, overdue</th>
<th>Closed by hand</th><th>Not yet due</th><th>% on time</th><th>Median late</th><th>90th pct late</th><th>Over {{ over }}</th></tr></thead>
<tbody>
{% for row in body.rows %}
<tr><td>{{ row.rule }}</td><td>{{ row.area or "(none)" }}</td><td>{{ row.due }}</td><td>{{ row.met_on_time }}</td>
<td>{{ row.met_recorded_late }}</td><td>{{ row.met_late }}</td><td>{{ row.open_overdue }}</td>
<td>{{ row.closed_by_hand }}{% for reason, n in row.closed_by_hand_by_reason.items() %}{% if loop.first %} ({% endif %}{{ reason }} {{ n }}{% if not loop.last %}, {% else %}){% endif %}{% endfor %}</td>
<td>{{ row.not_yet_due }}</td><td>{{ "–" if row.on_time_percent is none else row.on_time_percent ~ "%" }}</td>
<td>{{ row.lateness_median_seconds | duration }}</td><td>{{ row.lateness_p90_seconds | duration }}</td>
<td class="sentence">{{ row.sentence }}</td></tr>
{% endfor %}
</tbody>
</table>
{% set custody = body.rows | selectattr("transfers", "defined") | list %}
{% if custody %}
<h2>Children in custody: transfers to local-authority accommodation</h2>
<table class="figures">
<thead><tr><th>Area</th><th>Requested</th><th>Made</th><th>Refused</th></tr></thead>
<tbody>
{% for row in custody %}<tr><td>{{ row.area or "(none)" }}</td><td>{{ row.transfers.requested }}</td><td>{{ row.transfers.made }}</td><td>{{ row.transfers.refused }}</td></tr>
{% endfor %}
</tbody>
</table>
{% endif %}
<p class="meta">The same figures by month: CSV (<code>Accept: text/csv</code>) or JSON
(<code>GET /v1/reports/timeliness</code>).</p>
</div>
"""

_STANDALONE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Timeliness report – Safeguard</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1b1b1b; max-width: 75rem; }
{{ css }}
</style>
</head>
<body>
{% include "body.html" %}
</body>
</html>
"""

# The console's layout (services/desk/templates/base.html): its header, the
# signed-in person and sign-out; the page's own sheet is served beside the console's.
_CONSOLE = """{% extends "base.html" %}
{% block title %}Timeliness report{% endblock %}
{% block main %}
<link rel="stylesheet" href="{{ stylesheet }}">
{% include "body.html" %}
{% endblock %}
"""

_ENV = Environment(
    loader=ChoiceLoader(
        [
            DictLoader(
                {"body.html": _BODY, "standalone.html": _STANDALONE, "console.html": _CONSOLE}
            ),
            PackageLoader("services.desk", "templates"),
        ]
    ),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
_ENV.filters["duration"] = lambda seconds: readable(seconds, "–")


def _context(report: Report) -> dict[str, Any]:
    return {
        "report": report,
        "q": report.query,
        "body": report.to_json(),
        "over": format_duration(report.query.over),
        "bars": on_time_bars(report),
        "segments": lateness_segments(report),
        "buckets": list(zip((n for n, _ in LATENESS_BUCKETS), BUCKET_COLOURS, strict=True)),
        "chart_height": CHART_HEIGHT,
        "bar_width": BAR_WIDTH,
        "one_second": timedelta(seconds=1),
    }


def render_page(report: Report) -> str:
    """Return the report's standalone HTML page (the API's `text/html`)."""
    return _ENV.get_template("standalone.html").render(
        css=CSS, form_action=None, **_context(report)
    )


def render_console_page(  # noqa: PLR0913 - the console's layout needs its session
    report: Report,
    *,
    session: object,
    action: str,
    csv_href: str,
    stylesheet: str,
    extra: dict[str, Any] | None = None,
) -> str:
    """Return the report inside the console's layout, with a form to change the period."""
    return _ENV.get_template("console.html").render(
        session=session,
        form_action=action,
        csv_href=csv_href,
        stylesheet=stylesheet,
        **(extra or {}),
        **_context(report),
    )
