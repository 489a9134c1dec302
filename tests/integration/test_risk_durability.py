"""Deadlines are durable and on time: SIGKILL and restart loses and repeats nothing; with two
workers every deadline fires exactly once. Real broker, real worker processes."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devtools.broker import create_topics, free_port
from devtools.stack import DevStack, ServiceSpec
from services.common.processes import kill, spawn
from tests.fixtures.broker import produce, read_all
from tests.fixtures.events import neglect_records, referral_window_policy

pytestmark = pytest.mark.integration

WINDOW = timedelta(seconds=12)


@pytest.fixture
def short_policy(tmp_path: Path) -> Path:
    return referral_window_policy(tmp_path, WINDOW)


@pytest.fixture
def stack(kafka_bootstrap: str, short_policy: Path, tmp_path: Path) -> Iterator[DevStack]:
    suffix = uuid.uuid4().hex[:8]
    dev = DevStack(
        bootstrap=kafka_bootstrap,
        data_dir=tmp_path / "data",
        webhook_url="http://127.0.0.1:9/unused",
        topic_prefix=f"d{suffix}.",
        app_suffix=f"-{suffix}",
        policy_file=short_policy,
        output=(tmp_path / "risk.log").open("wb"),
    )
    create_topics(kafka_bootstrap, dev.topic_names())
    yield dev
    dev.stop()


def start_risk(stack: DevStack, name: str) -> None:
    spec = ServiceSpec("risk", "RISK_", free_port())
    env = stack.environment(spec)
    # Each worker keeps its own data directory, as on separate machines.
    data_dir = stack.data_dir / name
    data_dir.mkdir(parents=True, exist_ok=True)
    env["RISK_STREAM__DATA_DIR"] = str(data_dir)
    stack.processes[name] = spawn(
        [stack.python, "-m", "services.risk.main"], env=env, stdout=stack.output
    )
    stack.ports[name] = spec.port


def wait_ready(stack: DevStack, name: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert stack.processes[name].poll() is None, f"{name} exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{stack.ports[name]}/readyz", timeout=2):
                return
        except OSError:
            time.sleep(0.25)
    pytest.fail(f"{name} not ready in {timeout}s")


def incidents(count: int, at: datetime, tag: str) -> list[tuple[bytes, bytes]]:
    return neglect_records(count, at, tag, source="urn:safeguard:source:durability")


def raised(stack: DevStack) -> Counter[str]:
    """How many times each alert id was raised on the alerts topic."""
    copies: Counter[str] = Counter()
    for record in read_all(stack.bootstrap, stack.topics.alerts):
        message: dict[str, Any] = json.loads(record.value)
        if message["type"] == "alert.raised":
            copies[message["data"]["alert_id"]] += 1
    return copies


def wait_for_alerts(stack: DevStack, count: int, timeout: float = 60) -> Counter[str]:
    deadline = time.monotonic() + timeout
    seen = raised(stack)
    while len(seen) < count and time.monotonic() < deadline:
        time.sleep(0.5)
        seen = raised(stack)
    return seen


def test_deadlines_that_pass_while_a_worker_is_killed_fire_once_on_recovery(
    stack: DevStack,
) -> None:
    start_risk(stack, "risk")
    wait_ready(stack, "risk")
    now = datetime.now(UTC)
    produce(stack.bootstrap, stack.topics.events, incidents(20, now, "kill"))
    # Let the worker apply and commit the events, then kill it before any deadline.
    time.sleep(6)
    assert raised(stack) == Counter()
    kill(stack.processes.pop("risk"))
    due = now + WINDOW
    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 2)
    assert raised(stack) == Counter()  # nothing fired while down

    start_risk(stack, "risk")
    seen = wait_for_alerts(stack, 20)
    assert len(seen) == 20
    assert set(seen.values()) == {1}, "a deadline fired twice"
    # And nothing more arrives afterwards.
    time.sleep(3)
    assert raised(stack) == seen


def test_two_workers_fire_every_deadline_exactly_once(stack: DevStack) -> None:
    start_risk(stack, "risk-a")
    start_risk(stack, "risk-b")
    wait_ready(stack, "risk-a")
    wait_ready(stack, "risk-b")
    now = datetime.now(UTC)
    produce(stack.bootstrap, stack.topics.events, incidents(40, now, "pair"))
    due = now + WINDOW
    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
    seen = wait_for_alerts(stack, 40)
    assert len(seen) == 40
    time.sleep(3)
    final = raised(stack)
    assert final == seen
    assert set(final.values()) == {1}, "a deadline fired twice"
