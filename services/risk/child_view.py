"""The child view risk publishes for the desk's child page (schemas/views.py `child.view`).

A pure function of a child's state: the risk level with the factors behind it, every
obligation the state still holds (open ones with their due times, closed ones with how
they were met), and the recent event types and times. Ids, codes and times only.
"""

from __future__ import annotations

from datetime import datetime

from schemas.views import ChildObligation, ChildView, ObligationStatus, RecentEvent, RiskFactor
from services.risk.outcomes import obligation_id
from services.risk.policy import RiskPolicy
from services.risk.scoring import score
from services.risk.state import Obligation, SubjectState


def status(obligation: Obligation) -> ObligationStatus:
    """Return where an obligation stands."""
    fulfilled = obligation.fulfilled_at
    if fulfilled is None:
        return ObligationStatus.OVERDUE if obligation.raised else ObligationStatus.PENDING
    return (
        ObligationStatus.MET_ON_TIME
        if fulfilled <= obligation.due_at
        else ObligationStatus.MET_LATE
    )


def child_view(state: SubjectState, now: datetime, policy: RiskPolicy) -> ChildView:
    """Return what the child page shows of a child, as of `now`."""
    current = score(state, now, policy.scoring)
    return ChildView.model_construct(
        child_id=state.id,
        revision=state.revision,
        as_of=now,
        level=current.level.value,
        score=current.points,
        factors=[
            RiskFactor.model_construct(signal=f.signal, points=f.points, at=f.at)
            for f in current.factors
        ],
        obligations=[
            ChildObligation.model_construct(
                obligation_id=obligation_id(state, o, policy.alert_key),
                rule=o.rule,
                area=o.area,
                severity=o.severity,
                triggered_at=o.triggered_at,
                due_at=o.due_at,
                status=status(o),
                fulfilled_at=o.fulfilled_at,
                fulfilment=o.fulfilment,
                breached=o.raised,
            )
            for o in sorted(state.obligations.values(), key=lambda o: o.due_at)
        ],
        recent_events=[
            RecentEvent.model_construct(type=r.type, at=r.at) for r in reversed(state.recent)
        ],
    )
