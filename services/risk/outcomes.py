"""What changed for each obligation of a subject: the records of `safeguarding.outcomes.v1`.

Pure: compares a subject's obligations before and after the engine ran and says what
was opened, met or breached (docs/contract.md section 5, schemas/outcomes.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from schemas.alerts import SubjectKind
from schemas.outcomes import OutcomeKind
from services.risk.engine import obligation_alert_id
from services.risk.records import Outcome
from services.risk.state import Obligation, SubjectState


class Seen(NamedTuple):
    """An obligation's facts that outcomes depend on."""

    rule: str
    fulfilled: bool
    raised: bool


def snapshot(state: SubjectState) -> dict[str, Seen]:
    """Return what `changes` compares against: each obligation's met and raised flags."""
    return {
        key: Seen(o.rule, o.fulfilled_at is not None, o.raised)
        for key, o in state.obligations.items()
    }


def changes(
    before: dict[str, Seen], state: SubjectState, now: datetime, key: bytes
) -> list[Outcome]:
    """Return the outcomes of every obligation that was opened, met or breached."""
    found = []
    for ident, obligation in state.obligations.items():
        was = before.get(ident)
        if was is None:
            found.append(_outcome(state, obligation, OutcomeKind.OPENED, now, key))
        if obligation.raised and not (was and was.raised):
            found.append(_outcome(state, obligation, OutcomeKind.BREACHED, now, key))
        if obligation.fulfilled_at is not None and not (was and was.fulfilled):
            found.append(_outcome(state, obligation, OutcomeKind.MET, now, key))
    return found


def obligation_id(state: SubjectState, obligation: Obligation, key: bytes) -> str:
    """Return the obligation's id: the id its alert has (or would have) when breached."""
    return obligation_alert_id(state, obligation, key)


def _outcome(
    state: SubjectState, obligation: Obligation, kind: OutcomeKind, now: datetime, key: bytes
) -> Outcome:
    fulfilled = obligation.fulfilled_at if kind is OutcomeKind.MET else None
    return Outcome(
        obligation_id=obligation_id(state, obligation, key),
        outcome=kind,
        rule=obligation.rule,
        severity=obligation.severity,
        area=obligation.area,
        subject_kind=SubjectKind(state.kind),
        subject_id=state.id,
        triggered_at=obligation.triggered_at,
        due_at=obligation.due_at,
        fulfilled_at=fulfilled,
        late_by_seconds=(
            (fulfilled - obligation.due_at).total_seconds() if fulfilled is not None else None
        ),
        at=now,
    )
