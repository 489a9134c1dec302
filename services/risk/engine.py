"""The risk engine: `evaluate(state, event, now)` and `check(state, now)`, pure and clock-driven.

Every effect is an alert (raised or resolved) with a deterministic id, so replaying the
same input after a crash produces the same ids and consumers drop the repeats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from schemas.alerts import AlertRaised, AlertResolved, EventRef, deterministic_alert_id
from schemas.events import Event
from services.risk import rules
from services.risk.policy import RiskPolicy
from services.risk.state import Fulfilment, Obligation, SubjectState, obligation_key

Effect = AlertRaised | AlertResolved


@dataclass
class Outcome:
    """What processing one input did."""

    effects: list[Effect] = field(default_factory=list)
    duplicate: bool = False


def _event_key(event: Event) -> str:
    return f"{event.source}|{event.id}"


def alert_id(state: SubjectState, obligation: Obligation) -> str:
    """Return the deterministic id of the alert for an obligation's breach."""
    return deterministic_alert_id(obligation.rule, state.kind, state.id, obligation.scope)


def _raised(state: SubjectState, obligation: Obligation, now: datetime) -> AlertRaised:
    subject = {f"{state.kind}_id": state.id}
    return AlertRaised(
        alert_id=alert_id(state, obligation),
        rule=obligation.rule,
        severity=obligation.severity,
        subject_kind=state.kind,
        area=obligation.area,
        trigger=obligation.trigger,
        due_at=obligation.due_at,
        raised_at=now,
        summary=obligation.summary,
        **subject,
    )


def _resolved(state: SubjectState, obligation: Obligation, now: datetime) -> AlertResolved:
    assert obligation.fulfilled_at is not None  # noqa: S101 - only called once fulfilled
    late = max(0, int((obligation.fulfilled_at - obligation.due_at).total_seconds()))
    return AlertResolved(
        alert_id=alert_id(state, obligation),
        rule=obligation.rule,
        resolved_at=now,
        fulfilled_at=obligation.fulfilled_at,
        late_by_seconds=late,
        fulfilment=obligation.fulfilment,
    )


def _fulfil(obligation: Obligation, fulfilment: Fulfilment) -> None:
    if obligation.fulfilled_at is None or fulfilment.at < obligation.fulfilled_at:
        obligation.fulfilled_at = fulfilment.at
        obligation.fulfilment = fulfilment.ref


def evaluate(state: SubjectState, event: Event, now: datetime, policy: RiskPolicy) -> Outcome:
    """Apply one event to a subject's state (in place) and return the alerts it causes."""
    key = _event_key(event)
    if key in state.seen:
        return Outcome(duplicate=True)
    state.seen.append(key)

    for new in rules.triggered(event, state.kind, state.id, policy):
        ob_key = obligation_key(new.rule, new.scope)
        if ob_key in state.obligations:
            continue  # a second report of the same incident under another id
        obligation = Obligation(
            rule=new.rule,
            scope=new.scope,
            trigger=new.trigger,
            due_at=new.due_at,
            severity=new.severity,
            area=new.area,
            summary=new.summary,
        )
        if (early := state.fulfilments.get(ob_key)) is not None:
            _fulfil(obligation, early)
        state.obligations[ob_key] = obligation

    effects: list[Effect] = []
    for ob_key in rules.fulfils(event):
        fulfilment = Fulfilment(at=event.time, ref=EventRef(source=event.source, id=event.id))
        known = state.fulfilments.get(ob_key)
        if known is None or fulfilment.at < known.at:
            state.fulfilments[ob_key] = fulfilment
        met = state.obligations.get(ob_key)
        if met is None:
            continue
        _fulfil(met, fulfilment)
        if met.raised and not met.resolved:
            met.resolved = True
            effects.append(_resolved(state, met, now))

    effects.extend(check(state, now).effects)
    return Outcome(effects=effects)


def check(state: SubjectState, now: datetime) -> Outcome:
    """Raise every breach the clock or a late fulfilment reveals; each at most once."""
    effects: list[Effect] = []
    for obligation in state.obligations.values():
        if obligation.raised:
            continue
        fulfilled_at = obligation.fulfilled_at
        if fulfilled_at is not None and fulfilled_at <= obligation.due_at:
            continue  # met in time
        if fulfilled_at is None and now < obligation.due_at:
            continue  # still time
        obligation.raised = True
        effects.append(_raised(state, obligation, now))
        if fulfilled_at is not None:
            # Met, but late: a breach all the same, raised and resolved together.
            obligation.resolved = True
            effects.append(_resolved(state, obligation, now))
    return Outcome(effects=effects)
