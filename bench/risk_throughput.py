"""Risk service benchmark: throughput, deadline lag and memory per open obligation.

    .venv/bin/python bench/risk_throughput.py [--children 100000] [--window 240]

Starts a development broker and one risk worker (a real process), produces one
incident per child straight onto the events topic (each opens one obligation, all due at
the same instant), then reports:
- sustained events/s through the worker (10th to 90th percentile of progress);
- resident memory per open obligation (worker RSS growth / obligations);
- p50 / p99 / max deadline lag (alert raised_at minus due_at) when they all fall due.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devtools.broker import DevBroker, create_topics, free_port  # noqa: E402
from devtools.stack import DEFAULT_POLICY, DevStack, ServiceSpec  # noqa: E402
from services.common.processes import spawn, stop  # noqa: E402

PROCESSED = re.compile(
    r"^safeguard_risk_events_processed_total\{[^}]*\} ([0-9.e+]+)$", re.MULTILINE
)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def processed(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return int(sum(float(v) for v in PROCESSED.findall(text)))


def wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    for _ in range(400):
        if process.poll() is not None:
            raise RuntimeError("risk worker exited")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                return
        except OSError:
            time.sleep(0.25)
    raise RuntimeError("risk worker not ready")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--children", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=240, help="seconds from incident to deadline")
    parser.add_argument(
        "--batch-size",
        default="1",
        help="producer_max_batch_size of the worker ('default' for Faust's)",
    )
    args = parser.parse_args()
    n = args.children

    with DevBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        policy = yaml.safe_load(DEFAULT_POLICY.read_text())
        policy["obligations"]["social-care-referral"]["window"] = f"{args.window}s"
        policy_path = Path(tmp) / "policy.yaml"
        policy_path.write_text(yaml.safe_dump(policy))
        stack = DevStack(
            bootstrap=broker.bootstrap,
            data_dir=Path(tmp),
            webhook_url="http://127.0.0.1:9/",
            policy_file=policy_path,
        )
        create_topics(broker.bootstrap, list(stack.topics.model_dump().values()))
        port = free_port()
        env = stack.environment(ServiceSpec("risk", "RISK_", port))
        env["RISK_LOG_LEVEL"] = "WARNING"
        if args.batch_size == "default":
            env.pop("RISK_STREAM__PRODUCER_MAX_BATCH_SIZE")
        else:
            env["RISK_STREAM__PRODUCER_MAX_BATCH_SIZE"] = args.batch_size
        log = (Path(tmp) / "risk.log").open("wb")
        worker = spawn([sys.executable, "-m", "services.risk.main"], env=env, stdout=log, cwd=REPO)
        try:
            wait_ready(port, worker)
            time.sleep(2)
            baseline = rss_kib(worker.pid)

            at = datetime.now(UTC).replace(microsecond=0)
            due = at + timedelta(seconds=args.window)
            producer = KafkaProducer(
                bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5, batch_size=65536
            )
            started = time.monotonic()
            for i in range(n):
                event = {
                    "specversion": "1.0",
                    "id": f"b-{i}",
                    "source": "urn:safeguard:source:bench",
                    "type": "incident.reported",
                    "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "data": {
                        "incident_id": f"INC-{i}",
                        "category": "neglect",
                        "children": [{"child_id": f"C-{i}", "present": False}],
                    },
                }
                producer.send(
                    stack.topics.events, key=f"C-{i}".encode(), value=json.dumps(event).encode()
                )
            producer.flush()
            produced = time.monotonic() - started
            print(f"produced {n} events in {produced:.1f}s ({n / produced:,.0f}/s, kafka-python)")

            progress: list[tuple[float, int]] = []
            while True:
                count = processed(port)
                progress.append((time.monotonic(), count))
                if count >= n:
                    break
                if datetime.now(UTC) > due:
                    print(
                        "WARNING: deadlines fell due before all events were processed; raise --window"
                    )
                time.sleep(0.5)
            t10 = next(t for t, c in progress if c >= 0.1 * n)
            t90 = next(t for t, c in progress if c >= 0.9 * n)
            c10 = next(c for t, c in progress if c >= 0.1 * n)
            c90 = next(c for t, c in progress if c >= 0.9 * n)
            rate = (c90 - c10) / max(t90 - t10, 1e-9)
            total = progress[-1][0] - started
            print(
                f"processed {n} events in {total:.1f}s from first produce; sustained {rate:,.0f} events/s"
            )

            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                text = response.read().decode()
            busy = re.search(
                r"^safeguard_risk_processing_seconds_sum ([0-9.e+]+)$", text, re.MULTILINE
            )
            print(f"correlate busy time {float(busy.group(1)) if busy else float('nan'):.1f}s")
            time.sleep(3)
            grown = rss_kib(worker.pid) - baseline
            print(
                f"worker RSS {baseline / 1024:.0f} MiB -> {(baseline + grown) / 1024:.0f} MiB: "
                f"{grown * 1024 / n:,.0f} bytes per open obligation ({n} obligations, {n} children)"
            )

            consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
            tps = [
                TopicPartition(stack.topics.alerts, p)
                for p in consumer.partitions_for_topic(stack.topics.alerts)
            ]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            lags: list[float] = []
            deadline = time.monotonic() + args.window + 600
            while len(lags) < n and time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=500).values():
                    for record in batch:
                        data = json.loads(record.value)["data"]
                        raised = datetime.fromisoformat(data["raised_at"])
                        lags.append(
                            (raised - datetime.fromisoformat(data["due_at"])).total_seconds()
                        )
            consumer.close()
            print(
                f"deadline lag over {len(lags)} alerts due together: "
                f"p50 {statistics.median(lags):.2f}s, p99 {percentile(lags, 0.99):.2f}s, max {max(lags):.2f}s"
            )
        finally:
            stop(worker)
            log.close()


if __name__ == "__main__":
    main()
