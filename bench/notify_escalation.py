"""Escalation timing error with many alerts escalating at the same instant.

    .venv/bin/python bench/notify_escalation.py [--alerts 10000] [--lead 45]

Starts a broker (Tansu, unless KAFKA_BOOTSTRAP_SERVERS is set), a webhook receiver and
the notify service as a real process, with a policy whose level 2 comes 60 s after the
raise. It writes N `alert.raised` with the same `raised_at`, chosen so that level 1 goes
out at once and every alert's level 2 falls due at the same instant `--lead` seconds
later. It then reads the `alert.escalated` events and prints the timing error (when the
step was taken minus when it was due) and when the level-2 webhooks were delivered.
Target: p99 timing error at most 3 s with 10,000 alerts, in production settings. Runs
twice, in the development configuration (changelog one record per producer batch) and
the production one (batched). Prints the broker's limits (raw aiokafka produce and
consume rates, a bare Faust agent's, `bench/limits.py`) measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

# Run as a script from anywhere: the repository root holds `tests` (the webhook receiver).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.limits import measure
from devtools.broker import DevBroker, create_topics, free_port, wait_until_answers
from devtools.stack import DevStack
from schemas.alerts import (
    AlertRaised,
    EventRef,
    Severity,
    SubjectKind,
    alert_raised_event,
)
from tests.fixtures.webhook import WebhookReceiver

LEVEL_2_AFTER = 60
TARGET_P99_SECONDS = 3.0
# The changelog producer's batch size in the two configurations every figure is printed
# in: one record per batch as `make run` sets it for the development broker, and batched
# (1 MiB, notify's own default) as in production.
CONFIGURATIONS = {"development": "1", "production": "1048576"}

POLICY = f"""
escalation:
  critical: {{levels: [{{route: duty}}, {{route: senior, after: {LEVEL_2_AFTER}s}}]}}
  high: {{levels: [{{route: duty}}, {{route: senior, after: {LEVEL_2_AFTER}s}}]}}
  medium: {{levels: [{{route: duty}}, {{route: senior, after: {LEVEL_2_AFTER}s}}]}}
routing:
  default: {{duty: [desk], senior: [desk]}}
receivers:
  desk: {{channel: webhook, secret: desk_key}}
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def produce_alerts(bootstrap: str, topic: str, count: int, raised_at: datetime) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for i in range(count):
        alert_id = f"al-bench-{uuid.uuid4().hex[:16]}-{i}"
        alert = AlertRaised(
            alert_id=alert_id,
            rule="child-in-custody",
            severity=Severity.CRITICAL,
            subject_kind=SubjectKind.CHILD,
            child_id=f"C-{i}",
            area="north",
            trigger=EventRef(source="urn:bench", id=alert_id),
            due_at=raised_at,
            raised_at=raised_at,
            summary="Benchmark alert.",
        )
        producer.send(topic, key=alert_id.encode(), value=alert_raised_event(alert).to_json())
    producer.flush()
    producer.close()


def read_events(
    bootstrap: str, topic: str, *, want: int, timeout: float
) -> list[dict[str, object]]:
    """Read the topic until `want` escalations and their level-2 deliveries arrived."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    partitions = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in partitions]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    events: list[dict[str, object]] = []
    escalated = sent_level_2 = 0
    deadline = time.monotonic() + timeout
    while (escalated < want or sent_level_2 < want) and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            for record in batch:
                event = json.loads(record.value)
                events.append(event)
                data = event["data"]
                if event["type"] == "alert.escalated":
                    escalated += 1
                elif event["type"] == "notification.sent" and data["level"] == 2:  # noqa: PLR2004
                    sent_level_2 += 1
    consumer.close()
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--lead", type=float, default=45.0, help="seconds until level 2 is due")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds after the due time to wait for all"
    )
    parser.add_argument(
        "--configurations",
        default="development,production",
        help="which of development (changelog one record per producer batch) and production "
        "(batched) to run, in this order",
    )
    args = parser.parse_args()

    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None if external else DevBroker().start()
    bootstrap = external or (broker.bootstrap if broker else "")
    wait_until_answers(bootstrap)
    print(f"load before: {Path('/proc/loadavg').read_text().split()[:3]}")
    print(measure(bootstrap).describe())
    try:
        for name in args.configurations.split(","):
            print(f"--- configuration: {name} ---")
            run(args, bootstrap, CONFIGURATIONS[name])
    finally:
        if broker is not None:
            broker.stop()
    print(f"load after: {Path('/proc/loadavg').read_text().split()[:3]}")


def run(args: argparse.Namespace, bootstrap: str, batch_size: str) -> None:
    """Run the benchmark once with the changelog producer's `batch_size`."""
    receiver = WebhookReceiver()
    receiver.start()
    folder = Path(tempfile.mkdtemp(prefix="notify-bench-"))
    (folder / "policy.yaml").write_text(POLICY)
    suffix = uuid.uuid4().hex[:8]
    with (folder / "notify.log").open("wb") as log:
        stack = DevStack(
            bootstrap=bootstrap,
            data_dir=folder / "data",
            webhook_url=receiver.url,
            notify_port=free_port(),
            topic_prefix=f"b{suffix}.",
            app_suffix=f"-{suffix}",
            policy_file=folder / "policy.yaml",
            log_json=True,
            log_level="WARNING",
            output=log,
            extra_env={
                "NOTIFY_WEBHOOK_SECRETS__DESK_KEY": "bench",
                "NOTIFY_STREAM__PRODUCER_MAX_BATCH_SIZE": batch_size,
            },
        )
        try:
            create_topics(bootstrap, list(stack.topics.model_dump().values()))
            stack.start_service("notify")
            stack.wait_ready("notify", timeout=120)
            due = datetime.now(UTC) + timedelta(seconds=args.lead)
            raised_at = due - timedelta(seconds=LEVEL_2_AFTER)
            started = time.monotonic()
            produce_alerts(bootstrap, stack.topics.alerts, args.alerts, raised_at)
            print(f"produced {args.alerts} alerts in {time.monotonic() - started:.1f} s")
            events = read_events(
                bootstrap,
                stack.topics.notifications,
                want=args.alerts,
                timeout=args.lead + args.timeout,
            )
        finally:
            stack.stop()
            receiver.stop()
    # Repeats, told apart: a webhook POSTed twice for one step is a duplicate delivery; a
    # `notification.sent` record written twice for one notification is only a repeated
    # record (the desk projects by notification id).
    posts = Counter(
        (b.get("alert", {}).get("alert_id"), b.get("level"), b.get("notification_id"))
        for b in receiver.received
        if b.get("level") == 2  # noqa: PLR2004
    )
    sent_ids = Counter(
        e["data"]["notification_id"]  # type: ignore[index]
        for e in events
        if e["type"] == "notification.sent" and e["data"]["level"] == 2  # type: ignore[index]  # noqa: PLR2004
    )
    print(
        f"level-2 webhook POSTs: {sum(posts.values())} for {len(posts)} distinct "
        f"(alert, level, notification); notification.sent records: {sum(sent_ids.values())} "
        f"for {len(sent_ids)} notification ids"
    )

    escalations = [e["data"] for e in events if e["type"] == "alert.escalated"]
    errors = [
        (
            datetime.fromisoformat(str(d["escalated_at"]))  # type: ignore[index]
            - datetime.fromisoformat(str(d["scheduled_at"]))  # type: ignore[index]
        ).total_seconds()
        for d in escalations
    ]
    level_1 = [
        datetime.fromisoformat(str(e["data"]["finished_at"]))  # type: ignore[index]
        for e in events
        if e["type"] == "notification.sent" and e["data"]["level"] == 1  # type: ignore[index]
    ]
    delivered = [
        (datetime.fromisoformat(str(e["data"]["finished_at"])) - due).total_seconds()  # type: ignore[index]
        for e in events
        if e["type"] == "notification.sent" and e["data"]["level"] == 2  # type: ignore[index]  # noqa: PLR2004
    ]
    print(f"alerts: {args.alerts}, level 2 due for all at the same instant")
    if level_1:
        print(f"level 1 delivered: {len(level_1)}, last {max(level_1) - raised_at} after raise")
    if not errors:
        print("no escalations observed")
        return
    print(
        f"escalations: {len(errors)}; timing error (taken - due): "
        f"p50 {percentile(errors, 0.5):.3f} s, p99 {percentile(errors, 0.99):.3f} s, "
        f"max {max(errors):.3f} s, mean {statistics.fmean(errors):.3f} s"
    )
    if delivered:
        print(
            f"level-2 webhooks delivered: {len(delivered)}; after due: "
            f"p50 {percentile(delivered, 0.5):.3f} s, p99 {percentile(delivered, 0.99):.3f} s, "
            f"max {max(delivered):.3f} s"
        )
    missing = args.alerts - len(errors)
    if missing:
        print(
            f"{missing} of {args.alerts} alerts had not escalated {args.timeout:.0f} s after the due time"
        )
    met = not missing and percentile(errors, 0.99) <= TARGET_P99_SECONDS
    print(f"target p99 <= {TARGET_P99_SECONDS:.0f} s: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
