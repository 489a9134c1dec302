"""Risk level per child (docs/contract.md section 4): weights, factors, floor, severity bump, alerts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from services.risk.engine import check, evaluate
from services.risk.policy import RiskLevel, load_policy
from services.risk.records import Raised as AlertRaised
from services.risk.scoring import score
from services.risk.state import SubjectState
from tests.fixtures.events import T0, event, incident

POLICY = load_policy(Path(__file__).resolve().parents[2] / "policy" / "default.yaml")
D = timedelta(days=1)


def missing(at_days: int, grade: str, episode: str) -> object:
    return event(
        "child.missing",
        {"episode_id": episode, "child_id": "C-1", "risk_grade": grade},
        T0 + at_days * D,
    )


def test_score_lists_every_factor_and_sums_them() -> None:
    state = SubjectState(kind="child", id="C-1")
    evaluate(state, incident(T0, category="other"), T0, POLICY)  # present, other: 5
    evaluate(state, missing(1, "medium", "E-1"), T0 + D, POLICY)  # 10
    evaluate(state, missing(1, "high", "E-2"), T0 + D, POLICY)  # 20
    result = score(state, T0 + D, POLICY.scoring)
    assert result.points == 35
    assert result.level is RiskLevel.MEDIUM
    assert [(f.signal, f.points) for f in result.factors] == [
        ("other incident (present)", 5),
        ("missing episode (medium)", 10),
        ("missing episode (high)", 20),
    ]


def test_signals_older_than_the_lookback_do_not_count() -> None:
    state = SubjectState(kind="child", id="C-1")
    evaluate(state, missing(0, "high", "E-1"), T0, POLICY)
    assert score(state, T0 + 91 * D, POLICY.scoring).points == 0


def test_breaches_add_points() -> None:
    state = SubjectState(kind="child", id="C-1")
    evaluate(
        state,
        incident(T0, category="neglect", children=[{"child_id": "C-1", "present": False}]),
        T0,
        POLICY,
    )
    before = score(state, T0 + 2 * D, POLICY.scoring).points
    check(state, T0 + 2 * D, POLICY)
    after = score(state, T0 + 2 * D, POLICY.scoring)
    assert after.points == before + POLICY.scoring.weights.breach
    assert "breached obligation (social-care-referral)" in [f.signal for f in after.factors]


def test_child_under_13_with_an_exploitation_concern_is_never_below_medium() -> None:
    state = SubjectState(kind="child", id="C-1")
    concern = {
        "concern_id": "CON-1",
        "child_id": "C-1",
        "kind": "criminal",
        "level": "low",
        "age": 12,
    }
    evaluate(state, event("exploitation.concern_raised", concern, T0), T0, POLICY)
    result = score(state, T0, POLICY.scoring)
    assert result.points == 10
    assert result.level is RiskLevel.MEDIUM
    assert result.factors[-1].signal.startswith("under 13 with an exploitation concern")

    older = SubjectState(kind="child", id="C-2")
    evaluate(
        older,
        event("exploitation.concern_raised", {**concern, "child_id": "C-2", "age": 13}, T0),
        T0,
        POLICY,
    )
    assert score(older, T0, POLICY.scoring).level is RiskLevel.LOW


def test_rise_to_high_raises_a_risk_level_alert_once_and_bumps_obligation_severity() -> None:
    state = SubjectState(kind="child", id="C-1")
    concern = {"concern_id": "CON-1", "child_id": "C-1", "kind": "sexual", "level": "high"}
    effects = evaluate(state, event("exploitation.concern_raised", concern, T0), T0, POLICY).effects
    assert effects == []  # 30 points: medium
    effects = evaluate(state, missing(0, "high", "E-1"), T0, POLICY).effects  # 50: high
    levels = [e for e in effects if isinstance(e, AlertRaised) and e.rule == "risk-level"]
    assert [(a.severity.value, a.child_id) for a in levels] == [("high", "C-1")]
    assert "50 points" in levels[0].summary
    assert state.level is RiskLevel.HIGH
    # Staying high raises no second risk-level alert.
    quiet = incident(T0, category="other", children=[{"child_id": "C-1", "present": False}])
    assert evaluate(state, quiet, T0, POLICY).effects == []
    # The missing-referral deadline (1 h, severity high) is raised one step up.
    breaches = check(state, T0 + timedelta(hours=1), POLICY).effects
    assert next((a.rule, a.severity.value) for a in breaches if isinstance(a, AlertRaised)) == (
        "missing-referral",
        "critical",
    )
    # Two breaches and another episode later: 75 points, a rise to critical is raised.
    later = evaluate(state, missing(1, "low", "E-2"), T0 + D, POLICY).effects
    rises = [e for e in later if isinstance(e, AlertRaised) and e.rule == "risk-level"]
    assert [a.severity.value for a in rises] == ["critical"]
