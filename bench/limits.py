"""The broker's limits on this machine, measured in the same run as a service benchmark.

    .venv/bin/python bench/limits.py [--messages 20000] [--bootstrap host:port]

A service's figure means little without what the broker and client library can do at
best under the same load: raw aiokafka (the library under Faust) producing records of
the benchmark's size with acks=all, with its default batching and with one record per
batch (what the development broker needs for changelogs), and consuming them back; and a
bare Faust agent doing a risk worker's I/O with nothing to decide (`bench/bare_faust.py`),
with the changelog one record per batch (the development setting) and batched (the
production one). The service benchmarks import `measure` and print its figures beside
their own. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devtools.broker import DevBroker, create_topics  # noqa: E402

RECORD_BYTES = 400  # about one incident event or one alert


@dataclass(frozen=True)
class Limits:
    """Records per second raw aiokafka reaches on the broker."""

    produce_batched: float
    produce_one_per_batch: float
    consume: float
    # A bare Faust agent's records/s: changelog one record per batch, and batched.
    faust_dev: float | None = None
    faust_production: float | None = None

    def describe(self) -> str:
        """Return the figures on one line."""
        line = (
            f"limit (raw aiokafka, {RECORD_BYTES} B records, acks=all): produce "
            f"{self.produce_batched:,.0f}/s batched, {self.produce_one_per_batch:,.0f}/s "
            f"one record per batch; consume {self.consume:,.0f}/s"
        )
        if self.faust_dev is not None and self.faust_production is not None:
            line += (
                f"; bare Faust agent {self.faust_dev:,.0f}/s (changelog one record per batch), "
                f"{self.faust_production:,.0f}/s (batched)"
            )
        return line


async def _produce(bootstrap: str, topic: str, count: int, *, one_per_batch: bool) -> float:
    options: dict[str, object] = {"bootstrap_servers": bootstrap, "acks": "all"}
    if one_per_batch:
        options["max_batch_size"] = 1
    producer = AIOKafkaProducer(**options)  # type: ignore[arg-type]
    await producer.start()
    value = b"x" * RECORD_BYTES
    try:
        started = time.perf_counter()
        # Pipelined as a service publishes: everything handed over, then every answer awaited.
        futures = [await producer.send(topic, value, key=f"k-{i}".encode()) for i in range(count)]
        await asyncio.gather(*futures)
        return count / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str, count: int) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"limits-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        seen = 0
        started: float | None = None
        while seen < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if started is None and batches:
                started = time.perf_counter()  # from the first record: not the group join
            seen += sum(len(records) for records in batches.values())
        return count / (time.perf_counter() - (started or time.perf_counter()))
    finally:
        await consumer.stop()


def bare_faust(bootstrap: str, count: int, *, changelog_batch_size: int | None) -> float:
    """Return the records/s of `bench/bare_faust.py` over `count` records produced first."""
    topic = f"limits-faust-{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, [topic], partitions=4)

    async def fill() -> None:
        await _produce(bootstrap, topic, count, one_per_batch=False)

    asyncio.run(fill())
    command = [
        sys.executable,
        str(REPO / "bench" / "bare_faust.py"),
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--count",
        str(count),
    ]
    if changelog_batch_size is not None:
        command += ["--changelog-batch-size", str(changelog_batch_size)]
    with tempfile.TemporaryDirectory() as data_dir:
        done = subprocess.run(  # noqa: S603 - our own script
            [*command, "--data-dir", data_dir],
            capture_output=True,
            timeout=600,
            check=False,
        )
    for line in done.stdout.decode().splitlines():
        if line.startswith("{"):
            return float(json.loads(line)["rate"])
    raise RuntimeError(f"bare Faust agent failed: {done.stderr.decode()[-2000:]}")


def measure(bootstrap: str, messages: int = 20_000, *, faust: bool = True) -> Limits:
    """Measure the broker's limits with `messages` records per figure."""
    suffix = uuid.uuid4().hex[:8]
    batched, single = f"limits-batched-{suffix}", f"limits-single-{suffix}"
    create_topics(bootstrap, [batched, single])

    async def run() -> Limits:
        produce_batched = await _produce(bootstrap, batched, messages, one_per_batch=False)
        # Fewer records: one per batch is slow, and the rate does not depend on the count.
        single_count = max(1, messages // 4)
        produce_single = await _produce(bootstrap, single, single_count, one_per_batch=True)
        consume = await _consume(bootstrap, batched, messages)
        return Limits(produce_batched, produce_single, consume)

    limits = asyncio.run(run())
    if not faust:
        return limits
    return Limits(
        limits.produce_batched,
        limits.produce_one_per_batch,
        limits.consume,
        faust_dev=bare_faust(bootstrap, messages, changelog_batch_size=1),
        faust_production=bare_faust(bootstrap, messages, changelog_batch_size=None),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--bootstrap", help="an existing broker (default: start Tansu)")
    args = parser.parse_args()
    if args.bootstrap:
        print(measure(args.bootstrap, args.messages).describe())
        return
    with DevBroker() as broker:
        print(measure(broker.bootstrap, args.messages).describe())


if __name__ == "__main__":
    main()
