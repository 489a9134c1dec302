"""`safeguard policy`: check a policy file as the services would load it, and show its routes.

The checks are the services' own loaders (services/risk/policy.py and
services/notify/policy.py through services/common/policy_file.py); this module only
points each error at its line in the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from schemas.alerts import Rule, Severity
from schemas.notifications import Channel
from services.common.policy_file import PolicyError
from services.notify.policy import NotifyPolicy, chain_for
from services.notify.policy import load_policy as load_notify_policy
from services.risk.policy import RiskPolicy
from services.risk.policy import load_policy as load_risk_policy

DEFAULT_WEBHOOK = "NOTIFY_WEBHOOK_URL"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a policy file, and where."""

    service: str
    location: str
    line: int | None
    message: str

    def render(self, path: Path) -> str:
        """Return the problem as `file:line: location: message` (compilers' style)."""
        where = f"{path}:{self.line}" if self.line else str(path)
        location = f"{self.location}: " if self.location else ""
        return f"{where}: {location}{self.message} ({self.service})"


@dataclass(frozen=True)
class Checked:
    """A policy file both services accept."""

    risk: RiskPolicy
    notify: NotifyPolicy


def check_policy(path: Path) -> Checked | list[Problem]:
    """Load `path` as both services do; return the policies or every problem found."""
    problems: list[Problem] = []
    loaded: dict[str, Any] = {}
    for service, loader in (("risk", load_risk_policy), ("notify", load_notify_policy)):
        try:
            loaded[service] = loader(path)
        except PolicyError as exc:
            problems.extend(_problems(path, service, exc))
    if problems:
        return problems
    return Checked(risk=loaded["risk"], notify=loaded["notify"])


def _problems(path: Path, service: str, error: PolicyError) -> list[Problem]:
    cause = error.__cause__
    if isinstance(cause, yaml.MarkedYAMLError) and cause.problem_mark is not None:
        mark = cause.problem_mark
        return [Problem(service, "", mark.line + 1, f"not YAML: {cause.problem}")]
    if not isinstance(cause, ValidationError):
        return [Problem(service, "", None, str(error))]
    root = _compose(path)
    return [
        Problem(
            service,
            ".".join(str(part) for part in err["loc"]) or "(top level)",
            _line_of(root, err["loc"]),
            err["msg"],
        )
        for err in cause.errors()
    ]


def _compose(path: Path) -> yaml.Node | None:
    try:
        node: yaml.Node | None = yaml.compose(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return node


def _line_of(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """Return the 1-based line of the deepest node on `loc` the file has."""
    if root is None:
        return None
    node = root
    for part in loc:
        child = _child(node, part)
        if child is None:
            continue  # a union member or `[key]` tag pydantic adds to the path
        node = child
    return node.start_mark.line + 1


def _child(node: yaml.Node, part: int | str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return value  # type: ignore[no-any-return]
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part]  # type: ignore[no-any-return]
    return None


@dataclass(frozen=True)
class Route:
    """Who one level of one severity's ladder tells, in one area, and when."""

    area: str | None
    severity: Severity
    level: int
    after: timedelta
    route: str
    recipients: tuple[str, ...]
    repeat: timedelta | None

    def to_json(self) -> dict[str, Any]:
        """Return the route as JSON-ready data."""
        return {
            "area": self.area,
            "severity": self.severity.value,
            "level": self.level,
            "after_seconds": int(self.after.total_seconds()),
            "route": self.route,
            "recipients": list(self.recipients),
            "repeat_seconds": int(self.repeat.total_seconds()) if self.repeat else None,
        }


def routes(policy: NotifyPolicy, at: datetime | None = None) -> list[Route]:
    """Return every level of every severity, for the default routing and each area.

    With `at`, who the rota has on duty then (weekly shifts and cover; calendar feeds
    are not fetched here), as an alert raised at that moment would be told.
    """
    found = []
    for area in [None, *_areas(policy, at)]:
        for severity in sorted(policy.escalation, reverse=True):
            chain = chain_for(policy, severity, area, default_url=None, at=at)
            for level in chain.levels:
                recipients = tuple(
                    _address(r.name, r.channel, r.url, r.to) for r in level.recipients
                )
                found.append(
                    Route(
                        area=area,
                        severity=severity,
                        level=level.level,
                        after=level.after,
                        route=level.route,
                        recipients=recipients,
                        repeat=chain.repeat,
                    )
                )
    return found


def _areas(policy: NotifyPolicy, at: datetime | None) -> list[str]:
    """Return the areas whose routes differ: by routing, and by rota at a given time."""
    areas = set(policy.routing.areas) | (set(policy.rota.areas) if at is not None else set())
    return sorted(areas)


def _address(name: str, channel: Channel, url: str | None, to: tuple[str, ...]) -> str:
    if channel is Channel.WEBHOOK:
        return f"{name} (webhook {url or DEFAULT_WEBHOOK})"
    if channel is Channel.EMAIL:
        return f"{name} ({channel.value} {', '.join(to)})"
    return f"{name} ({channel.value})"  # Teams' URL and PagerDuty's key are secrets


def parse_at(text: str, policy: NotifyPolicy) -> datetime:
    """Read `--at`: an ISO 8601 time; without an offset, local time in the policy's zone."""
    at = datetime.fromisoformat(text)
    return at if at.tzinfo is not None else at.replace(tzinfo=policy.zone)


@dataclass(frozen=True)
class RuleRoute:
    """Who is told first when one rule raises at one severity, in one area."""

    rule: str
    severity: Severity
    area: str | None
    start_level: int
    recipients: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """Return the route as JSON-ready data."""
        return {
            "rule": self.rule,
            "severity": self.severity.value,
            "area": self.area,
            "start_level": self.start_level,
            "recipients": list(self.recipients),
        }


def rule_severities(risk: RiskPolicy) -> dict[str, list[Severity]]:
    """Return the severities each rule raises at under the risk policy, rule by rule.

    A child's deadline alert is raised one step up while the child is at `high` or
    `critical` (docs/contract.md section 4); that step is not listed.
    """
    o, p = risk.obligations, risk.patterns
    forensic = o.forensic_examination
    found: dict[str, list[Severity]] = {
        Rule.WELFARE_CHECK: [o.welfare_check.severity],
        Rule.SOCIAL_CARE_REFERRAL: [o.social_care_referral.severity],
        Rule.SCHOOL_NOTIFICATION: [o.school_notification.severity],
        Rule.EXPLOITATION_ACTION: [
            o.exploitation_action.severity,
            o.exploitation_action.severity_when_level_high,
        ],
        Rule.MISSING_REFERRAL: [o.missing_referral.severity],
        Rule.RETURN_INTERVIEW: [o.return_interview.severity],
        Rule.OFFENDER_INITIAL_VISIT: [o.offender_initial_visit.severity],
        Rule.OFFENDER_ROUTINE_VISIT: [o.offender_routine_visit.severity],
        Rule.FORENSIC_EXAMINATION: [
            forensic.first.severity,
            forensic.second.severity,
            forensic.second.severity_when_contact_restricted,
        ],
        Rule.CHILD_IN_CUSTODY: [o.child_in_custody.severity, o.child_in_custody.severity_overnight],
        Rule.STRATEGY_DISCUSSION: [o.strategy_discussion.severity],
        Rule.MARAC_REFERRAL: [o.marac_referral.severity],
        Rule.REFERRAL_DECISION: [o.referral_decision.severity],
        Rule.RETURN_INTERVIEW_SHARED: [o.return_interview_shared.severity],
        Rule.OFFENDER_RISK_ASSESSMENT: [o.offender_risk_assessment.severity],
        Rule.REPEAT_MISSING: [p.repeat_missing.severity],
        Rule.REPEAT_DOMESTIC_ABUSE: [p.repeat_domestic_abuse.severity],
        Rule.REFERRAL_INCOMPLETE: [p.referral_incomplete.severity],
        Rule.RISK_LEVEL: [Severity.HIGH, Severity.CRITICAL],
        Rule.CUSTODY_ACCOMMODATION_REFUSED: [p.custody_accommodation_refused.severity],
    }
    return {rule: sorted(set(severities)) for rule, severities in found.items()}


def rule_routes(checked: Checked, at: datetime | None = None) -> list[RuleRoute]:
    """Return, per rule, severity and area, who the raise reaches at once (at `at`).

    Level 1 for every rule but one told from a higher level
    (`custody-accommodation-refused`: every level up to its `start-level`, told together
    when notify applies the alert's `start_level`).
    """
    refused = checked.risk.patterns.custody_accommodation_refused
    found = []
    for rule, severities in rule_severities(checked.risk).items():
        start = refused.start_level if rule == Rule.CUSTODY_ACCOMMODATION_REFUSED else 1
        for severity in severities:
            for area in [None, *_areas(checked.notify, at)]:
                chain = chain_for(checked.notify, severity, area, default_url=None, at=at)
                told = [r.name for level in chain.levels[:start] for r in level.recipients]
                found.append(
                    RuleRoute(
                        rule=rule,
                        severity=severity,
                        area=area,
                        start_level=min(start, len(chain.levels)),
                        recipients=tuple(dict.fromkeys(told)),
                    )
                )
    return found
