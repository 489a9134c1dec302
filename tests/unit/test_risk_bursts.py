"""Repeat patterns raise once per burst, and bursts are a function of the set of events.

Bursts are cut from the sorted occurrence times by fixed periods of `within`
(services/risk/patterns.py); the engine, fed the same events in any order, raises the
same alerts with the same ids.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.stack import DEFAULT_POLICY
from services.risk.engine import evaluate
from services.risk.patterns import Occurrence, bursts, period
from services.risk.policy import load_policy
from services.risk.records import Raised
from services.risk.state import SubjectState
from tests.fixtures.events import event

POLICY = load_policy(DEFAULT_POLICY)
PATTERN = POLICY.patterns.repeat_missing  # 3 within 30 days
START = datetime(2026, 1, 5, tzinfo=UTC)


def episodes(days: list[int]) -> list[object]:
    return [
        event(
            "child.missing",
            {"episode_id": f"E-{day}", "child_id": "C-1", "risk_grade": "low"},
            START + timedelta(days=day),
            event_id=f"m-{day}",
        )
        for day in days
    ]


def replay(days: list[int]) -> set[str]:
    """Feed the episodes in the order given, all arriving after the last; return alert ids."""
    state = SubjectState(kind="child", id="C-1")
    now = START + timedelta(days=max(days) + 1)
    ids: set[str] = set()
    for ev in episodes(days):
        for effect in evaluate(state, ev, now, POLICY).effects:  # type: ignore[arg-type]
            if isinstance(effect, Raised) and effect.rule == "repeat-missing":
                ids.add(effect.alert_id)
    return ids


def test_the_issues_example_raises_the_same_alerts_in_both_orders() -> None:
    in_time = replay([0, 10, 20, 35, 45, 55])
    shuffled = replay([10, 20, 35, 0, 45, 55])
    assert in_time == shuffled
    starts = bursts(
        [Occurrence(START + timedelta(days=d), f"E-{d}") for d in (0, 10, 20, 35, 45, 55)],
        PATTERN,
    )
    assert len(in_time) == len(starts) >= 1


def test_one_burst_raises_once() -> None:
    assert len(replay([0, 1, 2, 3, 4])) == 1  # all completions in a few days: one period


def test_completions_in_different_periods_are_different_bursts() -> None:
    base = period(START, PATTERN)
    first = (base - START).days + 1  # a day into START's period
    days = [first, first + 1, first + 2, first + 31, first + 32, first + 33]
    assert len(replay(days)) == 2


@settings(max_examples=150, deadline=None)
@given(
    days=st.lists(st.integers(min_value=0, max_value=200), min_size=1, max_size=9, unique=True),
    data=st.data(),
)
def test_alerts_are_a_function_of_the_set_of_events_not_of_their_order(
    days: list[int], data: st.DataObject
) -> None:
    order = data.draw(st.permutations(days))
    expected = bursts([Occurrence(START + timedelta(days=d), f"E-{d}") for d in days], PATTERN)
    assert replay(list(order)) == replay(sorted(days))
    assert len(replay(list(order))) == len(expected)
