"""Records a released risk, notify, ingest and desk wrote are read by this projector.

`tests/fixtures/compat/v1-desk-topics.json` holds each projector topic's record values
as release 777a679 wrote them (tests/fixtures/compat/README.md). Each goes through the
projector's pure decoder and a batch; the rows it yields are the ones that release's
projector made of them. A failure here is a codec change that would break an upgrade:
the desk would replay the retained topics into different (or no) rows.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from schemas.envelope import SCHEMA_VERSION, schema_version
from services.desk.merge import ObligationFacts
from services.desk.records import Batch, Kind, Skipped, decode

COMPAT = Path(__file__).parent.parent / "fixtures" / "compat" / "v1-desk-topics.json"
ARRIVED = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)  # the events' record timestamp
CHILD = "C-COMPAT-1"
REFERRAL = "al-ba45a12289a29ba0214ca94dda384ee2"  # social-care-referral, met late
DECISION = "al-84894cbcb98f6598ad90a366e709e3ee"  # referral-decision, breached
NEXT_DECISION = "al-2ec552003e8ea544f88e2ca51aba0e7e"  # referral-decision, opened
SCHOOL = "urn:safeguard:source:school-mis"


def at(day: int, hour: int) -> datetime:
    return datetime(2026, 11, day, hour, 0, tzinfo=UTC)


def records() -> dict[str, list[str]]:
    loaded: dict[str, list[str]] = json.loads(COMPAT.read_text(encoding="utf-8"))
    return loaded


def batch(kind: Kind) -> Batch:
    """Decode every record of one topic into a batch, as the projector folds them."""
    folded = Batch()
    for value in records()[kind.value]:
        changes = decode(kind, value.encode(), ARRIVED)
        assert not isinstance(changes, Skipped), (kind, changes, value[:200])
        assert changes, (kind, value[:200])
        for change in changes:
            folded.add(change)
    return folded


def test_every_topic_the_projector_reads_has_fixtures_at_this_schema_version() -> None:
    found = records()
    assert set(found) == {kind.value for kind in Kind}
    for kind, values in found.items():
        assert values, kind
        for value in values:
            stated = json.loads(value).get("dataschema")
            if kind != Kind.EVENTS.value:  # events are the senders', as ingest took them
                assert schema_version(stated) == 1 <= SCHEMA_VERSION, (kind, stated)


def test_alert_views_project_each_alert_at_its_highest_revision() -> None:
    rows = batch(Kind.ALERT_VIEWS).alerts
    assert set(rows) == {REFERRAL, DECISION}
    referral = rows[REFERRAL].values
    assert {k: v for k, v in referral.items() if k != "view"} == {
        "alert_id": REFERRAL,
        "revision": 9,
        "status": "resolved",
        "severity": "high",
        "severity_rank": 1,
        "rule": "social-care-referral",
        "area": "north",
        "subject_kind": "child",
        "subject_id": CHILD,
        "raised_at": at(3, 10),
        "due_at": at(3, 10),
        "overdue_since": at(3, 10),
        "level": 2,
        "reopened": False,
        "acknowledged_by": "DM 4411",
        "summary": "No complete referral to children's social care within 24h of a "
        "neglect incident",
        "resolved_at": at(3, 12),
        "updated_at": at(3, 12),
        "urgency_tier": 3,
        "urgency_at": at(3, 12),
        "trigger_source": "urn:safeguard:source:control-room",
        "trigger_id": "ev-c-1",
    }
    assert referral["view"]["alert"]["alert_id"] == REFERRAL
    decision = rows[DECISION].values
    assert (decision["status"], decision["revision"], decision["level"]) == ("open", 2, 1)
    assert (decision["rule"], decision["acknowledged_by"], decision["resolved_at"]) == (
        "referral-decision",
        None,
        None,
    )


def test_child_views_project_the_latest_view_and_the_refused_fulfilment() -> None:
    folded = batch(Kind.CHILD_VIEWS)
    child = folded.children[CHILD].values
    assert {k: v for k, v in child.items() if k != "view"} == {
        "child_id": CHILD,
        "revision": 5,
        "as_of": at(3, 12),
        "level": "medium",
        "score": 35,
    }
    assert child["view"]["child_id"] == CHILD
    ((key, refused),) = folded.refused.items()
    assert key == (CHILD, "social-care-referral", SCHOOL, at(2, 11))
    assert refused.values == {
        "child_id": CHILD,
        "rule": "social-care-referral",
        "source": SCHOOL,
        "at": at(2, 11),
        "recorded_at": at(2, 11),
        "area": "north",
    }


def obligation(obligation_id: str, **known: Any) -> ObligationFacts:
    return ObligationFacts(
        obligation_id, area="north", subject_kind="child", subject_id=CHILD, **known
    )


def test_outcomes_merge_into_each_obligations_facts() -> None:
    facts = batch(Kind.OUTCOMES).obligations
    assert facts == {
        REFERRAL: obligation(
            REFERRAL,
            rule="social-care-referral",
            severity="high",
            triggered_at=at(2, 10),
            due_at=at(3, 10),
            fulfilled_at=at(3, 12),
            breached=True,
            described_at=at(3, 12),
        ),
        DECISION: obligation(
            DECISION,
            rule="referral-decision",
            severity="medium",
            triggered_at=at(2, 11),
            due_at=at(3, 11),
            breached=True,
            described_at=at(3, 11),
        ),
        NEXT_DECISION: obligation(
            NEXT_DECISION,
            rule="referral-decision",
            severity="medium",
            triggered_at=at(3, 12),
            due_at=at(4, 12),
            described_at=at(3, 12),
        ),
    }


def test_notifications_are_kept_by_id_with_their_type_and_time() -> None:
    events = batch(Kind.NOTIFICATIONS).events
    assert [
        (e.event_id, e.values["type"], e.values["alert_id"], e.values["at"])
        for e in events.values()
    ] == [
        (f"{REFERRAL}:1:0:duty-desk:outcome", "notification.sent", REFERRAL, at(3, 10)),
        (f"{REFERRAL}:escalated:2", "alert.escalated", REFERRAL, at(3, 11)),
        (f"{REFERRAL}:2:0:duty-desk:outcome", "notification.sent", REFERRAL, at(3, 11)),
        (f"{REFERRAL}:2:0:senior-managers:outcome", "notification.sent", REFERRAL, at(3, 11)),
        (f"{DECISION}:1:0:duty-desk:outcome", "notification.sent", DECISION, at(3, 11)),
        (f"{REFERRAL}:acknowledged:r-compat-1", "alert.acknowledged", REFERRAL, at(3, 11)),
        (f"{REFERRAL}:resolved:duty-desk:outcome", "notification.sent", REFERRAL, at(3, 12)),
        (f"{REFERRAL}:resolved:senior-managers:outcome", "notification.sent", REFERRAL, at(3, 12)),
    ]
    acknowledged = events[f"{REFERRAL}:acknowledged:r-compat-1"].values["data"]
    assert (acknowledged["by"], acknowledged["note"]) == ("DM 4411", "calling the school")
    assert events[f"{REFERRAL}:escalated:2"].values["data"]["level"] == 2


def test_audit_records_are_kept_by_source_and_id() -> None:
    rows = [r.values for r in batch(Kind.AUDIT).audit.values()]
    base = {"source": "urn:safeguard:desk", "actor": "development", "principal": None}
    none = {"event_source": None, "event_id": None}
    assert rows == [
        {
            **base,
            **none,
            "record_id": "aa2b7070c24541a78c3e1b8ff33e6f41",
            "action": "child.viewed",
            "at": at(3, 13),
            "child_id": CHILD,
            "alert_id": None,
        },
        {
            **base,
            **none,
            "record_id": "b747894a726c452d9134182e59ecdc3d",
            "action": "alert.acknowledged",
            "at": at(3, 11),
            "child_id": None,
            "alert_id": REFERRAL,
        },
    ]


def test_a_dead_letter_is_kept_by_position_with_its_source_and_no_payload() -> None:
    ((key, letter),) = batch(Kind.DEADLETTER).dead_letters.items()
    assert key == ("safeguarding.events.v1", 3, 4)
    assert letter.values == {
        "topic": "safeguarding.events.v1",
        "partition": 3,
        "offset": 4,
        "failed_at": at(3, 12),
        "reason": "invalid_event",
        "source": SCHOOL,
    }


def test_events_give_each_sources_day_and_the_offenders_manager() -> None:
    folded = batch(Kind.EVENTS)
    assert {(d.source, d.day, d.first_at, d.last_at) for d in folded.source_days.values()} == {
        (source, date(2026, 11, 3), ARRIVED, ARRIVED)
        for source in (
            "urn:safeguard:source:control-room",
            SCHOOL,
            "urn:safeguard:source:public-protection",
            "urn:safeguard:source:dpmu",
        )
    }
    assert folded.managers["O-COMPAT-1"].values == {
        "offender_id": "O-COMPAT-1",
        "manager_id": "OM-7",
        "area": "north",
        "assigned_at": at(3, 12),
        "event_source": "urn:safeguard:source:dpmu",
        "event_id": "ev-c-4",
    }


@pytest.mark.parametrize("kind", list(Kind), ids=str)
def test_a_tombstone_on_any_topic_changes_nothing(kind: Kind) -> None:
    assert decode(kind, None, ARRIVED) == Skipped("tombstone")
