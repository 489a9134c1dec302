"""The `safeguard` command line's offline commands, through Typer's runner."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from devtools.stack import DEFAULT_POLICY
from schemas.alerts import Rule
from services.cli.main import app
from services.cli.policies import Checked, check_policy, rule_routes
from tests.unit.test_backtest_scenarios import recorded

runner = CliRunner()
SCENARIO = Path(__file__).parents[1] / "scenarios" / "domestic-abuse-late-referral.json"


def broken(tmp_path: Path, old: str, new: str) -> Path:
    text = DEFAULT_POLICY.read_text()
    assert old in text
    path = tmp_path / "policy.yaml"
    path.write_text(text.replace(old, new))
    return path


def test_policy_check_accepts_the_default_policy() -> None:
    result = runner.invoke(app, ["policy", "check", str(DEFAULT_POLICY)])
    assert result.exit_code == 0, result.output
    assert "valid for risk and notify" in result.output


def test_policy_check_names_the_line_and_field_of_a_risk_error(tmp_path: Path) -> None:
    path = broken(tmp_path, "welfare-check: {window: 12h", "welfare-check: {window: 12 hours")
    line = next(
        n for n, text in enumerate(path.read_text().splitlines(), 1) if "welfare-check" in text
    )
    result = runner.invoke(app, ["policy", "check", str(path)])
    assert result.exit_code == 1
    assert f"{path}:{line}: obligations.welfare-check.window:" in result.stderr
    assert "(risk)" in result.stderr


def test_policy_check_names_a_notify_error(tmp_path: Path) -> None:
    path = broken(
        tmp_path,
        "    senior-manager: [duty-desk, senior-managers]",
        "    senior-manager: [duty-desk, nobody]",
    )
    result = runner.invoke(app, ["policy", "check", str(path)])
    assert result.exit_code == 1
    assert "unknown receivers: ['nobody']" in result.stderr
    assert "(notify)" in result.stderr


def test_policy_check_points_at_broken_yaml(tmp_path: Path) -> None:
    path = broken(tmp_path, "scoring:\n", "scoring: [\n")
    result = runner.invoke(app, ["policy", "check", str(path)])
    assert result.exit_code == 1
    assert "not YAML" in result.stderr
    assert f"{path}:" in result.stderr


def test_policy_check_of_a_missing_file_fails(tmp_path: Path) -> None:
    result = runner.invoke(app, ["policy", "check", str(tmp_path / "none.yaml")])
    assert result.exit_code == 1
    assert "cannot read policy file" in result.stderr


def test_policy_routes_lists_each_level_with_an_area_override(tmp_path: Path) -> None:
    path = broken(
        tmp_path,
        "  areas: {}",
        "  areas:\n    north:\n      duty-manager: [duty-desk, senior-managers]",
    )
    result = runner.invoke(app, ["policy", "routes", str(path), "--output", "json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    routes = document["ladders"]
    critical = [r for r in routes if r["area"] is None and r["severity"] == "critical"]
    assert [(r["level"], r["after_seconds"], r["route"]) for r in critical] == [
        (1, 0, "duty-manager"),
        (2, 900, "senior-manager"),
        (3, 3600, "strategic-lead"),
    ]
    assert critical[0]["recipients"] == ["duty-desk (webhook NOTIFY_WEBHOOK_URL)"]
    north = next(
        r for r in routes if r["area"] == "north" and r["severity"] == "high" and r["level"] == 1
    )
    assert north["recipients"] == [
        "duty-desk (webhook NOTIFY_WEBHOOK_URL)",
        "senior-managers (email senior-managers@example.org)",
    ]
    # Every severity in every area (default and north): 3 + 3 + 2 levels each.
    assert len(routes) == 16
    # Per rule: who its raise reaches at once; a refusal of accommodation from level 3.
    refused = [
        r
        for r in document["rules"]
        if r["rule"] == "custody-accommodation-refused" and r["area"] is None
    ]
    assert [(r["start_level"], r["recipients"]) for r in refused] == [
        (3, ["duty-desk", "senior-managers", "strategic-lead"])
    ]


def test_policy_routes_table() -> None:
    result = runner.invoke(app, ["policy", "routes", str(DEFAULT_POLICY)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:5] == ["AREA", "SEVERITY", "LEVEL", "AFTER", "ROUTE"]
    assert lines[2].split()[:5] == ["(default)", "critical", "2", "15m", "senior-manager"]


@pytest.fixture
def events(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text(
        "\n".join(recorded(SCENARIO, datetime(2026, 11, 18, 10, 30, tzinfo=UTC))) + "\n"
    )
    return path


def test_backtest_compares_a_candidate_with_the_baseline(events: Path, tmp_path: Path) -> None:
    # The candidate gives social care 60 days: the referral 55 days late is on time.
    candidate = broken(
        tmp_path, "social-care-referral: {window: 24h", "social-care-referral: {window: 60d"
    )
    result = runner.invoke(
        app,
        [
            "backtest",
            "--events",
            str(events),
            "--policy",
            str(candidate),
            "--baseline",
            str(DEFAULT_POLICY),
            "-o",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"baseline", "candidate"}
    base = report["baseline"]["rules"]["social-care-referral"]
    new = report["candidate"]["rules"]["social-care-referral"]
    assert base["breaches"] > new["breaches"]
    assert new["met_on_time"] > base["met_on_time"]
    assert report["baseline"]["events"] == report["candidate"]["events"] == 6


def test_backtest_table(events: Path) -> None:
    result = runner.invoke(
        app, ["backtest", "--events", str(events), "--policy", str(DEFAULT_POLICY)]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("events 6, duplicates 0, rejected 0")
    assert lines[1].split()[:3] == ["RULE", "POLICY", "ALERTS"]
    assert any(line.split()[:2] == ["social-care-referral", "candidate"] for line in lines)
    assert lines[-1].split()[:2] == ["(all)", "candidate"]


def test_backtest_rejects_an_invalid_policy(events: Path, tmp_path: Path) -> None:
    candidate = broken(
        tmp_path, "return-interview: {window: 72h", "return-interview: {window: soon"
    )
    result = runner.invoke(app, ["backtest", "--events", str(events), "--policy", str(candidate)])
    assert result.exit_code == 1
    assert "obligations.return-interview.window" in result.stderr


def test_backtest_of_a_missing_file_fails(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["backtest", "--events", str(tmp_path / "none"), "--policy", str(DEFAULT_POLICY)]
    )
    assert result.exit_code == 1
    assert "cannot read" in result.stderr


def test_every_rule_has_its_routes_and_a_refusal_reaches_the_strategic_lead_at_once() -> None:
    checked = check_policy(DEFAULT_POLICY)
    assert isinstance(checked, Checked)
    found = rule_routes(checked)
    assert {r.rule for r in found} == {rule.value for rule in Rule}
    refused = [r for r in found if r.rule == Rule.CUSTODY_ACCOMMODATION_REFUSED]
    assert [(r.severity.value, r.start_level) for r in refused] == [("critical", 3)]
    assert "strategic-lead" in refused[0].recipients
    welfare = next(r for r in found if r.rule == Rule.WELFARE_CHECK)
    assert (welfare.start_level, welfare.recipients) == (1, ("duty-desk",))
    custody = {r.severity.value for r in found if r.rule == Rule.CHILD_IN_CUSTODY}
    assert custody == {"high", "critical"}
