"""Exploitation concerns as they stand: raised by missing episodes, and the discussions owed.

A missing episode within `scoring.concern-open-for` after a concern raises that concern's
level one step (low, medium, high), so a child who keeps going missing while a concern is
open is treated as more at risk. The level is derived from the concern and the episodes
whatever order they arrive in. A concern at `high`, as raised or once episodes take it
there, owes a strategy discussion (`strategy-discussion`), from the moment it became high.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from schemas.events import ConcernLevel
from services.risk.policy import RiskPolicy, Scoring
from services.risk.rules import STRATEGY, NewObligation
from services.risk.state import Concern, Ref, SubjectState

ORDER = (ConcernLevel.LOW, ConcernLevel.MEDIUM, ConcernLevel.HIGH)


@dataclass(frozen=True)
class Standing:
    """A concern's level now, and when and by what it became high (if it did)."""

    level: ConcernLevel
    high_at: datetime | None = None
    high_by: Ref | None = None


def standing(concern: Concern, state: SubjectState, scoring: Scoring) -> Standing:
    """Return a concern's level, raised one step by each episode while it is open."""
    rank = ORDER.index(concern.level)
    if rank == len(ORDER) - 1:
        return Standing(concern.level, concern.at, concern.ref)
    until = concern.at + scoring.concern_open_for
    for episode in sorted(state.episodes.values(), key=lambda e: e.at):
        if concern.at <= episode.at <= until:
            rank += 1
            if rank == len(ORDER) - 1:
                return Standing(ORDER[rank], episode.at, episode.ref)
    return Standing(ORDER[rank])


def strategy_discussions(state: SubjectState, policy: RiskPolicy) -> list[NewObligation]:
    """Return the strategy discussions the child's high concerns owe, one per concern."""
    owed = []
    rule = policy.obligations.strategy_discussion
    for concern_id, concern in state.concerns.items():
        now = standing(concern, state, policy.scoring)
        if now.high_at is None or now.high_by is None:
            continue
        why = (
            "a high-level exploitation concern"
            if now.high_by == concern.ref
            else "an exploitation concern raised to high by a missing episode"
        )
        owed.append(
            NewObligation(
                rule=STRATEGY.rule.value,
                scope=f"concern|{concern_id}",
                match=STRATEGY.match(),
                due_at=STRATEGY.due(now.high_at, policy),
                severity=rule.severity,
                summary=STRATEGY.summary(why, policy),
                trigger=now.high_by,
                triggered_at=now.high_at,
                area=concern.area,
                not_before=now.high_at,
            )
        )
    return owed
