"""Risk and notify under faults: crashes mid-burst and publishes that fail, nothing lost.

Real processes on the session broker and a real webhook receiver. "Late, never lost":
after each fault every alert is raised and every level-1 notification delivered; repeats
(the at-least-once seam between a publish and the state write, or a delivery cut short
by a crash) carry the same alert id and the same `webhook-id`, so consumers and
receivers drop them. The test prints its figures for the closing note.
"""

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
from kafka import KafkaProducer

from devtools.broker import create_topics, free_port
from devtools.stack import DevStack
from services.common.processes import kill
from tests.fixtures.broker import read_all
from tests.fixtures.events import neglect_records, referral_window_policy
from tests.fixtures.webhook import WebhookReceiver

pytestmark = pytest.mark.integration

BURST = 2000
WINDOW = timedelta(seconds=15)


@pytest.fixture
def stack(kafka_bootstrap: str, webhook: WebhookReceiver, tmp_path: Path) -> Iterator[DevStack]:
    suffix = uuid.uuid4().hex[:8]
    dev = DevStack(
        bootstrap=kafka_bootstrap,
        data_dir=tmp_path / "data",
        webhook_url=webhook.url,
        ingest_port=free_port(),
        risk_port=free_port(),
        notify_port=free_port(),
        topic_prefix=f"f{suffix}.",
        app_suffix=f"-{suffix}",
        policy_file=referral_window_policy(tmp_path, WINDOW),
        output=(tmp_path / "services.log").open("wb"),
    )
    create_topics(kafka_bootstrap, dev.topic_names())
    try:
        yield dev
    finally:
        dev.stop()


def incidents(count: int, at: datetime, tag: str) -> list[tuple[bytes, bytes]]:
    return neglect_records(count, at, tag, source="urn:safeguard:source:faults")


def produce_fast(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for key, value in records:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=60)
    finally:
        producer.close()


def raised(stack: DevStack, rule: str = "social-care-referral") -> Counter[str]:
    copies: Counter[str] = Counter()
    for record in read_all(stack.bootstrap, stack.topics.alerts, timeout=20):
        message: dict[str, Any] = json.loads(record.value)
        if message["type"] == "alert.raised" and message["data"]["rule"] == rule:
            copies[message["data"]["alert_id"]] += 1
    return copies


def level_one(webhook: WebhookReceiver, tag: str) -> Counter[str]:
    """POSTs per notification id of level-1 alert notifications about this test's children."""
    with webhook._lock:  # noqa: SLF001 - the receiver's own lock, for a consistent copy
        pairs = list(zip(webhook.received, webhook.headers, strict=True))
    ids: Counter[str] = Counter()
    for body, headers in pairs:
        alert = body.get("alert", {})
        if (
            body.get("purpose") == "alert"
            and body.get("level") == 1
            and str(alert.get("child_id", "")).startswith(f"C-{tag}-")
        ):
            assert headers.get("webhook-id") == body["notification_id"]
            ids[body["notification_id"]] += 1
    return ids


def metric(stack: DevStack, service: str, name: str) -> float:
    url = f"{stack.url(service)}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def wait_for(predicate: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(1)
        value = predicate()
    return value


def test_sigkill_of_risk_then_notify_during_a_burst_of_deadlines(
    stack: DevStack, webhook: WebhookReceiver
) -> None:
    stack.start()
    tag = uuid.uuid4().hex[:6]
    at = datetime.now(UTC)
    due = at + WINDOW
    started = time.monotonic()
    produce_fast(stack.bootstrap, stack.topics.events, incidents(BURST, at, tag))
    # Kill risk just as the burst falls due: some checks done, most not.
    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 1)
    kill(stack.processes.pop("risk"))
    risk_killed_at = time.monotonic()
    stack.start_service("risk")
    stack.wait_ready("risk", timeout=120)
    risk_ready = time.monotonic() - risk_killed_at

    # Kill notify while it is delivering the level-1 notifications.
    wait_for(lambda: sum(level_one(webhook, tag).values()) >= BURST // 10, timeout=240)
    kill(stack.processes.pop("notify"))
    notify_killed_at = time.monotonic()
    stack.start_service("notify")
    stack.wait_ready("notify", timeout=120)
    notify_ready = time.monotonic() - notify_killed_at

    delivered = wait_for(
        lambda: (ids := level_one(webhook, tag)) and len(ids) >= BURST and ids, timeout=400
    ) or level_one(webhook, tag)
    alerts = raised(stack)
    elapsed = time.monotonic() - started
    repeated_alerts = sum(n - 1 for n in alerts.values())
    repeated_posts = sum(n - 1 for n in delivered.values())
    deadlettered = read_all(stack.bootstrap, stack.topics.deadletter, timeout=5)
    print(  # noqa: T201 - figures for the closing note
        f"\nburst {BURST}: alerts {len(alerts)} (repeated on the topic {repeated_alerts}), "
        f"level-1 notifications {len(delivered)} (repeated POSTs {repeated_posts}), "
        f"lost {BURST - len(delivered)}, dead-lettered {len(deadlettered)}, "
        f"risk ready {risk_ready:.1f}s after SIGKILL, notify ready {notify_ready:.1f}s, "
        f"all delivered {elapsed:.0f}s after the burst was produced"
    )
    assert len(alerts) == BURST, f"{BURST - len(alerts)} alerts never raised"
    assert len(delivered) == BURST, f"{BURST - len(delivered)} level-1 notifications lost"
    assert deadlettered == []
    # At-least-once: a repeat is the same notification again, never a different one.
    assert all(n >= 1 for n in delivered.values())
