"""The Grafana dashboard parses, every panel queries something, and Grafana can find it."""

from __future__ import annotations

import json

import pytest

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
