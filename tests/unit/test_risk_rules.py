"""Every rule of docs/contract.md section 3: met, met late, missed, out of order, duplicate."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.events import Event
from services.risk.engine import Effect, check, evaluate
from services.risk.policy import load_policy
from services.risk.records import Raised as AlertRaised
from services.risk.records import Resolved as AlertResolved
from services.risk.state import SubjectKind, SubjectState
from tests.fixtures.events import T0, event, incident, referral

POLICY = load_policy(Path(__file__).resolve().parents[2] / "policy" / "default.yaml")
H = timedelta(hours=1)
D = timedelta(days=1)
SETTLE = POLICY.settle


class Subject:
    """One subject's state driven through the engine, as the stream would."""

    def __init__(self, kind: SubjectKind = "child", subject_id: str = "C-1") -> None:
        self.state = SubjectState(kind=kind, id=subject_id)
        self.effects: list[Effect] = []

    def feed(self, ev: Event, now: datetime) -> list[Effect]:
        outcome = evaluate(self.state, ev, now, POLICY)
        self.effects.extend(outcome.effects)
        return outcome.effects

    def tick(self, now: datetime) -> list[Effect]:
        effects = check(self.state, now, POLICY).effects
        self.effects.extend(effects)
        return effects


def raised(effects: list[Effect], rule: str | None = None) -> list[AlertRaised]:
    return [e for e in effects if isinstance(e, AlertRaised) and rule in (None, e.rule)]


def resolved(effects: list[Effect]) -> list[AlertResolved]:
    return [e for e in effects if isinstance(e, AlertResolved)]


def rules_of(effects: list[Effect]) -> list[str]:
    return sorted(e.rule for e in raised(effects) if e.rule != "risk-level")


def decide(child: Subject, at: datetime, now: datetime | None = None) -> None:
    """Children's social care decides on every referral the child has, at `at`."""
    for referral_id in list(child.state.referrals):
        data = {"referral_id": referral_id, "child_id": child.state.id, "decision": "early_help"}
        child.feed(event("referral.decided", data, at), now or at)


# --- social-care-referral: the full set of paths ---------------------------------------


def test_referral_in_time_raises_nothing() -> None:
    child = Subject()
    child.feed(incident(T0, category="neglect"), T0)
    child.feed(referral(T0 + 2 * H), T0 + 2 * H)
    decide(child, T0 + 3 * H)
    assert child.tick(T0 + 30 * H) == []
    assert child.state.next_due() is None


def test_missed_referral_raises_once_when_due() -> None:
    child = Subject()
    child.feed(incident(T0, category="neglect"), T0)
    assert child.tick(T0 + 23 * H) == []
    first = child.tick(T0 + 24 * H)
    assert [(a.rule, a.severity.value, a.child_id) for a in raised(first)] == [
        ("social-care-referral", "high", "C-1")
    ]
    assert first[0].due_at == T0 + 24 * H
    assert child.tick(T0 + 48 * H) == []


def test_late_referral_after_alert_resolves_it_with_lateness() -> None:
    child = Subject()
    child.feed(incident(T0, category="neglect"), T0)
    alert = raised(child.tick(T0 + 25 * H))[0]
    effects = child.feed(referral(T0 + 30 * H), T0 + 30 * H)
    assert [(r.alert_id, r.late_by_seconds) for r in resolved(effects)] == [
        (alert.alert_id, 6 * 3600)
    ]


def test_late_fulfilment_known_before_the_check_raises_and_resolves_together() -> None:
    child = Subject()
    # Both arrive days later: the referral was late, so it is a breach all the same.
    child.feed(referral(T0 + 30 * H), T0 + 5 * D)
    decide(child, T0 + 31 * H, T0 + 5 * D)
    effects = child.feed(incident(T0, category="neglect"), T0 + 5 * D)
    assert rules_of(effects) == ["social-care-referral"]
    assert [r.late_by_seconds for r in resolved(effects)] == [6 * 3600]
    assert child.tick(T0 + 6 * D) == []


def test_referral_arriving_before_its_incident_meets_it() -> None:
    child = Subject()
    child.feed(referral(T0 + H), T0 + 2 * H)
    decide(child, T0 + 2 * H)
    effects = child.feed(incident(T0, category="neglect"), T0 + 3 * H)
    assert effects == []
    assert child.tick(T0 + 3 * D) == []


def test_duplicate_event_has_no_effect_at_all() -> None:
    child = Subject()
    report = incident(T0 - 3 * D, category="neglect", event_id="same")
    child.feed(report, T0)
    assert rules_of(child.tick(T0 + SETTLE)) == ["social-care-referral"]
    again = evaluate(child.state, report, T0 + H, POLICY)
    assert again.duplicate
    assert again.effects == []
    assert len(child.state.incidents) == 1
    assert child.tick(T0 + 2 * H) == []


def test_backdated_incident_raises_within_the_settle_time() -> None:
    child = Subject()
    assert child.feed(incident(T0 - 25 * D, category="neglect"), T0) == []
    assert child.state.next_due() == T0 + SETTLE
    assert rules_of(child.tick(T0 + SETTLE)) == ["social-care-referral"]


def test_backlog_with_its_on_time_fulfilment_right_behind_raises_nothing() -> None:
    child = Subject()
    child.feed(incident(T0 - 25 * D, category="neglect"), T0)
    child.feed(referral(T0 - 25 * D + H), T0)
    decide(child, T0 - 25 * D + 2 * H, T0)
    assert child.tick(T0 + SETTLE) == []


def test_high_dash_risk_shortens_the_window() -> None:
    child = Subject()
    child.feed(incident(T0, category="neglect", dash_risk="high"), T0)
    assert rules_of(child.tick(T0 + 4 * H)) == ["social-care-referral"]


def test_other_category_needs_no_referral() -> None:
    child = Subject()
    assert child.feed(incident(T0 - 5 * D, category="other"), T0) == []


def test_referral_to_another_agency_or_incident_does_not_meet_it() -> None:
    child = Subject()
    child.feed(incident(T0, category="neglect"), T0)
    child.feed(referral(T0 + H, agency="health"), T0 + H)
    child.feed(referral(T0 + H, incident_id="INC-OTHER"), T0 + H)
    assert rules_of(child.tick(T0 + 24 * H)) == ["social-care-referral"]


def test_each_child_of_an_incident_has_its_own_obligations() -> None:
    report = incident(
        T0,
        children=[
            {"child_id": "C-1", "present": True, "age": 8},
            {"child_id": "C-2", "present": False, "age": 2},
        ],
    )
    first, second = Subject("child", "C-1"), Subject("child", "C-2")
    first.feed(report, T0)
    second.feed(report, T0)
    assert sorted(o.rule for o in first.state.obligations.values()) == [
        "school-notification",
        "social-care-referral",
        "welfare-check",
    ]
    # Not present: no welfare check; aged 2: no school.
    assert [o.rule for o in second.state.obligations.values()] == ["social-care-referral"]


# --- welfare-check ----------------------------------------------------------------------


def test_welfare_check_met_missed_and_late() -> None:
    checked = {"incident_id": "INC-1", "child_id": "C-1", "outcome": "safe"}
    on_time = Subject()
    on_time.feed(incident(T0), T0)
    on_time.feed(event("child.welfare_checked", checked, T0 + H), T0 + H)
    assert "welfare-check" not in rules_of(on_time.tick(T0 + 13 * H))

    missed = Subject()
    missed.feed(incident(T0), T0)
    assert "welfare-check" in rules_of(missed.tick(T0 + 12 * H))
    late = missed.feed(event("child.welfare_checked", checked, T0 + 14 * H), T0 + 14 * H)
    assert [r.rule for r in resolved(late)] == ["welfare-check"]


# --- school-notification ----------------------------------------------------------------


@pytest.mark.parametrize(("age", "expected"), [(3, False), (4, True), (17, True), (None, True)])
def test_school_notification_by_age(age: int | None, expected: bool) -> None:
    child = Subject()
    child.feed(incident(T0, children=[{"child_id": "C-1", "present": False, "age": age}]), T0)
    assert ("school-notification|INC-1" in child.state.obligations) is expected


def test_school_notification_due_next_school_day_and_met_by_school_referral() -> None:
    friday_evening = datetime.fromisoformat("2026-11-06T19:30:00+00:00")
    child = Subject()
    child.feed(incident(friday_evening, category="neglect"), friday_evening)
    assert "school-notification|INC-1" not in child.state.obligations  # neglect: no school rule
    child.feed(incident(friday_evening, incident_id="INC-2"), friday_evening)
    due = child.state.obligations["school-notification|INC-2"].due_at
    assert due.isoformat() == "2026-11-09T09:00:00+00:00"  # Monday 09:00 GMT
    child.feed(referral(due - H, agency="school", incident_id="INC-2"), due - H)
    assert "school-notification" not in rules_of(child.tick(due + H))


# --- exploitation-action ----------------------------------------------------------------


def concern(at: datetime, level: str = "high", age: int | None = 13, **kw: Any) -> Event:
    data: dict[str, Any] = {
        "concern_id": "CON-1",
        "child_id": "C-1",
        "kind": "sexual",
        "level": level,
    }
    if age is not None:
        data["age"] = age
    return event("exploitation.concern_raised", data, at, **kw)


def action(at: datetime) -> Event:
    return event(
        "safeguarding.action_taken",
        {"action_id": "A-1", "child_id": "C-1", "action": "strategy_discussion"},
        at,
    )


def test_high_exploitation_concern_is_critical_within_four_hours() -> None:
    child = Subject()
    child.feed(concern(T0), T0)
    alerts = raised(child.tick(T0 + 4 * H), "exploitation-action")
    assert [a.severity.value for a in alerts] == ["critical"]


def test_medium_concern_has_a_day_and_action_in_time_meets_it() -> None:
    child = Subject()
    child.feed(concern(T0, level="medium"), T0)
    child.feed(action(T0 + 20 * H), T0 + 20 * H)
    assert raised(child.tick(T0 + 2 * D), "exploitation-action") == []


def test_action_before_the_concern_does_not_count_but_arrival_order_does_not_matter() -> None:
    earlier = Subject()
    earlier.feed(action(T0 - H), T0)
    earlier.feed(concern(T0, level="medium"), T0)
    assert raised(earlier.tick(T0 + 24 * H), "exploitation-action")

    arrived_first = Subject()
    arrived_first.feed(action(T0 + H), T0 + 2 * H)  # happened after, arrived before
    arrived_first.feed(concern(T0, level="medium"), T0 + 3 * H)
    assert raised(arrived_first.tick(T0 + 2 * D), "exploitation-action") == []


def test_three_week_delay_scenario_is_raised_and_resolved() -> None:
    child = Subject("child", "C-1301")
    data = {
        "concern_id": "CON-1",
        "child_id": "C-1301",
        "kind": "sexual",
        "level": "high",
        "age": 13,
    }
    now = T0 + 21 * D
    child.feed(event("exploitation.concern_raised", data, T0), now)
    late = event(
        "safeguarding.action_taken",
        {
            "action_id": "A-1",
            "child_id": "C-1301",
            "action": "strategy_discussion",
            "concern_id": "CON-1",
        },
        now - H,
    )
    child.feed(late, now)
    # Any action meets the action; the high concern also owed a strategy discussion.
    assert rules_of(child.effects) == ["exploitation-action", "strategy-discussion"]
    assert sorted(r.rule for r in resolved(child.effects)) == [
        "exploitation-action",
        "strategy-discussion",
    ]


# --- missing-referral and return-interview --------------------------------------------------


def missing(at: datetime, grade: str, episode: str = "E-1", **kw: Any) -> Event:
    return event(
        "child.missing", {"episode_id": episode, "child_id": "C-1", "risk_grade": grade}, at, **kw
    )


@pytest.mark.parametrize(("grade", "window"), [("high", H), ("medium", 24 * H), ("low", 72 * H)])
def test_missing_referral_window_by_grade(grade: str, window: timedelta) -> None:
    child = Subject()
    child.feed(missing(T0, grade), T0)
    assert raised(child.tick(T0 + window - timedelta(seconds=1)), "missing-referral") == []
    assert raised(child.tick(T0 + window), "missing-referral")


def test_no_apparent_risk_has_no_referral_deadline() -> None:
    child = Subject()
    child.feed(missing(T0, "no_apparent_risk"), T0)
    assert child.state.obligations == {}


def test_missing_referral_met_by_mash_referral_for_the_episode() -> None:
    child = Subject()
    child.feed(missing(T0, "high"), T0)
    child.feed(
        referral(
            T0 + 30 * 60 * timedelta(seconds=1), agency="mash", incident_id=None, episode_id="E-1"
        ),
        T0 + H,
    )
    assert raised(child.tick(T0 + 2 * H), "missing-referral") == []


def test_return_interview_within_72_hours_of_being_found() -> None:
    found = event("child.found", {"episode_id": "E-1", "child_id": "C-1"}, T0)
    done = event(
        "return_interview.completed", {"episode_id": "E-1", "child_id": "C-1"}, T0 + 80 * H
    )
    child = Subject()
    child.feed(found, T0)
    assert raised(child.tick(T0 + 72 * H), "return-interview")
    assert [r.late_by_seconds for r in resolved(child.feed(done, T0 + 80 * H))] == [8 * 3600]


# --- offenders ------------------------------------------------------------------------------


def offender_event(type_: str, at: datetime, **data: Any) -> Event:
    return event(type_, {"offender_id": "O-1", **data}, at)


def test_initial_visit_within_14_days() -> None:
    late = Subject("offender", "O-1")
    late.feed(offender_event("offender.registered", T0, risk_level="high", area="east"), T0)
    alerts = raised(late.tick(T0 + 14 * D), "offender-initial-visit")
    assert [(a.offender_id, a.area, a.severity.value) for a in alerts] == [("O-1", "east", "high")]

    routine_first = Subject("offender", "O-1")
    routine_first.feed(offender_event("offender.registered", T0, risk_level="high"), T0)
    routine_first.feed(offender_event("offender.visited", T0 + D, visit="routine"), T0 + D)
    assert raised(routine_first.tick(T0 + 15 * D), "offender-initial-visit")


def test_routine_visits_follow_the_current_level() -> None:
    offender = Subject("offender", "O-1")
    offender.feed(offender_event("offender.registered", T0, risk_level="high"), T0)
    offender.feed(offender_event("offender.visited", T0 + 5 * D, visit="initial"), T0 + 5 * D)
    cycles = [o for o in offender.state.obligations.values() if o.rule == "offender-routine-visit"]
    assert [c.due_at for c in cycles] == [T0 + 5 * D + 91 * D]
    # Reassessed to very high 10 days later: the count restarts, 30 days from the assessment.
    reassessed = T0 + 15 * D
    offender.feed(
        offender_event("offender.risk_assessed", reassessed, risk_level="very_high"), reassessed
    )
    assert offender.state.next_due() == reassessed + 30 * D
    alerts = raised(offender.tick(reassessed + 30 * D), "offender-routine-visit")
    assert [a.severity.value for a in alerts] == ["medium"]
    visit = reassessed + 40 * D
    effects = offender.feed(offender_event("offender.visited", visit, visit="routine"), visit)
    assert [r.late_by_seconds for r in resolved(effects)] == [10 * 86400]
    assert offender.state.next_due() == visit + 30 * D


def test_sex_offender_scenario_on_time_visit_raises_nothing() -> None:
    offender = Subject("offender", "O-3")
    now = T0 + 30 * D
    offender.feed(
        event("offender.registered", {"offender_id": "O-3", "risk_level": "high"}, T0), now
    )
    offender.feed(
        event("offender.visited", {"offender_id": "O-3", "visit": "initial"}, T0 + 10 * D), now
    )
    offender.tick(now + SETTLE)
    assert offender.effects == []


# --- forensic and custody -------------------------------------------------------------------------


@pytest.mark.parametrize(("restricted", "second"), [(False, "high"), (True, "critical")])
def test_forensic_examination_alerts_at_90_and_180_days(restricted: bool, second: str) -> None:
    enquiry = Subject("enquiry", "EN-1")
    requested = {"enquiry_id": "EN-1", "child_ids": ["C-1"], "contact_restricted": restricted}
    enquiry.feed(event("forensic.examination_requested", requested, T0), T0)
    first = raised(enquiry.tick(T0 + 90 * D))
    assert [(a.severity.value, a.enquiry_id) for a in first] == [("medium", "EN-1")]
    assert [a.severity.value for a in raised(enquiry.tick(T0 + 180 * D))] == [second]


def test_forensic_completion_after_the_first_alert_resolves_it_and_stops_the_second() -> None:
    enquiry = Subject("enquiry", "EN-1")
    requested = {"enquiry_id": "EN-1", "child_ids": [], "contact_restricted": False}
    enquiry.feed(event("forensic.examination_requested", requested, T0), T0)
    enquiry.tick(T0 + 90 * D)
    done = event("forensic.examination_completed", {"enquiry_id": "EN-1"}, T0 + 100 * D)
    assert [r.late_by_seconds for r in resolved(enquiry.feed(done, T0 + 100 * D))] == [10 * 86400]
    assert enquiry.tick(T0 + 181 * D) == []


def test_charged_child_in_custody_over_four_hours_is_high() -> None:
    detained = {"custody_id": "CU-1", "child_id": "C-1", "age": 15, "charged": True}
    child = Subject()
    child.feed(event("custody.child_detained", detained, T0), T0)
    assert [a.severity.value for a in raised(child.tick(T0 + 4 * H), "child-in-custody")] == [
        "high"
    ]
    released = {
        "custody_id": "CU-1",
        "child_id": "C-1",
        "destination": "local_authority_accommodation",
    }
    assert resolved(child.feed(event("custody.child_released", released, T0 + 5 * H), T0 + 5 * H))


def test_uncharged_child_creates_no_custody_obligation() -> None:
    detained = {"custody_id": "CU-2", "child_id": "C-1", "age": 16, "charged": False}
    child = Subject()
    child.feed(event("custody.child_detained", detained, T0), T0)
    assert child.state.obligations == {}


# --- patterns ------------------------------------------------------------------------------------------


def test_third_missing_within_30_days_raises_once_in_any_arrival_order() -> None:
    times = [T0, T0 + 10 * D, T0 + 19 * D, T0 + 25 * D]
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]):
        child = Subject()
        for index in order:
            child.feed(missing(times[index], "no_apparent_risk", episode=f"E-{index}"), T0 + 40 * D)
        assert rules_of(child.effects) == ["repeat-missing"], order


def test_missing_episodes_spread_over_more_than_30_days_are_no_pattern() -> None:
    child = Subject()
    for index, offset in enumerate([0, 16, 32]):
        child.feed(missing(T0 + offset * D, "no_apparent_risk", episode=f"E-{index}"), T0 + 40 * D)
    assert rules_of(child.effects) == []


def test_second_domestic_abuse_incident_within_90_days() -> None:
    child = Subject()
    child.feed(incident(T0, incident_id="INC-1"), T0)
    child.feed(referral(T0 + H, incident_id="INC-1"), T0 + H)
    effects = child.feed(incident(T0 + 80 * D, incident_id="INC-2"), T0 + 80 * D)
    assert "repeat-domestic-abuse" in rules_of(effects)
    assert raised(effects, "repeat-domestic-abuse")[0].severity.value == "medium"


def test_incomplete_referral_raises_at_once() -> None:
    child = Subject()
    effects = child.feed(referral(T0, contents=["incident_details"]), T0)
    alert = raised(effects, "referral-incomplete")[0]
    assert alert.summary == "Referral to children's social care lacks risk assessment"
    assert alert.due_at is None
    assert (
        raised(child.feed(referral(T0, agency="school", contents=[]), T0), "referral-incomplete")
        == []
    )


# --- alert identity ------------------------------------------------------------------------------


def test_alert_ids_are_deterministic_and_distinct_per_breach() -> None:
    def run() -> list[str]:
        child = Subject()
        child.feed(incident(T0 - 10 * D, event_id="e1"), T0)
        child.feed(incident(T0 - 9 * D, incident_id="INC-2", event_id="e2"), T0)
        child.tick(T0 + SETTLE)
        return sorted(a.alert_id for a in raised(child.effects))

    first, second = run(), run()
    assert first == second
    assert len(set(first)) == len(first)
