"""The offender routine-visit cycle, derived from an offender's whole visit and assessment history.

A cycle starts at every visit and every risk assessment, with the window of the level in
force then, and is met by the next visit. An assessment inside a cycle's window restarts
the count (the cycle is replaced); one after the deadline leaves the breach standing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.risk.policy import RiskPolicy
from services.risk.rules import ROUTINE_VISIT, NewObligation, describe
from services.risk.state import Ref, SubjectState


@dataclass(frozen=True)
class _Anchor:
    at: datetime
    ref: Ref
    visit: bool


def routine_cycles(state: SubjectState, policy: RiskPolicy) -> list[NewObligation]:
    """Return the routine-visit obligations the history implies."""
    rule = policy.obligations.offender_routine_visit
    anchors = sorted(
        [_Anchor(v.at, v.ref, visit=True) for v in state.visits]
        + [_Anchor(c.at, c.ref, visit=False) for c in state.levels if c.assessed],
        key=lambda a: a.at,
    )
    cycles: list[NewObligation] = []
    for index, anchor in enumerate(anchors):
        in_force = [c for c in state.levels if c.at <= anchor.at]
        if not in_force:
            continue  # level unknown until the registration arrives
        level = in_force[-1].level
        window = rule.windows[level]
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
                summary=f"No visit within {describe(window)} for a {level.value.replace('_', '-')}"
                "-risk registered sex offender",
                trigger=anchor.ref,
                triggered_at=anchor.at,
                not_before=anchor.at,
                strictly_after=True,
            )
        )
    return cycles
