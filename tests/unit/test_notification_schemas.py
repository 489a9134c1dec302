"""The events notify publishes on `safeguarding.notifications.v1`: what parses, what not."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.errors import InvalidEvent, MalformedJSON
from schemas.generate import render
from schemas.notifications import (
    NOTIFICATION_TYPES,
    AlertAcknowledged,
    AlertAcknowledgedEvent,
    AlertClosed,
    AlertEscalated,
    AlertEscalatedEvent,
    AlertReopened,
    Channel,
    EscalationReason,
    FailureReason,
    NotificationFailed,
    NotificationFailedEvent,
    NotificationPurpose,
    NotificationSent,
    NotificationSentEvent,
    NotificationType,
    ResolutionReason,
    alert_acknowledged_event,
    alert_closed_event,
    alert_escalated_event,
    alert_reopened_event,
    notification_failed_event,
    notification_sent_event,
    parse_notification,
)

NOW = datetime(2026, 11, 20, 21, 14, tzinfo=UTC)
OUTCOME: dict[str, Any] = {
    "notification_id": "al-1:2:0:duty-desk",
    "alert_id": "al-1",
    "purpose": NotificationPurpose.ALERT,
    "channel": Channel.WEBHOOK,
    "recipient": "duty-desk",
    "level": 2,
    "round": 0,
    "attempts": 3,
    "first_attempt_at": NOW,
    "finished_at": NOW,
}


def examples() -> list[Any]:
    return [
        alert_escalated_event(
            AlertEscalated(
                alert_id="al-1",
                level=2,
                previous_level=1,
                reason=EscalationReason.SCHEDULE,
                scheduled_at=NOW,
                escalated_at=NOW,
                recipients=["duty-desk", "senior-managers"],
            )
        ),
        alert_acknowledged_event(
            AlertAcknowledged(
                alert_id="al-1", by="DM 4411", principal="dev", note="on it", acknowledged_at=NOW
            ),
            request_id="r1",
        ),
        alert_closed_event(
            AlertClosed(
                alert_id="al-1",
                by="DM 4411",
                principal="dev",
                reason=ResolutionReason.DUPLICATE,
                closed_at=NOW,
            ),
            request_id="r2",
        ),
        notification_sent_event(NotificationSent(**OUTCOME)),
        notification_failed_event(
            NotificationFailed(**OUTCOME, reason=FailureReason.SERVER_ERROR, detail="http_503")
        ),
        alert_reopened_event(
            AlertReopened(alert_id="al-1", level=1, acknowledged_at=NOW, reopened_at=NOW)
        ),
    ]


def test_every_type_has_an_example_a_model_and_a_schema_file() -> None:
    assert {e.type for e in examples()} == set(NotificationType) == set(NOTIFICATION_TYPES)
    assert {f"{t}.json" for t in NotificationType} <= set(render())


@pytest.mark.parametrize("event", examples(), ids=lambda e: e.type)
def test_round_trip_through_json(event: Any) -> None:
    parsed = parse_notification(event.to_json())
    assert parsed == event
    assert parse_notification(json.loads(event.to_json())) == event


def test_ids_are_deterministic_where_a_repeat_must_be_a_duplicate() -> None:
    escalated, ack, closed, sent, failed, reopened = examples()
    assert isinstance(escalated, AlertEscalatedEvent)
    assert escalated.id == "al-1:escalated:2"
    assert isinstance(ack, AlertAcknowledgedEvent)
    assert ack.id == "al-1:acknowledged:r1"
    assert closed.id == "al-1:closed:r2"
    # One reopening per acknowledgement, however often the check runs.
    assert reopened.id == f"al-1:reopened:{int(NOW.timestamp() * 1000)}"
    assert isinstance(sent, NotificationSentEvent)
    assert isinstance(failed, NotificationFailedEvent)
    # Sent or failed, one notification has one outcome id.
    assert sent.id == failed.id == "al-1:2:0:duty-desk:outcome"


def test_unknown_fields_and_types_are_rejected_with_paths() -> None:
    raw = json.loads(examples()[0].to_json())
    raw["data"]["chlid_id"] = "C-1"
    with pytest.raises(InvalidEvent) as caught:
        parse_notification(raw)
    assert [(e.loc, e.msg) for e in caught.value.errors] == [
        ("data.<unknown field #1>", "unknown field (extra fields not permitted)")
    ]
    raw = json.loads(examples()[0].to_json())
    raw["type"] = "alert.exploded"
    with pytest.raises(InvalidEvent) as caught:
        parse_notification(raw)
    assert caught.value.errors[0].loc == "type"
    with pytest.raises(MalformedJSON):
        parse_notification(b"{nope")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("level", 0),
        ("attempts", 0),
        ("recipient", "Duty Desk"),  # receiver names, never addresses or people
        ("recipient", "someone@example.org"),
        ("notification_id", "has spaces"),
    ],
)
def test_outcome_fields_are_constrained(field: str, value: object) -> None:
    raw = json.loads(examples()[3].to_json())
    raw["data"][field] = value
    with pytest.raises(InvalidEvent) as caught:
        parse_notification(raw)
    assert caught.value.errors[0].loc == f"data.{field}"


def test_acknowledgement_text_refuses_control_characters() -> None:
    raw = json.loads(examples()[1].to_json())
    raw["data"]["by"] = "DM\x1b[31m"
    with pytest.raises(InvalidEvent):
        parse_notification(raw)
    raw["data"]["by"] = "DM 4411"
    raw["data"]["note"] = "line one\nline two"
    assert parse_notification(raw).data.note == "line one\nline two"  # type: ignore[union-attr]
