"""The rules drawn from the guidance behind the inspection: each at its window's boundary.

Exactly at the deadline counts as met; one second after does not. Strategy discussions
and MARAC referrals count working days; referrals must be complete; children in custody
are transferred, not merely released; missing episodes are re-graded and their return
interviews shared; offenders are visited and re-assessed as the guidance says.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.stack import DEFAULT_POLICY
from schemas.events import Event
from services.risk.engine import Effect, check, evaluate
from services.risk.policy import RiskPolicy, load_policy
from services.risk.state import SubjectKind, SubjectState
from tests.fixtures.events import T0, event, incident, referral
from tests.unit.test_risk_rules import raised, resolved

POLICY = load_policy(DEFAULT_POLICY)
H = timedelta(hours=1)
D = timedelta(days=1)
S = timedelta(seconds=1)
FRIDAY = datetime.fromisoformat("2026-11-06T15:00:00+00:00")
MONDAY_SAME_TIME = datetime.fromisoformat("2026-11-09T15:00:00+00:00")
TUESDAY_SAME_TIME = datetime.fromisoformat("2026-11-10T15:00:00+00:00")


class Subject:
    """One subject's state driven through the engine under a policy."""

    def __init__(
        self, kind: SubjectKind = "child", subject_id: str = "C-1", policy: RiskPolicy = POLICY
    ) -> None:
        self.state = SubjectState(kind=kind, id=subject_id)
        self.policy = policy
        self.effects: list[Effect] = []

    def feed(self, ev: Event, now: datetime | None = None) -> list[Effect]:
        outcome = evaluate(self.state, ev, now or ev.time, self.policy)
        self.effects.extend(outcome.effects)
        return outcome.effects

    def tick(self, now: datetime) -> list[Effect]:
        effects = check(self.state, now, self.policy).effects
        self.effects.extend(effects)
        return effects

    def rules(self) -> list[str]:
        return sorted(a.rule for a in raised(self.effects) if a.rule != "risk-level")

    def due(self, key: str) -> datetime:
        return self.state.obligations[key].due_at


def policy_with(**changes: Any) -> RiskPolicy:
    """The default policy with parts replaced: `obligations__x=...` style keys."""
    raw = yaml.safe_load(DEFAULT_POLICY.read_text())
    for path, value in changes.items():
        target = raw
        *parents, last = path.split("__")
        for part in parents:
            target = target[part]
        target[last] = value
    folder = Path(__file__).parent
    path = folder / f".policy-{abs(hash(tuple(changes)))}.yaml"
    path.write_text(yaml.safe_dump(raw))
    try:
        return load_policy(path)
    finally:
        path.unlink()


def action(at: datetime, kind: str = "strategy_discussion", child: str = "C-1") -> Event:
    return event(
        "safeguarding.action_taken",
        {"action_id": f"A-{at.timestamp()}", "child_id": child, "action": kind},
        at,
    )


def dash_high(at: datetime, *, present: bool = True) -> Event:
    return incident(
        at, dash_risk="high", children=[{"child_id": "C-1", "present": present, "age": 8}]
    )


# --- strategy-discussion --------------------------------------------------------------------


def test_a_dash_high_incident_owes_a_strategy_discussion_within_one_working_day() -> None:
    child = Subject()
    child.feed(dash_high(FRIDAY))
    assert child.due("strategy-discussion|incident|INC-1") == MONDAY_SAME_TIME


@pytest.mark.parametrize(
    ("held", "breached"), [(MONDAY_SAME_TIME, False), (MONDAY_SAME_TIME + S, True)]
)
def test_strategy_discussion_at_the_boundary(held: datetime, breached: bool) -> None:
    child = Subject()
    child.feed(dash_high(FRIDAY))
    child.feed(action(held))
    child.tick(held + D)
    assert ("strategy-discussion" in child.rules()) is breached


def test_another_action_does_not_meet_a_strategy_discussion() -> None:
    child = Subject()
    child.feed(dash_high(FRIDAY))
    child.feed(action(FRIDAY + H, "home_visit"))
    child.tick(MONDAY_SAME_TIME)
    assert "strategy-discussion" in child.rules()


def test_a_discussion_before_the_trigger_does_not_meet_it() -> None:
    child = Subject()
    child.feed(action(FRIDAY - H))
    child.feed(dash_high(FRIDAY))
    child.tick(MONDAY_SAME_TIME)
    assert "strategy-discussion" in child.rules()


def test_a_welfare_check_that_found_concerns_owes_one_and_shares_the_incidents() -> None:
    child = Subject()
    checked = {"incident_id": "INC-1", "child_id": "C-1", "outcome": "concerns_identified"}
    child.feed(event("child.welfare_checked", checked, FRIDAY + 2 * H), FRIDAY + 2 * H)
    assert child.due("strategy-discussion|incident|INC-1") == MONDAY_SAME_TIME + 2 * H
    # The incident itself, DASH-high and earlier, arrives afterwards: the earlier deadline wins.
    child.feed(dash_high(FRIDAY), FRIDAY + 3 * H)
    assert child.due("strategy-discussion|incident|INC-1") == MONDAY_SAME_TIME
    assert [k for k in child.state.obligations if k.startswith("strategy")] == [
        "strategy-discussion|incident|INC-1"
    ]


def test_a_safe_welfare_check_and_a_medium_dash_owe_no_discussion() -> None:
    child = Subject()
    child.feed(incident(FRIDAY, dash_risk="medium"))
    checked = {"incident_id": "INC-1", "child_id": "C-1", "outcome": "safe"}
    child.feed(event("child.welfare_checked", checked, FRIDAY + H))
    assert not any(o.rule == "strategy-discussion" for o in child.state.obligations.values())


def concern(at: datetime, level: str, concern_id: str = "CON-1") -> Event:
    data = {"concern_id": concern_id, "child_id": "C-1", "kind": "sexual", "level": level}
    return event("exploitation.concern_raised", data, at)


def missing(at: datetime, episode: str, grade: str = "low") -> Event:
    data = {"episode_id": episode, "child_id": "C-1", "risk_grade": grade}
    return event("child.missing", data, at)


def test_a_high_concern_owes_a_discussion_and_any_action_alone_does_not_meet_it() -> None:
    child = Subject()
    child.feed(concern(FRIDAY, "high"))
    child.feed(action(FRIDAY + H, "disruption"))
    child.tick(MONDAY_SAME_TIME)
    assert child.rules() == ["strategy-discussion"]  # the action met exploitation-action


def test_missing_episodes_raise_an_open_concern_and_at_high_it_owes_a_discussion() -> None:
    child = Subject()
    child.feed(concern(T0, "low"))
    child.feed(missing(T0 + D, "E-1"))
    assert not any(o.rule == "strategy-discussion" for o in child.state.obligations.values())
    child.feed(missing(FRIDAY, "E-2"))  # low -> medium -> high, at this episode
    assert child.due("strategy-discussion|concern|CON-1") == MONDAY_SAME_TIME
    assert child.state.obligations["strategy-discussion|concern|CON-1"].area == "north"


def test_the_raised_level_is_the_same_whatever_order_the_events_arrive_in() -> None:
    first, second = Subject(), Subject()
    events = [concern(T0, "medium"), missing(FRIDAY, "E-1")]
    for ev in events:
        first.feed(ev, FRIDAY + D)
    for ev in reversed(events):
        second.feed(ev, FRIDAY + D)
    assert first.due("strategy-discussion|concern|CON-1") == MONDAY_SAME_TIME
    assert second.due("strategy-discussion|concern|CON-1") == MONDAY_SAME_TIME


def test_an_episode_after_the_concern_closed_raises_nothing() -> None:
    child = Subject()
    child.feed(concern(T0, "medium"))
    child.feed(missing(T0 + POLICY.scoring.concern_open_for + S, "E-1"))
    assert not any(o.rule == "strategy-discussion" for o in child.state.obligations.values())


# --- marac-referral ---------------------------------------------------------------------------


def marac(at: datetime) -> Event:
    return referral(at, agency="marac", contents=["risk_assessment"])


@pytest.mark.parametrize(
    ("made", "breached"), [(TUESDAY_SAME_TIME, False), (TUESDAY_SAME_TIME + S, True)]
)
def test_marac_referral_within_two_working_days(made: datetime, breached: bool) -> None:
    child = Subject()
    child.feed(dash_high(FRIDAY, present=False))
    assert child.due("marac-referral|INC-1") == TUESDAY_SAME_TIME
    child.feed(marac(made))
    child.tick(made + D)
    assert ("marac-referral" in child.rules()) is breached


def test_only_a_dash_high_incident_owes_a_marac_referral() -> None:
    child = Subject()
    child.feed(incident(FRIDAY, dash_risk="medium"))
    assert "marac-referral|INC-1" not in child.state.obligations


# --- referral completeness and decisions --------------------------------------------------


def supplement(at: datetime, referral_id: str, contents: list[str]) -> Event:
    data = {"referral_id": referral_id, "child_id": "C-1", "contents": contents}
    return event("referral.supplemented", data, at)


def test_an_incomplete_referral_raises_at_once_and_does_not_meet_the_obligation() -> None:
    child = Subject()
    child.feed(incident(T0, category="neglect"))
    effects = child.feed(referral(T0 + H, contents=["incident_details"]))
    assert [a.rule for a in raised(effects)] == ["referral-incomplete"]
    assert raised(effects)[0].area == "north"
    assert child.state.obligations["social-care-referral|INC-1"].fulfilled_at is None
    child.tick(T0 + 24 * H)
    assert "social-care-referral" in child.rules()


@pytest.mark.parametrize(("added", "breached"), [(T0 + 24 * H, False), (T0 + 24 * H + S, True)])
def test_a_supplement_naming_the_referral_completes_it_at_its_time(
    added: datetime, breached: bool
) -> None:
    child = Subject()
    child.feed(incident(T0, category="neglect"))
    child.feed(referral(T0 + H, contents=["incident_details"]))
    (referral_id,) = child.state.referrals
    child.feed(supplement(added, referral_id, ["risk_assessment"]))
    child.tick(added + D)
    obligation = child.state.obligations["social-care-referral|INC-1"]
    assert obligation.fulfilled_at == added
    assert ("social-care-referral" in child.rules()) is breached


def test_a_supplement_arriving_before_its_referral_still_completes_it() -> None:
    child = Subject()
    child.feed(incident(T0, category="neglect"), T0 + 5 * H)
    child.feed(supplement(T0 + 3 * H, "R-X", ["risk_assessment"]), T0 + 5 * H)
    shared = event(
        "referral.shared",
        {
            "referral_id": "R-X",
            "child_id": "C-1",
            "agency": "mash",
            "incident_id": "INC-1",
            "contents": ["incident_details"],
        },
        T0 + 2 * H,
    )
    child.feed(shared, T0 + 5 * H)
    assert child.state.obligations["social-care-referral|INC-1"].fulfilled_at == T0 + 3 * H
    assert child.rules() == ["referral-incomplete"]  # sent without it, all the same


def test_required_contents_per_category_are_policy() -> None:
    strict = policy_with(
        **{
            "patterns__referral-incomplete__required-contents": {
                "default": ["incident_details", "risk_assessment"],
                "domestic_abuse": ["incident_details", "risk_assessment", "voice_of_child"],
            }
        }
    )
    child = Subject(policy=strict)
    child.feed(incident(T0))
    child.feed(referral(T0 + H))
    assert "referral-incomplete" in child.rules()
    assert child.state.obligations["social-care-referral|INC-1"].fulfilled_at is None
    neglect = Subject(policy=strict)
    neglect.feed(incident(T0, category="neglect"))
    neglect.feed(referral(T0 + H))
    assert neglect.state.obligations["social-care-referral|INC-1"].fulfilled_at == T0 + H


def test_a_category_list_without_the_defaults_is_refused() -> None:
    with pytest.raises(ValueError, match="must include the default"):
        policy_with(
            **{
                "patterns__referral-incomplete__required-contents": {
                    "default": ["incident_details", "risk_assessment"],
                    "neglect": ["incident_details"],
                }
            }
        )


def decided(at: datetime, referral_id: str) -> Event:
    data = {"referral_id": referral_id, "child_id": "C-1", "decision": "early_help"}
    return event("referral.decided", data, at)


@pytest.mark.parametrize(
    ("made", "breached"), [(MONDAY_SAME_TIME, False), (MONDAY_SAME_TIME + S, True)]
)
def test_referral_decision_within_one_working_day(made: datetime, breached: bool) -> None:
    child = Subject()
    child.feed(referral(FRIDAY, incident_id=None))
    (referral_id,) = child.state.referrals
    assert child.due(f"referral-decision|{referral_id}") == MONDAY_SAME_TIME
    child.feed(decided(made, referral_id))
    child.tick(made + D)
    assert ("referral-decision" in child.rules()) is breached


def test_a_referral_to_the_school_owes_no_decision() -> None:
    child = Subject()
    child.feed(referral(FRIDAY, agency="school"))
    assert not any(o.rule == "referral-decision" for o in child.state.obligations.values())


# --- child-in-custody -------------------------------------------------------------------------


def detained(at: datetime, custody: str = "CU-1") -> Event:
    data = {"custody_id": custody, "child_id": "C-1", "age": 15, "charged": True}
    return event("custody.child_detained", data, at)


def released(at: datetime, destination: str, custody: str = "CU-1") -> Event:
    data = {"custody_id": custody, "child_id": "C-1", "destination": destination}
    return event("custody.child_released", data, at)


EVENING = datetime.fromisoformat("2026-11-02T18:00:00+00:00")
MIDNIGHT = datetime.fromisoformat("2026-11-03T00:00:00+00:00")


def test_custody_owes_a_transfer_within_the_window_and_before_the_night() -> None:
    child = Subject()
    child.feed(detained(EVENING))
    assert child.due("child-in-custody|CU-1") == EVENING + 4 * H
    assert child.due("child-in-custody|CU-1|overnight") == MIDNIGHT
    late = Subject()
    late.feed(detained(MIDNIGHT - H))  # the window ends after midnight: both then
    assert late.due("child-in-custody|CU-1|overnight") == MIDNIGHT + 3 * H


@pytest.mark.parametrize(
    ("moved", "breached"), [(EVENING + 4 * H, False), (EVENING + 4 * H + S, True)]
)
def test_transfer_at_the_windows_boundary(moved: datetime, breached: bool) -> None:
    child = Subject()
    child.feed(detained(EVENING))
    child.feed(released(moved, "local_authority_accommodation"))
    child.tick(moved + D)
    severities = [a.severity.value for a in raised(child.effects, "child-in-custody")]
    assert severities == (["high"] if breached else [])


def test_held_overnight_is_critical_and_a_release_home_is_no_transfer() -> None:
    child = Subject()
    child.feed(detained(EVENING))
    child.feed(released(EVENING + H, "home"))
    child.tick(MIDNIGHT + S)
    assert sorted(a.severity.value for a in raised(child.effects, "child-in-custody")) == [
        "critical",
        "high",
    ]


def test_a_refusal_is_raised_at_once_for_the_strategic_lead_and_counted() -> None:
    child = Subject()
    child.feed(detained(EVENING))
    request = {"custody_id": "CU-1", "child_id": "C-1"}
    child.feed(event("custody.accommodation_requested", request, EVENING + H))
    refusal = {**request, "reason": "no_placement_available"}
    effects = child.feed(event("custody.accommodation_refused", refusal, EVENING + 2 * H))
    (alert,) = raised(effects)
    assert (alert.rule, alert.severity.value, alert.start_level, alert.area) == (
        "custody-accommodation-refused",
        "critical",
        3,
        "north",
    )
    again = child.feed(event("custody.accommodation_refused", refusal, EVENING + 3 * H))
    assert raised(again) == []  # once per custody
    for key in ("child-in-custody|CU-1", "child-in-custody|CU-1|overnight"):
        obligation = child.state.obligations[key]
        assert obligation.transfer_requested_at == EVENING + H
        assert obligation.transfer_refused_at == EVENING + 2 * H


# --- missing children -----------------------------------------------------------------------


def regraded(at: datetime, grade: str, episode: str = "E-1") -> Event:
    data = {"episode_id": episode, "child_id": "C-1", "risk_grade": grade}
    return event("child.missing_regraded", data, at)


@pytest.mark.parametrize(("referred", "breached"), [(T0 + 3 * H, False), (T0 + 3 * H + S, True)])
def test_a_regrading_takes_the_stricter_window_from_the_regrading(
    referred: datetime, breached: bool
) -> None:
    child = Subject()
    child.feed(missing(T0, "E-1", "medium"))
    child.feed(regraded(T0 + 2 * H, "high"))
    assert child.due("missing-referral|E-1") == T0 + 3 * H
    child.feed(referral(referred, incident_id=None, episode_id="E-1"))
    child.tick(referred + D)
    assert ("missing-referral" in child.rules()) is breached


def test_a_regrading_to_a_milder_grade_keeps_the_window() -> None:
    child = Subject()
    child.feed(missing(T0, "E-1", "high"))
    child.feed(regraded(T0 + 10 * 60 * S, "low"))
    assert child.due("missing-referral|E-1") == T0 + H


def test_a_regrading_from_no_apparent_risk_opens_the_obligation() -> None:
    child = Subject()
    child.feed(missing(T0, "E-1", "no_apparent_risk"))
    assert "missing-referral|E-1" not in child.state.obligations
    child.feed(regraded(T0 + 5 * H, "medium"))
    assert child.due("missing-referral|E-1") == T0 + 29 * H


@pytest.mark.parametrize(("shared", "breached"), [(T0 + 72 * H, False), (T0 + 72 * H + S, True)])
def test_return_interview_findings_shared_within_the_window(
    shared: datetime, breached: bool
) -> None:
    child = Subject()
    interview = {"episode_id": "E-1", "child_id": "C-1"}
    child.feed(event("return_interview.completed", interview, T0))
    child.feed(event("return_interview.shared", interview, shared))
    child.tick(shared + D)
    assert ("return-interview-shared" in child.rules()) is breached


# --- offender management ------------------------------------------------------------------------


def offender_event(type_: str, at: datetime, **data: Any) -> Event:
    return event(type_, {"offender_id": "O-1", **data}, at)


def registered(at: datetime, level: str = "high", **data: Any) -> Event:
    return offender_event("offender.registered", at, risk_level=level, **data)


def visited(at: datetime, visit: str = "routine", **data: Any) -> Event:
    return offender_event("offender.visited", at, visit=visit, **data)


def assessed(at: datetime, level: str = "high", **data: Any) -> Event:
    return offender_event("offender.risk_assessed", at, risk_level=level, **data)


def test_a_reregistration_owes_a_new_initial_visit() -> None:
    offender = Subject("offender", "O-1")
    offender.feed(registered(T0))
    offender.feed(visited(T0 + D, "initial"))
    offender.feed(visited(T0 + 80 * D))
    offender.feed(registered(T0 + 100 * D))
    offender.tick(T0 + 114 * D + S)
    assert offender.rules() == ["offender-initial-visit"]
    # The first registration's visit came before the second: it does not meet it.
    offender.feed(visited(T0 + 120 * D, "initial"))
    assert [r.rule for r in resolved(offender.effects)] == ["offender-initial-visit"]


@pytest.mark.parametrize(("again", "breached"), [(T0 + 182 * D, False), (T0 + 182 * D + S, True)])
def test_arms_reassessment_is_due_by_the_level(again: datetime, breached: bool) -> None:
    offender = Subject("offender", "O-1")
    offender.feed(registered(T0, "high"))
    offender.feed(visited(T0 + D, "initial"))
    offender.feed(visited(T0 + 80 * D))
    offender.feed(visited(T0 + 160 * D))
    offender.feed(assessed(again, "high"))
    offender.tick(again + D)
    assert ("offender-risk-assessment" in offender.rules()) is breached


def test_a_no_access_visit_is_no_visit() -> None:
    offender = Subject("offender", "O-1")
    offender.feed(registered(T0, "very_high"))
    offender.feed(visited(T0 + D, "initial", outcome="no_access"))
    offender.tick(T0 + 14 * D + S)
    assert offender.rules() == ["offender-initial-visit"]
    assert offender.state.visits == []
    assert [r.type for r in offender.state.recent] == ["offender.registered", "offender.visited"]


def test_reactive_management_owes_no_routine_visits() -> None:
    offender = Subject("offender", "O-1")
    offender.feed(registered(T0, "low", management="reactive"))
    offender.feed(visited(T0 + D, "initial"))
    offender.feed(assessed(T0 + 300 * D, "low", management="reactive"))
    offender.tick(T0 + 800 * D)
    assert "offender-routine-visit" not in offender.rules()
    # Back under active management: the cadence resumes from the next visit.
    active = Subject("offender", "O-1")
    active.feed(registered(T0, "low"))
    active.feed(visited(T0 + D, "initial"))
    active.tick(T0 + 367 * D)
    assert "offender-routine-visit" in active.rules()


def test_an_assessment_before_the_first_visit_opens_no_routine_cycle() -> None:
    offender = Subject("offender", "O-1")
    offender.feed(registered(T0, "very_high"))
    offender.feed(assessed(T0 + D, "very_high"))
    assert not any(o.rule == "offender-routine-visit" for o in offender.state.obligations.values())
    offender.tick(T0 + 40 * D)
    assert offender.rules() == ["offender-initial-visit"]
    offender.feed(visited(T0 + 41 * D, "initial"))
    cycles = [o for o in offender.state.obligations.values() if o.rule == "offender-routine-visit"]
    assert [o.due_at for o in cycles] == [T0 + 71 * D]


# --- areas ---------------------------------------------------------------------------------------


def test_pattern_and_risk_level_alerts_carry_the_area_of_their_events() -> None:
    child = Subject()
    for n in range(3):
        child.feed(
            event(
                "child.missing",
                {"episode_id": f"E-{n}", "child_id": "C-1", "risk_grade": "high"},
                T0 + n * D,
                area="south",
            )
        )
    alerts = raised(child.effects)
    assert {(a.rule, a.area) for a in alerts} >= {("repeat-missing", "south")}
    assert all(a.area == "south" for a in alerts)


def test_a_referral_is_judged_on_what_it_held_itself_whatever_arrived_first() -> None:
    child = Subject()
    child.feed(supplement(T0 + H, "R-Y", ["risk_assessment"]), T0 + 2 * H)
    shared = event(
        "referral.shared",
        {
            "referral_id": "R-Y",
            "child_id": "C-1",
            "agency": "childrens_social_care",
            "contents": ["incident_details"],
        },
        T0 + H,
    )
    child.feed(shared, T0 + 2 * H)
    assert child.rules() == ["referral-incomplete"]
