"""The audit trail end to end: every kind of audited action, read back from the topic.

Against the three services as processes: an event is accepted (ingest), the child is
viewed (risk), the alerts are listed and one is read, acknowledged with a note and
resolved (notify). Each leaves its record on the audit topic, naming the token, with ids
only: no note text, no event content.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devtools.stack import DevStack
from tests.fixtures.broker import read_all
from tests.fixtures.stack import Client, wait_until

pytestmark = pytest.mark.e2e

NOTE = "ZQXJ called the school, no answer"  # must not reach the audit topic


def incident(child_id: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"aud-{uuid.uuid4().hex[:10]}",
        "source": "urn:safeguard:source:control-room",
        "type": "incident.reported",
        "time": (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": {
            "incident_id": f"INC-{uuid.uuid4().hex[:6]}",
            "category": "domestic_abuse",
            "area": "north",
            "children": [{"child_id": child_id, "present": True, "age": 9}],
        },
    }


def audits(stack: DevStack) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in read_all(stack.bootstrap, stack.audit_topic)]


def test_each_kind_of_action_leaves_its_record(stack: DevStack) -> None:
    client = Client()
    child_id = f"C-AUD-{uuid.uuid4().hex[:6]}"
    event = incident(child_id)
    code, body, _ = client.request("POST", f"{stack.url('ingest')}/v1/events", event)
    assert code == 202, body

    def open_alert() -> dict[str, Any] | None:
        code, listed, _ = client.request("GET", f"{stack.url('desk')}/v1/alerts?status=open")
        assert code == 200, listed
        return next((a for a in listed["alerts"] if a["subject_id"] == child_id), None)

    alert = wait_until(open_alert, timeout=60)
    assert alert, "no alert was raised"
    alert_id = alert["alert_id"]

    assert client.request("GET", f"{stack.url('desk')}/v1/children/{child_id}")[0] == 200
    assert client.request("GET", f"{stack.url('desk')}/v1/alerts/{alert_id}")[0] == 200
    base = f"{stack.url('desk')}/v1/alerts/{alert_id}"
    code, body, _ = client.request("POST", f"{base}/ack", {"note": NOTE})
    assert code == 202, body

    def acknowledged() -> bool:
        return client.request("GET", base)[1]["status"] == "acknowledged"

    assert wait_until(acknowledged, timeout=30)
    code, body, _ = client.request("POST", f"{base}/resolve", {})
    assert code == 202, body

    wanted = {
        ("event.accepted", "event", json.dumps({"source": event["source"], "id": event["id"]})),
        ("child.viewed", "child_id", json.dumps(child_id)),
        ("alerts.listed", None, None),
        ("alert.viewed", "alert_id", json.dumps(alert_id)),
        ("alert.acknowledged", "alert_id", json.dumps(alert_id)),
        ("alert.noted", "alert_id", json.dumps(alert_id)),
        ("alert.resolved", "alert_id", json.dumps(alert_id)),
    }

    def recorded() -> set[tuple[str, str | None, str | None]]:
        found = set()
        for record in audits(stack):
            data = record["data"]
            target = next((k for k in ("event", "child_id", "alert_id") if k in data), None)
            value = json.dumps(data[target], sort_keys=True) if target else None
            found.add((data["action"], target, value))
        return found

    def complete() -> bool:
        normalised = {
            (a, t, json.dumps(json.loads(v), sort_keys=True) if v else None) for a, t, v in wanted
        }
        return normalised <= recorded()

    assert wait_until(complete, timeout=30), sorted(recorded())
    for record in audits(stack):
        assert record["type"] == "audit.recorded"
        assert record["data"]["actor"] == "development"  # the token's name, never the token
        assert set(record["data"]) <= {
            "action",
            "actor",
            "at",
            "event",
            "child_id",
            "alert_id",
            "listing",  # alerts.listed: its filters and the ids shown
        }
        assert "ZQXJ" not in json.dumps(record)
