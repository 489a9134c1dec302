"""The alert rules pass promtool, behave as their unit tests say, and match the k8s copy."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.helpers import PROMETHEUS_RULE, RULES_FILE, load_yaml, require_tool

RULE_TESTS = Path(__file__).with_name("safeguard.rules.test.yml")


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    tool = require_tool("promtool", "apt-get install prometheus (Debian ships promtool in it)")
    return subprocess.run(  # noqa: S603 - fixed arguments
        [tool, *args], capture_output=True, text=True, check=False, cwd=cwd
    )


def test_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(RULES_FILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    broken = {"groups": [{"name": "x", "rules": [{"alert": "X", "expr": "sum(rate(a[5m])"}]}]}
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken))
    assert promtool("check", "rules", str(path)).returncode != 0


def test_rules_behave_as_their_unit_tests_say(tmp_path: Path) -> None:
    # promtool compares annotations word for word; the cases check expressions, `for`
    # and labels, so they run against a copy without annotations.
    rules: dict[str, Any] = load_yaml(RULES_FILE)
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    cases: dict[str, Any] = load_yaml(RULE_TESTS)
    cases["rule_files"] = ["rules.yml"]
    (tmp_path / "cases.yml").write_text(yaml.safe_dump(cases))
    result = promtool("test", "rules", "cases.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_severity_summary_and_description() -> None:
    rules: dict[str, Any] = load_yaml(RULES_FILE)
    alerts = [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]
    assert alerts
    for rule in alerts:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


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


def test_prometheus_rule_for_kubernetes_is_the_same_rules() -> None:
    resource = load_yaml(PROMETHEUS_RULE)
    assert resource["kind"] == "PrometheusRule"
    assert resource["spec"] == load_yaml(RULES_FILE), (
        f"{PROMETHEUS_RULE.name} differs from {RULES_FILE.name}: copy the groups across"
    )
