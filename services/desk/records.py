"""What each record of the projector's topics changes in the read side: pure decoding.

`decode(kind, value, arrived)` turns one Kafka record's value into the changes it makes,
or a `Skipped` with a bounded reason (a metric label; the payload is never logged).
`Batch` gathers a batch's changes, reduced per key so one statement writes each row
once: views keep the highest revision, obligations are merged (services.desk.merge),
events, audit records, dead letters and refused fulfilments keep the first of each id,
a source's day keeps its first and last arrival, an offender its latest manager.

From the events topic the desk keeps two things only: when each source's events arrive
(the record's timestamp, for sources gone silent) and offender manager assignments (for
caseloads, which no single risk worker can count: an offender's events are on its own
partition). Only the envelope's `type` and `source` are read of any other event.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

import msgspec
from pydantic import BaseModel, ValidationError

from schemas.audit import AuditEvent
from schemas.deadletter import DeadLetter
from schemas.envelope import EventType
from schemas.errors import InvalidEvent, MalformedJSON
from schemas.events import OffenderManagerAssignedEvent, parse_event_json
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
    DEADLETTER = "deadletter"
    EVENTS = "events"


def topic_kinds(topics: Topics, audit_topic: str) -> dict[str, Kind]:
    """Return the projector's topics by name."""
    return {
        topics.alert_views: Kind.ALERT_VIEWS,
        topics.child_views: Kind.CHILD_VIEWS,
        topics.outcomes: Kind.OUTCOMES,
        topics.notifications: Kind.NOTIFICATIONS,
        audit_topic: Kind.AUDIT,
        topics.deadletter: Kind.DEADLETTER,
        topics.events: Kind.EVENTS,
    }


# A source is a system's URI: one that is not kept, so free text never reaches a table.
_SOURCE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]{0,31}:[A-Za-z0-9._:/~%@!$&'()*+,;=-]{1,220}$")


def bounded_source(value: object) -> str | None:
    """Return `value` when it reads as a source URI, else None (never free text)."""
    return value if isinstance(value, str) and _SOURCE.fullmatch(value) else None


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


@dataclass(frozen=True)
class DeadLetterRow:
    """One dead letter, by the original record's position; no payload."""

    key: tuple[str, int, int]
    values: dict[str, Any]


@dataclass(frozen=True)
class SourceDay:
    """A source's events arriving on one UTC day: the first and last arrival."""

    source: str
    day: date
    first_at: datetime
    last_at: datetime


@dataclass(frozen=True)
class ManagerRow:
    """An offender's manager as one assignment states it."""

    offender_id: str
    order: tuple[datetime, str, str]
    values: dict[str, Any]


@dataclass(frozen=True)
class RefusedRow:
    """A fulfilment from a source the policy does not accept for the rule (no content)."""

    key: tuple[str, str, str, datetime]
    values: dict[str, Any]


Change = (
    AlertRow
    | ChildRow
    | EventRow
    | AuditRow
    | ObligationFacts
    | DeadLetterRow
    | SourceDay
    | ManagerRow
    | RefusedRow
)


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


def decode(
    kind: Kind, value: bytes | None, arrived: datetime | None = None
) -> list[Change] | Skipped:
    """Return the changes one record makes, or why it makes none.

    `arrived`: the record's timestamp (when it reached the broker), for the events topic.
    """
    if value is None:
        # A compacted topic's deletion marker: the desk keeps its history.
        return Skipped("tombstone")
    if kind is Kind.EVENTS:
        return _event(value, arrived)
    return _DECODERS[kind](value)


def _alert_view(value: bytes) -> list[Change] | Skipped:
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


def _outcome(value: bytes) -> list[Change] | Skipped:
    outcome = _model(OutcomeEvent, value)
    if isinstance(outcome, Skipped):
        return outcome
    assert isinstance(outcome, OutcomeEvent)  # noqa: S101
    return [from_outcome(outcome.data)]


def _child_view(value: bytes) -> list[Change] | Skipped:
    child = _model(ChildViewEvent, value)
    if isinstance(child, Skipped):
        return child
    assert isinstance(child, ChildViewEvent)  # noqa: S101
    data = child.data
    refused: list[Change] = [
        RefusedRow(
            key=(data.child_id, r.rule, r.source, r.at),
            values={
                "child_id": data.child_id,
                "rule": r.rule,
                "source": r.source,
                "at": r.at,
                "recorded_at": r.recorded_at,
                "area": r.area,
            },
        )
        for r in data.refused_fulfilments
    ]
    return [
        *refused,
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
        ),
    ]


def _dead_letter(value: bytes) -> list[Change] | Skipped:
    letter = _model(DeadLetter, value)
    if isinstance(letter, Skipped):
        return letter
    assert isinstance(letter, DeadLetter)  # noqa: S101
    source = None
    if letter.value is not None:
        try:
            original = msgspec.json.decode(letter.value)
        except msgspec.DecodeError:
            original = None
        if isinstance(original, dict):
            source = bounded_source(original.get("source"))
    return [
        DeadLetterRow(
            key=(letter.topic, letter.partition, letter.offset),
            values={
                "topic": letter.topic,
                "partition": letter.partition,
                "offset": letter.offset,
                "failed_at": letter.failed_at,
                "reason": letter.reason.value,
                "source": source,
            },
        )
    ]


class _Envelope(msgspec.Struct):
    """The two attributes read of every event (the rest is not decoded into anything)."""

    type: str
    source: str


_ENVELOPE = msgspec.json.Decoder(_Envelope)


def _event(value: bytes, arrived: datetime | None) -> list[Change] | Skipped:
    try:
        envelope = _ENVELOPE.decode(value)
    except msgspec.ValidationError:
        return Skipped("invalid_record")
    except msgspec.DecodeError:
        return Skipped("invalid_json")
    changes: list[Change] = []
    source = bounded_source(envelope.source)
    if source is not None and arrived is not None:
        changes.append(SourceDay(source, arrived.date(), arrived, arrived))
    if envelope.type == EventType.OFFENDER_MANAGER_ASSIGNED.value:
        try:
            event = parse_event_json(value)
        except (InvalidEvent, MalformedJSON):
            # Risk dead-letters it: counted there, not twice here.
            return changes
        assert isinstance(event, OffenderManagerAssignedEvent)  # noqa: S101
        data = event.data
        changes.append(
            ManagerRow(
                offender_id=data.offender_id,
                order=(event.time, event.source, event.id),
                values={
                    "offender_id": data.offender_id,
                    "manager_id": data.manager_id,
                    "area": data.area,
                    "assigned_at": event.time,
                    "event_source": event.source,
                    "event_id": event.id,
                },
            )
        )
    return changes


def arrival(timestamp_ms: int | None) -> datetime | None:
    """Return a Kafka record's timestamp as a UTC time (None when it has none)."""
    if timestamp_ms is None or timestamp_ms < 0:
        return None
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC)


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


_DECODERS: dict[Kind, Callable[[bytes], list[Change] | Skipped]] = {
    Kind.ALERT_VIEWS: _alert_view,
    Kind.CHILD_VIEWS: _child_view,
    Kind.OUTCOMES: _outcome,
    Kind.NOTIFICATIONS: _notification,
    Kind.AUDIT: _audit,
    Kind.DEADLETTER: _dead_letter,
}


@dataclass
class Batch:
    """A batch's changes, one per row: what one transaction writes."""

    alerts: dict[str, AlertRow] = field(default_factory=dict)
    children: dict[str, ChildRow] = field(default_factory=dict)
    obligations: dict[str, ObligationFacts] = field(default_factory=dict)
    events: dict[str, EventRow] = field(default_factory=dict)
    audit: dict[tuple[str, str], AuditRow] = field(default_factory=dict)
    dead_letters: dict[tuple[str, int, int], DeadLetterRow] = field(default_factory=dict)
    source_days: dict[tuple[str, date], SourceDay] = field(default_factory=dict)
    managers: dict[str, ManagerRow] = field(default_factory=dict)
    refused: dict[tuple[str, str, str, datetime], RefusedRow] = field(default_factory=dict)

    def add(self, change: Change) -> None:  # noqa: C901 - one fold per kind of row
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
        elif isinstance(change, AuditRow):
            self.audit.setdefault(change.key, change)
        elif isinstance(change, DeadLetterRow):
            self.dead_letters.setdefault(change.key, change)
        elif isinstance(change, SourceDay):
            day = self.source_days.get((change.source, change.day))
            self.source_days[change.source, change.day] = (
                change
                if day is None
                else SourceDay(
                    change.source,
                    change.day,
                    min(day.first_at, change.first_at),
                    max(day.last_at, change.last_at),
                )
            )
        elif isinstance(change, ManagerRow):
            assigned = self.managers.get(change.offender_id)
            if assigned is None or change.order > assigned.order:
                self.managers[change.offender_id] = change
        else:
            self.refused.setdefault(change.key, change)

    def __len__(self) -> int:
        return (
            len(self.alerts)
            + len(self.children)
            + len(self.obligations)
            + len(self.events)
            + len(self.audit)
            + len(self.dead_letters)
            + len(self.source_days)
            + len(self.managers)
            + len(self.refused)
        )
