"""The notify service's record of each alert: status and the whole timeline, pure functions.

The record is what `GET /v1/alerts/{id}` shows and what proves afterwards who was told
what, when. Kept in a table keyed by alert id.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from schemas.alerts import AlertRaised, AlertResolved


class AlertStatus(StrEnum):
    """Where an alert stands."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Delivery(BaseModel):
    """One notification to one recipient."""

    channel: Literal["webhook", "email"]
    recipient: str
    level: int = Field(ge=1)
    attempts: int = Field(ge=1)
    outcome: Literal["sent", "failed"]
    reason: str | None = None


class TimelineEntry(BaseModel):
    """Something that happened to an alert."""

    at: AwareDatetime
    kind: Literal["raised", "notification", "escalated", "acknowledged", "resolved"]
    delivery: Delivery | None = None
    by: str | None = None
    note: str | None = None


class AlertRecord(BaseModel):
    """An alert as notify knows it."""

    alert: AlertRaised
    status: AlertStatus = AlertStatus.OPEN
    resolution: AlertResolved | None = None
    timeline: list[TimelineEntry] = Field(default_factory=list)


def on_raised(
    existing: AlertRecord | None, raised: AlertRaised, now: datetime
) -> AlertRecord | None:
    """Open a record for a new alert; None when the alert is already known (a duplicate)."""
    if existing is not None:
        return None
    return AlertRecord(alert=raised, timeline=[TimelineEntry(at=now, kind="raised")])


def on_resolved(record: AlertRecord, resolved: AlertResolved, now: datetime) -> bool:
    """Close an alert; False when it was already resolved (a duplicate)."""
    if record.status is AlertStatus.RESOLVED:
        return False
    record.status = AlertStatus.RESOLVED
    record.resolution = resolved
    record.timeline.append(TimelineEntry(at=now, kind="resolved", by=resolved.resolved_by))
    return True


def on_delivery(record: AlertRecord, delivery: Delivery, now: datetime) -> None:
    """Add a notification attempt's outcome to the timeline."""
    record.timeline.append(TimelineEntry(at=now, kind="notification", delivery=delivery))
