"""The invariant: backtesting the shared scenarios' events under the default policy raises
exactly the alerts the scenarios expect, as the running services do (tests/e2e)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devtools.stack import DEFAULT_POLICY
from services.cli.backtest import ARRIVAL_FIELD, backtest
from services.risk.policy import load_policy
from tests.e2e.test_scenarios import IGNORED_RULES, offset, scenario_files

# Two starts, a school-day morning and a Sunday night, so no scenario passes by the luck
# of the calendar (school notifications fall due at 09:00 on the next school day).
STARTS = [datetime(2026, 11, 18, 10, 30, tzinfo=UTC), datetime(2026, 11, 22, 23, 50, tzinfo=UTC)]


def recorded(path: Path, start: datetime) -> list[str]:
    """The scenario as `safeguard export` would have written it had the e2e replay run at
    `start`: every event reaches the topic then, in listed order, with `time` start + at."""
    lines = []
    for step in json.loads(path.read_text())["events"]:
        event = {"specversion": "1.0", "datacontenttype": "application/json", **step["event"]}
        event["time"] = (start + offset(step["at"])).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(json.dumps({**event, ARRIVAL_FIELD: start.isoformat()}))
    return lines


@pytest.mark.parametrize("start", STARTS, ids=lambda s: s.strftime("%a"))
@pytest.mark.parametrize("path", scenario_files(), ids=lambda p: p.stem)
def test_backtest_raises_what_the_scenario_expects(path: Path, start: datetime) -> None:
    scenario = json.loads(path.read_text())
    result = backtest(recorded(path, start), load_policy(DEFAULT_POLICY))
    assert not result.rejected
    seen = Counter(
        (alert.rule, alert.subject_id, "resolved" if alert.resolved else "open")
        for alert in result.alerts.values()
        if alert.rule not in IGNORED_RULES
    )
    expected = Counter((e["rule"], e["subject"], e["state"]) for e in scenario["expect"])
    assert seen == expected, f"unexpected: {seen - expected}; missing: {expected - seen}"
