"""One obligation's facts for the timeliness report, merged from records in any order.

Two inputs reach the projector in no particular order relative to each other: risk's
`obligation.outcome` records (`opened`, `met`, `breached`, `updated`) and the closures by
hand (notify's `alert.closed`, and the closure in an alert's view). `merge` is a join
(commutative, associative, idempotent): flags are OR-ed, the fulfilment and the closure
keep the earliest time (a closure's reason breaks a tie; the fulfilment keeps its own
recorded lateness, the larger of two at the same time, so a backdated fulfilment is never
made on time by a copy), a custody's transfer requested and refused keep the earliest,
and the description (rule, area, subject, due time, ...) comes from the outcome record
risk wrote last (what it says breaks a tie). So a replay, a duplicate or another order
gives the same row. The projector merges a batch's records per obligation here, then
the database merges that with the stored row by the same rules
(`services.desk.projection`); a test holds the two to each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime

from schemas.outcomes import ObligationOutcome, OutcomeKind

# Reason codes are shown in reports and CSV: anything but a code (free text would be
# personal data) is reported as "other".
_REASON = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
UNSPECIFIED = "unspecified"


@dataclass(frozen=True, slots=True)
class ObligationFacts:
    """What is known of one obligation; the subject for the pack's oldest open cases."""

    obligation_id: str
    rule: str | None = None
    area: str | None = None
    severity: str | None = None
    triggered_at: datetime | None = None
    due_at: datetime | None = None
    fulfilled_at: datetime | None = None
    breached: bool = False
    closed_at: datetime | None = None
    close_reason: str | None = None
    described_at: datetime | None = None
    subject_kind: str | None = None
    subject_id: str | None = None
    recorded_late_by_seconds: float | None = None
    transfer_requested_at: datetime | None = None
    transfer_refused_at: datetime | None = None

    @property
    def known(self) -> bool:
        """Tell whether risk's outcome has arrived (a closure alone has no rule or due time)."""
        return self.rule is not None and self.due_at is not None and self.triggered_at is not None


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def reason_code(reason: object) -> str:
    """Return a closure's reason as a bounded code: its value, `unspecified` or `other`."""
    if reason is None:
        return UNSPECIFIED
    text = str(getattr(reason, "value", reason))
    return text if _REASON.fullmatch(text) else "other"


def from_outcome(outcome: ObligationOutcome) -> ObligationFacts:
    """Return the facts one outcome record states."""
    met = outcome.outcome is OutcomeKind.MET
    return ObligationFacts(
        obligation_id=outcome.obligation_id,
        rule=outcome.rule,
        area=outcome.area,
        severity=outcome.severity.value,
        triggered_at=outcome.triggered_at,
        due_at=outcome.due_at,
        fulfilled_at=outcome.fulfilled_at if met else None,
        breached=outcome.outcome is OutcomeKind.BREACHED,
        described_at=outcome.at,
        subject_kind=outcome.subject_kind.value,
        subject_id=outcome.subject_id,
        recorded_late_by_seconds=outcome.recorded_late_by_seconds if met else None,
        transfer_requested_at=outcome.transfer_requested_at,
        transfer_refused_at=outcome.transfer_refused_at,
    )


def from_closure(obligation_id: str, closed_at: datetime, reason: object) -> ObligationFacts:
    """Return the facts a closure by hand states."""
    return ObligationFacts(
        obligation_id=obligation_id, closed_at=closed_at, close_reason=reason_code(reason)
    )


def _description(facts: ObligationFacts) -> tuple[object, ...]:
    # The latest record wins; two written at the same moment are ordered by what they
    # say, so the winner never depends on the order they arrive in.
    return (
        facts.described_at,
        facts.due_at,
        facts.triggered_at,
        facts.area or "",
        facts.rule or "",
        facts.severity or "",
        facts.subject_kind or "",
        facts.subject_id or "",
    )


def _larger(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _fulfilment(old: ObligationFacts, new: ObligationFacts) -> tuple[datetime | None, float | None]:
    """Return the earliest fulfilment with its recorded lateness (the larger on a tie)."""
    if new.fulfilled_at is None:
        return old.fulfilled_at, old.recorded_late_by_seconds
    if old.fulfilled_at is None or new.fulfilled_at < old.fulfilled_at:
        return new.fulfilled_at, new.recorded_late_by_seconds
    if new.fulfilled_at == old.fulfilled_at:
        return old.fulfilled_at, _larger(old.recorded_late_by_seconds, new.recorded_late_by_seconds)
    return old.fulfilled_at, old.recorded_late_by_seconds


def merge(old: ObligationFacts, new: ObligationFacts) -> ObligationFacts:
    """Return the join of two sets of facts about one obligation."""
    merged = old
    newer = new.described_at is not None and (
        old.described_at is None or _description(new) > _description(old)
    )
    if newer:
        merged = replace(
            merged,
            rule=new.rule,
            area=new.area,
            severity=new.severity,
            triggered_at=new.triggered_at,
            due_at=new.due_at,
            described_at=new.described_at,
            subject_kind=new.subject_kind,
            subject_id=new.subject_id,
        )
    fulfilled_at, recorded_late = _fulfilment(old, new)
    merged = replace(
        merged,
        breached=old.breached or new.breached,
        fulfilled_at=fulfilled_at,
        recorded_late_by_seconds=recorded_late,
        transfer_requested_at=_earliest(old.transfer_requested_at, new.transfer_requested_at),
        transfer_refused_at=_earliest(old.transfer_refused_at, new.transfer_refused_at),
    )
    if new.closed_at is not None and (
        old.closed_at is None
        or (new.closed_at, new.close_reason or "") < (old.closed_at, old.close_reason or "")
    ):
        merged = replace(merged, closed_at=new.closed_at, close_reason=new.close_reason)
    return merged
