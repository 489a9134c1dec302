"""The pack's figures: a pure function of what was read, the period, the area and `as_of`.

The figures are one JSON document (`figures_json`: sorted keys, no spaces, UTF-8) whose
SHA-256 the document prints and which is shipped beside it: the same command on the
same data with the same `as_of` gives the same bytes. Nothing in it is personal data:
subjects appear by their pseudonymous ids only (the oldest open cases), staff never
(caseloads are counted, readers are counted by role).
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from services.common.durations import format_duration
from services.desk.pack.data import PackData
from services.desk.pack.findings import FINDINGS, Finding
from services.desk.pack.period import Period
from services.desk.pack.policy import Assurance
from services.desk.timeliness import ObligationState, Query, percentile, timeliness

SCHEMA = "safeguard.assurance-pack/1"
OVER = timedelta(days=25)
INSPECTORS = (
    'The inspection found the force could not yet "offer assurance that children at risk '
    'are being adequately protected". These figures are the evidence, rule by rule.'
)
VIEWING = frozenset(
    {"child.viewed", "alert.viewed", "alerts.listed", "report.viewed", "pack.generated"}
)
ACTING = frozenset({"alert.acknowledged", "alert.resolved", "alert.noted"})
DAY = 86400.0

RolesOf = Callable[[str], frozenset[str] | None]
Scope = Callable[[str], frozenset[str] | None]


def iso(moment: datetime | None) -> str | None:
    """Return a UTC time as `2026-09-30T23:59:59Z`."""
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def figures_json(figures: dict[str, Any]) -> bytes:
    """Return the figures as the canonical bytes that are hashed and shipped."""
    return json.dumps(figures, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256(figures: dict[str, Any]) -> str:
    """Return the hex SHA-256 of the canonical figures."""
    return hashlib.sha256(figures_json(figures)).hexdigest()


def compute(  # noqa: PLR0913 - what a pack is about, and who asks
    data: PackData,
    *,
    period: Period,
    history: list[Period],
    area: str | None,
    as_of: datetime,
    policy: Assurance,
    policy_version: str,
    software_version: str,
    roles_of: RolesOf,
    scope_of: Scope,
) -> dict[str, Any]:
    """Return the whole pack's figures."""
    rules = _timeliness(data.states, period, history, area, as_of)
    worse = [r["rule"] for r in rules if r["worse"]]
    total = _report(data.states, period, area, as_of).total.to_json(OVER)
    return {
        "schema": SCHEMA,
        "provenance": {
            "period": period.label,
            "period_title": period.title,
            "from": iso(period.start),
            "to": iso(period.end),
            "area": area,
            "as_of": iso(as_of),
            "policy_version": policy_version,
            "software_version": software_version,
            "over": format_duration(OVER),
            "previous_periods": [p.label for p in history],
        },
        "headline": {
            "inspectors": INSPECTORS,
            "due": total["due"],
            "on_time_percent": total["on_time_percent"],
            "sentence": total["sentence"],
            "worse": worse,
        },
        "timeliness": {"rules": rules, "total": total},
        "findings": [_finding(f, data, period, area, as_of) for f in FINDINGS],
        "capacity": _capacity(data, policy),
        "data_quality": _quality(data, period, area, as_of, policy),
        "access": _access(data, area, roles_of, scope_of),
    }


def _report(
    states: Iterable[ObligationState], period: Period, area: str | None, as_of: datetime
) -> Any:  # noqa: ANN401 - services.desk.timeliness.Report
    query = Query(start=period.start, end=period.end, over=OVER, area=area)
    return timeliness(states, query, as_of)


def _timeliness(
    states: list[ObligationState],
    period: Period,
    history: list[Period],
    area: str | None,
    as_of: datetime,
) -> list[dict[str, Any]]:
    """Per rule: the period's figures, the trend over the periods before, worse or not."""
    now = _report(states, period, area, as_of)
    before = [(p, _report(states, p, area, as_of)) for p in history]
    rows = []
    for rule, figures in sorted(now.rules.items()):
        body = figures.to_json(OVER)
        trend: list[dict[str, Any]] = [
            {
                "period": p.label,
                "due": r.rules[rule].due if rule in r.rules else 0,
                "on_time_percent": r.rules[rule].on_time_percent if rule in r.rules else None,
            }
            for p, r in before
        ]
        earlier = [float(t["on_time_percent"]) for t in trend if t["on_time_percent"] is not None]
        current = body["on_time_percent"]
        change = (
            round(current - statistics.fmean(earlier), 1)
            if current is not None and earlier
            else None
        )
        rows.append(
            {
                "rule": rule,
                **body,
                "trend": [
                    *trend,
                    {"period": period.label, "due": body["due"], "on_time_percent": current},
                ],
                "change_points": change,
                "worse": change is not None and change < 0,
            }
        )
    # The rules that got worse first, most worsened first; the rest by name.
    rows.sort(key=lambda r: (not r["worse"], r["change_points"] if r["worse"] else 0, r["rule"]))
    return rows


def _finding(
    finding: Finding, data: PackData, period: Period, area: str | None, as_of: datetime
) -> dict[str, Any]:
    wanted = set(finding.rules)
    report = _report((s for s in data.states if s.rule in wanted), period, area, as_of)
    figures = report.total.to_json(OVER) if finding.rules else None
    oldest = sorted(
        (c for c in data.oldest if c.rule in wanted),
        key=lambda c: (c.due_at, c.rule, c.subject_id or ""),
    )[:5]
    body: dict[str, Any] = {
        "id": finding.id,
        "title": finding.title,
        "summary": finding.summary,
        "rules": list(finding.rules),
        "figures": figures,
        "per_rule": {
            rule: report.rules[rule].to_json(OVER)
            for rule in sorted(report.rules)
            if rule in wanted
        },
        "patterns": {p: data.patterns.get(p, 0) for p in finding.patterns},
        "oldest_open": [
            {
                "rule": c.rule,
                "area": c.area,
                "subject_kind": c.subject_kind,
                "subject_id": c.subject_id,
                "days_overdue": int((as_of - c.due_at).total_seconds() // DAY),
                "days_open": int((as_of - c.triggered_at).total_seconds() // DAY),
            }
            for c in oldest
        ],
    }
    if finding.id == "children-in-cells":
        body["transfers"] = (figures or {}).get(
            "transfers", {"requested": 0, "made": 0, "refused": 0}
        )
    if finding.id == "senior-oversight":
        body["escalations"] = {
            "to_senior_managers": data.escalations.get(2, 0),
            "to_strategic_leads": sum(n for lvl, n in data.escalations.items() if lvl >= 3),  # noqa: PLR2004
            "alerts_reaching_strategic_leads": data.top_level_alerts,
        }
    return body


def _capacity(data: PackData, policy: Assurance) -> dict[str, Any]:
    per_area: dict[str, dict[str, Any]] = {}
    for area, rule, open_, overdue in data.open_counts:
        entry = per_area.setdefault(
            area or "", {"area": area, "open": 0, "overdue": 0, "rules": []}
        )
        entry["open"] += open_
        entry["overdue"] += overdue
        entry["rules"].append({"rule": rule, "open": open_, "overdue": overdue})
    loads: dict[str, list[int]] = defaultdict(list)
    for area, _manager, n in data.caseloads:
        loads[area].append(n)
    threshold = policy.caseload_threshold
    caseload = [
        {
            "area": area,
            "offenders": sum(counts),
            "managers": len(counts),
            "max": max(counts),
            "median": statistics.median_low(sorted(counts)),
            "over_threshold": sum(1 for n in counts if n > threshold),
        }
        for area, counts in sorted(loads.items())
    ]
    return {
        "areas": [per_area[k] for k in sorted(per_area)],
        "caseload": {"threshold": threshold, "areas": caseload},
    }


def _quality(
    data: PackData, period: Period, area: str | None, as_of: datetime, policy: Assurance
) -> dict[str, Any]:
    start, end = period.start.timestamp(), period.end.timestamp()
    backdated: dict[str, list[float]] = defaultdict(list)
    for due, rule, seconds in data.recorded_late:
        if start <= due < end:
            backdated[rule].append(seconds)
    sources = []
    for source, seen, days in data.sources:
        expected = policy.silence(source)
        silent_for = (as_of - seen).total_seconds() if seen is not None else None
        sources.append(
            {
                "source": source,
                "last_event_at": iso(seen),
                "days_with_events": days,
                "silent": silent_for is not None and silent_for > expected.total_seconds(),
                "silent_for_seconds": None if silent_for is None else round(silent_for),
                "expected_within_seconds": round(expected.total_seconds()),
            }
        )
    return {
        "partnership_wide": area is None,
        "dead_letters": [
            {"source": source or "(unreadable)", "reason": reason, "count": n}
            for source, reason, n in data.dead_letters
        ],
        "dead_letters_total": sum(n for _, _, n in data.dead_letters),
        "refused_fulfilments": [
            {"rule": rule, "source": source, "count": n} for rule, source, n in data.refused
        ],
        "backdated": [
            {
                "rule": rule,
                "count": len(values),
                "recorded_late_median_seconds": round(percentile(values, 50) or 0),
            }
            for rule, values in sorted(backdated.items())
        ],
        "sources": sources,
        "silent_sources": [s["source"] for s in sources if s["silent"]],
    }


def _access(data: PackData, area: str | None, roles_of: RolesOf, scope_of: Scope) -> dict[str, Any]:
    """Who viewed or acted, by role; reads outside the reader's usual area; searches."""

    def concerns_area(record: dict[str, Any]) -> bool:
        if area is None:
            return True
        if record["child_id"]:
            return area in data.child_areas.get(record["child_id"], set())
        if record["alert_id"]:
            return data.alert_areas.get(record["alert_id"]) == area
        return False  # lists, reports, searches: the partnership's pack counts them

    records = [r for r in data.audit if concerns_area(r)]
    viewers = {r["actor"] for r in records if r["action"] in VIEWING}
    actors = {r["actor"] for r in records if r["action"] in ACTING}
    by_role: dict[str, dict[str, set[str]]] = defaultdict(lambda: {"viewed": set(), "acted": set()})
    for person in viewers | actors:
        roles = roles_of(person)
        for role in sorted(roles) if roles else ["(unknown)"]:
            if person in viewers:
                by_role[role]["viewed"].add(person)
            if person in actors:
                by_role[role]["acted"].add(person)
    outside, outside_readers = _outside_usual_area(records, data, scope_of)
    searches = Counter(
        "child"
        if r["child_id"]
        else "alert"
        if r["alert_id"]
        else "principal"
        if r["principal"]
        else "report"
        for r in data.audit
        if r["action"] == "audit.searched"
    )
    return {
        "partnership_wide": area is None,
        "people": len(viewers | actors),
        "viewed": len(viewers),
        "acted": len(actors),
        "by_role": [
            {"role": role, "viewed": len(sets["viewed"]), "acted": len(sets["acted"])}
            for role, sets in sorted(by_role.items())
        ],
        "reads_outside_usual_area": {"reads": outside, "readers": outside_readers},
        "audit_searches": (
            {"total": sum(searches.values()), "by_kind": dict(sorted(searches.items()))}
            if area is None
            else None
        ),
        "packs_generated": (
            sum(1 for r in data.audit if r["action"] == "pack.generated") if area is None else None
        ),
    }


def _outside_usual_area(
    records: list[dict[str, Any]], data: PackData, scope_of: Scope
) -> tuple[int, int]:
    """Count reads of children none of whose areas is the reader's usual one.

    A reader's usual areas are their token's areas when it is scoped; otherwise the area
    most of their child reads of the period concerned (all of them on a tie). A child
    without an area is nobody's outside.
    """
    reads: dict[str, list[set[str]]] = defaultdict(list)
    for r in records:
        if r["action"] == "child.viewed" and r["child_id"] in data.child_areas:
            reads[r["actor"]].append(data.child_areas[r["child_id"]])
    outside, readers = 0, 0
    for reader, areas in sorted(reads.items()):
        usual = scope_of(reader)
        if usual is None:
            counts = Counter(a for child in areas for a in child)
            top = max(counts.values())
            usual = frozenset(a for a, n in counts.items() if n == top)
        mine = sum(1 for child in areas if not child & usual)
        outside += mine
        readers += mine > 0
    return outside, readers
