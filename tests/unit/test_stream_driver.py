"""The stream core's one commit path: decide all, publish all, write each key once, apply.

A counting logic on the in-memory table and broker; the real logics through the same
driver are tests/unit/test_risk_stream.py and test_notify_stream.py, and the real broker
is the durability, fault and scenario tests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
import pytest
from kafka.partitioner.default import murmur2
from prometheus_client import CollectorRegistry

from schemas.deadletter import DeadLetter, DeadLetterReason
from schemas.errors import FieldError, InvalidEvent
from services.common.clock import FakeClock
from services.common.stream.driver import Change, StreamDriver, StreamMetrics, View
from services.common.stream.faust_runtime import FaustProcessor
from services.common.stream.inputs import Input, Record
from services.common.stream.memory import MemoryBroker, MemoryTable, PublishFailed
from services.common.stream.retry import RetryPolicy
from services.common.stream.schedule import (
    CHECK_BATCH,
    CHECK_SLICE,
    DeadlineSchedule,
    send_due_checks,
)
from services.common.streams import key_partition

DUE = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class State:
    count: int = 0
    partition: int | None = None


@dataclass
class Logic:
    """Counts messages per key; `bad` is invalid, `boom` raises, `forward` only publishes."""

    applied_effects: list[str] = field(default_factory=list)
    rebuilt_keys: list[str] = field(default_factory=list)
    failing_checks: set[str] = field(default_factory=set)

    def encode(self, state: State) -> bytes:
        return json.dumps([state.count, state.partition]).encode()

    def decode(self, raw: bytes) -> State:
        count, partition = json.loads(raw)
        return State(count, partition)

    def due(self, _state: State) -> datetime | None:
        return DUE

    def apply(self, message: Input, view: View[State], _now: datetime) -> list[Change[State]]:
        key = (message.key or b"").decode()
        if message.value == b"bad":
            raise InvalidEvent([FieldError(loc="data", msg="bad")])
        if message.value == b"boom":
            raise KeyError("C-1 Jane Doe")  # a message that may carry personal data
        if message.value == b"forward":
            return [Change(key, None, [Record("elsewhere", b"k", b"copy", 3)], write=False)]
        current = view.get(key) or State()
        current.count += 1
        record = Record("out", key.encode(), message.value or b"")
        return [Change(key, current, [record], DUE, effects=[f"{key}={current.count}"])]

    def check(
        self, key: str, state: State, _view: View[State], _now: datetime
    ) -> Change[State] | None:
        if key in self.failing_checks:
            raise RuntimeError("rule raised")
        state.count += 100
        return Change(key, state, [Record("out", key.encode(), b"checked")], None)

    def applied(self, changes: Sequence[Change[State]]) -> None:
        self.applied_effects.extend(e for change in changes for e in change.effects)

    def rebuilt(self, key: str, _state: State) -> None:
        self.rebuilt_keys.append(key)

    def forget(self, _now: datetime) -> None:
        self.rebuilt_keys.clear()


class Recording(MemoryBroker):
    """A broker that also notes the table as it stood at each publish."""

    def __init__(self, table: MemoryTable) -> None:
        super().__init__()
        self.table = table
        self.tables_seen: list[dict[bytes, bytes]] = []
        self.calls: list[list[Record]] = []
        self.degraded_seen: list[bool] = []
        self.driver: StreamDriver[Any] | None = None

    async def publish(self, records: Sequence[Record]) -> None:
        self.tables_seen.append(dict(self.table.values))
        self.calls.append(list(records))
        if self.driver is not None:
            self.degraded_seen.append(self.driver.degraded)
        await super().publish(records)


@pytest.fixture
def setup() -> tuple[StreamDriver[State], Logic, Recording, MemoryTable]:
    table = MemoryTable()
    broker = Recording(table)
    logic = Logic()
    driver: StreamDriver[State] = StreamDriver(
        logic=logic,
        table=table,
        publisher=broker,
        clock=FakeClock(DUE),
        metrics=StreamMetrics(CollectorRegistry(), "safeguard_test"),
        checks_topic="checks",
        dead_letters_topic="dl",
        retry=RetryPolicy(first_delay_seconds=0, max_delay_seconds=0),
    )
    broker.driver = driver
    return driver, logic, broker, table


def inputs(*items: tuple[str, bytes, int]) -> list[Input]:
    return [
        Input("in", partition, n, key.encode(), value)
        for n, (key, value, partition) in enumerate(items)
    ]


def metric(driver: StreamDriver[Any], name: str, **labels: str) -> float:
    value = getattr(driver.metrics, name)
    child = value.labels(**labels) if labels else value
    return float(child._value.get())  # noqa: SLF001


def test_a_batch_is_published_before_each_key_is_written_once_with_its_last_state(setup) -> None:
    driver, logic, broker, table = setup
    batch = inputs(("a", b"1", 0), ("b", b"2", 1), ("a", b"3", 0), ("b", b"bad", 1))
    asyncio.run(driver.process(batch))

    assert broker.tables_seen == [{}]  # nothing written before the broker had it all
    ((*outputs, dead),) = broker.calls
    assert [(r.topic, r.value) for r in outputs] == [("out", b"1"), ("out", b"2"), ("out", b"3")]
    assert dead.topic == "dl"  # the invalid message, published with the batch's records
    letter = DeadLetter.model_validate_json(dead.value)
    assert (letter.reason, letter.offset, letter.key) == (DeadLetterReason.INVALID_EVENT, 3, "b")
    assert logic.decode(table.values[b"a"]) == State(2, 0)  # the later message saw the first
    assert logic.decode(table.values[b"b"]) == State(1, 1)
    assert logic.applied_effects == ["a=1", "b=1", "a=2"]  # once each, after the write
    assert metric(driver, "deadlettered", reason="invalid_event") == 1
    assert len(driver.schedule) == 2  # both keys watched, each on its own partition


def test_a_failed_publish_retries_the_batch_decided_afresh_and_applies_its_effects_once(
    setup,
) -> None:
    driver, logic, broker, table = setup
    broker.fail_publishes = 2
    asyncio.run(driver.process(inputs(("a", b"1", 0), ("a", b"2", 0))))

    assert [len(call) for call in broker.calls] == [2, 2, 2]  # decided afresh each time
    assert broker.tables_seen == [{}, {}, {}]  # nothing written until the publish went through
    assert broker.degraded_seen == [False, True, True]  # not ready while retrying
    assert logic.decode(table.values[b"a"]) == State(2, 0)
    assert logic.applied_effects == ["a=1", "a=2"]  # what one attempt would have done
    assert len(broker.records("out")) == 2
    assert metric(driver, "transient_failures", stage="publish") == 2
    assert not driver.degraded


def test_a_forwarded_copy_is_published_and_nothing_is_written(setup) -> None:
    driver, _, broker, table = setup
    asyncio.run(driver.process(inputs(("a", b"forward", 0))))
    assert [(m.value, m.partition) for m in broker.records("elsewhere")] == [(b"copy", 3)]
    assert table.values == {}


def test_a_rule_that_raises_dead_letters_the_input_with_the_error_type_only(setup) -> None:
    driver, _, broker, _ = setup
    asyncio.run(driver.process(inputs(("a", b"boom", 0), ("b", b"1", 0))))
    (dead,) = broker.records("dl")
    letter = DeadLetter.model_validate_json(dead.value or b"")
    assert letter.reason is DeadLetterReason.PROCESSING_ERROR
    assert [e.msg for e in letter.errors] == ["KeyError"]
    assert "Jane" not in (dead.value or b"").decode()
    assert len(broker.records("out")) == 1  # the other message went on


def test_a_dead_letter_whose_publish_fails_is_retried_not_skipped(setup) -> None:
    driver, _, broker, _ = setup
    broker.fail_publishes = 3
    asyncio.run(driver.process(inputs(("a", b"bad", 0))))
    assert len(broker.records("dl")) == 1
    assert metric(driver, "deadlettered", reason="invalid_event") == 1  # counted once
    assert not driver.degraded


def test_a_check_that_raises_is_looked_at_again_later_and_the_others_are_checked(setup) -> None:
    driver, logic, broker, table = setup
    asyncio.run(driver.process(inputs(("a", b"1", 0), ("b", b"1", 0))))
    logic.failing_checks.add("a")
    driver.schedule.clear()
    check = Input("checks", 0, 0, b"", json.dumps({"check": ["a", "b", "gone"]}).encode())
    asyncio.run(driver.process([check]))
    assert logic.decode(table.values[b"b"]).count == 101
    assert logic.decode(table.values[b"a"]).count == 1
    assert [m.value for m in broker.records("out")][-1] == b"checked"
    due = driver.schedule.pop_due(DUE + timedelta(minutes=2))
    assert due == {0: ["a"]}  # watched again a minute on, not dead-lettered


def test_a_check_on_another_partition_is_ignored(setup) -> None:
    driver, logic, _, table = setup
    asyncio.run(driver.process(inputs(("a", b"1", 0))))
    stale = Input("checks", 1, 0, b"", json.dumps({"check": ["a"]}).encode())
    asyncio.run(driver.process([stale]))
    assert logic.decode(table.values[b"a"]).count == 1


def test_a_rebuild_watches_the_active_partitions_only(setup) -> None:
    driver, logic, _, table = setup
    asyncio.run(driver.process(inputs(("a", b"1", 0), ("b", b"1", 1))))
    driver.rebuild(table.items(), {1})
    assert logic.rebuilt_keys == ["b"]
    assert driver.schedule.pop_due(DUE) == {1: ["b"]}


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
        raise PublishFailed

    asyncio.run(send_due_checks(schedule, DUE, send))
    assert len(schedule) == CHECK_SLICE + 10


def test_a_subjects_home_is_where_kafka_python_puts_its_key() -> None:
    # ingest produces with kafka-python's default partitioner; risk computes with aiokafka's.
    for n in range(200):
        key = f"C-{n}".encode()
        assert key_partition(key, 8) == (murmur2(key) & 0x7FFFFFFF) % 8


@dataclass
class _Message:
    key: bytes | None
    value: bytes | None
    topic: str = "in"
    partition: int = 0
    offset: int = 0


@dataclass
class _Event:
    message: _Message


def test_a_faust_batch_is_bounded_by_keys_so_each_check_message_goes_alone() -> None:
    app = faust.App(f"t-{id(object())}", broker="kafka://127.0.0.1:1", store="memory://")
    processor: FaustProcessor[Any] = FaustProcessor(
        app,
        inputs=["in"],
        table="t",
        partitions=2,
        logic=Logic(),  # type: ignore[arg-type]
        dead_letters_topic="dl",
        clock=FakeClock(DUE),
        metrics=StreamMetrics(CollectorRegistry(), "safeguard_test"),
        check_interval_seconds=1,
    )
    checks = processor.checks_name
    taken = [
        _Event(_Message(b"a", b"1")),
        _Event(_Message(b"b", b"2")),
        _Event(_Message(None, b'{"check": []}', topic=checks)),
        _Event(_Message(None, b'{"check": []}', topic=checks)),
        _Event(_Message(b"c", b"3")),
    ]
    chunks = list(processor._chunks(taken))  # type: ignore[arg-type]  # noqa: SLF001
    assert [len(chunk) for chunk in chunks] == [2, 1, 1, 1]
