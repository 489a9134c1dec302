"""The backtest's replay: a simulated clock, deadlines checked as they fall due, and the
figures per rule. Events are lines as `safeguard export` writes them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devtools.stack import DEFAULT_POLICY
from services.cli.backtest import ARRIVAL_FIELD, BadArrival, backtest
from services.risk.policy import RiskPolicy, load_policy
from tests.fixtures.events import envelope

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
H = timedelta(hours=1)
RULE = "exploitation-action"


@pytest.fixture(scope="module")
def policy() -> RiskPolicy:
    return load_policy(DEFAULT_POLICY)


def concern(
    at: datetime, concern_id: str = "CON-1", child: str = "C-1", **kw: Any
) -> dict[str, Any]:
    data = {
        "concern_id": concern_id,
        "child_id": child,
        "kind": "criminal",
        "level": "medium",
        "age": 15,
    }
    return envelope("exploitation.concern_raised", data, at, **kw)


def action(
    at: datetime, concern_id: str = "CON-1", child: str = "C-1", **kw: Any
) -> dict[str, Any]:
    data = {
        "action_id": f"A-{concern_id}-{at:%H%M}",
        "child_id": child,
        "action": "strategy_discussion",
        "concern_id": concern_id,
    }
    return envelope("safeguarding.action_taken", data, at, **kw)


def line(event: dict[str, Any], arrival: datetime | None = None) -> str:
    return json.dumps(event if arrival is None else {**event, ARRIVAL_FIELD: arrival.isoformat()})


def test_a_deadline_between_two_events_is_raised_when_it_falls_due(policy: RiskPolicy) -> None:
    # Due 24 h after T0; the next event (another child's) arrives three days later.
    result = backtest(
        [line(concern(T0), T0), line(concern(T0 + 72 * H, "CON-2", "C-2"), T0 + 72 * H)], policy
    )
    [alert] = [a for a in result.alerts.values() if a.subject_id == "C-1"]
    assert alert.rule == RULE
    assert alert.raised_at == T0 + 24 * H
    assert not alert.resolved
    figures = result.rules[RULE]
    assert (figures.alerts, figures.breaches, figures.due, figures.overdue) == (1, 1, 1, 1)
    assert figures.not_yet_due == 1  # C-2's, due after the end


def test_met_on_time_raises_nothing_and_counts_as_on_time(policy: RiskPolicy) -> None:
    result = backtest(
        [line(concern(T0), T0), line(action(T0 + 3 * H), T0 + 3 * H)], policy, until=T0 + 48 * H
    )
    assert not result.alerts
    figures = result.rules[RULE]
    assert (figures.due, figures.on_time, figures.late, figures.overdue) == (1, 1, 0, 0)
    assert figures.on_time_percent == 100.0


def test_met_late_is_a_breach_resolved_late(policy: RiskPolicy) -> None:
    result = backtest([line(concern(T0), T0), line(action(T0 + 30 * H), T0 + 30 * H)], policy)
    [alert] = result.alerts.values()
    assert alert.resolved
    assert alert.raised_at == T0 + 24 * H
    figures = result.rules[RULE]
    assert (figures.breaches, figures.resolved_late, figures.late, figures.on_time) == (1, 1, 1, 0)
    assert figures.on_time_percent == 0.0


def test_a_late_report_arrives_when_recorded_not_when_it_happened(policy: RiskPolicy) -> None:
    # The action happened on time but reached the topic after the deadline: the service
    # had raised the alert by then, and resolves it although the action was on time.
    result = backtest([line(concern(T0), T0), line(action(T0 + 2 * H), T0 + 30 * H)], policy)
    [alert] = result.alerts.values()
    assert alert.raised_at == T0 + 24 * H
    assert result.rules[RULE].on_time == 1


def test_without_a_recorded_arrival_an_event_arrives_at_its_time(policy: RiskPolicy) -> None:
    # Same two events, no `recordedat`: the action arrives at its own (punctual) time.
    result = backtest([line(concern(T0)), line(action(T0 + 2 * H))], policy)
    assert not result.alerts
    assert result.start == T0


def test_the_clock_never_runs_backwards(policy: RiskPolicy) -> None:
    # A backdated event after a later one is processed at the clock, like a late report.
    result = backtest([line(concern(T0 + 48 * H, "CON-2", "C-2")), line(concern(T0))], policy)
    [alert] = [a for a in result.alerts.values() if a.subject_id == "C-1"]
    assert alert.raised_at == T0 + 48 * H + policy.settle  # overdue on arrival: settles first


def test_until_runs_the_clock_on(policy: RiskPolicy) -> None:
    lines = [line(concern(T0), T0)]
    assert not backtest(lines, policy).alerts
    assert len(backtest(lines, policy, until=T0 + 25 * H).alerts) == 1


def test_duplicates_and_rejects_are_counted_not_applied(policy: RiskPolicy) -> None:
    first = concern(T0, event_id="dup-1")
    result = backtest(
        [
            line(first, T0),
            line(first, T0 + H),
            "{not json",
            json.dumps({"specversion": "1.0"}),
            # More than five minutes ahead of its arrival: the service dead-letters it.
            line(concern(T0 + 3 * H, "CON-3", "C-3"), T0 + 2 * H),
            "",
        ],
        policy,
    )
    assert result.events == 2
    assert result.duplicates == 1
    assert result.rejected == {"invalid_json": 1, "invalid_event": 2}


def test_a_bad_arrival_is_an_error() -> None:
    with pytest.raises(BadArrival):
        backtest(
            [json.dumps({**concern(T0), ARRIVAL_FIELD: "yesterday"})], load_policy(DEFAULT_POLICY)
        )


def test_alerts_per_week_over_the_span(policy: RiskPolicy) -> None:
    lines = [
        line(concern(T0 + day * 24 * H, f"CON-{day}", f"C-{day}"), T0 + day * 24 * H)
        for day in range(14)
    ]
    result = backtest(lines, policy, until=T0 + 14 * 24 * H)
    assert result.weeks == 2.0
    assert result.rules[RULE].alerts == 14
    assert result.per_week(result.rules[RULE].alerts) == 7.0
    assert result.to_json()["rules"][RULE]["alerts_per_week"] == 7.0


def test_a_longer_window_raises_fewer_alerts(policy: RiskPolicy) -> None:
    candidate = policy.model_copy(
        update={
            "obligations": policy.obligations.model_copy(
                update={
                    "exploitation_action": policy.obligations.exploitation_action.model_copy(
                        update={"window": 48 * H}
                    )
                }
            )
        }
    )
    lines = [line(concern(T0), T0), line(action(T0 + 30 * H), T0 + 30 * H)]
    assert backtest(lines, policy).rules[RULE].breaches == 1
    assert backtest(lines, candidate).rules[RULE].breaches == 0
    assert backtest(lines, candidate).rules[RULE].on_time == 1


def test_obligations_aged_out_of_the_state_still_count(policy: RiskPolicy) -> None:
    short = policy.model_copy(update={"retention": timedelta(days=2)})
    lines = [
        line(concern(T0), T0),
        line(action(T0 + 3 * H), T0 + 3 * H),
        line(concern(T0 + 240 * H, "CON-2"), T0 + 240 * H),
    ]
    result = backtest(lines, short, until=T0 + 241 * H)
    assert result.rules[RULE].on_time == 1
    assert result.rules[RULE].not_yet_due == 1


def test_the_arrival_may_stand_anywhere_in_the_line(policy: RiskPolicy) -> None:
    event = concern(T0)
    first = json.dumps({ARRIVAL_FIELD: (T0 + 30 * H).isoformat(), **event}, indent=1)
    # As export writes it: compact, the arrival last (read without a JSON round trip).
    last = json.dumps({**event, ARRIVAL_FIELD: (T0 + 30 * H).isoformat()}, separators=(",", ":"))
    assert first.replace("\n", " ") != last
    for text in (first.replace("\n", " "), last):
        result = backtest([text], policy)
        assert result.start == T0 + 30 * H
        assert result.rejected == {}
        assert result.rules[RULE].breaches == 1
