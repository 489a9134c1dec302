"""CSV cells that a spreadsheet will not run: OWASP's CSV injection defence, in one place.

A cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return is read as a
formula by Excel, LibreOffice and Google Sheets (`=HYPERLINK(...)`, `-2+3`, `@SUM(...)`).
Every CSV Safeguard serves passes each cell through `neutralise`, which prefixes such a
cell with `'`, so it is shown as the text it is. The csv module's quoting then escapes
separators and quotes as usual. A negative number is also prefixed: none of Safeguard's
CSV columns holds one, and a cell is never worth the risk of a guess.
"""

from __future__ import annotations

from collections.abc import Iterable

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: object) -> str:
    """Return the cell's text, prefixed with `'` when a spreadsheet would run it."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def safe_row(values: Iterable[object]) -> list[str]:
    """Return a row's cells, each neutralised."""
    return [neutralise(value) for value in values]
