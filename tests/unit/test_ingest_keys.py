"""Partition keys: one child's (offender's, enquiry's) events share a key, so a partition."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.events import parse_event
from services.ingest.keys import partition_key

NOW = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)


def event(kind: str, data: dict[str, Any]) -> Any:
    return parse_event(
        {
            "specversion": "1.0",
            "id": "e-1",
            "source": "urn:a",
            "type": kind,
            "time": "2026-11-20T21:14:00Z",
            "data": {"area": "north", **data},
        },
        now=NOW,
    )


@pytest.mark.parametrize(
    ("kind", "data", "key"),
    [
        ("child.found", {"episode_id": "E", "child_id": "C-1"}, "C-1"),
        ("child.missing", {"episode_id": "E", "child_id": "C-1", "risk_grade": "high"}, "C-1"),
        ("offender.visited", {"offender_id": "O-1", "visit": "routine"}, "O-1"),
        ("forensic.examination_completed", {"enquiry_id": "Q-1"}, "Q-1"),
        (
            "forensic.examination_requested",
            {"enquiry_id": "Q-1", "child_ids": ["C-1"], "contact_restricted": False},
            "Q-1",
        ),
        (
            "incident.reported",
            {
                "incident_id": "I",
                "category": "neglect",
                "children": [
                    {"child_id": "C-2", "present": True},
                    {"child_id": "C-1", "present": False},
                ],
            },
            "C-2",
        ),
    ],
)
def test_partition_key(kind: str, data: dict[str, Any], key: str) -> None:
    assert partition_key(event(kind, data)) == key
