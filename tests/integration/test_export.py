"""`safeguard export` against the session broker: from the first record at or after
--since to the end, partitions merged by broker timestamp, each line the CloudEvent with
its `recordedat`; and the export backtests like the file it came from."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaProducer
from typer.testing import CliRunner

from devtools.stack import DEFAULT_POLICY
from services.cli.backtest import ARRIVAL_FIELD, backtest
from services.cli.main import app
from services.risk.policy import load_policy
from tests.fixtures.broker import make_topics
from tests.fixtures.events import envelope

pytestmark = pytest.mark.integration

MINUTE_MS = 60_000


def concern(n: int, at: datetime) -> dict[str, object]:
    data = {
        "concern_id": f"CON-{n}",
        "child_id": f"C-{n % 3}",
        "kind": "criminal",
        "level": "medium",
        "age": 15,
    }
    return envelope("exploitation.concern_raised", data, at, event_id=f"exp-{n}")


def test_export_reads_from_since_to_the_end_in_timestamp_order(
    kafka_bootstrap: str, unique: str
) -> None:
    topic = f"export-{unique}"
    make_topics(kafka_bootstrap, [topic], partitions=3)
    # Broker timestamps one minute apart, ten minutes ago onwards; keyed by child, so
    # each child's events share a partition, as ingest keys them.
    t0 = int(time.time() * 1000) - 10 * MINUTE_MS
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        for n in range(9):
            at = datetime.fromtimestamp((t0 + n * MINUTE_MS) / 1000, UTC) - timedelta(hours=30)
            value = json.dumps(concern(n, at)).encode()
            producer.send(
                topic, key=f"C-{n % 3}".encode(), value=value, timestamp_ms=t0 + n * MINUTE_MS
            ).get(10)
        producer.send(topic, key=b"x", value=b"not json", timestamp_ms=t0 + 9 * MINUTE_MS).get(10)
    finally:
        producer.close()

    since = datetime.fromtimestamp((t0 + 3 * MINUTE_MS - 500) / 1000, UTC)
    result = CliRunner().invoke(
        app,
        ["export", "--since", since.isoformat(), "--bootstrap", kafka_bootstrap, "--topic", topic],
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["id"] for line in lines] == [f"exp-{n}" for n in range(3, 9)]
    arrivals = [datetime.fromisoformat(line[ARRIVAL_FIELD]) for line in lines]
    assert arrivals == [
        datetime.fromtimestamp((t0 + n * MINUTE_MS) / 1000, UTC) for n in range(3, 9)
    ]
    assert "exported 6 events (1 not JSON objects left out)" in result.stderr

    # Each concern was raised 30 h before it reached the topic, past its 24 h window:
    # the backtest of the export raises each one on arrival (after the settle time).
    replayed = backtest(result.stdout.splitlines(), load_policy(DEFAULT_POLICY))
    assert replayed.rejected == {}
    assert replayed.rules["exploitation-action"].breaches == 6
    assert replayed.start == arrivals[0]


def test_export_since_after_the_last_record_writes_nothing(
    kafka_bootstrap: str, unique: str
) -> None:
    topic = f"export-{unique}"
    make_topics(kafka_bootstrap, [topic], partitions=2)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        producer.send(topic, value=json.dumps(concern(1, datetime.now(UTC))).encode()).get(10)
    finally:
        producer.close()
    since = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    result = CliRunner().invoke(
        app, ["export", "--since", since, "--bootstrap", kafka_bootstrap, "--topic", topic]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == ""


def test_export_of_a_missing_topic_fails(kafka_bootstrap: str, unique: str) -> None:
    result = CliRunner().invoke(
        app,
        [
            "export",
            "--since",
            "2026-01-01",
            "--bootstrap",
            kafka_bootstrap,
            "--topic",
            f"none-{unique}",
        ],
    )
    assert result.exit_code == 1
    assert "does not exist" in result.stderr
