"""CSV cells a spreadsheet would run are neutralised (OWASP), in every CSV the desk serves."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from services.common.csv_cells import neutralise, safe_row
from services.desk import audit_search
from services.desk.timeliness import Figures, Query, Report, to_csv

FORMULAS = ["=1+1", "+1", "-1+2", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://x")']


@pytest.mark.parametrize("cell", FORMULAS)
def test_a_cell_a_spreadsheet_would_run_is_prefixed(cell: str) -> None:
    assert neutralise(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["north", "welfare-check", "0", "12.5", "", "a=b", "x@y"])
def test_other_cells_are_left_as_they_are(cell: str) -> None:
    assert neutralise(cell) == cell
    assert neutralise(None) == ""
    assert safe_row([1, None, "=x"]) == ["1", "", "'=x"]


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_the_report_csv_neutralises_its_cells() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    report = Report(
        query=Query(start=start, end=start + timedelta(days=31), over=timedelta(days=25)),
        generated_at=start,
    )
    report.rows[("welfare-check", "-1+2")] = Figures()
    rows = _rows(to_csv(report))
    assert rows[1][2] == "'-1+2"
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)


def test_the_audit_csv_neutralises_its_cells() -> None:
    record = dict.fromkeys(audit_search.CSV_COLUMNS, "=cmd|' /C calc'!A0")
    record["event"] = {"source": "@evil", "id": "1"}
    rows = _rows(audit_search.to_csv([record]))
    assert all(cell.startswith("'") for cell in rows[1])
