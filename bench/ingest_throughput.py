"""Ingest throughput: events/s through the batch endpoint and through single posts, against
the raw kafka-python producer (acks=all) as the ceiling, all on one machine in one run.

    .venv/bin/python bench/ingest_throughput.py [--events 20000] [--singles 4000]

Starts its own Tansu broker and an ingest process (`python -m services.ingest.main`, as
in production), drives it from concurrent clients on loopback, and stops everything when
done. Request loops are bounded in count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path

import aiohttp
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from devtools.broker import DevBroker, create_topics, free_port
from devtools.stack import DEV_TOKEN, DEV_TOKENS_FILE
from services.common.environment import development_environment
from services.common.processes import spawn, stop
from services.ingest.settings import ProducerSettings

REPO = Path(__file__).resolve().parent.parent
BATCH_TYPE = "application/cloudevents-batch+json"
HEADERS = {"Authorization": f"Bearer {DEV_TOKEN}"}


def make_events(count: int, prefix: str) -> list[dict[str, object]]:
    """Realistic events (about 300 bytes each), spread over 500 children."""
    when = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [
        {
            "specversion": "1.0",
            "id": f"{prefix}-{i}",
            "source": "urn:safeguard:source:bench-control-room",
            "type": "referral.shared",
            "time": when,
            "data": {
                "referral_id": f"R-{i}",
                "child_id": f"C-{i % 500}",
                "area": "north",
                "agency": "childrens_social_care",
                "incident_id": f"INC-{i % 997}",
                "contents": ["incident_details", "risk_assessment"],
            },
        }
        for i in range(count)
    ]


def raw_producer(bootstrap: str, topic: str, events: list[dict[str, object]]) -> float:
    """Events/s of kafka-python alone, acks=all, with the tuning ingest uses."""
    tuning = ProducerSettings()
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=tuning.linger_ms,
        batch_size=tuning.batch_size_bytes,
    )
    records = [
        (str(e["data"]["child_id"]).encode(), json.dumps(e).encode())  # type: ignore[index]
        for e in events
    ]
    producer.send(topic, key=b"warm-up", value=b"{}").get(timeout=10)
    started = time.perf_counter()
    futures = [producer.send(topic, key=key, value=value) for key, value in records]
    producer.flush()
    for future in futures:
        future.get(timeout=0)  # raises if any record failed
    elapsed = time.perf_counter() - started
    producer.close()
    return len(records) / elapsed


async def drive(
    url: str, bodies: list[bytes], content_type: str, concurrency: int
) -> tuple[float, dict[int, int]]:
    """POST every body from `concurrency` clients; return elapsed seconds and statuses."""
    statuses: dict[int, int] = {}
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as session:

        async def client() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                async with session.post(
                    url, data=body, headers={"Content-Type": content_type}
                ) as response:
                    await response.read()
                    statuses[response.status] = statuses.get(response.status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return time.perf_counter() - started, statuses


def ids_on_topic(bootstrap: str, topic: str, expect: int, timeout: float = 60.0) -> set[str]:
    """Read the topic from the start and return the event ids on it (end offsets undercount
    on Tansu, so records are counted by reading them)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ids: set[str] = set()
        deadline = time.monotonic() + timeout
        while len(ids) < expect and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                ids.update(json.loads(r.value)["id"] for r in records)
        return ids
    finally:
        consumer.close()


def wait_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:  # noqa: S310
                if response.status == HTTPStatus.OK:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("ingest did not become ready")


def one_round(
    args: argparse.Namespace, bootstrap: str, url: str, topics: tuple[str, str], label: str
) -> tuple[float, float, float, set[str]]:
    """Measure raw, batch and single once; return the three rates and the ids acknowledged."""
    raw_topic, _ingest_topic = topics
    raw_rate = raw_producer(bootstrap, raw_topic, make_events(args.events, f"raw{label}"))

    batch_events = make_events(args.events, f"batch{label}")
    size = args.batch_size
    batches = [
        json.dumps(batch_events[i : i + size]).encode() for i in range(0, len(batch_events), size)
    ]
    elapsed, statuses = asyncio.run(
        drive(f"{url}/v1/events/batch", batches, BATCH_TYPE, args.batch_clients)
    )
    batch_rate = len(batch_events) / elapsed
    assert statuses == {202: len(batches)}, statuses  # noqa: S101

    singles = [json.dumps(e).encode() for e in make_events(args.singles, f"single{label}")]
    elapsed, statuses = asyncio.run(
        drive(f"{url}/v1/events", singles, "application/json", args.single_clients)
    )
    single_rate = len(singles) / elapsed
    assert statuses == {202: len(singles)}, statuses  # noqa: S101

    sent = {str(e["id"]) for e in batch_events} | {json.loads(b)["id"] for b in singles}
    return raw_rate, batch_rate, single_rate, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20000, help="events for raw and batch")
    parser.add_argument("--singles", type=int, default=3000, help="events posted one by one")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--batch-clients", type=int, default=4)
    parser.add_argument("--single-clients", type=int, default=32)
    parser.add_argument(
        "--rounds", type=int, default=3, help="raw, batch, single in turn; medians reported"
    )
    args = parser.parse_args()

    with DevBroker() as broker:
        suffix = uuid.uuid4().hex[:6]
        topics = (f"bench.raw.{suffix}", f"bench.ingest.{suffix}")
        create_topics(broker.bootstrap, [*topics, f"bench.audit.{suffix}"])
        port = free_port()
        env = {
            **os.environ,
            **development_environment(),  # the development token is refused outside it
            "INGEST_AUDIT_TOPIC": f"bench.audit.{suffix}",
            "INGEST_PORT": str(port),
            "INGEST_TOKENS_FILE": str(DEV_TOKENS_FILE),
            "INGEST_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
            "INGEST_KAFKA__TOPICS__EVENTS": topics[1],
            "INGEST_LOG_JSON": "true",
        }
        server = spawn(
            [sys.executable, "-m", "services.ingest.main"],
            env=env,
            stdout=subprocess.DEVNULL,
            cwd=REPO,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url)
            # Warm-up: the producer connects on the first write.
            warm_up = json.dumps(make_events(1, "warm-up")[0]).encode()
            asyncio.run(drive(f"{url}/v1/events", [warm_up], "application/json", 1))
            rounds = []
            sent: set[str] = {"warm-up-0"}
            for number in range(args.rounds):
                *rates, ids = one_round(args, broker.bootstrap, url, topics, f"-{number}")
                rounds.append(rates)
                sent |= ids
                print(
                    f"round {number + 1}: raw {rates[0]:6.0f}  batch {rates[1]:6.0f}  "
                    f"single {rates[2]:6.0f} events/s  (batch/raw {rates[1] / rates[0]:.0%})"
                )
            written = ids_on_topic(broker.bootstrap, topics[1], len(sent))
        finally:
            stop(server)

    raw_rate, batch_rate, single_rate = (statistics.median(r[i] for r in rounds) for i in range(3))
    print(f"machine: {os.cpu_count()} cores; broker: Tansu (memory); ~300-byte events")
    print(f"medians of {args.rounds} rounds:")
    print(f"raw kafka-python producer (acks=all): {raw_rate:8.0f} events/s ({args.events} events)")
    print(
        f"ingest batch endpoint:                {batch_rate:8.0f} events/s "
        f"({args.events} events, batches of {args.batch_size}, {args.batch_clients} clients)"
    )
    print(
        f"ingest single posts:                  {single_rate:8.0f} events/s "
        f"({args.singles} events, {args.single_clients} clients)"
    )
    print(f"batch / raw: {batch_rate / raw_rate:.0%}   single / raw: {single_rate / raw_rate:.0%}")
    missing = len(sent - written)
    print(f"acknowledged events on the ingest topic: {len(sent & written)} of {len(sent)}")
    if missing:
        sys.exit(f"{missing} acknowledged events are missing from the topic")


if __name__ == "__main__":
    main()
