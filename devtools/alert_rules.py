"""Write the alert rules that are derived, not hand-written (`make rules`).

    python -m devtools.alert_rules           write them
    python -m devtools.alert_rules --check   exit 1, naming the files, when one differs

From `deploy/prometheus/slos.yaml` (the service-level objectives and the runbook base
URL) and the hand-written `deploy/prometheus/rules/safeguard.rules.yml`:

- `deploy/prometheus/rules/slo.rules.yml`: per objective, its error ratio over the
  windows the burn-rate alerts need (5m, 30m, 1h, 2h, 6h, 1d, 3d) and over the budget
  period, the objective itself and the budget left, then one alert per objective in two
  rules, as the Google SRE workbook's multi-window, multi-burn-rate alerts: a page
  (severity critical) when 2% of the period's budget goes in an hour or 5% in six hours,
  a ticket (severity warning) when 10% goes in a day or in three days (`PAGE` and
  `TICKET` below);
- the `runbook_url` annotation of every alert in `safeguard.rules.yml`, rewritten line by
  line so that its comments and layout stay as written;
- `deploy/k8s/base/prometheusrule.yaml`: the groups of both rule files, for
  prometheus-operator.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from services.common.durations import parse_duration

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "deploy" / "prometheus" / "slos.yaml"
RULES_DIR = REPO / "deploy" / "prometheus" / "rules"
HAND_WRITTEN = RULES_DIR / "safeguard.rules.yml"
SLO_RULES = RULES_DIR / "slo.rules.yml"
PROMETHEUS_RULE = REPO / "deploy" / "k8s" / "base" / "prometheusrule.yaml"

RATIO = "safeguard:slo_errors:ratio_rate{window}"
OBJECTIVE = "safeguard:slo_objective:ratio"
BUDGET_LEFT = "safeguard:slo_error_budget_remaining:ratio"


@dataclass(frozen=True)
class Burn:
    """One burn-rate condition: the long and short windows both above `factor` times budget."""

    factor: float
    long: str
    short: str


# The workbook's table for a 30-day budget: a page at 2% of it spent in 1 h (14.4x) or 5%
# in 6 h (6x); a ticket at 10% in 1 d (3x) or 10% in 3 d (1x). The short window (1/12
# of the long) lets the alert stop soon after the burn does.
PAGE = (Burn(14.4, "1h", "5m"), Burn(6, "6h", "30m"))
TICKET = (Burn(3, "1d", "2h"), Burn(1, "3d", "6h"))
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


@dataclass(frozen=True)
class Objective:
    """One service-level objective of the spec."""

    name: str
    alert: str
    objective: float
    title: str
    promise: str
    errors: str
    total: str

    def ratio(self, window: str) -> str:
        """Return the error ratio's expression over `window`."""
        errors = " ".join(self.errors.replace("$window", window).split())
        total = " ".join(self.total.replace("$window", window).split())
        return f"({errors})\n/\n({total})"

    @property
    def budget(self) -> float:
        """Return the share of events allowed to fail."""
        return 1 - self.objective


@dataclass(frozen=True)
class Spec:
    """The spec file: the runbooks' base URL, the budget period and the objectives."""

    runbook_base_url: str
    period: str
    objectives: tuple[Objective, ...]

    def runbook(self, alert: str) -> str:
        """Return the runbook URL of an alert."""
        return f"{self.runbook_base_url.rstrip('/')}/{alert}.md"


def load_spec(path: Path = SPEC) -> Spec:
    """Read the spec file."""
    raw: dict[str, Any] = yaml.safe_load(path.read_text())
    objectives = tuple(Objective(**entry) for entry in raw["objectives"])
    for objective in objectives:
        if not 0 < objective.objective < 1:
            msg = f"{objective.name}: objective must lie between 0 and 1"
            raise ValueError(msg)
    return Spec(str(raw["runbook_base_url"]), str(raw["period"]), objectives)


def _number(value: float) -> str:
    return f"{value:.6g}"


def _percent(value: float) -> str:
    return f"{value * 100:.6g}%"


def _condition(objective: Objective, burns: tuple[Burn, ...]) -> str:
    branches = []
    for burn in burns:
        threshold = _number(burn.factor * objective.budget)
        selector = f'{{slo="{objective.name}"}}'
        branches.append(
            f"(\n  {RATIO.format(window=burn.long)}{selector} > {threshold}\n"
            f"  and {RATIO.format(window=burn.short)}{selector} > {threshold}\n)"
        )
    return "\nor\n".join(branches)


def _days(spec: Spec, factor: float) -> str:
    days = parse_duration(spec.period).total_seconds() / 86400 / factor
    return f"{days:.2g} days" if days < 10 else f"{days:.0f} days"  # noqa: PLR2004


def _alerts(spec: Spec, objective: Objective) -> list[dict[str, Any]]:
    period_days = parse_duration(spec.period).days
    budget = _percent(objective.budget)
    target = _percent(objective.objective)
    promise = " ".join(objective.promise.split())
    common = (
        f"The promise: {promise}, for {target} of them over {period_days} days (an error "
        f"budget of {budget})."
    )
    fast, fast_long = PAGE
    slow, slow_long = TICKET
    page = {
        "alert": objective.alert,
        "expr": _condition(objective, PAGE),
        "labels": {"severity": "critical", "slo": objective.name},
        "annotations": {
            "summary": f"The {objective.title} error budget is burning fast "
            "({{ $value | humanizePercentage }} bad over the long window)",
            "description": f"{common} At this rate the whole budget is gone in "
            f"{_days(spec, fast.factor)} ({_number(fast.factor)} times the rate it lasts at, "
            f"over {fast.long} and still over {fast.short}) or {_days(spec, fast_long.factor)} "
            f"({_number(fast_long.factor)} times, over {fast_long.long} and still over "
            f"{fast_long.short}).",
            "runbook_url": spec.runbook(objective.alert),
        },
    }
    ticket = {
        "alert": objective.alert,
        "expr": _condition(objective, TICKET),
        "labels": {"severity": "warning", "slo": objective.name},
        "annotations": {
            "summary": f"The {objective.title} error budget is burning "
            "({{ $value | humanizePercentage }} bad over the long window)",
            "description": f"{common} It is being spent faster than it lasts "
            f"({_number(slow.factor)} times the rate over {slow.long}, or "
            f"{_number(slow_long.factor)} times over {slow_long.long}). Not an emergency: "
            "find out why within working hours.",
            "runbook_url": spec.runbook(objective.alert),
        },
    }
    return [page, ticket]


def slo_rules(spec: Spec) -> dict[str, Any]:
    """Return the rule file of the service levels."""
    recording: list[dict[str, Any]] = []
    budget: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    for objective in spec.objectives:
        labels = {"slo": objective.name}
        recording.extend(
            {
                "record": RATIO.format(window=window),
                "expr": objective.ratio(window),
                "labels": labels,
            }
            for window in WINDOWS
        )
        recording.append(
            {
                "record": OBJECTIVE,
                "expr": f"vector({_number(objective.objective)})",
                "labels": labels,
            }
        )
        budget.append(
            {
                "record": RATIO.format(window=spec.period),
                "expr": objective.ratio(spec.period),
                "labels": labels,
            }
        )
        budget.append(
            {
                "record": BUDGET_LEFT,
                "expr": f'1 - {RATIO.format(window=spec.period)}{{slo="{objective.name}"}}'
                f" / {_number(objective.budget)}",
                "labels": labels,
            }
        )
        alerts.extend(_alerts(spec, objective))
    return {
        "groups": [
            {"name": "safeguard.slo.ratios", "rules": recording},
            # Over the whole period: for the dashboard's budgets only, so evaluated seldom.
            {"name": "safeguard.slo.budget", "interval": "5m", "rules": budget},
            {"name": "safeguard.slo.alerts", "rules": alerts},
        ]
    }


_ALERT = re.compile(r"^\s*- alert:\s*(\S+)\s*$")
_ANNOTATIONS = re.compile(r"^(\s*)annotations:\s*$")
_RUNBOOK = re.compile(r"^\s*runbook_url:")


def with_runbooks(text: str, spec: Spec) -> str:
    """Return a hand-written rule file with every alert's `runbook_url` set from `spec`.

    Existing `runbook_url` lines are replaced; an alert without one gets it as the first
    annotation. Everything else stays as written.
    """
    out: list[str] = []
    alert: str | None = None
    for line in text.splitlines():
        if _RUNBOOK.match(line):
            continue
        out.append(line)
        found = _ALERT.match(line)
        if found:
            alert = found.group(1)
            continue
        annotations = _ANNOTATIONS.match(line)
        if annotations and alert is not None:
            indent = annotations.group(1) + "  "
            out.append(f"{indent}runbook_url: {spec.runbook(alert)}")
            alert = None
    return "\n".join(out) + "\n"


class _Dumper(yaml.SafeDumper):
    """Block style throughout; long text folded, multi-line text literal; no anchors."""

    def ignore_aliases(self, data: object) -> bool:  # noqa: ARG002 - every value written out
        return True


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else (">" if len(data) > 80 else None)  # noqa: PLR2004 - a readable line
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _represent_str)


def dump(document: object) -> str:
    """Return YAML as the derived files are written."""
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)


SLO_HEADER = """\
# Written by `make rules` (devtools/alert_rules.py) from deploy/prometheus/slos.yaml: edit
# that file, not this one. Recording rules of each service level's error ratio, and its
# multi-window, multi-burn-rate alerts (docs/slo.md).
"""

PROMETHEUS_RULE_HEADER = """\
# Written by `make rules` (devtools/alert_rules.py): the groups of every file of
# deploy/prometheus/rules/, for prometheus-operator. Edit those, not this one.
"""


def prometheus_rule(rule_texts: list[str]) -> dict[str, Any]:
    """Return the PrometheusRule holding the groups of every rule file, in order."""
    groups: list[Any] = []
    for text in rule_texts:
        groups.extend(yaml.safe_load(text)["groups"])
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "safeguard"},
        "spec": {"groups": groups},
    }


def outputs(spec: Spec | None = None) -> dict[Path, str]:
    """Return every derived file's path and the text it should have."""
    spec = spec or load_spec()
    hand_written = with_runbooks(HAND_WRITTEN.read_text(), spec)
    slo = SLO_HEADER + dump(slo_rules(spec))
    return {
        HAND_WRITTEN: hand_written,
        SLO_RULES: slo,
        PROMETHEUS_RULE: PROMETHEUS_RULE_HEADER + dump(prometheus_rule([hand_written, slo])),
    }


def stale() -> list[Path]:
    """Return the derived files whose committed text differs from what would be written."""
    return [
        path for path, text in outputs().items() if not path.exists() or path.read_text() != text
    ]


def main(argv: list[str] | None = None) -> int:
    """Write the derived rule files, or with --check report those that differ."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report files that differ")
    args = parser.parse_args(argv)
    if args.check:
        differing = stale()
        for path in differing:
            sys.stderr.write(f"{path.relative_to(REPO)} is stale: run `make rules`\n")
        return 1 if differing else 0
    for path, text in outputs().items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
