"""Offender cycles, derived from an offender's whole visit, registration and assessment history.

Routine visits: a cycle starts at every visit and every risk assessment, with the window
of the level in force then, and is met by the next visit. An assessment inside a cycle's
window restarts the count (the cycle is replaced); one after the deadline leaves the
breach standing. Until the first visit the initial-visit rule applies, so an assessment
before it starts no cycle; an offender under a management category the policy does not
list (reactive management) owes no cycle.

ARMS re-assessment: every registration and assessment starts a cycle with the window of
its level, met by the next assessment after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.risk.policy import RiskPolicy
from services.risk.rules import RISK_ASSESSMENT, ROUTINE_VISIT, NewObligation, describe
from services.risk.state import LevelChange, Ref, SubjectState


@dataclass(frozen=True)
class _Anchor:
    at: datetime
    ref: Ref
    visit: bool


def _in_force(state: SubjectState, at: datetime) -> LevelChange | None:
    in_force = [c for c in state.levels if c.at <= at]
    return in_force[-1] if in_force else None


def _level_name(change: LevelChange) -> str:
    return change.level.value.replace("_", "-")


def routine_cycles(state: SubjectState, policy: RiskPolicy) -> list[NewObligation]:
    """Return the routine-visit obligations the history implies."""
    rule = policy.obligations.offender_routine_visit
    first_visit = state.visits[0].at if state.visits else None
    anchors = sorted(
        [_Anchor(v.at, v.ref, visit=True) for v in state.visits]
        + [
            _Anchor(c.at, c.ref, visit=False)
            for c in state.levels
            if c.assessed and first_visit is not None and c.at >= first_visit
        ],
        key=lambda a: a.at,
    )
    cycles: list[NewObligation] = []
    for index, anchor in enumerate(anchors):
        change = _in_force(state, anchor.at)
        if change is None:
            continue  # level unknown until the registration arrives
        if change.management not in rule.owed_by:
            continue  # reactive management owes no routine cadence
        window = rule.windows[change.level]
        due = anchor.at + window
        following = anchors[index + 1] if index + 1 < len(anchors) else None
        if following is not None and not following.visit and following.at <= due:
            continue  # replaced by the cycle the assessment starts
        cycles.append(
            NewObligation(
                rule=ROUTINE_VISIT.rule.value,
                scope=anchor.at.isoformat(),
                match=ROUTINE_VISIT.match(),
                due_at=due,
                severity=rule.severity,
                summary=f"No visit within {describe(window)} for a {_level_name(change)}"
                "-risk registered sex offender",
                trigger=anchor.ref,
                triggered_at=anchor.at,
                area=change.area,
                not_before=anchor.at,
                strictly_after=True,
            )
        )
    return cycles


def assessment_cycles(state: SubjectState, policy: RiskPolicy) -> list[NewObligation]:
    """Return the ARMS re-assessment obligations the registrations and assessments imply."""
    rule = policy.obligations.offender_risk_assessment
    return [
        NewObligation(
            rule=RISK_ASSESSMENT.rule.value,
            scope=change.at.isoformat(),
            match=RISK_ASSESSMENT.match(),
            due_at=change.at + rule.windows[change.level],
            severity=rule.severity,
            summary=f"No risk re-assessment within {describe(rule.windows[change.level])} "
            f"for a {_level_name(change)}-risk registered sex offender",
            trigger=change.ref,
            triggered_at=change.at,
            area=change.area,
            not_before=change.at,
            strictly_after=True,
        )
        for change in state.levels
    ]
