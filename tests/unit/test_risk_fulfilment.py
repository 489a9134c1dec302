"""Who may fulfil what, and backdating made visible.

Per rule, the policy names the sources whose events count as its fulfilment: an event
from another source is kept (in the child's chronology, as a refused fulfilment) and
fulfils nothing. Every fulfilment keeps the time it claims and the time it arrived; one
on time as claimed but recorded after the deadline and more than the tolerance after
its claimed time is reported apart, never silently on time.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from schemas.alerts import AlertResolvedEvent
from schemas.outcomes import OutcomeEvent
from schemas.views import ChildViewEvent
from services.common.clock import FakeClock
from services.common.timeliness import Timeliness, classify, recorded_late_by
from services.risk.engine import check, evaluate
from services.risk.records import Resolved
from services.risk.state import SubjectState
from tests.fixtures.events import T0, envelope, incident, referral
from tests.fixtures.pipeline import TOPICS, Pipeline
from tests.unit.test_risk_guidance_rules import POLICY

H = timedelta(hours=1)
D = timedelta(days=1)
SCHOOL = "urn:safeguard:source:school-mis"


def test_an_event_from_a_source_the_policy_does_not_accept_fulfils_nothing() -> None:
    state = SubjectState(kind="child", id="C-1")
    evaluate(state, incident(T0, category="neglect"), T0, POLICY)
    evaluate(state, referral(T0 + H, source=SCHOOL), T0 + 2 * H, POLICY)
    obligation = state.obligations["social-care-referral|INC-1"]
    assert obligation.fulfilled_at is None
    (refusal,) = state.refused
    assert (refusal.rule, refusal.source, refusal.at, refusal.recorded_at, refusal.area) == (
        "social-care-referral",
        SCHOOL,
        T0 + H,
        T0 + 2 * H,
        "north",
    )
    assert [r.type for r in state.recent][-1] == "referral.shared"  # in the chronology
    effects = check(state, T0 + 24 * H, POLICY).effects
    assert [e.rule for e in effects if e.rule != "risk-level"] == ["social-care-referral"]


def test_the_accepted_source_fulfils_and_a_rule_not_listed_accepts_any() -> None:
    assert POLICY.accepts("social-care-referral", "urn:safeguard:source:mash")
    assert not POLICY.accepts("social-care-referral", SCHOOL)
    assert POLICY.accepts("repeat-missing", SCHOOL)  # not a fulfilment rule: any


def test_an_on_time_fulfilment_recorded_late_resolves_the_alert_and_says_so() -> None:
    state = SubjectState(kind="child", id="C-1")
    evaluate(state, incident(T0, category="neglect"), T0, POLICY)
    check(state, T0 + 24 * H, POLICY)  # raised
    arrived = T0 + 3 * D
    effects = evaluate(state, referral(T0 + 2 * H), arrived, POLICY).effects
    (resolution,) = [e for e in effects if isinstance(e, Resolved)]
    assert resolution.late_by_seconds == 0
    assert resolution.recorded_at == arrived
    assert resolution.recorded_late_by_seconds == int((arrived - (T0 + 24 * H)).total_seconds())


def test_recorded_late_is_only_after_the_deadline_and_beyond_the_tolerance() -> None:
    due = T0 + 24 * H
    tolerance = POLICY.backdating_tolerance
    # Recorded before the deadline: known in time, nothing hidden.
    assert recorded_late_by(due, T0, due - H, tolerance) is None
    # Recorded after the deadline but within the tolerance of its claimed time.
    assert recorded_late_by(due, due - 10 * timedelta(minutes=1), due + H / 2, tolerance) is None
    # Late as claimed: that is met late, not recorded late.
    assert recorded_late_by(due, due + H, due + 5 * H, tolerance) is None
    assert recorded_late_by(due, T0, due + 2 * H, tolerance) == 2 * 3600
    assert classify(due, T0, due, recorded_late=True) is Timeliness.MET_RECORDED_LATE
    assert classify(due, due + H, due, recorded_late=True) is Timeliness.MET_LATE


def test_outcomes_resolutions_and_child_views_carry_it_as_the_contract_says() -> None:
    pipeline = Pipeline(FakeClock(T0 + 3 * D))

    async def run() -> None:
        send = pipeline.send
        report = {
            "incident_id": "INC-1",
            "category": "neglect",
            "children": [{"child_id": "C-1", "present": False, "age": 9}],
        }
        await send(envelope("incident.reported", report, T0, event_id="i1"))
        await pipeline.advance(timedelta(minutes=1))  # raised: the deadline passed
        shared = {
            "referral_id": "R-1",
            "child_id": "C-1",
            "agency": "mash",
            "incident_id": "INC-1",
            "contents": ["incident_details", "risk_assessment"],
        }
        await send(
            envelope(
                "referral.shared",
                {**shared, "referral_id": "R-0"},
                T0 + H,
                event_id="r0",
                source=SCHOOL,
            )
        )
        await send(envelope("referral.shared", shared, T0 + 2 * H, event_id="r1"))

    asyncio.run(run())
    resolutions = [
        AlertResolvedEvent.model_validate_json(m.value or b"").data
        for m in pipeline.broker.records(TOPICS.alerts)
        if json.loads(m.value or b"")["type"] == "alert.resolved"
    ]
    assert [(r.rule, r.late_by_seconds) for r in resolutions] == [("social-care-referral", 0)]
    assert resolutions[0].recorded_late_by_seconds is not None
    met = [
        OutcomeEvent.model_validate_json(m.value or b"").data
        for m in pipeline.broker.records(TOPICS.outcomes)
        if json.loads(m.value or b"")["data"]["outcome"] == "met"
    ]
    assert [(o.rule, o.area) for o in met] == [("social-care-referral", "north")]
    assert met[0].recorded_at is not None
    assert met[0].recorded_late_by_seconds == resolutions[0].recorded_late_by_seconds
    views = [m for m in pipeline.broker.records(TOPICS.child_views) if m.key == b"C-1"]
    view = ChildViewEvent.model_validate_json(views[-1].value or b"").data
    statuses = {o.rule: o.status.value for o in view.obligations}
    assert statuses["social-care-referral"] == "met_recorded_late"
    assert [(r.rule, r.source, r.area) for r in view.refused_fulfilments] == [
        ("social-care-referral", SCHOOL, "north")
    ]
    assert {e.area for e in view.recent_events} == {"north"}
    assert all(o.area == "north" for o in view.obligations)


def test_open_and_overdue_obligations_are_gauged_by_rule_and_area() -> None:
    pipeline = Pipeline(FakeClock(T0))
    report = {
        "incident_id": "INC-9",
        "category": "neglect",
        "children": [{"child_id": "C-9", "present": False, "age": 9}],
    }

    def gauge(name: str, rule: str, area: str) -> float:
        return pipeline.metric(pipeline.risk_registry, name, rule=rule, area=area)

    asyncio.run(pipeline.send(envelope("incident.reported", report, T0, area="south")))
    assert gauge("safeguard_risk_open_obligations", "social-care-referral", "south") == 1
    assert gauge("safeguard_risk_overdue_obligations", "social-care-referral", "south") == 0
    asyncio.run(pipeline.advance(27 * H))
    assert gauge("safeguard_risk_open_obligations", "social-care-referral", "south") == 0
    assert gauge("safeguard_risk_overdue_obligations", "social-care-referral", "south") == 1
    shared = {
        "referral_id": "R-9",
        "child_id": "C-9",
        "agency": "mash",
        "incident_id": "INC-9",
        "contents": ["incident_details", "risk_assessment"],
    }
    asyncio.run(pipeline.send(envelope("referral.shared", shared, T0 + 26 * H, area="south")))
    assert gauge("safeguard_risk_overdue_obligations", "social-care-referral", "south") == 0
