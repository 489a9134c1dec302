"""The notify service's record of each alert: status, escalation state and whole timeline.

The record is what `GET /v1/alerts/{id}` shows and what proves afterwards who was told
what, when. Kept in a table keyed by alert id; the transitions are pure functions in
`services.notify.escalation`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from schemas.alerts import AlertRaised, AlertResolved
from schemas.notifications import AlertAcknowledged, AlertClosed, NotificationPurpose
from schemas.views import AlertStatus, Delivery, TimelineEntry
from services.notify.policy import Chain, Recipient

__all__ = [
    "AlertRecord",
    "AlertStatus",
    "Delivery",
    "GroupMember",
    "NextStepNote",
    "Outcome",
    "PendingDelivery",
    "TimelineEntry",
    "add_entry",
]


Outcome = Literal["sent", "failed"]


class NextStepNote(BaseModel):
    """What a listed alert's own ladder does next once level 1 is told: its countdown."""

    at: AwareDatetime
    kind: Literal["level", "repeat"]
    level: int = Field(ge=1)
    route: str
    recipients: list[str]


class GroupMember(BaseModel):
    """One alert listed in a grouped notification: what the message shows of it."""

    alert_id: str
    rule: str
    severity: str
    subject_kind: str
    subject_id: str
    area: str | None = None
    due_at: AwareDatetime | None = None
    raised_at: AwareDatetime | None = Field(
        default=None, description="absent in messages grouped before it was recorded"
    )
    summary: str
    next_step: NextStepNote | None = Field(
        default=None,
        description="its own ladder's next step (severities differ within a group); absent "
        "in messages grouped before it was recorded",
    )

    @classmethod
    def of(cls, alert: AlertRaised, next_step: NextStepNote | None = None) -> GroupMember:
        """List an alert."""
        return cls(
            next_step=next_step,
            alert_id=alert.alert_id,
            rule=alert.rule,
            severity=alert.severity.value,
            subject_kind=alert.subject_kind.value,
            subject_id=alert.subject_id,
            area=alert.area,
            due_at=alert.due_at,
            raised_at=alert.raised_at,
            summary=alert.summary,
        )


class PendingDelivery(BaseModel):
    """A notification handed to a channel, and what became of it.

    `deadline` ends its retry budget; one with no outcome by `deadline` plus a grace
    was lost with a worker (or its outcome was), and is dispatched again.
    """

    notification_id: str
    purpose: NotificationPurpose
    recipient: Recipient
    level: int = Field(ge=1)
    round: int = Field(ge=0)
    dispatched_at: AwareDatetime
    deadline: AwareDatetime
    dispatches: int = Field(default=1, ge=1)
    outcome: Outcome | None = None
    members: list[GroupMember] = Field(
        default_factory=list,
        description="a grouped level-1 message: every alert it lists (this one first)",
    )
    grouped_into: str | None = Field(
        default=None,
        description="sent inside another alert's grouped message (that notification's id); "
        "handed over on its own if no outcome comes back in time",
    )


class AlertRecord(BaseModel):
    """An alert as notify knows it."""

    alert: AlertRaised
    chain: Chain
    status: AlertStatus = AlertStatus.OPEN
    version: int = Field(
        default=0, ge=0, description="the table value's format (0: before formats were numbered)"
    )
    partition: int | None = None
    revision: int = Field(default=0, ge=0, description="writes so far: orders the alert's views")
    level: int = Field(default=0, ge=0, description="highest level told so far; 0: none yet")
    round: int = Field(default=0, ge=0, description="repeats sent at the current level")
    last_step_at: AwareDatetime | None = None
    escalate_at: AwareDatetime | None = Field(
        default=None, description="when a failed delivery brought the next level forward"
    )
    acknowledgement: AlertAcknowledged | None = None
    resolution: AlertResolved | None = None
    closure: AlertClosed | None = None
    resolved_at: AwareDatetime | None = None
    hold_until: AwareDatetime | None = Field(
        default=None, description="level 1 waits until then, to group alerts of one trigger"
    )
    ladder_from: AwareDatetime | None = Field(
        default=None,
        description="after a reopening: when the ladder's waits count from (else raised_at)",
    )
    reopened_at: AwareDatetime | None = None
    deliveries: dict[str, PendingDelivery] = Field(default_factory=dict)
    timeline: list[TimelineEntry] = Field(default_factory=list)

    def public(self) -> dict[str, object]:
        """Return what the alert API shows: everything but the delivery bookkeeping."""
        return self.model_dump(mode="json", exclude_none=True, exclude={"deliveries"})


def add_entry(record: AlertRecord, at: datetime, kind: str, **fields: object) -> None:
    """Append a timeline entry, compacting the timeline when it grows long."""
    record.timeline.append(TimelineEntry.model_validate({"at": at, "kind": kind, **fields}))
    if len(record.timeline) > TIMELINE_MAX:
        _compact(record.timeline)


# An alert nobody acknowledges repeats for as long as it stays open: each repeat adds
# entries, so the timeline keeps the first entries (the raise, the first steps) and the
# latest ones, and folds those between into one `compacted` entry that sums them.
TIMELINE_FIRST = 10
TIMELINE_LAST = 40
TIMELINE_MAX = TIMELINE_FIRST + 1 + TIMELINE_LAST + 20


def _compact(timeline: list[TimelineEntry]) -> None:
    head = timeline[:TIMELINE_FIRST]
    middle = timeline[TIMELINE_FIRST:-TIMELINE_LAST]
    tail = timeline[-TIMELINE_LAST:]
    count = sum((e.count or 0) if e.kind == "compacted" else 1 for e in middle)
    folded = TimelineEntry(at=middle[0].at, kind="compacted", count=count, until=middle[-1].at)
    timeline[:] = [*head, folded, *tail]
