"""Replays every scenario file in tests/scenarios against the running
services and compares the alerts the risk service published with the file's expectations."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devtools.stack import REPO, DevStack
from tests.fixtures.broker import read_all
from tests.fixtures.stack import Client

pytestmark = pytest.mark.e2e

SCENARIOS = REPO / "tests" / "scenarios"
SUBJECT_FIELDS = ("child_id", "offender_id", "enquiry_id")
# Risk-level alerts depend on policy weights, which the scenarios do not fix.
IGNORED_RULES = {"risk-level"}
_OFFSET = re.compile(r"^(-)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def scenario_files() -> list[Path]:
    files = sorted(SCENARIOS.glob("*.json"))
    assert files, f"no scenarios found in {SCENARIOS}"
    return files


def offset(text: str) -> timedelta:
    match = _OFFSET.match(text)
    assert match, f"bad offset {text!r}"
    assert text.strip("-"), f"empty offset {text!r}"
    sign, days, hours, minutes, seconds = match.groups()
    delta = timedelta(
        days=int(days or 0),
        hours=int(hours or 0),
        minutes=int(minutes or 0),
        seconds=int(seconds or 0),
    )
    return -delta if sign else delta


def subjects_of(event: dict[str, Any]) -> set[str]:
    data = event.get("data", {})
    found = {data[f] for f in SUBJECT_FIELDS if f in data}
    found.update(child["child_id"] for child in data.get("children", []))
    return found


def alert_states(stack: DevStack) -> dict[str, dict[str, Any]]:
    """Every alert on the alerts topic: its raised data and whether it was resolved."""
    alerts: dict[str, dict[str, Any]] = {}
    for record in read_all(stack.bootstrap, stack.topics.alerts):
        message = json.loads(record.value)
        data = message["data"]
        entry = alerts.setdefault(data["alert_id"], {"resolved": False, "raised": None})
        if message["type"] == "alert.raised":
            entry["raised"] = data
        else:
            entry["resolved"] = True
    return alerts


def observed(stack: DevStack, subjects: set[str]) -> Counter[tuple[str, str, str]]:
    seen: Counter[tuple[str, str, str]] = Counter()
    for entry in alert_states(stack).values():
        raised = entry["raised"]
        if raised is None or raised["rule"] in IGNORED_RULES:
            continue
        subject = next(raised[f] for f in SUBJECT_FIELDS if raised.get(f))
        if subject in subjects:
            seen[(raised["rule"], subject, "resolved" if entry["resolved"] else "open")] += 1
    return seen


@dataclass(frozen=True)
class Replayed:
    """Each scenario's subjects, and when the last event was accepted (monotonic)."""

    subjects: dict[str, set[str]]
    at: float


@pytest.fixture(scope="module")
def replayed(stack: DevStack) -> Replayed:
    """Send every scenario's events, in listed order, each relative to its own start."""
    client = Client()
    subjects: dict[str, set[str]] = {}
    for path in scenario_files():
        scenario = json.loads(path.read_text())
        start = datetime.now(UTC)
        subjects[path.stem] = set()
        for step in scenario["events"]:
            event = {"specversion": "1.0", "datacontenttype": "application/json", **step["event"]}
            event["time"] = (start + offset(step["at"])).strftime("%Y-%m-%dT%H:%M:%SZ")
            subjects[path.stem] |= subjects_of(event)
            code, body, _ = client.request("POST", f"{stack.url('ingest')}/v1/events", event)
            assert code == 202, (path.stem, step, body)
    return Replayed(subjects, time.monotonic())


# Longer than the risk service's settle time plus a check interval after the replay, so
# a false alarm from any scenario would have been published by then (the scenarios were
# replayed together: the first exhaustive one waits, the rest find the time passed).
QUIET = 8.0


@pytest.mark.parametrize("path", scenario_files(), ids=lambda p: p.stem)
def test_scenario(stack: DevStack, replayed: Replayed, path: Path) -> None:
    scenario = json.loads(path.read_text())
    subjects = replayed.subjects[path.stem]
    expected = Counter((e["rule"], e["subject"], e["state"]) for e in scenario["expect"])
    started = time.monotonic()
    seen = observed(stack, subjects)
    while (seen & expected) != expected and time.monotonic() < started + 30:
        time.sleep(0.5)
        seen = observed(stack, subjects)
    assert (seen & expected) == expected, f"missing: {expected - seen}; seen: {seen}"
    if scenario.get("exhaustive"):
        time.sleep(max(0.0, replayed.at + QUIET - time.monotonic()))
        seen = observed(stack, subjects)
        assert seen == expected, f"unexpected: {seen - expected}; missing: {expected - seen}"
