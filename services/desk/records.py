"""What each record of the projector's topics changes in the read side: pure decoding.

`decode(kind, value)` turns one Kafka record's value into the changes it makes, or a
`Skipped` with a bounded reason (a metric label; the payload is never logged). `Batch`
gathers a batch's changes, reduced per key so one statement writes each row once:
views keep the highest revision, obligations are merged (services.desk.merge), events
and audit records keep the first of each id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ValidationError

from schemas.audit import AuditEvent
from schemas.errors import InvalidEvent, MalformedJSON
from schemas.notifications import AlertClosedEvent, parse_notification
from schemas.outcomes import OutcomeEvent
from schemas.views import AlertView, AlertViewEvent, ChildViewEvent
from services.common.kafka import Topics
from services.desk.merge import ObligationFacts, from_closure, from_outcome, merge
from services.desk.urgency import urgency

#: Severities in the order of the work queue (its index holds the rank).
SEVERITY_RANK = {"medium": 0, "high": 1, "critical": 2}


class Kind(StrEnum):
    """The topics the projector reads, by what they hold (also the metric label)."""

    ALERT_VIEWS = "alert_views"
    CHILD_VIEWS = "child_views"
    OUTCOMES = "outcomes"
    NOTIFICATIONS = "notifications"
    AUDIT = "audit"


def topic_kinds(topics: Topics, audit_topic: str) -> dict[str, Kind]:
    """Return the projector's topics by name."""
    return {
        topics.alert_views: Kind.ALERT_VIEWS,
        topics.child_views: Kind.CHILD_VIEWS,
        topics.outcomes: Kind.OUTCOMES,
        topics.notifications: Kind.NOTIFICATIONS,
        audit_topic: Kind.AUDIT,
    }


@dataclass(frozen=True)
class Skipped:
    """A record that changes nothing, and why (`tombstone`, `invalid_json`, `invalid_record`)."""

    reason: str


@dataclass(frozen=True)
class AlertRow:
    """An alert's latest view, as the `alerts` table holds it."""

    alert_id: str
    revision: int
    values: dict[str, Any]


@dataclass(frozen=True)
class ChildRow:
    """A child's latest view, as the `children` table holds it."""

    child_id: str
    revision: int
    values: dict[str, Any]


@dataclass(frozen=True)
class EventRow:
    """One notification event, kept by id."""

    event_id: str
    values: dict[str, Any]


@dataclass(frozen=True)
class AuditRow:
    """One audit record, kept by `(source, id)`."""

    key: tuple[str, str]
    values: dict[str, Any]


Change = AlertRow | ChildRow | EventRow | AuditRow | ObligationFacts


def _model(model: type[BaseModel], value: bytes) -> BaseModel | Skipped:
    try:
        return model.model_validate_json(value)
    except ValidationError as error:
        kinds = {e["type"] for e in error.errors(include_input=False)}
        return Skipped("invalid_json" if "json_invalid" in kinds else "invalid_record")


def alert_row(view: AlertView) -> AlertRow:
    """Return the `alerts` row of an alert's view."""
    alert = view.alert
    urgent = urgency(view)
    return AlertRow(
        alert_id=alert.alert_id,
        revision=view.revision,
        values={
            "alert_id": alert.alert_id,
            "revision": view.revision,
            "status": view.status.value,
            "severity": alert.severity.value,
            "severity_rank": SEVERITY_RANK[alert.severity.value],
            "rule": alert.rule,
            "area": alert.area,
            "subject_kind": alert.subject_kind.value,
            "subject_id": alert.subject_id,
            "raised_at": alert.raised_at,
            "due_at": alert.due_at,
            "overdue_since": alert.due_at or alert.raised_at,
            "level": view.level,
            "reopened": view.reopened_at is not None and view.status.value == "open",
            "acknowledged_by": view.acknowledgement.by if view.acknowledgement else None,
            "summary": alert.summary,
            "resolved_at": view.resolved_at,
            "updated_at": view.updated_at,
            "view": view.model_dump(mode="json", exclude_none=True),
            "urgency_tier": int(urgent.tier),
            "urgency_at": urgent.at,
            "trigger_source": alert.trigger.source,
            "trigger_id": alert.trigger.id,
        },
    )


def decode(kind: Kind, value: bytes | None) -> list[Change] | Skipped:  # noqa: PLR0911 - one answer per kind
    """Return the changes one record makes, or why it makes none."""
    if value is None:
        # A compacted topic's deletion marker: the desk keeps its history.
        return Skipped("tombstone")
    if kind is Kind.ALERT_VIEWS:
        event = _model(AlertViewEvent, value)
        if isinstance(event, Skipped):
            return event
        assert isinstance(event, AlertViewEvent)  # noqa: S101 - the model asked for
        view = event.data
        changes: list[Change] = [alert_row(view)]
        if view.closure is not None:
            changes.append(
                from_closure(view.alert.alert_id, view.closure.closed_at, view.closure.reason)
            )
        return changes
    if kind is Kind.CHILD_VIEWS:
        child = _model(ChildViewEvent, value)
        if isinstance(child, Skipped):
            return child
        assert isinstance(child, ChildViewEvent)  # noqa: S101
        data = child.data
        return [
            ChildRow(
                child_id=data.child_id,
                revision=data.revision,
                values={
                    "child_id": data.child_id,
                    "revision": data.revision,
                    "as_of": data.as_of,
                    "level": data.level,
                    "score": data.score,
                    "view": data.model_dump(mode="json", exclude_none=True),
                },
            )
        ]
    if kind is Kind.OUTCOMES:
        outcome = _model(OutcomeEvent, value)
        if isinstance(outcome, Skipped):
            return outcome
        assert isinstance(outcome, OutcomeEvent)  # noqa: S101
        return [from_outcome(outcome.data)]
    if kind is Kind.NOTIFICATIONS:
        return _notification(value)
    return _audit(value)


def _notification(value: bytes) -> list[Change] | Skipped:
    try:
        event = parse_notification(value)
    except MalformedJSON:
        return Skipped("invalid_json")
    except InvalidEvent:
        return Skipped("invalid_record")
    data = event.data
    row = EventRow(
        event_id=event.id,
        values={
            "event_id": event.id,
            "type": str(event.type),
            "alert_id": data.alert_id,
            "at": event.time,
            "data": data.model_dump(mode="json", exclude_none=True),
        },
    )
    if isinstance(event, AlertClosedEvent):
        return [row, from_closure(data.alert_id, event.data.closed_at, event.data.reason)]
    return [row]


def _audit(value: bytes) -> list[Change] | Skipped:
    parsed = _model(AuditEvent, value)
    if isinstance(parsed, Skipped):
        return parsed
    assert isinstance(parsed, AuditEvent)  # noqa: S101
    record = parsed.data
    return [
        AuditRow(
            key=(parsed.source, parsed.id),
            values={
                "source": parsed.source,
                "record_id": parsed.id,
                "action": record.action.value,
                "actor": record.actor,
                "at": record.at,
                "child_id": record.child_id,
                "alert_id": record.alert_id,
                "event_source": record.event.source if record.event else None,
                "event_id": record.event.id if record.event else None,
                "principal": record.principal,
            },
        )
    ]


@dataclass
class Batch:
    """A batch's changes, one per row: what one transaction writes."""

    alerts: dict[str, AlertRow] = field(default_factory=dict)
    children: dict[str, ChildRow] = field(default_factory=dict)
    obligations: dict[str, ObligationFacts] = field(default_factory=dict)
    events: dict[str, EventRow] = field(default_factory=dict)
    audit: dict[tuple[str, str], AuditRow] = field(default_factory=dict)

    def add(self, change: Change) -> None:
        """Fold one change in: the newest view, the merged facts, the first event."""
        if isinstance(change, AlertRow):
            held = self.alerts.get(change.alert_id)
            if held is None or change.revision > held.revision:
                self.alerts[change.alert_id] = change
        elif isinstance(change, ChildRow):
            kept = self.children.get(change.child_id)
            if kept is None or change.revision > kept.revision:
                self.children[change.child_id] = change
        elif isinstance(change, ObligationFacts):
            known = self.obligations.get(change.obligation_id)
            self.obligations[change.obligation_id] = (
                change if known is None else merge(known, change)
            )
        elif isinstance(change, EventRow):
            self.events.setdefault(change.event_id, change)
        else:
            self.audit.setdefault(change.key, change)

    def __len__(self) -> int:
        return (
            len(self.alerts)
            + len(self.children)
            + len(self.obligations)
            + len(self.events)
            + len(self.audit)
        )
