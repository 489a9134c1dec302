"""The alert rules pass promtool, behave as their unit tests say, and the derived files
(`make rules`: the service levels' rules, runbook links, the PrometheusRule) are current."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools import alert_rules
from tests.ops.helpers import (
    PROMETHEUS_RULE,
    RULES_DIR,
    RULES_FILE,
    RULES_FILES,
    all_rules,
    load_yaml,
    require_tool,
)

RULE_TESTS = sorted(Path(__file__).parent.glob("*.rules.test.yml"))


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    tool = require_tool("promtool", "apt-get install prometheus (Debian ships promtool in it)")
    return subprocess.run(  # noqa: S603 - fixed arguments
        [tool, *args], capture_output=True, text=True, check=False, cwd=cwd
    )


def test_every_rule_file_has_its_unit_tests() -> None:
    assert [p.name.replace(".test.yml", ".yml") for p in RULE_TESTS] == [
        p.name for p in RULES_FILES
    ]


def test_rules_pass_promtool_check() -> None:
    assert [path.name for path in RULES_FILES] == ["safeguard.rules.yml", "slo.rules.yml"]
    result = promtool("check", "rules", *map(str, RULES_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    broken = {"groups": [{"name": "x", "rules": [{"alert": "X", "expr": "sum(rate(a[5m])"}]}]}
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken))
    assert promtool("check", "rules", str(path)).returncode != 0


@pytest.mark.parametrize("cases", RULE_TESTS, ids=[p.name for p in RULE_TESTS])
def test_rules_behave_as_their_unit_tests_say(tmp_path: Path, cases: Path) -> None:
    # `<name>.rules.test.yml` tests `<name>.rules.yml` alone: promtool evaluates every rule
    # it is given at every step. It compares annotations word for word; the cases check
    # expressions, `for` and labels, so they run against a copy without annotations.
    path = RULES_DIR / cases.name.replace(".test.yml", ".yml")
    rules: dict[str, Any] = load_yaml(path)
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / path.name).write_text(yaml.safe_dump(rules))
    tests: dict[str, Any] = load_yaml(cases)
    tests["rule_files"] = [path.name]
    (tmp_path / "cases.yml").write_text(yaml.safe_dump(tests))
    result = promtool("test", "rules", "cases.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_severity_summary_description_and_runbook() -> None:
    alerts = [rule for rule in all_rules() if "alert" in rule]
    assert len(alerts) >= 20
    base = alert_rules.load_spec().runbook_base_url
    for rule in alerts:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
        assert rule["annotations"]["runbook_url"] == f"{base}/{rule['alert']}.md", rule["alert"]


def test_every_service_level_pages_on_fast_burn_and_tickets_on_slow() -> None:
    spec = alert_rules.load_spec()
    assert len(spec.objectives) == 4
    by_alert: dict[str, set[str]] = {}
    for rule in all_rules():
        if "slo" in rule.get("labels", {}) and "alert" in rule:
            by_alert.setdefault(rule["alert"], set()).add(rule["labels"]["severity"])
    assert by_alert == {o.alert: {"critical", "warning"} for o in spec.objectives}


@pytest.mark.parametrize(
    "topic",
    ["consumer lag", "deadline lag", "notification failures", "dead letters", "no events", "down"],
)
def test_the_issue_s_alerts_exist(topic: str) -> None:
    expressions = " ".join(
        rule["expr"] for group in load_yaml(RULES_FILE)["groups"] for rule in group["rules"]
    )
    needles = {
        "consumer lag": "kafka_consumergroup_lag",
        "deadline lag": "safeguard_risk_deadline_lag_seconds_bucket",
        "notification failures": "safeguard_notify_notifications_failed_total",
        "dead letters": "safeguard_notify_deadlettered_total",
        "no events": "safeguard_risk_events_processed_total",
        "down": "== 0",
    }
    assert needles[topic] in expressions


def test_the_derived_rule_files_are_what_make_rules_writes() -> None:
    stale = [str(path.relative_to(alert_rules.REPO)) for path in alert_rules.stale()]
    assert not stale, f"stale, run `make rules`: {stale}"


def test_prometheus_rule_for_kubernetes_holds_every_rule_file() -> None:
    resource = load_yaml(PROMETHEUS_RULE)
    assert resource["kind"] == "PrometheusRule"
    groups = [group for path in RULES_FILES for group in load_yaml(path)["groups"]]
    assert resource["spec"] == {"groups": groups}


def test_runbook_links_follow_the_one_base_url(tmp_path: Path) -> None:
    spec = alert_rules.load_spec()
    moved = alert_rules.Spec("https://runbooks.example.org/x/", spec.period, spec.objectives)
    text = alert_rules.with_runbooks(RULES_FILE.read_text(), moved)
    rewritten = yaml.safe_load(text)
    urls = [
        rule["annotations"]["runbook_url"]
        for group in rewritten["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    assert urls
    assert all(url.startswith("https://runbooks.example.org/x/Safeguard") for url in urls)
    # Comments and everything else stay as written.
    original = [line for line in RULES_FILE.read_text().splitlines() if "runbook_url" not in line]
    assert [line for line in text.splitlines() if "runbook_url" not in line] == original
    # An alert that has none yet gets one.
    bare = "groups:\n  - name: g\n    rules:\n      - alert: X\n        expr: up == 0\n"
    bare += "        annotations:\n          summary: s\n"
    (tmp_path / "bare.yml").write_text(alert_rules.with_runbooks(bare, moved))
    loaded = load_yaml(tmp_path / "bare.yml")
    assert loaded["groups"][0]["rules"][0]["annotations"] == {
        "runbook_url": "https://runbooks.example.org/x/X.md",
        "summary": "s",
    }
