# ruff: noqa: E501, RUF001, RUF002 - the module holds the pack's style sheet, and dashes are typography
"""The pack as a document: accessible HTML printable on A4, and PDF from it by WeasyPrint.

The HTML has headings per section, header cells in every table, and a text alternative
for every chart.

WeasyPrint (pinned; Debian's Pango underneath) rather than a browser's print-to-PDF:
it is a library, not a browser process per pack; its layout is the same run after run;
it writes tagged PDF (PDF/UA-1), which screen readers follow; and the production image
needs Pango (a few MB) rather than Chromium. The charts are inline SVG drawn here, so
the page reads without them too: every figure a chart shows is in the table beside it.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from services.desk.timeliness import readable

CSS = """
@page { size: A4; margin: 16mm 14mm 18mm 14mm;
  @bottom-left { content: "Safeguard assurance pack " string(period); font-size: 7.5pt; color: #505a5f; }
  @bottom-right { content: "Page " counter(page) " of " counter(pages); font-size: 7.5pt; color: #505a5f; } }
.pack { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 9pt; color: #0b0c0c; line-height: 1.35; }
.pack h1 { font-size: 17pt; margin: 0 0 4pt; string-set: period content(); }
.pack h2 { font-size: 12.5pt; margin: 14pt 0 4pt; border-bottom: 1.5pt solid #1d70b8; padding-bottom: 2pt;
  break-after: avoid; }
.pack h3 { font-size: 10.5pt; margin: 10pt 0 3pt; break-after: avoid; }
.pack .kicker { text-transform: uppercase; letter-spacing: .06em; color: #1d70b8; font-weight: bold;
  font-size: 8pt; margin: 0; }
.pack .provenance-short { display: grid; grid-template-columns: max-content auto; gap: 1pt 8pt; margin: 4pt 0 0; }
.pack dl { margin: 4pt 0; }
.pack dt { font-weight: bold; }
.pack dd { margin: 0 0 3pt 0; }
.pack .sha { font-size: 7.5pt; word-break: break-all; }
.pack .inspectors { margin: 4pt 0; padding: 4pt 8pt; border-left: 3pt solid #b1b4b6; font-style: italic; }
.pack .headline { font-size: 10.5pt; }
.pack .worse { border: 1.5pt solid #d4351c; padding: 3pt 8pt; margin: 6pt 0; }
.pack .worse h3 { color: #d4351c; margin-top: 3pt; }
.pack .note { color: #505a5f; font-size: 8pt; }
.pack table { border-collapse: collapse; width: 100%; margin: 4pt 0 8pt; break-inside: auto; }
.pack caption { text-align: left; font-weight: bold; padding: 2pt 0; }
.pack th, .pack td { border-bottom: .5pt solid #b1b4b6; padding: 2pt 3pt; text-align: left; vertical-align: top; }
.pack thead th { border-bottom: 1pt solid #0b0c0c; font-size: 7.5pt; }
.pack table.figures { font-size: 7.5pt; }
.pack tr { break-inside: avoid; }
.pack td.chart { padding: 0 2pt; }
.pack .flag { color: #d4351c; font-size: 7pt; font-weight: bold; }
.pack .worse-row th { color: #d4351c; }
.pack .finding { break-inside: avoid-page; }
.pack table.small { width: auto; min-width: 60%; }
"""

_ENV = Environment(
    loader=PackageLoader("services.desk.pack", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters["duration"] = lambda seconds: readable(seconds, "–")

BAR, GAP, HEIGHT = 12, 3, 26


def pct(value: float | None) -> str:
    """Return a percentage for people: `83.3%`, or `–` when nothing was due."""
    return "–" if value is None else f"{value:.1f}%"


def reasons(by_reason: dict[str, int]) -> str:
    """Return ` (duplicate 2, other 1)`, or nothing."""
    return f" ({', '.join(f'{k} {v}' for k, v in by_reason.items())})" if by_reason else ""


def trend(row: dict[str, Any]) -> Markup:
    """Return a small bar chart of % on time per period, with its text alternative."""
    points = row["trend"]
    said = "; ".join(f"{t['period']} {pct(t['on_time_percent'])}" for t in points)
    label = f"{row['rule']}, % met on time by period: {said}"
    width = len(points) * (BAR + GAP)
    bars = []
    for i, t in enumerate(points):
        value = t["on_time_percent"]
        x = i * (BAR + GAP)
        last = i == len(points) - 1
        colour = "#d4351c" if last and row["worse"] else "#1d70b8" if last else "#8eb8dc"
        if value is None:
            bars.append(f'<rect x="{x}" y="{HEIGHT - 1}" width="{BAR}" height="1" fill="#b1b4b6"/>')
            continue
        h = max(1.0, HEIGHT * value / 100)
        bars.append(
            f'<rect x="{x}" y="{HEIGHT - h:.1f}" width="{BAR}" height="{h:.1f}" fill="{colour}"/>'
        )
    svg = (
        f'<svg role="img" aria-label="{_attr(label)}" width="{width}" height="{HEIGHT}" '
        f'viewBox="0 0 {width} {HEIGHT}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{_attr(label)}</title>{''.join(bars)}</svg>"
    )
    return Markup(svg)  # noqa: S704 - built from numbers and escaped text only


def _attr(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def body(figures: dict[str, Any], sha: str, **context: Any) -> str:  # noqa: ANN401 - template values
    """Return the pack's body (an `<article>`), for the document and the console page."""
    area = figures["provenance"]["area"]
    return _ENV.get_template("pack_body.html").render(
        figures=figures,
        sha=sha,
        place=f"Area {area}" if area else "The whole partnership",
        pct=pct,
        reasons=reasons,
        trend=trend,
        **context,
    )


def document(figures: dict[str, Any], sha: str, **context: Any) -> str:  # noqa: ANN401 - template values
    """Return the pack as one standalone HTML document (its style inline)."""
    p = figures["provenance"]
    title = f"Assurance pack {p['period']} {p['area'] or 'partnership'}"
    return (
        '<!doctype html>\n<html lang="en-GB">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_attr(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"{body(figures, sha, **context)}\n</body>\n</html>\n"
    )


def pdf(html: str) -> bytes:
    """Return the PDF of a pack's HTML document: A4, tagged for accessibility."""
    from weasyprint import HTML  # noqa: PLC0415 - Pango is loaded only when a PDF is made

    rendered: bytes = HTML(string=html).write_pdf(pdf_variant="pdf/ua-1")
    return rendered
