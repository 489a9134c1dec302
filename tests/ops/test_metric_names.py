"""Every metric the alert rules and the dashboard query is one the services expose.

Starts the three services (the module's `stack`), drives one event through so that
labelled series exist, scrapes each `/metrics` and compares names.
"""

from __future__ import annotations

import re
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from devtools.stack import DevStack
from services.common.metrics import policy_digest
from tests.fixtures.stack import Client
from tests.fixtures.webhook import WebhookReceiver
from tests.ops.helpers import (
    RULES_FILES,
    dashboard_expressions,
    exposed_sample_names,
    load_yaml,
    promql_metric_names,
    recorded_names,
    rule_expressions,
)

pytestmark = pytest.mark.e2e

# Metrics that come from elsewhere than our services: Prometheus itself and kafka-exporter.
EXTERNAL_METRICS = {
    "up",
    "kafka_consumergroup_lag",
    "kafka_consumergroup_current_offset",
}


def queried_metrics() -> dict[str, set[str]]:
    """Return, per metric name, where the rules and the dashboard use it."""
    used: dict[str, set[str]] = {}
    sources = {
        **{
            f"rule {k}": v
            for path in RULES_FILES
            for k, v in rule_expressions(load_yaml(path)).items()
        },
        **{f"panel {k}": v for k, v in dashboard_expressions().items()},
    }
    for where, expr in sources.items():
        for name in promql_metric_names(expr):
            used.setdefault(name, set()).add(where)
    return used


def scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:  # noqa: S310
        body: bytes = response.read()
    return body.decode()


def test_metric_name_extraction_finds_what_a_query_selects() -> None:
    names = promql_metric_names(
        "histogram_quantile(0.99, sum by (le) (rate(a_seconds_bucket[$__rate_interval])))"
        ' / on() group_left b_total or {__name__="c"}'
    )
    assert names == {"a_seconds_bucket", "b_total", "c"}
    exposed = exposed_sample_names(
        '# TYPE x_total counter\n# TYPE h histogram\nh_bucket{le="1"} 0\n# TYPE g gauge\n'
    )
    assert {"x_total", "h_bucket", "h_sum", "h_count", "g"} <= exposed
    assert "x" not in exposed


def test_rules_and_dashboard_use_only_metrics_the_services_expose(
    stack: DevStack, webhook: WebhookReceiver
) -> None:
    child = "C-OPS-1"
    event = {
        "specversion": "1.0",
        "id": "ops-metrics-1",
        "source": "urn:safeguard:source:control-room",
        "type": "incident.reported",
        "time": (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": {
            "incident_id": "INC-OPS-1",
            "category": "domestic_abuse",
            "area": "north",
            "children": [{"child_id": child, "present": True, "age": 8}],
        },
    }
    code, body, _ = Client().request("POST", f"{stack.url('ingest')}/v1/events", event)
    assert code == 202, body
    assert webhook.wait_for(lambda b: b.get("alert", {}).get("child_id") == child)

    exposed: set[str] = set()
    digest = policy_digest(stack.policy_file.read_bytes())
    for service in ("ingest", "risk", "notify"):
        page = scrape(stack.url(service))
        exposed |= exposed_sample_names(page)
        samples = [line for line in page.splitlines() if line and not line.startswith("#")]
        names = {re.split(r"[{ ]", line, maxsplit=1)[0] for line in samples}
        assert {"process_start_time_seconds", "process_resident_memory_bytes"} <= names, service
        assert {"python_info", "safeguard_build_info"} <= names, service
        assert not [n for n in names if n.endswith("_created")], service
        assert any(line.startswith('safeguard_build_info{revision="') for line in samples)
        if service != "ingest":
            assert f'safeguard_policy_info{{sha256="{digest}"}} 1.0' in samples, service
    assert "safeguard_ingest_events_accepted_total" in exposed
    # The desk's own registry (no process series of its own to check here).
    exposed |= exposed_sample_names(scrape(stack.url("desk")))

    # Series the recording rules write (the service levels' ratios) exist once the rules do.
    recorded = recorded_names()
    missing = {
        name: sorted(where)
        for name, where in queried_metrics().items()
        if name not in exposed and name not in EXTERNAL_METRICS and name not in recorded
    }
    assert not missing, f"queried but not exposed by any service: {missing}"
