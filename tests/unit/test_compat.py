"""Table values written by the previous release are read by this one, through recovery.

The fixtures are bytes risk and notify wrote before their states became msgspec structs
(tests/fixtures/compat/README.md). Each is decoded, re-encoded without loss, put in a
table that a new worker recovers, and its next deadline is taken.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas.alerts import parse_alert
from schemas.audit import AuditEvent
from schemas.deadletter import DeadLetter
from schemas.envelope import SCHEMA_VERSION, schema_version
from schemas.notifications import parse_notification
from schemas.outcomes import OutcomeEvent
from services.common.clock import FakeClock
from services.common.stream.memory import settle
from services.notify.logic import TABLE_VERSION as NOTIFY_TABLE_VERSION
from services.risk.state import TABLE_VERSION, SubjectState
from tests.fixtures.pipeline import TOPICS, Pipeline

COMPAT = Path(__file__).parent.parent / "fixtures" / "compat"
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)  # when the fixtures' states were written


def inflate(raw: bytes) -> bytes:
    return raw if raw[:1] == b"{" else zlib.decompress(raw)


@pytest.mark.parametrize("path", sorted(COMPAT.glob("v0-risk-*.bin")), ids=lambda p: p.stem)
def test_a_subject_written_by_the_previous_release_reads_back_unchanged(path: Path) -> None:
    pipeline = Pipeline(FakeClock(T0))
    logic = pipeline.risk.driver.logic
    old = path.read_bytes()
    state = logic.decode(old)
    assert isinstance(state, SubjectState)
    assert state.version == 0  # written before formats were numbered
    again = json.loads(inflate(logic.encode(state)))
    assert again.pop("version") == TABLE_VERSION
    assert again == json.loads(inflate(old))


@pytest.mark.parametrize("path", sorted(COMPAT.glob("v0-notify-*.json")), ids=lambda p: p.stem)
def test_an_alert_record_written_by_the_previous_release_reads_back(path: Path) -> None:
    pipeline = Pipeline(FakeClock(T0))
    logic = pipeline.notify.driver.logic
    old = path.read_bytes()
    record = logic.decode(old)
    assert record.alert.alert_id.startswith("al-")
    again = json.loads(inflate(logic.encode(record)))
    assert again.pop("version") == NOTIFY_TABLE_VERSION
    assert again == json.loads(old)


def test_recovery_from_the_previous_releases_risk_table_takes_the_next_deadlines() -> None:
    clock = FakeClock(T0 + timedelta(minutes=20))
    pipeline = Pipeline(clock)
    for path in COMPAT.glob("v0-risk-*.bin"):
        key = path.stem.removeprefix("v0-risk-").replace("-", ":", 1)
        pipeline.risk_table.values[key.encode()] = path.read_bytes()
    pipeline.restart_risk()
    risk = pipeline.risk

    async def run_until(end: datetime) -> None:
        while (due := risk.next_due()) is not None and due <= end:
            clock.set(max(due, clock.now()))
            await settle([risk])
        clock.set(end)

    # The enquiry's second forensic deadline (180 days after a request 100 days old) and
    # the offender's visit cycle (30 days from an assessment 20 days old) lie ahead.
    asyncio.run(run_until(T0 + timedelta(days=81)))
    rules = {a["rule"] for a in pipeline.alerts()}
    assert rules == {"forensic-examination", "offender-routine-visit"}


def test_recovery_from_the_previous_releases_notify_table_takes_the_next_steps() -> None:
    pipeline = Pipeline(FakeClock(T0 + timedelta(minutes=20)))
    for path in COMPAT.glob("v0-notify-*.json"):
        record = json.loads(path.read_bytes())
        pipeline.notify_table.values[record["alert"]["alert_id"].encode()] = path.read_bytes()
    pipeline.restart_notify()
    asyncio.run(pipeline.advance(timedelta(hours=2)))
    escalated = pipeline.published(TOPICS.notifications, lambda e: e["type"] == "alert.escalated")
    assert {e["data"]["level"] for e in escalated} >= {2}


def test_records_the_previous_release_published_are_read_by_this_ones_parsers() -> None:
    records = json.loads((COMPAT / "v0-topics.json").read_text())
    parsers = {
        "alert.raised": parse_alert,
        "alert.resolved": parse_alert,
        "obligation.outcome": OutcomeEvent.model_validate_json,
        "audit.recorded": AuditEvent.model_validate_json,
        "alert.escalated": parse_notification,
        "alert.acknowledged": parse_notification,
        "alert.closed": parse_notification,
        "alert.reopened": parse_notification,
        "notification.sent": parse_notification,
        "notification.failed": parse_notification,
    }
    assert set(records) == {*parsers, "deadletter"}
    for kind, parse in parsers.items():
        event = parse(records[kind])
        assert event.type == kind
        assert event.dataschema is None  # before versions were recorded: read as version 1
        assert schema_version(event.dataschema) == 1 <= SCHEMA_VERSION
    letter = DeadLetter.model_validate_json(records["deadletter"])
    assert schema_version(letter.dataschema) == SCHEMA_VERSION


def test_an_offender_written_before_manager_assignments_reads_and_takes_one() -> None:
    """The manager is a field with a default: the previous release's offender reads as
    having none, is written back without one, and records the latest assignment."""
    from schemas.events import parse_event  # noqa: PLC0415
    from services.risk.engine import evaluate  # noqa: PLC0415

    pipeline = Pipeline(FakeClock(T0))
    logic = pipeline.risk.driver.logic
    state = logic.decode((COMPAT / "v0-risk-offender-O-1.bin").read_bytes())
    assert isinstance(state, SubjectState)
    assert (state.manager, state.manager_since) == (None, None)
    assert "manager" not in json.loads(inflate(logic.encode(state)))

    def assignment(event_id: str, manager: str, at: datetime) -> object:
        return parse_event(
            {
                "specversion": "1.0",
                "id": event_id,
                "source": "urn:safeguard:source:dpmu",
                "type": "offender.manager_assigned",
                "time": at.isoformat(),
                "data": {"area": "north", "offender_id": state.id, "manager_id": manager},
            },
            now=T0 + timedelta(days=1),
        )

    policy = pipeline.risk_policy
    evaluate(state, assignment("om-2", "OM-B", T0), T0, policy)  # type: ignore[arg-type]
    owed = {k: o.due_at for k, o in state.obligations.items()}
    # An earlier assignment arriving later does not replace the latest.
    evaluate(state, assignment("om-1", "OM-A", T0 - timedelta(days=3)), T0, policy)  # type: ignore[arg-type]
    assert (state.manager, state.manager_since) == ("OM-B", T0)
    # An assignment opens and meets nothing.
    assert {k: o.due_at for k, o in state.obligations.items()} == owed
    again = logic.decode(logic.encode(state))
    assert isinstance(again, SubjectState)
    assert again.manager == "OM-B"
