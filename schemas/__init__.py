"""Safeguard's event contract as code (docs/contract.md).

Pydantic models for every event, alert and dead letter; the parsers services use
at their door; and the generator of the committed JSON Schema in `schemas/json/`.
"""

from schemas.alerts import (
    AlertMessage,
    AlertRaised,
    AlertRaisedEvent,
    AlertResolved,
    AlertResolvedEvent,
    EventRef,
    Severity,
    SubjectKind,
    alert_raised_event,
    alert_resolved_event,
    deterministic_alert_id,
    parse_alert,
)
from schemas.deadletter import DeadLetter, DeadLetterReason, KeyEncoding
from schemas.envelope import (
    AlertType,
    CloudEvent,
    Envelope,
    EventEnvelopeBase,
    EventType,
    Identifier,
    Timestamp,
)
from schemas.errors import (
    FieldError,
    InvalidEvent,
    MalformedJSON,
    format_validation_error,
)
from schemas.events import (
    ENVELOPE_TYPES,
    EVENT_TYPES,
    Event,
    parse_event,
    parse_event_json,
)

__all__ = [
    "ENVELOPE_TYPES",
    "EVENT_TYPES",
    "AlertMessage",
    "AlertRaised",
    "AlertRaisedEvent",
    "AlertResolved",
    "AlertResolvedEvent",
    "AlertType",
    "CloudEvent",
    "DeadLetter",
    "DeadLetterReason",
    "Envelope",
    "Event",
    "EventEnvelopeBase",
    "EventRef",
    "EventType",
    "FieldError",
    "Identifier",
    "InvalidEvent",
    "KeyEncoding",
    "MalformedJSON",
    "Severity",
    "SubjectKind",
    "Timestamp",
    "alert_raised_event",
    "alert_resolved_event",
    "deterministic_alert_id",
    "format_validation_error",
    "parse_alert",
    "parse_event",
    "parse_event_json",
]
