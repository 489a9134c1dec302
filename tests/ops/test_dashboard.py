"""The Grafana dashboard parses, every panel queries something, and Grafana can find it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devtools import alert_rules
from tests.ops.helpers import (
    COMPOSE_FILE,
    DASHBOARD,
    DEPLOY,
    dashboard_expressions,
    dashboard_panels,
    load_yaml,
    promql_metric_names,
)


def test_dashboard_parses_with_unique_ids_and_a_stable_uid() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "safeguard-overview"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_every_panel_has_targets_with_a_query() -> None:
    panels = dashboard_panels(json.loads(DASHBOARD.read_text()))
    assert len(panels) >= 10
    for panel in panels:
        assert panel.get("targets"), f"panel {panel['title']!r} has no targets"
        for target in panel["targets"]:
            assert target.get("expr", "").strip(), f"panel {panel['title']!r} has an empty query"
            assert target["datasource"]["uid"] == "${datasource}"


@pytest.mark.parametrize("name", sorted(dashboard_expressions()))
def test_every_query_is_valid_promql(name: str) -> None:
    assert promql_metric_names(dashboard_expressions()[name]), name


def test_grafana_provisioning_points_at_the_dashboard_folder() -> None:
    provider = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "safeguard.yml")
    path = provider["providers"][0]["options"]["path"]
    grafana = load_yaml(COMPOSE_FILE)["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    assert mounts[path] == "./deploy/grafana/dashboards"
    datasource = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    assert datasource["datasources"][0]["uid"] == "prometheus"


def test_area_and_rule_variables_filter_the_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"datasource", "area", "rule"} <= set(variables)
    for name in ("area", "rule"):
        query = variables[name]["query"]["query"]
        assert query.startswith("label_values("), query
        assert query.endswith(f", {name})"), query
        selector = query.removeprefix("label_values(").removesuffix(f", {name})")
        assert promql_metric_names(selector) or "__name__" in selector, query
        assert variables[name]["includeAll"] is True
    expressions = dashboard_expressions()
    assert sum('rule=~"$rule"' in e for e in expressions.values()) >= 8
    assert sum('area=~"$area"' in e for e in expressions.values()) >= 2


def test_deployments_and_policy_changes_are_annotated() -> None:
    annotations = json.loads(DASHBOARD.read_text())["annotations"]["list"]
    by_name = {a["name"]: a for a in annotations}
    assert "safeguard_build_info" in promql_metric_names(by_name["Deployments"]["expr"])
    assert "safeguard_policy_info" in promql_metric_names(by_name["Policy changes"]["expr"])
    for annotation in annotations:
        assert annotation["datasource"]["uid"] == "${datasource}"
        # Marks the moment a new version or policy appears, not every scrape after it.
        assert " unless " in annotation["expr"]
        assert " offset " in annotation["expr"]


def test_every_service_level_has_a_row_with_its_error_budget() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    rows = [p for p in dashboard["panels"] if p["type"] == "row"]
    for objective in alert_rules.load_spec().objectives:
        selector = f'{{slo="{objective.name}"}}'
        row = next(
            r
            for r in rows
            if r["title"].startswith("Service level")
            and any(
                selector in target["expr"]
                for panel in panels_below(dashboard, r)
                for target in panel["targets"]
            )
        )
        below = panels_below(dashboard, row)
        queries = [t["expr"] for panel in below for t in panel["targets"]]
        assert f"safeguard:slo_error_budget_remaining:ratio{selector}" in queries, row["title"]
        assert all(selector in q for q in queries), row["title"]


def panels_below(dashboard: dict[str, Any], row: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the panels under an expanded row, up to the next row."""
    panels: list[dict[str, Any]] = dashboard["panels"]
    start = panels.index(row) + 1
    end = next((i for i in range(start, len(panels)) if panels[i]["type"] == "row"), len(panels))
    return panels[start:end]
