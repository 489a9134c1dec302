"""What people read, published by the stream services for the desk (docs/contract.md section 5).

The stream services are the source of truth for decisions; the desk (services/desk/)
projects what people look at into PostgreSQL from two compacted topics, each holding
the latest view of one thing:

- `safeguarding.alert-views.v1`, keyed by `alert_id`: notify publishes an `alert.view`
  every time it writes an alert's record: status, level, the ladder it follows (receiver
  names and channels, never addresses), the next step and whom it will reach, and the
  whole timeline. `revision` grows by one at every write of the alert, so an older view
  never overwrites a newer one.
- `safeguarding.child-views.v1`, keyed by `child_id`: risk publishes a `child.view` every
  time it writes a child's state: the risk level and its factors, the open obligations
  with their due times, what happened to the closed ones (met on time, met late,
  breached), and the recent event types and times. Ids, codes and times only: no free
  text. `revision` grows with every write of the child.

A view is a document, not an event: the desk keeps the one with the highest revision.
"""

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, StrictInt, StringConstraints

from schemas.alerts import AlertRaised, AlertResolved, EventRef, RuleId, Severity
from schemas.envelope import CloudEvent, ContractModel, Identifier, Timestamp, wrap
from schemas.notifications import (
    AlertAcknowledged,
    AlertClosed,
    Channel,
    EscalationReason,
    FailureReason,
    NotificationPurpose,
    ReceiverName,
    ResolutionReason,
)

__all__ = [
    "ALERT_VIEW_TYPE",
    "CHILD_VIEW_TYPE",
    "AlertStatus",
    "AlertView",
    "AlertViewEvent",
    "ChildObligation",
    "ChildView",
    "ChildViewEvent",
    "Delivery",
    "LadderRung",
    "NextStep",
    "ObligationStatus",
    "RecentEvent",
    "RefusedFulfilment",
    "RiskFactor",
    "RungRecipient",
    "TimelineEntry",
    "alert_view_event",
    "child_view_event",
]

ALERT_VIEW_TYPE = "alert.view"
CHILD_VIEW_TYPE = "child.view"
NOTIFY_SOURCE = "urn:safeguard:notify"
RISK_SOURCE = "urn:safeguard:risk"

Revision = Annotated[StrictInt, Field(ge=1)]


class AlertStatus(StrEnum):
    """Where an alert stands."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Delivery(ContractModel):
    """One notification to one recipient, as the timeline shows it."""

    notification_id: str
    purpose: NotificationPurpose = NotificationPurpose.ALERT
    channel: Channel
    recipient: str
    level: int = Field(ge=1)
    round: int = Field(default=0, ge=0)
    attempts: int = Field(ge=1)
    outcome: Literal["sent", "failed"]
    reason: FailureReason | None = None
    detail: str | None = None
    grouped_into: str | None = Field(
        default=None, description="the notification (of another alert) this one went out in"
    )


class TimelineEntry(ContractModel):
    """Something that happened to an alert."""

    at: Timestamp
    kind: Literal[
        "raised", "notification", "escalated", "acknowledged", "reopened", "resolved", "compacted"
    ]
    delivery: Delivery | None = None
    count: int | None = Field(
        default=None, description="`compacted`: how many entries it stands for, up to `until`"
    )
    until: Timestamp | None = None
    level: int | None = None
    reason: EscalationReason | None = None
    scheduled_at: Timestamp | None = None
    by: str | None = None
    note: str | None = None
    closed_because: ResolutionReason | None = Field(
        default=None, description="`resolved` by hand: the reason code given"
    )


class RungRecipient(ContractModel):
    """Who a rung reaches: a receiver of the policy by name, and its channel (no address)."""

    name: ReceiverName
    channel: Channel


class LadderRung(ContractModel):
    """One level of the ladder the alert follows, as resolved when it was raised."""

    level: Annotated[StrictInt, Field(ge=1)]
    after_seconds: Annotated[StrictInt, Field(ge=0)] = Field(
        description="how long after the raise (or the re-opening) this level is told"
    )
    recipients: list[RungRecipient]


class NextStep(ContractModel):
    """What happens next if nobody acts, and when."""

    at: Timestamp
    kind: Literal["level", "repeat", "reopen"] = Field(
        description="`level`: the next level is told; `repeat`: the current level again; "
        "`reopen`: an acknowledgement times out"
    )
    level: Annotated[StrictInt, Field(ge=1)]
    recipients: list[ReceiverName]


class AlertView(ContractModel):
    """An alert as notify knows it, for people: everything but delivery bookkeeping."""

    alert: AlertRaised
    revision: Revision
    status: AlertStatus
    level: Annotated[StrictInt, Field(ge=0)] = Field(description="highest level told; 0: none")
    round: Annotated[StrictInt, Field(ge=0)] = 0
    ladder: list[LadderRung]
    repeat_seconds: Annotated[StrictInt, Field(ge=1)] | None = None
    ack_timeout_seconds: Annotated[StrictInt, Field(ge=1)] | None = None
    next_step: NextStep | None = None
    acknowledgement: AlertAcknowledged | None = None
    resolution: AlertResolved | None = None
    closure: AlertClosed | None = None
    resolved_at: Timestamp | None = None
    reopened_at: Timestamp | None = None
    hold_until: Timestamp | None = None
    timeline: list[TimelineEntry]
    updated_at: Timestamp = Field(description="when notify wrote this revision")


class AlertViewEvent(CloudEvent):
    """CloudEvent of type `alert.view`; `id` is `<alert_id>:<revision>`."""

    type: Literal["alert.view"]
    data: AlertView


class ObligationStatus(StrEnum):
    """Where one of a child's obligations stands."""

    PENDING = "pending"
    OVERDUE = "overdue"
    MET_ON_TIME = "met_on_time"
    MET_RECORDED_LATE = "met_recorded_late"
    MET_LATE = "met_late"


class ChildObligation(ContractModel):
    """One obligation owed for a child: what, where, by when, and how it stands."""

    obligation_id: Identifier = Field(description="the id its breach alert has, or would have")
    rule: RuleId
    area: str | None = None
    severity: Severity
    triggered_at: Timestamp
    due_at: Timestamp
    status: ObligationStatus
    fulfilled_at: Timestamp | None = None
    fulfilment: EventRef | None = None
    recorded_at: Timestamp | None = Field(
        default=None, description="when the fulfilment reached Safeguard"
    )
    recorded_late_by_seconds: StrictInt | None = Field(
        default=None,
        description="`met_recorded_late`: on time as claimed, recorded this long after the "
        "deadline",
    )
    breached: bool = Field(description="its alert was raised (the deadline passed unmet)")


class RiskFactor(ContractModel):
    """One signal behind a child's risk score."""

    signal: Annotated[str, StringConstraints(max_length=200)]
    points: StrictInt
    at: Timestamp
    area: str | None = None


class RecentEvent(ContractModel):
    """An event about the child: its type, time and area, no content."""

    type: str
    at: Timestamp
    area: str | None = None


class RefusedFulfilment(ContractModel):
    """An event from a source the policy does not accept as fulfilling a rule.

    It is kept in the chronology and fulfils nothing. No content.
    """

    rule: RuleId
    source: str
    at: Timestamp = Field(description="the time the event claims")
    recorded_at: Timestamp = Field(description="when it reached Safeguard")
    area: str | None = None


class ChildView(ContractModel):
    """What the child page shows, as of `as_of`."""

    child_id: Identifier
    revision: Revision
    as_of: Timestamp
    level: Literal["low", "medium", "high", "critical"]
    score: StrictInt
    factors: list[RiskFactor]
    obligations: list[ChildObligation]
    recent_events: list[RecentEvent]
    refused_fulfilments: list[RefusedFulfilment] = Field(default_factory=list)


class ChildViewEvent(CloudEvent):
    """CloudEvent of type `child.view`; `id` is `<child_id>:<revision>`."""

    type: Literal["child.view"]
    data: ChildView


class _ViewType(StrEnum):
    ALERT = ALERT_VIEW_TYPE
    CHILD = CHILD_VIEW_TYPE


def alert_view_event(data: AlertView) -> AlertViewEvent:
    """Wrap an alert's view in its CloudEvent."""
    return wrap(
        AlertViewEvent,
        data,
        event_id=f"{data.alert.alert_id}:{data.revision}",
        type_=_ViewType.ALERT,
        time=data.updated_at,
        source=NOTIFY_SOURCE,
    )


def child_view_event(data: ChildView) -> ChildViewEvent:
    """Wrap a child's view in its CloudEvent."""
    return wrap(
        ChildViewEvent,
        data,
        event_id=f"{data.child_id}:{data.revision}",
        type_=_ViewType.CHILD,
        time=data.as_of,
        source=RISK_SOURCE,
    )
