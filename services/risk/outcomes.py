"""What changed for each obligation of a subject: the records of `safeguarding.outcomes.v1`.

Pure: compares a subject's obligations before and after the engine ran and says what
was opened, met, breached or updated (docs/contract.md section 5, schemas/outcomes.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from schemas.alerts import SubjectKind
from schemas.outcomes import OutcomeKind
from services.risk.engine import obligation_alert_id, recorded_late
from services.risk.policy import RiskPolicy
from services.risk.records import Outcome
from services.risk.state import Obligation, SubjectState


class Seen(NamedTuple):
    """An obligation's facts that outcomes depend on."""

    rule: str
    fulfilled: bool
    raised: bool
    area: str | None
    # What an `updated` record reports: the deadline and a custody's transfer.
    due_at: datetime
    transfer: tuple[datetime | None, datetime | None]


def snapshot(state: SubjectState) -> dict[str, Seen]:
    """Return what `changes` compares against: each obligation's met and raised flags."""
    return {
        key: Seen(
            o.rule,
            o.fulfilled_at is not None,
            o.raised,
            o.area,
            o.due_at,
            (o.transfer_requested_at, o.transfer_refused_at),
        )
        for key, o in state.obligations.items()
    }


def changes(
    before: dict[str, Seen], state: SubjectState, now: datetime, policy: RiskPolicy
) -> list[Outcome]:
    """Return the outcomes of every obligation that was opened, met, breached or updated."""
    found: list[Outcome] = []
    for ident, obligation in state.obligations.items():
        was = before.get(ident)
        kinds: list[OutcomeKind] = []
        if was is None:
            kinds.append(OutcomeKind.OPENED)
        if obligation.raised and not (was and was.raised):
            kinds.append(OutcomeKind.BREACHED)
        if obligation.fulfilled_at is not None and not (was and was.fulfilled):
            kinds.append(OutcomeKind.MET)
        if (
            was is not None
            and not kinds
            and (
                was.due_at != obligation.due_at
                or was.transfer
                != (obligation.transfer_requested_at, obligation.transfer_refused_at)
            )
        ):
            kinds.append(OutcomeKind.UPDATED)
        found.extend(_outcome(state, obligation, kind, now, policy) for kind in kinds)
    return found


def obligation_id(state: SubjectState, obligation: Obligation, key: bytes) -> str:
    """Return the obligation's id: the id its alert has (or would have) when breached."""
    return obligation_alert_id(state, obligation, key)


def _outcome(
    state: SubjectState,
    obligation: Obligation,
    kind: OutcomeKind,
    now: datetime,
    policy: RiskPolicy,
) -> Outcome:
    met = kind is OutcomeKind.MET
    fulfilled = obligation.fulfilled_at if met else None
    late = recorded_late(obligation, policy) if met else None
    return Outcome(
        obligation_id=obligation_id(state, obligation, policy.alert_key),
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
        recorded_at=obligation.fulfilment_recorded_at if met else None,
        recorded_late_by_seconds=float(late) if late is not None else None,
        transfer_requested_at=obligation.transfer_requested_at,
        transfer_refused_at=obligation.transfer_refused_at,
        at=now,
    )
