"""The keyed-state processor's batch path: decide all, publish all, then write each key once.

The table, the publisher and the logic are replaced; the real-broker versions are the
durability, fault and scenario tests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
import pytest
from kafka.partitioner.default import murmur2
from prometheus_client import CollectorRegistry

from schemas.errors import FieldError, InvalidEvent
from services.common.clock import SystemClock
from services.common.processor import (
    Change,
    KeyedStateProcessor,
    ProcessorMetrics,
    Record,
    RetryPolicy,
)
from services.common.schedule import CHECK_BATCH, CHECK_SLICE, DeadlineSchedule, send_due_checks
from services.common.streams import key_partition

DUE = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Message:
    key: bytes | None
    value: bytes | None
    topic: str = "in"
    partition: int = 0
    offset: int = 0


@dataclass
class Event:
    message: Message


@dataclass
class State:
    count: int = 0
    partition: int | None = None


@dataclass
class Logic:
    """Counts the messages per key; `bad` values are invalid; `forward` only publishes."""

    observed: list[tuple[str, int | None, int | None]] = field(default_factory=list)

    def encode(self, state: State) -> bytes:
        return json.dumps([state.count, state.partition]).encode()

    def decode(self, raw: bytes) -> State:
        count, partition = json.loads(raw)
        return State(count, partition)

    def due(self, _state: State) -> datetime | None:
        return DUE

    def apply(self, message: Any, state: Callable[[str], State | None]) -> list[Change[State]]:
        key = message.key.decode()
        if message.value == b"bad":
            raise InvalidEvent([FieldError(loc="data", msg="bad")])
        if message.value == b"forward":
            return [Change(key, None, [Record("elsewhere", b"k", b"copy", 3)], write=False)]  # type: ignore[arg-type]
        current = state(key) or State()
        current.count += 1
        return [Change(key, current, [Record("out", key.encode(), message.value)], DUE)]  # type: ignore[arg-type]

    def check(self, _key: str, _state: State, _now: datetime) -> Change[State] | None:
        return None

    def observe(self, key: str, before: State | None, after: State | None) -> None:
        self.observed.append(
            (key, None if before is None else before.count, None if after is None else after.count)
        )

    def forget(self) -> None:
        self.observed.clear()


@pytest.fixture
def processor() -> KeyedStateProcessor[Any]:
    app = faust.App(f"t-{id(object())}", broker="kafka://127.0.0.1:1", store="memory://")
    proc: KeyedStateProcessor[Any] = KeyedStateProcessor(
        app,
        inputs=["in"],
        table="t",
        partitions=2,
        logic=Logic(),  # type: ignore[arg-type]
        dead_letters_topic="dl",
        clock=SystemClock(),
        metrics=ProcessorMetrics(CollectorRegistry(), "safeguard_test"),
        check_interval_seconds=1,
        retry=RetryPolicy(first_delay_seconds=0.001, max_delay_seconds=0.002),
    )
    proc.table = {}  # type: ignore[assignment]
    proc.recovered = True
    return proc


def events(*items: tuple[str, bytes, int]) -> list[Event]:
    return [
        Event(Message(key.encode(), value, partition=partition, offset=n))
        for n, (key, value, partition) in enumerate(items)
    ]


def test_a_batch_is_published_before_each_key_is_written_once_with_its_last_state(
    processor: KeyedStateProcessor[Any],
) -> None:
    published: list[list[tuple[Any, bytes | None]]] = []
    table_when_published: list[dict[bytes, bytes]] = []

    async def publish(records: list[Record]) -> None:
        table_when_published.append(dict(processor.table))
        published.append([(r.topic, r.value) for r in records])

    processor.publish = publish  # type: ignore[method-assign]
    batch = events(("a", b"1", 0), ("b", b"2", 1), ("a", b"3", 0), ("b", b"bad", 1))
    asyncio.run(processor.process_batch(batch))  # type: ignore[arg-type]

    assert table_when_published == [{}]  # nothing written before the broker had it all
    ((*outputs, dead),) = published
    assert outputs == [("out", b"1"), ("out", b"2"), ("out", b"3")]
    assert dead[0].get_topic_name() == "dl"  # the invalid message, with the batch's records
    logic = processor.logic
    assert logic.decode(processor.table[b"a"]) == State(2, 0)  # the later message saw the first
    assert logic.decode(processor.table[b"b"]) == State(1, 1)
    # The index follows each key from before the batch to its last state, once.
    assert sorted(logic.observed) == [("a", None, 2), ("b", None, 1)]  # type: ignore[attr-defined]
    assert processor.metrics.deadlettered.labels(reason="invalid_event")._value.get() == 1  # noqa: SLF001
    assert len(processor.schedule) == 2  # both keys watched, each on its own partition


def test_a_failed_publish_retries_the_whole_batch_and_writes_nothing_until_it_succeeds(
    processor: KeyedStateProcessor[Any],
) -> None:
    attempts: list[int] = []

    async def publish(records: list[Record]) -> None:
        attempts.append(len(records))
        assert processor.table == {}
        if len(attempts) < 3:
            raise TimeoutError("publish timed out")

    processor.publish = publish  # type: ignore[method-assign]
    asyncio.run(processor.process_batch(events(("a", b"1", 0), ("a", b"2", 0))))  # type: ignore[arg-type]
    assert attempts == [2, 2, 2]  # decided afresh from the table each time
    assert processor.logic.decode(processor.table[b"a"]) == State(2, 0)
    assert processor.ready()


def test_a_forwarded_copy_is_published_and_nothing_is_written(
    processor: KeyedStateProcessor[Any],
) -> None:
    sent: list[Record] = []

    async def publish(records: list[Record]) -> None:
        sent.extend(records)

    processor.publish = publish  # type: ignore[method-assign]
    asyncio.run(processor.process_batch(events(("a", b"forward", 0))))  # type: ignore[arg-type]
    assert [(r.value, r.partition) for r in sent] == [(b"copy", 3)]
    assert processor.table == {}


def test_a_burst_of_deadlines_is_sent_in_slices_and_every_key_once() -> None:
    schedule = DeadlineSchedule()
    total = 2 * CHECK_SLICE + 7
    for n in range(total):
        schedule.push(DUE, n % 3, f"child:{n}")
    sent: list[tuple[int, int]] = []

    async def send(partition: int, keys: list[str]) -> None:
        assert len(keys) <= CHECK_BATCH
        sent.append((partition, len(keys)))

    asyncio.run(send_due_checks(schedule, DUE + timedelta(seconds=1), send))
    assert sum(count for _, count in sent) == total
    assert len(schedule) == 0


def test_a_failed_slice_puts_its_keys_back_and_leaves_the_rest_on_the_schedule() -> None:
    schedule = DeadlineSchedule()
    for n in range(CHECK_SLICE + 10):
        schedule.push(DUE, 0, f"child:{n}")

    async def send(_partition: int, _keys: list[str]) -> None:
        raise ConnectionError

    asyncio.run(send_due_checks(schedule, DUE, send))
    assert len(schedule) == CHECK_SLICE + 10


def test_a_subjects_home_is_where_kafka_python_puts_its_key() -> None:
    # ingest produces with kafka-python's default partitioner; risk computes with aiokafka's.
    for n in range(200):
        key = f"C-{n}".encode()
        assert key_partition(key, 8) == (murmur2(key) & 0x7FFFFFFF) % 8


def test_a_batch_is_bounded_by_keys_so_each_check_message_goes_alone(
    processor: KeyedStateProcessor[Any],
) -> None:
    checks = processor.checks_name
    taken = [
        Event(Message(b"a", b"1")),
        Event(Message(b"b", b"2")),
        Event(Message(None, b'{"check": []}', topic=checks)),
        Event(Message(None, b'{"check": []}', topic=checks)),
        Event(Message(b"c", b"3")),
    ]
    chunks = list(processor._chunks(taken))  # type: ignore[arg-type]  # noqa: SLF001
    assert [len(chunk) for chunk in chunks] == [2, 1, 1, 1]
