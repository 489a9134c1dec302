"""`safeguard policy diff`: what changes between two policy files, in words, and with
recorded events the alerts each raises (the real backtest, both policies)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from devtools.stack import DEFAULT_POLICY
from services.cli.main import app
from services.cli.policies import Checked, check_policy
from services.cli.policy_diff import describe
from tests.unit.test_backtest_scenarios import recorded

runner = CliRunner()
SCENARIO = Path(__file__).parents[1] / "scenarios" / "domestic-abuse-late-referral.json"


@pytest.fixture
def edited(tmp_path: Path) -> Callable[[Callable[[dict[str, Any]], None]], Path]:
    """Write the default policy changed by a function; return its path."""

    def write(change: Callable[[dict[str, Any]], None]) -> Path:
        policy = yaml.safe_load(DEFAULT_POLICY.read_text())
        change(policy)
        path = tmp_path / f"policy-{len(list(tmp_path.iterdir()))}.yaml"
        path.write_text(yaml.safe_dump(policy, sort_keys=False))
        return path

    return write


def checked(path: Path) -> Checked:
    result = check_policy(path)
    assert isinstance(result, Checked), result
    return result


def texts(new: Path, old: Path = DEFAULT_POLICY) -> list[str]:
    return [change.text for change in describe(checked(old), checked(new))]


def test_the_same_policy_written_otherwise_has_no_changes(edited: Callable[..., Path]) -> None:
    def rewrite(policy: dict[str, Any]) -> None:
        policy["obligations"]["social-care-referral"]["window"] = "1d"  # was 24h
        policy["escalation"]["critical"]["ack_timeout"] = "60m"  # was 1h
        del policy["escalation"]["high"]["ack_timeout"]  # the default for high is 4h
        policy["group_window"] = "30s"

    assert texts(edited(rewrite)) == []
    result = runner.invoke(app, ["policy", "diff", str(DEFAULT_POLICY), str(edited(rewrite))])
    assert result.exit_code == 0, result.output
    assert "the same policy" in result.stdout


def test_obligation_windows_severities_and_holidays(edited: Callable[..., Path]) -> None:
    def change(policy: dict[str, Any]) -> None:
        obligations = policy["obligations"]
        obligations["welfare-check"]["window"] = "8h"
        obligations["social-care-referral"]["severity"] = "critical"
        obligations["missing-referral"]["windows"]["high"] = "2h"
        del obligations["missing-referral"]["windows"]["low"]
        school = obligations["school-notification"]
        school["holidays"] = [*school["holidays"], "2027-01-04"]
        obligations["forensic-examination"]["second"]["window"] = "120d"
        policy["patterns"]["repeat-missing"]["count"] = 2
        policy["scoring"]["thresholds"]["high"] = 45

    assert texts(edited(change)) == [
        "forensic-examination (second): window 180d -> 120d (shorter)",
        "missing-referral: window for high 1h -> 2h (longer)",
        "missing-referral: no window for low (was 3d): no obligation then",
        "school-notification: holidays adds 2027-01-04",
        "social-care-referral: severity high -> critical",
        "welfare-check: window 12h -> 8h (shorter)",
        "pattern repeat-missing: count 3 -> 2",
        "risk score: thresholds high 50 -> 45",
    ]


def test_escalation_ladders_level_by_level(edited: Callable[..., Path]) -> None:
    def change(policy: dict[str, Any]) -> None:
        critical = policy["escalation"]["critical"]
        critical["levels"][1]["after"] = "10m"
        critical["levels"][2]["route"] = "duty-manager"
        high = policy["escalation"]["high"]
        high["levels"].pop()
        high["ack_timeout"] = "2h"
        medium = policy["escalation"]["medium"]
        medium["levels"].append({"route": "strategic-lead", "after": "2d"})
        del medium["repeat"]

    assert texts(edited(change)) == [
        "critical alerts: level 2 (senior-manager) after 15m -> 10m (sooner)",
        "critical alerts: level 3 (duty-manager) goes to duty-manager instead of strategic-lead",
        "high alerts: level 3 (strategic-lead) removed",
        "high alerts: an acknowledgement holds 4h -> 2h (shorter) before the alert re-opens",
        "medium alerts: level 3 added: strategic-lead after 2d",
        "medium alerts: the current level is told again every 1d -> none",
    ]


def test_routing_by_area_and_receivers(edited: Callable[..., Path]) -> None:
    def change(policy: dict[str, Any]) -> None:
        policy["routing"]["default"]["senior-manager"] = ["senior-managers"]
        policy["routing"]["areas"] = {"north": {"duty-manager": ["duty-desk", "north-desk"]}}
        policy["receivers"]["north-desk"] = {"channel": "email", "to": ["north@example.org"]}
        policy["receivers"]["strategic-lead"]["to"] = ["lead@example.org"]
        policy["group_window"] = "1m"

    assert texts(edited(change)) == [
        "level 1 waits 30s -> 1m (longer) to group the alerts of one event",
        "area north: routes of its own: duty-manager duty-desk, north-desk",
        "route senior-manager (in every area without its own): drops duty-desk",
        "receiver north-desk: new, email to north@example.org",
        "receiver strategic-lead: email to adds lead@example.org; drops strategic-lead@example.org",
    ]
    result = runner.invoke(app, ["policy", "diff", str(DEFAULT_POLICY), str(edited(change))])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:2] == [
        "group window",
        "  - level 1 waits 30s -> 1m (longer) to group the alerts of one event",
    ]
    assert "alerts already raised keep the chain they were raised with" in result.stdout
    assert "obligations already open" not in result.stdout


def test_json_gives_each_change_with_its_values(edited: Callable[..., Path]) -> None:
    path = edited(lambda p: p["obligations"]["welfare-check"].update(window="8h"))
    result = runner.invoke(app, ["policy", "diff", str(DEFAULT_POLICY), str(path), "-o", "json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["changes"] == [
        {
            "section": "obligations",
            "path": "obligations.welfare-check.window",
            "before": 12 * 3600,
            "after": 8 * 3600,
            "text": "welfare-check: window 12h -> 8h (shorter)",
        }
    ]
    assert body["alerts"] is None
    assert len(body["notes"]) == 1


def test_an_invalid_policy_is_refused_with_where(edited: Callable[..., Path]) -> None:
    path = edited(lambda p: p["obligations"]["welfare-check"].update(window="12 hours"))
    result = runner.invoke(app, ["policy", "diff", str(DEFAULT_POLICY), str(path)])
    assert result.exit_code == 1
    assert "obligations.welfare-check.window" in result.stderr


def test_with_events_both_policies_are_backtested_per_rule(
    edited: Callable[..., Path], tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(recorded(SCENARIO, datetime(2026, 11, 4, 10, tzinfo=UTC))) + "\n")

    def change(policy: dict[str, Any]) -> None:
        # The referral came 55 days late: a 60-day window raises nothing for it. The
        # welfare check came an hour after the incident: a 30-minute window breaches it.
        policy["obligations"]["social-care-referral"]["window"] = "60d"
        policy["obligations"]["welfare-check"]["window"] = "30m"

    new = edited(change)
    result = runner.invoke(
        app,
        ["policy", "diff", str(DEFAULT_POLICY), str(new), "--events", str(events), "-o", "json"],
    )
    assert result.exit_code == 0, result.output
    alerts = {row["rule"]: row for row in json.loads(result.stdout)["alerts"]}
    assert alerts["social-care-referral"] == {
        "rule": "social-care-referral",
        "old": 2,
        "new": 0,
        "change": -2,
        "only_old": 2,
        "only_new": 0,
    }
    assert alerts["welfare-check"]["change"] == 1
    assert alerts["welfare-check"]["only_new"] == 1
    assert alerts["school-notification"]["change"] == 0
    assert alerts["(all)"]["change"] == -1

    table = runner.invoke(
        app, ["policy", "diff", str(DEFAULT_POLICY), str(new), "--events", str(events)]
    )
    assert table.exit_code == 0, table.output
    header = next(line for line in table.stdout.splitlines() if line.startswith("RULE"))
    assert header.split() == [
        "RULE",
        "ALERTS",
        "OLD",
        "ALERTS",
        "NEW",
        "CHANGE",
        "ONLY",
        "OLD",
        "ONLY",
        "NEW",
    ]
    row = next(
        line for line in table.stdout.splitlines() if line.startswith("social-care-referral ")
    )
    assert row.split() == ["social-care-referral", "2", "0", "-2", "2", "0"]
