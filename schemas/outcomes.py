"""What happens to every obligation, on `safeguarding.outcomes.v1` (docs/contract.md section 5).

Alerts say what went wrong; outcomes say what happened to every obligation, met on time
included, so timeliness can be reported ("4 of 10 referrals over 25 days") and not only
breaches. Risk publishes one record per change of an obligation:

- `opened`: the obligation exists, with its due time;
- `met`: a fulfilment arrived (`fulfilled_at`); `late_by_seconds` is how late it was
  against `due_at` (negative: early);
- `breached`: the deadline passed with nothing to meet it (its alert was raised);
- `updated`: something the report counts changed without opening, meeting or breaching
  it (a custody transfer requested or refused).

A breached obligation fulfilled later gets a `met` record too (late). Closing an alert by
hand is not a fulfilment: it is reported from notify's `alert.closed`, with its reason
code, never as `met`. Records are keyed by `obligation_id`, stable for one obligation, so
a compacted topic keeps the latest outcome of each; ids and event types only, no
personal data (the subject id is the pseudonymous id the sending systems use).
"""

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from schemas.alerts import RuleId, Severity, SubjectKind
from schemas.envelope import CloudEvent, ContractModel, Identifier, Timestamp, wrap

__all__ = ["OUTCOME_TYPE", "ObligationOutcome", "OutcomeEvent", "OutcomeKind", "outcome_event"]

OUTCOME_TYPE = "obligation.outcome"
RISK_SOURCE = "urn:safeguard:risk"


class OutcomeKind(StrEnum):
    """What happened to the obligation."""

    OPENED = "opened"
    MET = "met"
    BREACHED = "breached"
    UPDATED = "updated"


class ObligationOutcome(ContractModel):
    """One change of one obligation."""

    obligation_id: Identifier = Field(description="stable per obligation: the record key")
    outcome: OutcomeKind
    rule: RuleId
    severity: Severity
    area: str | None = None
    subject_kind: SubjectKind
    subject_id: Identifier
    triggered_at: Timestamp
    due_at: Timestamp
    fulfilled_at: Timestamp | None = None
    late_by_seconds: float | None = Field(
        default=None, description="`met`: fulfilled_at - due_at (negative when early)"
    )
    recorded_at: Timestamp | None = Field(
        default=None, description="`met`: when the fulfilment reached Safeguard"
    )
    recorded_late_by_seconds: float | None = Field(
        default=None,
        description="`met` on time as claimed but recorded more than the policy's tolerance "
        "after its claimed time and after the deadline: recorded_at - due_at",
    )
    transfer_requested_at: Timestamp | None = Field(
        default=None,
        description="`child-in-custody`: when local-authority accommodation was first requested",
    )
    transfer_refused_at: Timestamp | None = Field(
        default=None,
        description="`child-in-custody`: when the local authority first refused accommodation",
    )
    at: Timestamp = Field(description="when risk recorded this outcome")


class OutcomeEvent(CloudEvent):
    """CloudEvent of type `obligation.outcome`; `id` is `<obligation_id>:<outcome>`."""

    type: Literal["obligation.outcome"]
    data: ObligationOutcome


def outcome_event(data: ObligationOutcome, *, at: datetime | None = None) -> OutcomeEvent:
    """Wrap `data` in its CloudEvent."""
    return wrap(
        OutcomeEvent,
        data,
        event_id=f"{data.obligation_id}:{data.outcome.value}",
        type_=_OutcomeType.OUTCOME,
        time=at or data.at,
        source=RISK_SOURCE,
    )


class _OutcomeType(StrEnum):
    OUTCOME = OUTCOME_TYPE
