"""Risk recovery after SIGKILL with many open obligations.

    .venv/bin/python bench/risk_recovery.py [--children 100000] [--down 30]

Starts a development broker and one risk worker (a real process), produces one incident
per child (each opens one obligation), waits until every one is processed, kills the
worker with SIGKILL, and restarts it `--down` seconds later, by when every deadline has
passed. Reports, from the restart:
- time until `/readyz` answers 200 (the table recovered from its changelog and the
  schedule rebuilt);
- time until every passed deadline has fired (an `alert.raised` per obligation on the
  alerts topic), and whether any fired twice or is missing.
Target: both within 60 s with 100,000 open obligations. Prints the broker's limits
(`bench/limits.py`) measured in the same run. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.limits import measure  # noqa: E402
from bench.risk_throughput import incident, processed  # noqa: E402
from devtools.broker import DevBroker, create_topics, free_port  # noqa: E402
from devtools.stack import DEFAULT_POLICY, DevStack, ServiceSpec  # noqa: E402
from services.common.processes import kill, spawn, stop  # noqa: E402

TARGET_READY_SECONDS = 15
TARGET_FIRED_SECONDS = 30
CONFIGURATIONS = {"development": "1", "production": "default"}


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
            return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--children", type=int, default=100_000)
    parser.add_argument("--down", type=float, default=30, help="seconds the worker stays dead")
    parser.add_argument(
        "--configurations",
        default="development,production",
        help="which of development (changelog one record per producer batch) and production "
        "(batched) to run, in this order",
    )
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    with DevBroker() as broker:
        print(f"load before: {Path('/proc/loadavg').read_text().split()[:3]}")
        print(measure(broker.bootstrap).describe())
        for name in args.configurations.split(","):
            print(f"--- configuration: {name} ---")
            with tempfile.TemporaryDirectory() as tmp:
                run(args, broker.bootstrap, Path(tmp), CONFIGURATIONS[name])
        print(f"load after: {Path('/proc/loadavg').read_text().split()[:3]}")


def run(args: argparse.Namespace, bootstrap: str, tmp: Path, batch_size: str) -> None:
    """Run the benchmark once with the changelog producer's `batch_size`."""
    n = args.children
    suffix = uuid.uuid4().hex[:6]
    stack = DevStack(
        bootstrap=bootstrap,
        data_dir=tmp,
        webhook_url="http://127.0.0.1:9/",
        topic_prefix=f"r{suffix}.",
        app_suffix=f"-{suffix}",
    )
    create_topics(bootstrap, list(stack.topics.model_dump().values()))
    port = free_port()
    env = stack.environment(ServiceSpec("risk", "RISK_", port))
    env["RISK_LOG_LEVEL"] = "WARNING"
    if batch_size == "default":
        env.pop("RISK_STREAM__PRODUCER_MAX_BATCH_SIZE")
    else:
        env["RISK_STREAM__PRODUCER_MAX_BATCH_SIZE"] = batch_size
    # The window is set once the ingestion time is known: long enough that nothing
    # falls due before the kill, short enough that everything has by the restart.
    policy_path = tmp / "policy.yaml"
    policy = yaml.safe_load(DEFAULT_POLICY.read_text())
    log = (tmp / "risk.log").open("wb")

    def start() -> subprocess.Popen[bytes]:
        return spawn([sys.executable, "-m", "services.risk.main"], env=env, stdout=log, cwd=REPO)

    # Incidents dated so that each deadline (24 h after the incident) falls due while
    # the worker is down: `lead` seconds after they are produced.
    lead = n / 800 + 45  # ingestion at 800 events/s or more, then a margin
    policy_path.write_text(yaml.safe_dump(policy))
    env["RISK_POLICY_FILE"] = str(policy_path)
    worker = start()
    try:
        deadline = time.monotonic() + 120
        while not ready(port) and time.monotonic() < deadline:
            time.sleep(0.25)
        due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=lead)
        at = due - timedelta(hours=24)
        producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=5, batch_size=65536
        )
        for i in range(n):
            producer.send(stack.topics.events, key=f"C-{i}".encode(), value=incident(i, at))
        producer.flush()
        while processed([port]) < n:
            time.sleep(0.5)
        ingested = datetime.now(UTC)
        if ingested >= due:
            print("WARNING: deadlines fell due before the kill; the figures mix both")
        time.sleep(2)  # the last changelog records and offsets committed
        kill(worker)
        killed = datetime.now(UTC)
        print(f"{n} obligations open; SIGKILL {(due - killed).total_seconds():.0f}s before due")
        wait = max(args.down, (due - datetime.now(UTC)).total_seconds() + 1)
        time.sleep(wait)
        restarted = time.monotonic()
        worker = start()
        while not ready(port):
            if time.monotonic() - restarted > args.timeout:
                print("not ready within the timeout")
                return
            time.sleep(0.1)
        ready_after = time.monotonic() - restarted
        print(
            f"ready {ready_after:.1f}s after the restart (target <= {TARGET_READY_SECONDS} s: "
            f"{'met' if ready_after <= TARGET_READY_SECONDS else 'NOT met'})"
        )
        raised, repeats, fired_after = read_alerts(
            bootstrap, stack.topics.alerts, n, restarted, args.timeout
        )
        fired = len(raised) == n and fired_after <= TARGET_FIRED_SECONDS
        print(
            f"passed deadlines fired: {len(raised)} of {n}, the last {fired_after:.1f}s after "
            f"the restart (target <= {TARGET_FIRED_SECONDS} s: "
            f"{'met' if fired else 'NOT met'}); repeated ids: {repeats}"
        )
    finally:
        stop(worker)
        log.close()


def read_alerts(
    bootstrap: str, topic: str, want: int, since: float, timeout: float
) -> tuple[set[str], int, float]:
    """Read `alert.raised` until `want` distinct ids; return them, repeats, seconds since."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    raised: set[str] = set()
    repeats = 0
    last = 0.0
    while len(raised) < want and time.monotonic() - since < timeout:
        for batch in consumer.poll(timeout_ms=200).values():
            for record in batch:
                event = json.loads(record.value)
                if event["type"] != "alert.raised":
                    continue
                alert_id = event["data"]["alert_id"]
                if alert_id in raised:
                    repeats += 1
                raised.add(alert_id)
                last = time.monotonic() - since
    consumer.close()
    return raised, repeats, last


if __name__ == "__main__":
    main()
