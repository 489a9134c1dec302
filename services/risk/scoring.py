"""A child's risk score (docs/contract.md section 4): explainable, weighted, over a lookback."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.risk.concerns import standing
from services.risk.policy import RiskLevel, Scoring
from services.risk.state import SubjectState

UNDER_13 = 13


@dataclass(frozen=True)
class Factor:
    """One signal and the points it added."""

    signal: str
    points: int
    at: datetime
    area: str | None = None


@dataclass(frozen=True)
class Score:
    """A child's score, level and the factors that produced them."""

    points: int
    level: RiskLevel
    factors: list[Factor]


def score(state: SubjectState, now: datetime, scoring: Scoring) -> Score:
    """Score a child from the signals within the lookback before `now`."""
    since = now - scoring.lookback
    weights = scoring.weights
    factors: list[Factor] = []
    for incident in state.incidents.values():
        if incident.at >= since:
            weight = weights.incident.get(incident.category)
            points = (
                0 if weight is None else (weight.present if incident.present else weight.absent)
            )
            presence = "present" if incident.present else "not present"
            factors.append(
                Factor(
                    f"{incident.category.value} incident ({presence})",
                    points,
                    incident.at,
                    incident.area,
                )
            )
    for episode in state.episodes.values():
        if episode.at >= since:
            grade = episode.grade.value.replace("_", " ")
            factors.append(
                Factor(
                    f"missing episode ({grade})",
                    weights.missing.get(episode.grade, 0),
                    episode.at,
                    episode.area,
                )
            )
    for concern in state.concerns.values():
        if concern.at >= since:
            # Its level as missing episodes while it was open have raised it.
            concern_level = standing(concern, state, scoring).level
            factors.append(
                Factor(
                    f"exploitation concern ({concern_level.value})",
                    weights.exploitation.get(concern_level, 0),
                    concern.at,
                    concern.area,
                )
            )
    factors.extend(
        Factor("custody detention", weights.custody, at, state.detention_areas.get(custody))
        for custody, at in state.detentions.items()
        if at >= since
    )
    factors.extend(
        Factor(f"breached obligation ({o.rule})", weights.breach, o.due_at, o.area)
        for o in state.obligations.values()
        if o.breached and o.due_at >= since
    )
    factors = [f for f in factors if f.points > 0]
    factors.sort(key=lambda f: f.at)
    points = sum(f.points for f in factors)
    level = _level(points, scoring)
    recent_concern = any(c.at >= since for c in state.concerns.values())
    if state.age is not None and state.age < UNDER_13 and recent_concern:
        floor = scoring.under_13_exploitation_floor
        if level.rank < floor.rank:
            level = floor
            factors.append(
                Factor(f"under 13 with an exploitation concern (at least {floor.value})", 0, now)
            )
    return Score(points=points, level=level, factors=factors)


def _level(points: int, scoring: Scoring) -> RiskLevel:
    thresholds = scoring.thresholds
    if points >= thresholds.critical:
        return RiskLevel.CRITICAL
    if points >= thresholds.high:
        return RiskLevel.HIGH
    if points >= thresholds.medium:
        return RiskLevel.MEDIUM
    return RiskLevel.LOW
