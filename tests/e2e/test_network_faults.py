"""The whole system through a network partition and a broker reset while scenarios replay.

All three services reach the broker only through the test's TCP proxy
(`tests/fixtures/netproxy.py`). A patient client replays every scenario through ingest,
retrying each 503 with backoff, while the proxy first swallows every byte for 12 s (a
partition) and then refuses every connection for 12 s (a broker restart as clients see
it). Afterwards: every expected alert is raised, every webhook is delivered once per
notification id, nothing is dead-lettered, and ingest wrote again within 10 s of the
network's return. The test prints its figures for the closing note.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from devtools.broker import free_port
from devtools.stack import DevStack
from tests.e2e.test_scenarios import observed, offset, scenario_files, subjects_of
from tests.fixtures.broker import read_all
from tests.fixtures.netproxy import ProxiedBroker
from tests.fixtures.stack import Client
from tests.fixtures.webhook import WebhookReceiver

pytestmark = pytest.mark.e2e

FAULT_SECONDS = 12.0
# Spreads the replay over both faults (about 30 of the 97 events go before the reset).
PAUSE_BETWEEN_EVENTS = 0.25


@pytest.fixture
def stack(
    proxied_broker: ProxiedBroker, webhook: WebhookReceiver, tmp_path: Path
) -> Iterator[DevStack]:
    suffix = uuid.uuid4().hex[:8]
    log_path = tmp_path / "services.log"
    with log_path.open("wb") as log:
        dev = DevStack(
            bootstrap=proxied_broker.bootstrap,
            data_dir=tmp_path / "data",
            webhook_url=webhook.url,
            ingest_port=free_port(),
            risk_port=free_port(),
            notify_port=free_port(),
            topic_prefix=f"n{suffix}.",
            app_suffix=f"-{suffix}",
            output=log,
            extra_env={
                "INGEST_PRODUCE_TIMEOUT_SECONDS": "3",
                "RISK_STREAM__PUBLISH_TIMEOUT_SECONDS": "5",
                "NOTIFY_STREAM__PUBLISH_TIMEOUT_SECONDS": "5",
                "RISK_STREAM__RETRY_MAX_DELAY_SECONDS": "2",
                "NOTIFY_STREAM__RETRY_MAX_DELAY_SECONDS": "2",
            },
        )
        proxied_broker.create_topics(dev.topic_names())
        try:
            dev.start()
            yield dev
        except Exception:
            log.flush()
            print(log_path.read_text()[-20000:])  # noqa: T201 - shown only when start fails
            raise
        finally:
            dev.stop()


class Replay:
    """Posts every scenario's events in order, each retried on 503 until accepted."""

    def __init__(self, stack: DevStack) -> None:
        self.url = f"{stack.url('ingest')}/v1/events"
        self.client = Client()
        self.subjects: dict[str, set[str]] = {}
        self.accepted_at: list[float] = []
        self.refused = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            for path in scenario_files():
                scenario = json.loads(path.read_text())
                start = datetime.now(UTC)
                self.subjects[path.stem] = set()
                for step in scenario["events"]:
                    event: dict[str, Any] = {"specversion": "1.0", **step["event"]}
                    event["time"] = (start + offset(step["at"])).strftime("%Y-%m-%dT%H:%M:%SZ")
                    self.subjects[path.stem] |= subjects_of(event)
                    self._post(event)
                    time.sleep(PAUSE_BETWEEN_EVENTS)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            self.error = exc

    def _post(self, event: dict[str, Any]) -> None:
        backoff = 0.2
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                code, body, _ = self.client.request("POST", self.url, event)
            except OSError:
                code, body = 0, "connection failed"
            if code == 202:
                self.accepted_at.append(time.monotonic())
                return
            assert code in {0, 503}, (code, body)
            self.refused += 1
            time.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
        raise AssertionError(f"event {event['id']} never accepted")


def test_partition_then_reset_while_scenarios_replay(
    stack: DevStack, proxied_broker: ProxiedBroker, webhook: WebhookReceiver
) -> None:
    proxy = proxied_broker.proxy
    replay = Replay(stack)
    replay.thread.start()
    time.sleep(3)
    partitioned = time.monotonic()
    proxy.partition()
    time.sleep(FAULT_SECONDS)
    proxy.heal()
    partition_healed = time.monotonic()
    time.sleep(5)
    proxy.refuse()
    time.sleep(FAULT_SECONDS)
    proxy.heal()
    reset_healed = time.monotonic()
    replay.thread.join(timeout=400)
    assert replay.error is None, replay.error
    assert not replay.thread.is_alive()

    # The replay spanned both faults, and ingest wrote again within 10 s of each return.
    assert any(t < partitioned for t in replay.accepted_at), "nothing written before the faults"
    after_partition = min(t for t in replay.accepted_at if t > partition_healed) - partition_healed
    after_reset = min(t for t in replay.accepted_at if t > reset_healed) - reset_healed

    expected: Counter[tuple[str, str, str]] = Counter()
    subjects: set[str] = set()
    for path in scenario_files():
        scenario = json.loads(path.read_text())
        expected.update((e["rule"], e["subject"], e["state"]) for e in scenario["expect"])
        subjects |= replay.subjects[path.stem]
    deadline = time.monotonic() + 180
    seen = observed(stack, subjects)
    while (seen & expected) != expected and time.monotonic() < deadline:
        time.sleep(1)
        seen = observed(stack, subjects)

    # Every notification the alerts caused has been delivered; give stragglers a moment.
    time.sleep(5)
    with webhook._lock:  # noqa: SLF001 - the receiver's own lock, for a consistent copy
        ids = Counter(h.get("webhook-id") for h in webhook.headers)
    deadlettered = read_all(stack.bootstrap, stack.topics.deadletter, timeout=10)
    alert_ids = {
        json.loads(r.value)["data"]["alert_id"]
        for r in read_all(stack.bootstrap, stack.topics.alerts, timeout=10)
    }
    print(  # noqa: T201 - figures for the closing note
        f"\nevents accepted {len(replay.accepted_at)} (503s/refusals retried {replay.refused}), "
        f"alerts {len(alert_ids)}, expected alerts found {sum((seen & expected).values())}"
        f"/{sum(expected.values())}, webhooks {sum(ids.values())} for {len(ids)} notification "
        f"ids, dead-lettered {len(deadlettered)}, ingest writing again "
        f"{after_partition:.1f}s after the partition and {after_reset:.1f}s after the reset"
    )
    assert (seen & expected) == expected, f"missing: {expected - seen}"
    assert deadlettered == []
    assert ids, "no webhook was delivered"
    assert set(ids.values()) == {1}, f"delivered more than once: {+(ids - Counter(set(ids)))}"
    assert after_partition <= 10.0
    assert after_reset <= 10.0
