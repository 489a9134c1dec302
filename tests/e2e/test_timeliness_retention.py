"""The timeliness report forgets finished obligations after its retention, never open ones.

Notify runs with a 10-day retention and looks every second. Three referrals: one met a
month ago (finished, past the retention: forgotten), one met yesterday (kept), one due
40 days ago and never made (open: kept however old). Deletions happen in the stream of
the obligation's partition, so new incidents are sent until one passes through it.
"""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devtools.broker import create_topics, free_port
from devtools.stack import DevStack
from tests.fixtures.events import (
    decisions_after_the_period_policy,
    reported_incident,
    shared_referral,
)
from tests.fixtures.stack import Client, wait_until
from tests.fixtures.webhook import WebhookReceiver

pytestmark = pytest.mark.e2e

NOW = datetime.now(UTC)
PERIOD = f"from={(NOW - timedelta(days=90)).date()}&to={(NOW + timedelta(days=2)).date()}"


def at(ago: timedelta) -> str:
    return (NOW - ago).strftime("%Y-%m-%dT%H:%M:%SZ")


def incident(child: str, ago: timedelta) -> dict[str, Any]:
    return reported_incident(f"rt-inc-{child}", child, at(ago), area="north")


def referral(child: str, ago: timedelta) -> dict[str, Any]:
    return shared_referral(f"rt-ref-{child}", child, at(ago))


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str, webhook: WebhookReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevStack]:
    folder = tmp_path_factory.mktemp("retention")
    suffix = uuid.uuid4().hex[:8]
    with (folder / "services.log").open("wb") as log:
        dev = DevStack(
            bootstrap=kafka_bootstrap,
            data_dir=folder / "data",
            webhook_url=webhook.url,
            ingest_port=free_port(),
            risk_port=free_port(),
            notify_port=free_port(),
            topic_prefix=f"r{suffix}.",
            app_suffix=f"-{suffix}",
            output=log,
            extra_env={
                "NOTIFY_REPORTS__RETENTION_DAYS": "10",
                "NOTIFY_REPORTS__PRUNE_INTERVAL_SECONDS": "1",
            },
            # The report's period ends in two days: the referrals' decisions fall after it.
            policy_file=decisions_after_the_period_policy(folder),
        )
        create_topics(kafka_bootstrap, dev.topic_names())
        dev.start()
        try:
            yield dev
        finally:
            dev.stop()


def north(stack: DevStack) -> dict[str, Any] | None:
    code, body, _ = Client().request("GET", f"{stack.url('notify')}/v1/reports/timeliness?{PERIOD}")
    return body["rows"][0] if code == 200 and body["rows"] else None


def pruned(stack: DevStack) -> float:
    with urllib.request.urlopen(f"{stack.url('notify')}/metrics", timeout=10) as answer:  # noqa: S310
        for line in answer.read().decode().splitlines():
            if line.startswith("safeguard_notify_timeliness_pruned_total "):
                return float(line.split()[1])
    return 0.0


def test_finished_obligations_past_the_retention_are_forgotten(stack: DevStack) -> None:
    client = Client()
    url = f"{stack.url('ingest')}/v1/events"
    for event in (
        incident("C-RT-OLD", timedelta(days=31)),
        referral("C-RT-OLD", timedelta(days=30, hours=12)),  # met, a month ago
        incident("C-RT-NEW", timedelta(days=2)),
        referral("C-RT-NEW", timedelta(days=1, hours=12)),  # met, yesterday
        incident("C-RT-OPEN", timedelta(days=41)),  # due 40 days ago, never met
    ):
        assert client.request("POST", url, event)[0] == 202

    def gone() -> dict[str, Any] | None:
        # Only the referral met a month ago can be forgotten (the nudges are not due yet).
        if pruned(stack) >= 1:
            # The deletion reaches the global table through its changelog, a moment after
            # the counter: wait for the row to lose an obligation, then check which.
            row = north(stack)
            return row if row and row["due"] < 3 else None
        # Nudge: a new incident's outcome passes through some partition's stream.
        child = f"C-RT-NUDGE-{uuid.uuid4().hex[:6]}"
        client.request("POST", url, incident(child, timedelta(hours=1)))
        return None

    row = wait_until(gone, timeout=90, interval=1.0)
    assert row, north(stack)
    # yesterday's referral, and the open one however old
    assert (row["due"], row["met_on_time"], row["met_late"], row["open_overdue"]) == (2, 1, 0, 1)
