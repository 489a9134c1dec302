"""What notify publishes on `safeguarding.notifications.v1` (docs/contract.md section 5).

Every record is keyed by `alert_id`, like `safeguarding.alerts.v1`, so one alert's alert
and notification events land on the same partition number and the notify service can
process them in one stream. The topic is the audit trail of who was told what, when,
and who acted:

| type | when |
|---|---|
| `alert.escalated` | an unacknowledged alert climbed a level (on schedule, or at once |
| | because a delivery at the level below failed) |
| `alert.acknowledged` | someone acknowledged it (`POST /v1/alerts/{id}/ack`): escalation stops |
| `alert.closed` | someone resolved the alert by hand (`POST /v1/alerts/{id}/resolve`), |
| | with a reason code (`reason`) |
| `alert.reopened` | an acknowledged alert whose obligation is still unmet after the |
| | severity's `ack_timeout`: it is open again and its current level told again |
| `notification.sent` | one notification reached one recipient |
| `notification.failed` | one notification could not be delivered, after its retries |

`alert.closed` is the by-hand counterpart of the risk service's `alert.resolved`: the
notify service does not publish on the risk service's topic, and a person closing an
alert is a different fact from a fulfilment arriving (it has no lateness, and has a
person, a reason code and a note instead). Both close the alert and tell whoever was
notified; a report counts a closure by its `reason`, never as a fulfilment.

Recipients are named by the receiver name of the policy file (`duty-desk`,
`senior-managers`), never by address, so this topic carries no contact details.
"""

from enum import StrEnum
from typing import Annotated, Literal, TypeAlias

from pydantic import Field, StrictInt, StringConstraints, TypeAdapter, ValidationError

from schemas.envelope import (
    CloudEvent,
    CloudEventId,
    ContractModel,
    Identifier,
    Timestamp,
    wrap,
)
from schemas.errors import FieldError, invalid_event_from

__all__ = [
    "NOTIFICATION_TYPES",
    "NOTIFY_SOURCE",
    "Actor",
    "AlertAcknowledged",
    "AlertAcknowledgedEvent",
    "AlertClosed",
    "AlertClosedEvent",
    "AlertEscalated",
    "AlertEscalatedEvent",
    "AlertReopened",
    "AlertReopenedEvent",
    "Channel",
    "EscalationReason",
    "FailureReason",
    "NotificationFailed",
    "NotificationFailedEvent",
    "NotificationId",
    "NotificationMessage",
    "NotificationPurpose",
    "NotificationSent",
    "NotificationSentEvent",
    "NotificationType",
    "ReceiverName",
    "ResolutionReason",
    "alert_acknowledged_event",
    "alert_closed_event",
    "alert_escalated_event",
    "alert_reopened_event",
    "notification_failed_event",
    "notification_sent_event",
    "parse_notification",
]

#: Default CloudEvents `source` of notification events.
NOTIFY_SOURCE = "urn:safeguard:notify"

ReceiverName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
"""A receiver's name in the policy file (`duty-desk`); never an address."""

NotificationId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,200}$")]
"""Deterministic id of one notification to one receiver; the webhook `Idempotency-Key`."""

Actor = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{1,128}$")]
"""Who acted, as they gave it (a name or a staff number), without control characters."""

Note = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]{1,1000}$")]
"""Free text written by a person; line breaks and tabs allowed, other controls not."""

NonNegativeInt = Annotated[StrictInt, Field(ge=0)]
Level = Annotated[StrictInt, Field(ge=1, le=20)]


class NotificationType(StrEnum):
    """Types of the events the notify service publishes."""

    ESCALATED = "alert.escalated"
    ACKNOWLEDGED = "alert.acknowledged"
    CLOSED = "alert.closed"
    REOPENED = "alert.reopened"
    SENT = "notification.sent"
    FAILED = "notification.failed"


class Channel(StrEnum):
    """How a notification travels."""

    WEBHOOK = "webhook"
    EMAIL = "email"
    TEAMS = "teams"
    """A Microsoft Teams channel or chat, through a Workflows webhook (an Adaptive Card)."""
    PAGERDUTY = "pagerduty"
    """A PagerDuty service, through the Events API v2 (`dedup_key` = the alert id)."""


class NotificationPurpose(StrEnum):
    """What a notification says: an alert needing action, that it was resolved, or taken on.

    `acknowledgement` goes only to channels that keep an alert's state of their own
    (PagerDuty), so that acknowledging in Safeguard acknowledges there too.
    """

    ALERT = "alert"
    RESOLUTION = "resolution"
    ACKNOWLEDGEMENT = "acknowledgement"


class EscalationReason(StrEnum):
    """Why an alert climbed: its wait ran out, a delivery below failed, or it starts there."""

    SCHEDULE = "schedule"
    DELIVERY_FAILED = "delivery_failed"
    START_LEVEL = "start_level"
    """The alert starts higher up its ladder (`start_level`): told at once, with those below."""


class ResolutionReason(StrEnum):
    """Why someone closed an alert by hand; never a fulfilment (that is `alert.resolved`)."""

    FULFILLED_ELSEWHERE = "fulfilled_elsewhere"
    """The work was done and is recorded in another system."""
    DECIDED_NOT_TO_ACT = "decided_not_to_act"
    """A decision not to act was taken and recorded."""
    DUPLICATE = "duplicate"
    """Another alert covers the same need."""
    OTHER = "other"
    """Anything else; the note says what."""


class FailureReason(StrEnum):
    """Why a notification failed; bounded, so also a metric label."""

    CLIENT_ERROR = "client_error"
    SERVER_ERROR = "server_error"
    RATE_LIMITED = "rate_limited"
    CONNECTION_ERROR = "connection_error"
    TIMEOUT = "timeout"
    REJECTED = "rejected"
    MISCONFIGURED = "misconfigured"


class AlertEscalated(ContractModel):
    """An unacknowledged alert reached `level`; `recipients` are told at that level."""

    alert_id: Identifier
    level: Level
    previous_level: NonNegativeInt
    reason: EscalationReason
    scheduled_at: Timestamp
    escalated_at: Timestamp
    recipients: list[ReceiverName]


class AlertAcknowledged(ContractModel):
    """Someone took the alert on: escalation stops.

    `by` is who acknowledged as they gave it; `principal` the name of the token used.
    """

    alert_id: Identifier
    by: Actor
    principal: Actor
    note: Note | None = None
    acknowledged_at: Timestamp


class AlertClosed(ContractModel):
    """Someone resolved the alert by hand: it is closed and whoever was notified is told."""

    alert_id: Identifier
    by: Actor
    principal: Actor
    note: Note | None = None
    reason: ResolutionReason | None = Field(
        default=None, description="why it was closed; absent in events from before reason codes"
    )
    closed_at: Timestamp


class AlertReopened(ContractModel):
    """An acknowledged alert is open again: its obligation was still unmet `ack_timeout` on.

    `level` (the current one) is told again; the ladder goes on from there.
    """

    alert_id: Identifier
    level: Level
    acknowledged_at: Timestamp
    reopened_at: Timestamp


class _Outcome(ContractModel):
    notification_id: NotificationId
    alert_id: Identifier
    purpose: NotificationPurpose
    channel: Channel
    recipient: ReceiverName
    level: Level
    round: NonNegativeInt = Field(
        description="0 for a level's first notification, n for its nth repeat"
    )
    attempts: Annotated[StrictInt, Field(ge=1)]
    first_attempt_at: Timestamp
    finished_at: Timestamp
    grouped_into: NotificationId | None = Field(
        default=None,
        description="sent inside another alert's grouped message: that notification's id",
    )


class NotificationSent(_Outcome):
    """One notification reached one receiver (2xx from a webhook, accepted by SMTP)."""


class NotificationFailed(_Outcome):
    """One notification could not be delivered; `detail` names the last error (`http_503`)."""

    reason: FailureReason
    detail: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] | None = None


class AlertEscalatedEvent(CloudEvent):
    """CloudEvent of type `alert.escalated`; `id` is `<alert_id>:escalated:<level>`."""

    type: Literal[NotificationType.ESCALATED]
    data: AlertEscalated


class AlertAcknowledgedEvent(CloudEvent):
    """CloudEvent of type `alert.acknowledged`; `id` is unique per request."""

    type: Literal[NotificationType.ACKNOWLEDGED]
    data: AlertAcknowledged


class AlertClosedEvent(CloudEvent):
    """CloudEvent of type `alert.closed`; `id` is unique per request."""

    type: Literal[NotificationType.CLOSED]
    data: AlertClosed


class AlertReopenedEvent(CloudEvent):
    """CloudEvent of type `alert.reopened`; `id` is `<alert_id>:reopened:<ack time>`."""

    type: Literal[NotificationType.REOPENED]
    data: AlertReopened


class NotificationSentEvent(CloudEvent):
    """CloudEvent of type `notification.sent`; `id` is `<notification_id>:outcome`."""

    type: Literal[NotificationType.SENT]
    data: NotificationSent


class NotificationFailedEvent(CloudEvent):
    """CloudEvent of type `notification.failed`; `id` is `<notification_id>:outcome`."""

    type: Literal[NotificationType.FAILED]
    data: NotificationFailed


NOTIFICATION_TYPES: dict[str, type[CloudEvent]] = {
    NotificationType.ESCALATED: AlertEscalatedEvent,
    NotificationType.ACKNOWLEDGED: AlertAcknowledgedEvent,
    NotificationType.CLOSED: AlertClosedEvent,
    NotificationType.REOPENED: AlertReopenedEvent,
    NotificationType.SENT: NotificationSentEvent,
    NotificationType.FAILED: NotificationFailedEvent,
}
"""Notification type -> its CloudEvent model (also the JSON Schema file names)."""

NotificationMessage: TypeAlias = Annotated[
    AlertEscalatedEvent
    | AlertAcknowledgedEvent
    | AlertClosedEvent
    | AlertReopenedEvent
    | NotificationSentEvent
    | NotificationFailedEvent,
    Field(discriminator="type"),
]
"""Any message on `safeguarding.notifications.v1`, discriminated by `type`."""

_ADAPTER: TypeAdapter[NotificationMessage] = TypeAdapter(NotificationMessage)


def _event_id(base: str, suffix: str) -> CloudEventId:
    return f"{base}:{suffix}"


def alert_escalated_event(
    data: AlertEscalated, *, source: str = NOTIFY_SOURCE
) -> AlertEscalatedEvent:
    """Wrap `data`; `id` is `<alert_id>:escalated:<level>`, so a repeat is a duplicate."""
    return wrap(
        AlertEscalatedEvent,
        data,
        event_id=_event_id(data.alert_id, f"escalated:{data.level}"),
        type_=NotificationType.ESCALATED,
        time=data.escalated_at,
        source=source,
    )


def alert_acknowledged_event(
    data: AlertAcknowledged, *, request_id: str, source: str = NOTIFY_SOURCE
) -> AlertAcknowledgedEvent:
    """Wrap `data`; `id` is `<alert_id>:acknowledged:<request_id>`."""
    return wrap(
        AlertAcknowledgedEvent,
        data,
        event_id=_event_id(data.alert_id, f"acknowledged:{request_id}"),
        type_=NotificationType.ACKNOWLEDGED,
        time=data.acknowledged_at,
        source=source,
    )


def alert_closed_event(
    data: AlertClosed, *, request_id: str, source: str = NOTIFY_SOURCE
) -> AlertClosedEvent:
    """Wrap `data`; `id` is `<alert_id>:closed:<request_id>`."""
    return wrap(
        AlertClosedEvent,
        data,
        event_id=_event_id(data.alert_id, f"closed:{request_id}"),
        type_=NotificationType.CLOSED,
        time=data.closed_at,
        source=source,
    )


def alert_reopened_event(data: AlertReopened, *, source: str = NOTIFY_SOURCE) -> AlertReopenedEvent:
    """Wrap `data`; `id` is `<alert_id>:reopened:<acknowledged_at>`: once per acknowledgement."""
    stamp = int(data.acknowledged_at.timestamp() * 1000)
    return wrap(
        AlertReopenedEvent,
        data,
        event_id=_event_id(data.alert_id, f"reopened:{stamp}"),
        type_=NotificationType.REOPENED,
        time=data.reopened_at,
        source=source,
    )


def notification_sent_event(
    data: NotificationSent, *, source: str = NOTIFY_SOURCE
) -> NotificationSentEvent:
    """Wrap `data`; `id` is `<notification_id>:outcome`: one outcome per notification."""
    return wrap(
        NotificationSentEvent,
        data,
        event_id=_event_id(data.notification_id, "outcome"),
        type_=NotificationType.SENT,
        time=data.finished_at,
        source=source,
    )


def notification_failed_event(
    data: NotificationFailed, *, source: str = NOTIFY_SOURCE
) -> NotificationFailedEvent:
    """Wrap `data`; `id` is `<notification_id>:outcome`: one outcome per notification."""
    return wrap(
        NotificationFailedEvent,
        data,
        event_id=_event_id(data.notification_id, "outcome"),
        type_=NotificationType.FAILED,
        time=data.finished_at,
        source=source,
    )


def parse_notification(raw: bytes | str | dict[str, object]) -> NotificationMessage:
    """Validate a notification event, from JSON text or a decoded object.

    Raises `MalformedJSON` for text that is not JSON, `InvalidEvent` otherwise.
    """
    try:
        if isinstance(raw, bytes | str):
            return _ADAPTER.validate_json(raw)
        return _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        error = invalid_event_from(exc)
        # `schemas.errors` strips only the union tags it knows from the front of each
        # path; strip these too, so the path is the one in the sender's document.
        raise type(error)([_untagged(field) for field in error.errors]) from None


def _untagged(field: FieldError) -> FieldError:
    for tag in NotificationType:
        prefix = f'["{tag}"].'
        if field.loc.startswith(prefix):
            return FieldError(loc=field.loc.removeprefix(prefix), msg=field.msg)
    return field
