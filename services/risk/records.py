"""What risk publishes, as msgspec structs that encode the contract's JSON directly.

`alert.raised`, `alert.resolved` and `obligation.outcome` are built for every deadline
and event, so they are not validated on the way out: the engine builds them from values
it already holds, and tests/unit/test_risk_records.py checks that their bytes are what
the contract's models (`schemas/alerts.py`, `schemas/outcomes.py`) read and would
themselves have written.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from schemas.alerts import RISK_SOURCE, Severity, SubjectKind
from schemas.envelope import dataschema
from schemas.outcomes import OUTCOME_TYPE, OutcomeKind
from services.risk.state import Ref


class Raised(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The data of `alert.raised`: exactly one of the three ids is set."""

    alert_id: str
    rule: str
    severity: Severity
    subject_kind: SubjectKind
    child_id: str | None = None
    offender_id: str | None = None
    enquiry_id: str | None = None
    area: str | None = None
    trigger: Ref
    due_at: datetime | None = None
    raised_at: datetime
    summary: str
    start_level: int | None = None

    @property
    def subject_id(self) -> str:
        """Return the id of the child, offender or enquiry the alert is about."""
        return self.child_id or self.offender_id or self.enquiry_id or ""


class Resolved(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The data of `alert.resolved`, by a fulfilment that arrived late."""

    alert_id: str
    rule: str
    resolved_at: datetime
    fulfilled_at: datetime
    late_by_seconds: int
    fulfilment: Ref
    recorded_at: datetime | None = None
    recorded_late_by_seconds: int | None = None


class Outcome(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The data of `obligation.outcome`: one change of one obligation."""

    obligation_id: str
    outcome: OutcomeKind
    rule: str
    severity: Severity
    area: str | None = None
    subject_kind: SubjectKind
    subject_id: str
    triggered_at: datetime
    due_at: datetime
    fulfilled_at: datetime | None = None
    late_by_seconds: float | None = None
    recorded_at: datetime | None = None
    recorded_late_by_seconds: float | None = None
    transfer_requested_at: datetime | None = None
    transfer_refused_at: datetime | None = None
    at: datetime


class _Envelope(msgspec.Struct, kw_only=True):
    specversion: str
    id: str
    source: str
    time: datetime
    datacontenttype: str
    dataschema: str
    type: str
    data: Any


_ENCODER = msgspec.json.Encoder()


def _event(event_id: str, type_: str, time: datetime, data: msgspec.Struct) -> bytes:
    return _ENCODER.encode(
        _Envelope(
            specversion="1.0",
            id=event_id,
            source=RISK_SOURCE,
            time=time,
            datacontenttype="application/json",
            dataschema=dataschema(type_),
            type=type_,
            data=data,
        )
    )


def raised_event(data: Raised) -> bytes:
    """Return an `alert.raised` CloudEvent; its id is the alert id."""
    return _event(data.alert_id, "alert.raised", data.raised_at, data)


def resolved_event(data: Resolved) -> bytes:
    """Return an `alert.resolved` CloudEvent; its id is `<alert_id>:resolved`."""
    return _event(f"{data.alert_id}:resolved", "alert.resolved", data.resolved_at, data)


def outcome_event(data: Outcome) -> bytes:
    """Return an `obligation.outcome` CloudEvent; its id is `<obligation_id>:<outcome>`."""
    event_id = f"{data.obligation_id}:{data.outcome.value}"
    return _event(event_id, OUTCOME_TYPE, data.at, data)


def encode(value: object) -> bytes:
    """Return any JSON document risk publishes (a child view), encoded as the records are."""
    return _ENCODER.encode(value)
