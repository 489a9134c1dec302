"""Risk's records, encoded without models on the hot path, are what the contract says.

Each record risk publishes is read back by the contract's own models (schemas/), and
for alerts and outcomes compared with what those models would have written.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from schemas.alerts import AlertRaisedEvent, AlertResolvedEvent
from schemas.outcomes import OutcomeEvent
from schemas.views import ChildViewEvent
from services.common.clock import FakeClock
from tests.fixtures.events import T0, envelope
from tests.fixtures.pipeline import TOPICS, Pipeline

D = timedelta(days=1)
H = timedelta(hours=1)


DAYS = 4


def replay() -> Pipeline:
    """A late referral (alert raised, then resolved), a missing child and an offender."""
    pipeline = Pipeline(FakeClock(T0 + timedelta(days=3)))

    async def run() -> None:
        send = pipeline.send
        await send(
            envelope(
                "incident.reported",
                {
                    "incident_id": "INC-1",
                    "category": "domestic_abuse",
                    "area": "north",
                    "children": [{"child_id": "C-1", "present": True, "age": 8}],
                },
                T0,
                event_id="i1",
            )
        )
        await pipeline.advance(timedelta(minutes=1))
        referral = {
            "referral_id": "R-1",
            "child_id": "C-1",
            "agency": "mash",
            "incident_id": "INC-1",
            "contents": ["incident_details", "risk_assessment"],
        }
        await send(envelope("referral.shared", referral, T0 + timedelta(days=2), event_id="r1"))
        missing = {"episode_id": "EP-1", "child_id": "C-2", "risk_grade": "high"}
        await send(envelope("child.missing", missing, T0 + timedelta(days=2), event_id="m1"))
        custody = {"custody_id": "CU-1", "child_id": "C-2"}
        detained = {**custody, "age": 15, "charged": True}
        await send(envelope("custody.child_detained", detained, T0 + 2 * D, event_id="c1"))
        await send(
            envelope("custody.accommodation_requested", custody, T0 + 2 * D + H, event_id="c2")
        )
        refused = {**custody, "reason": "no_placement_available"}
        await send(
            envelope("custody.accommodation_refused", refused, T0 + 2 * D + 2 * H, event_id="c3")
        )
        offender = {"offender_id": "O-1", "risk_level": "high", "area": "south"}
        await send(envelope("offender.registered", offender, T0, event_id="o1"))
        # Past every deadline these open (the offender's initial visit, the custody
        # transfer), not further: each repeat of an escalation on the way is a step.
        await pipeline.advance(timedelta(days=DAYS))

    asyncio.run(run())
    return pipeline


def test_alerts_outcomes_and_child_views_are_the_contracts_own_json() -> None:
    pipeline = replay()
    kinds = {"alert.raised": AlertRaisedEvent, "alert.resolved": AlertResolvedEvent}
    seen = set()
    published = [
        json.loads(m.value or b"")
        for topic in (TOPICS.alerts, TOPICS.outcomes, TOPICS.child_views, TOPICS.alert_views)
        for m in pipeline.broker.records(topic)
    ]
    # Every record names its schema and version, for readers of a later release.
    assert {e["dataschema"] for e in published} == {
        f"urn:safeguard:schema:{kind}:1"
        for kind in (
            "alert.raised",
            "alert.resolved",
            "obligation.outcome",
            "child.view",
            "alert.view",
        )
    }
    for message in pipeline.broker.records(TOPICS.alerts):
        raw = message.value or b""
        model = kinds[json.loads(raw)["type"]].model_validate_json(raw)
        assert json.loads(model.to_json()) == json.loads(raw)  # what the model would write
        seen.add(model.type)
    assert seen == set(kinds)
    outcomes = pipeline.broker.records(TOPICS.outcomes)
    assert {json.loads(m.value or b"")["data"]["outcome"] for m in outcomes} == {
        "opened",
        "met",
        "breached",
        "updated",
    }
    raised = [
        AlertRaisedEvent.model_validate_json(m.value or b"").data
        for m in pipeline.broker.records(TOPICS.alerts)
        if json.loads(m.value or b"")["type"] == "alert.raised"
    ]
    assert all(a.area is not None for a in raised)
    assert [a.start_level for a in raised if a.rule == "custody-accommodation-refused"] == [3]
    for message in outcomes:
        raw = message.value or b""
        assert json.loads(OutcomeEvent.model_validate_json(raw).to_json()) == json.loads(raw)
    views = pipeline.broker.records(TOPICS.child_views)
    assert {m.key for m in views} == {b"C-1", b"C-2"}
    for message in views:
        view = ChildViewEvent.model_validate_json(message.value or b"").data
        assert message.key == view.child_id.encode()
    latest = ChildViewEvent.model_validate_json(
        next(m.value for m in reversed(views) if m.key == b"C-1") or b""
    ).data
    statuses = {o.rule: o.status.value for o in latest.obligations}
    assert statuses["social-care-referral"] == "met_late"
    assert latest.revision == max(
        ChildViewEvent.model_validate_json(m.value or b"").data.revision
        for m in views
        if m.key == b"C-1"
    )
