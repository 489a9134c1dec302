"""What the desk keeps of dead letters, the events topic and refused fulfilments: pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from schemas.deadletter import DeadLetter, DeadLetterReason
from schemas.errors import FieldError
from services.desk.records import (
    Batch,
    DeadLetterRow,
    Kind,
    ManagerRow,
    RefusedRow,
    Skipped,
    SourceDay,
    bounded_source,
    decode,
)
from tests.fixtures.events import envelope

T0 = datetime(2026, 9, 1, 10, tzinfo=UTC)


def dead_letter(value: str | None, offset: int = 7) -> bytes:
    letter = DeadLetter.from_record(
        reason=DeadLetterReason.INVALID_EVENT,
        errors=[FieldError(loc="data.area", msg="Field required")],
        topic="safeguarding.events.v1",
        partition=1,
        offset=offset,
        key=b"C-1",
        value=None if value is None else value.encode(),
        failed_at=T0,
    )
    return letter.model_dump_json().encode()


def test_a_dead_letter_keeps_its_reason_and_readable_source_never_the_payload() -> None:
    raw = json.dumps({"source": "urn:safeguard:source:school-mis", "data": {"name": "Jane"}})
    [row] = decode(Kind.DEADLETTER, dead_letter(raw))  # type: ignore[misc]
    assert isinstance(row, DeadLetterRow)
    assert row.key == ("safeguarding.events.v1", 1, 7)
    assert row.values["source"] == "urn:safeguard:source:school-mis"
    assert row.values["reason"] == "invalid_event"
    assert "Jane" not in json.dumps(row.values, default=str)
    # Free text where a source should be, or no JSON at all: no source kept.
    for value in ('{"source": "Jane Doe, 4 High St"}', "not json", None):
        [unread] = decode(Kind.DEADLETTER, dead_letter(value))  # type: ignore[misc]
        assert isinstance(unread, DeadLetterRow)
        assert unread.values["source"] is None


def test_sources_are_uris_or_nothing() -> None:
    assert bounded_source("urn:safeguard:source:mash") == "urn:safeguard:source:mash"
    assert bounded_source("https://cad.example.org/feed") == "https://cad.example.org/feed"
    assert bounded_source("Jane Doe") is None
    assert bounded_source("urn:x:" + "a" * 300) is None
    assert bounded_source(42) is None


def test_events_give_their_sources_arrival_and_manager_assignments() -> None:
    event = envelope(
        "offender.manager_assigned",
        {"offender_id": "O-1", "manager_id": "OM-7"},
        T0,
        event_id="om-1",
        source="urn:safeguard:source:dpmu",
    )
    arrived = T0 + timedelta(minutes=3)
    changes = decode(Kind.EVENTS, json.dumps(event).encode(), arrived)
    assert isinstance(changes, list)
    day, manager = changes
    assert day == SourceDay("urn:safeguard:source:dpmu", arrived.date(), arrived, arrived)
    assert isinstance(manager, ManagerRow)
    assert manager.values["manager_id"] == "OM-7"
    assert manager.order == (T0, "urn:safeguard:source:dpmu", "om-1")
    # Any other event: its source's arrival only.
    other = envelope("child.found", {"episode_id": "E-1", "child_id": "C-1"}, T0)
    assert [type(c) for c in decode(Kind.EVENTS, json.dumps(other).encode(), arrived)] == [  # type: ignore[union-attr]
        SourceDay
    ]
    assert decode(Kind.EVENTS, b"{not json", arrived) == Skipped("invalid_json")


def test_a_batch_keeps_the_latest_assignment_and_a_days_first_and_last_arrival() -> None:
    batch = Batch()
    early, late = T0, T0 + timedelta(hours=5)
    for at in (late, early):
        batch.add(SourceDay("urn:s", T0.date(), at, at))
    for n, at in enumerate((late, early)):
        batch.add(ManagerRow("O-1", (at, "urn:s", f"e{n}"), {"manager_id": f"OM-{n}"}))
    assert batch.source_days["urn:s", T0.date()] == SourceDay("urn:s", T0.date(), early, late)
    assert batch.managers["O-1"].values["manager_id"] == "OM-0"


def test_refused_fulfilments_come_with_the_child_view() -> None:
    from schemas.views import ChildView, RefusedFulfilment, child_view_event  # noqa: PLC0415

    view = ChildView(
        child_id="C-9",
        revision=3,
        as_of=T0,
        level="low",
        score=0,
        factors=[],
        obligations=[],
        recent_events=[],
        refused_fulfilments=[
            RefusedFulfilment(
                rule="welfare-check",
                source="urn:safeguard:source:school",
                at=T0 - timedelta(hours=2),
                recorded_at=T0,
                area="north",
            )
        ],
    )
    changes = decode(Kind.CHILD_VIEWS, child_view_event(view).to_json())
    assert isinstance(changes, list)
    [refused] = [c for c in changes if isinstance(c, RefusedRow)]
    assert refused.values["source"] == "urn:safeguard:source:school"
    assert refused.values["area"] == "north"
