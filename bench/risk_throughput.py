"""Risk service benchmark: throughput, deadline lag and memory per open obligation.

    .venv/bin/python bench/risk_throughput.py [--children 100000] [--window 240] [--workers 1]

Starts a development broker, measures the broker's limits on it (raw aiokafka produce
and consume rates and a bare Faust agent's, `bench/limits.py`), then in each of two
configurations (`development`: the changelog one record per producer batch, as `make
run` sets it for the development broker; `production`: batched, as on Apache Kafka)
starts `--workers` risk workers (real processes, one consumer group), produces one
incident per child straight onto the events topic (each opens one obligation, all due at
the same instant), and reports beside each target (production settings):
- sustained events/s through the workers (10th to 90th percentile of progress);
- resident memory per open obligation (workers' RSS growth / obligations) and the
  table value's size per open obligation;
- p50 / p99 / max deadline lag (alert raised_at minus due_at) when they all fall due.
`--profile FILE` records the first worker with py-spy while it ingests (collapsed
stacks), `--split` sends every incident to a partition other than its child's home, so
every event takes the hop through the subjects topic (the cost of not skipping it).
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
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.limits import measure  # noqa: E402
from devtools.broker import DevBroker, create_topics, free_port  # noqa: E402
from devtools.stack import DEFAULT_POLICY, DevStack, ServiceSpec  # noqa: E402
from services.common.processes import spawn, stop  # noqa: E402
from services.common.streams import key_partition  # noqa: E402

PROCESSED = re.compile(
    r"^safeguard_risk_events_processed_total\{[^}]*\} ([0-9.e+]+)$", re.MULTILINE
)
TARGET_RATE = 3_000  # per worker, production settings
TARGET_SHARE_OF_FAUST = 0.6  # of the bare Faust agent's rate on the same broker
TARGET_BYTES = 800
SMALL_BURST = 20_000  # up to this many due together: p99 2 s; 100,000: 15 s
# The two configurations every figure is printed in: the changelog one record per
# producer batch as `make run` sets it for the development broker's defect, and the
# producer settings of production (batched), which Apache Kafka needs no exception from.
CONFIGURATIONS = {"development": "1", "production": "default"}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def processed(ports: list[int]) -> int:
    return int(sum(float(v) for port in ports for v in PROCESSED.findall(metrics(port))))


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
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


def incident(i: int, at: datetime) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": f"b-{i}",
            "source": "urn:safeguard:source:bench",
            "type": "incident.reported",
            "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "data": {
                "incident_id": f"INC-{i}",
                "category": "neglect",
                "area": "north",
                "children": [{"child_id": f"C-{i}", "present": False}],
            },
        }
    ).encode()


def table_bytes_per_obligation(bootstrap: str, topic: str) -> float:
    """Return the mean size of the table's values: each key's last changelog record."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ends = consumer.end_offsets(tps)
    sizes: dict[bytes, int] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(consumer.position(tp) < ends[tp] for tp in tps):
        for batch in consumer.poll(timeout_ms=500).values():
            for record in batch:
                sizes[record.key] = len(record.value or b"")
    consumer.close()
    return statistics.fmean(sizes.values()) if sizes else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--children", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=240, help="seconds from incident to deadline")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--configurations",
        default="development,production",
        help="which of development (changelog one record per producer batch, as on the "
        "development broker) and production (batched) to run, in this order",
    )
    parser.add_argument(
        "--publish-batch-size",
        default="default",
        help="publish_max_batch_size of the producer of alerts, outcomes and checks",
    )
    parser.add_argument("--within", help="the workers' batch_within_seconds (default 0.02)")
    parser.add_argument("--split", action="store_true", help="every event takes the hop")
    parser.add_argument("--profile", type=Path, help="py-spy collapsed stacks of worker 1")
    parser.add_argument(
        "--profile-burst", action="store_true", help="profile when the deadlines fall due"
    )
    parser.add_argument("--no-limits", action="store_true", help="skip the broker's limits")
    args = parser.parse_args()

    with DevBroker() as broker:
        print(f"load before: {Path('/proc/loadavg').read_text().split()[:3]}")
        limits = None if args.no_limits else measure(broker.bootstrap)
        if limits is not None:
            print(limits.describe())
        for name in args.configurations.split(","):
            print(f"--- configuration: {name} ---")
            faust_rate = None
            if limits is not None:
                faust_rate = limits.faust_dev if name == "development" else limits.faust_production
            with tempfile.TemporaryDirectory() as tmp:
                run(args, broker.bootstrap, Path(tmp), CONFIGURATIONS[name], faust_rate)
        print(f"load after: {Path('/proc/loadavg').read_text().split()[:3]}")


def run(  # noqa: C901, PLR0912 - one benchmark, read top to bottom
    args: argparse.Namespace,
    bootstrap: str,
    tmp: Path,
    batch_size: str,
    faust_rate: float | None,
) -> None:
    """Run the benchmark once with the changelog producer's `batch_size`."""
    n = args.children
    suffix = uuid.uuid4().hex[:6]
    policy = yaml.safe_load(DEFAULT_POLICY.read_text())
    policy["obligations"]["social-care-referral"]["window"] = f"{args.window}s"
    policy_path = tmp / "policy.yaml"
    policy_path.write_text(yaml.safe_dump(policy))
    stack = DevStack(
        bootstrap=bootstrap,
        data_dir=tmp,
        topic_prefix=f"b{suffix}.",
        app_suffix=f"-{suffix}",
        webhook_url="http://127.0.0.1:9/",
        policy_file=policy_path,
        partitions=args.partitions,
    )
    create_topics(bootstrap, list(stack.topics.model_dump().values()), partitions=args.partitions)
    workers: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    logs = []
    for index in range(args.workers):
        port = free_port()
        env = stack.environment(ServiceSpec("risk", "RISK_", port))
        env["RISK_LOG_LEVEL"] = "WARNING"
        env["RISK_STREAM__STANDBY_REPLICAS"] = "0"
        if batch_size == "default":
            env.pop("RISK_STREAM__PRODUCER_MAX_BATCH_SIZE")
        else:
            env["RISK_STREAM__PRODUCER_MAX_BATCH_SIZE"] = batch_size
        if args.within:
            env["RISK_STREAM__BATCH_WITHIN_SECONDS"] = args.within
        if args.publish_batch_size != "default":
            env["RISK_STREAM__PUBLISH_MAX_BATCH_SIZE"] = args.publish_batch_size
        log = (tmp / f"risk-{index}.log").open("wb")
        logs.append(log)
        workers.append(
            spawn([sys.executable, "-m", "services.risk.main"], env=env, stdout=log, cwd=REPO)
        )
        ports.append(port)
    try:
        for port, worker in zip(ports, workers, strict=True):
            wait_ready(port, worker)
        time.sleep(2 + 8 * (args.workers - 1))  # a second worker: let the group settle
        for port, worker in zip(ports, workers, strict=True):
            wait_ready(port, worker)
        baseline = sum(rss_kib(w.pid) for w in workers)

        at = datetime.now(UTC).replace(microsecond=0)
        due = at + timedelta(seconds=args.window)
        producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=5, batch_size=65536
        )
        started = time.monotonic()
        for i in range(n):
            key = f"C-{i}".encode()
            partition = None
            if args.split:
                home = key_partition(key, args.partitions)
                partition = (home + 1) % args.partitions
            producer.send(stack.topics.events, key=key, value=incident(i, at), partition=partition)
        producer.flush()
        produced = time.monotonic() - started
        print(f"produced {n} events in {produced:.1f}s ({n / produced:,.0f}/s, kafka-python)")

        profiler = None
        if args.profile and not args.profile_burst:
            profiler = profile(workers[0].pid, args.profile)
        progress: list[tuple[float, int]] = []
        warned = False
        while True:
            count = processed(ports)
            progress.append((time.monotonic(), count))
            if count >= n:
                break
            if datetime.now(UTC) > due and not warned:
                warned = True
                print(
                    "WARNING: deadlines fell due before all events were processed; raise --window"
                )
            time.sleep(0.5)
        if profiler is not None:
            profiler.wait()
        t10, c10 = next((t, c) for t, c in progress if c >= 0.1 * n)
        t90, c90 = next((t, c) for t, c in progress if c >= 0.9 * n)
        rate = (c90 - c10) / max(t90 - t10, 1e-9)
        total = progress[-1][0] - started
        per_worker = rate / args.workers
        print(
            f"processed {n} events in {total:.1f}s from first produce; sustained "
            f"{rate:,.0f} events/s with {args.workers} worker(s), {per_worker:,.0f} per worker "
            f"(target >= {TARGET_RATE:,}: {'met' if per_worker >= TARGET_RATE else 'NOT met'})"
        )
        if faust_rate:
            share = per_worker / faust_rate
            print(
                f"{100 * share:.0f}% of the bare Faust agent's {faust_rate:,.0f} records/s "
                f"(target >= {100 * TARGET_SHARE_OF_FAUST:.0f}%: "
                f"{'met' if share >= TARGET_SHARE_OF_FAUST else 'NOT met'})"
            )
        busy = 0.0
        for port in ports:
            found = re.search(
                r"^safeguard_risk_processing_seconds_sum ([0-9.e+]+)$",
                metrics(port),
                re.MULTILINE,
            )
            busy += float(found.group(1)) if found else 0.0
        text = metrics(ports[0])
        batches = re.search(
            r"^safeguard_risk_batch_messages_count ([0-9.e+]+)$", text, re.MULTILINE
        )
        taken = re.search(r"^safeguard_risk_batch_messages_sum ([0-9.e+]+)$", text, re.MULTILINE)
        mean = float(taken.group(1)) / max(float(batches.group(1)), 1) if batches and taken else 0
        print(f"processor busy time {busy:.1f}s (all workers); {mean:.0f} messages per batch")
        time.sleep(3)
        grown = sum(rss_kib(w.pid) for w in workers) - baseline
        per = grown * 1024 / n
        print(
            f"worker RSS {baseline / 1024:.0f} MiB -> {(baseline + grown) / 1024:.0f} MiB: "
            f"{per:,.0f} bytes per open obligation ({n} obligations, {n} children; "
            f"target <= {TARGET_BYTES:,}: {'met' if per <= TARGET_BYTES else 'NOT met'})"
        )
        changelog = f"safeguard-risk{stack.app_suffix}-subjects-changelog"
        print(
            f"table value {table_bytes_per_obligation(bootstrap, changelog):,.0f} "
            "bytes per subject (mean of each key's last changelog record)"
        )

        if args.profile and args.profile_burst:
            time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds() - 1))
            profiler = profile(workers[0].pid, args.profile)
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        tps = [
            TopicPartition(stack.topics.alerts, p)
            for p in consumer.partitions_for_topic(stack.topics.alerts)
        ]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        lags: dict[str, float] = {}
        deadline = time.monotonic() + args.window + 900
        while len(lags) < n and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    data = json.loads(record.value)["data"]
                    raised = datetime.fromisoformat(data["raised_at"])
                    lags[data["alert_id"]] = (
                        raised - datetime.fromisoformat(data["due_at"])
                    ).total_seconds()
        consumer.close()
        values = list(lags.values())
        p99 = percentile(values, 0.99)
        print(
            f"deadline lag over {len(values)} alerts due together: "
            f"p50 {statistics.median(values):.2f}s, p99 {p99:.2f}s, max {max(values):.2f}s "
            f"(target p99 <= {2 if n <= SMALL_BURST else 15} s: "
            f"{'met' if p99 <= (2 if n <= SMALL_BURST else 15) else 'NOT met'})"
        )
        if len(values) < n:
            print(f"MISSING: {n - len(values)} alerts never raised")
        if profiler is not None:
            profiler.wait()
    finally:
        for worker in workers:
            stop(worker)
        for log in logs:
            log.close()
        if args.profile and args.profile.exists():
            summarise(args.profile)


def profile(pid: int, path: Path) -> subprocess.Popen[bytes]:
    """Start py-spy on `pid` for 12 s: collapsed stacks of what holds the GIL."""
    return subprocess.Popen(  # noqa: S603 - our own arguments
        [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "-p",
            str(pid),
            "-d",
            "12",
            "-r",
            "100",
            "--gil",  # only what holds the GIL: where the CPU time goes
            "-f",
            "raw",
            "-o",
            str(path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def summarise(path: Path) -> None:
    """Print where the samples fell: by our modules and by the libraries underneath."""
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        seen = set()
        for frame in frames:
            name = frame.split(" ")[0]
            where = frame[frame.find("(") + 1 : frame.rfind(":")] if "(" in frame else ""
            for label in (
                "services/risk/engine.py",
                "services/risk/state.py",
                "services/risk/outcomes.py",
                "schemas/events.py",
                "schemas/alerts.py",
                "schemas/outcomes.py",
                "services/common/stream/",
                "faust/",
                "aiokafka/",
                "pydantic",
            ):
                if label in where and label not in seen:
                    seen.add(label)
                    own[label] += samples
            if name in {"_decide", "_write", "publish", "select"} and name not in seen:
                seen.add(name)
                own[name] += samples
    print(f"profile: {total} samples; share of samples whose stack passes through:")
    for label, samples in own.most_common():
        print(f"  {label:32} {100 * samples / max(total, 1):5.1f}%")
    print(f"  (raw stacks in {path}; flame graph: py-spy record -f flamegraph)")


if __name__ == "__main__":
    main()
