"""The stream core in memory: a broker of lists and runtimes that drive the real logic.

The same `StreamDriver` and the same service logic as under Faust, with the broker, the
table and the timer replaced by plain data and the clock injected: tests move time
instead of sleeping, and `safeguard backtest` replays months of events in seconds.
Records are read back in the order they were published, per runtime across its input
topics, which is one of the orders Kafka may deliver them in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic

from prometheus_client import CollectorRegistry

from services.common.clock import Clock
from services.common.stream.driver import Logic, S, StreamDriver, StreamMetrics, check_message
from services.common.stream.inputs import Input, Record
from services.common.stream.retry import RetryPolicy
from services.common.stream.schedule import send_due_checks
from services.common.streams import key_partition


class PublishFailed(ConnectionError):
    """A publish the memory broker was told to fail (a broker fault in a test)."""


@dataclass
class MemoryBroker:
    """Topics as lists of records, every one with a partition and an offset."""

    partitions: int = 4
    log: list[Input] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    # Injected faults: the next `fail_publishes` publishes (with a record on `fail_topic`,
    # when set) fail as a broker that is away would.
    fail_publishes: int = 0
    fail_topic: str | None = None

    async def publish(self, records: Sequence[Record]) -> None:
        """Append records, each on its partition (by key, as Kafka's default partitioner)."""
        chosen = self.fail_topic is None or any(r.topic == self.fail_topic for r in records)
        if self.fail_publishes and chosen:
            self.fail_publishes -= 1
            raise PublishFailed("publish failed (injected)")
        for record in records:
            self.append(record)

    def append(self, record: Record) -> Input:
        """Append one record and return it as it will be read."""
        partition = record.partition
        if partition is None:
            partition = key_partition(record.key or b"", self.partitions)
        offset = self.offsets.get((record.topic, partition), 0)
        self.offsets[(record.topic, partition)] = offset + 1
        message = Input(record.topic, partition, offset, record.key, record.value)
        self.log.append(message)
        return message

    def records(self, topic: str) -> list[Input]:
        """Return every record of a topic, in publish order."""
        return [m for m in self.log if m.topic == topic]


class MemoryTable:
    """A dict as the driver's table."""

    def __init__(self) -> None:
        self.values: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        """Return a key's value, or None."""
        return self.values.get(key)

    def put(self, key: bytes, value: bytes | None, origin: Input) -> None:  # noqa: ARG002 - one table for every partition
        """Write (None: delete) a key."""
        if value is None:
            self.values.pop(key, None)
        else:
            self.values[key] = value

    def items(self) -> Iterable[tuple[str, bytes]]:
        """Return every key and value."""
        return [(key.decode(), value) for key, value in self.values.items()]


class MemoryRuntime(Generic[S]):
    """One service's worker: reads its inputs from the broker, decides through the driver."""

    def __init__(  # noqa: PLR0913 - the runtime's collaborators
        self,
        broker: MemoryBroker,
        logic: Logic[S],
        clock: Clock,
        *,
        name: str,
        inputs: Sequence[str],
        dead_letters_topic: str = "deadletter",
        batch_max: int = 500,
        table: MemoryTable | None = None,
        metrics: StreamMetrics | None = None,
    ) -> None:
        self.broker = broker
        self.clock = clock
        self.inputs = {*inputs, f"{name}-checks"}
        self.batch_max = batch_max
        self.table = table or MemoryTable()
        self.position = 0
        self.driver: StreamDriver[S] = StreamDriver(
            logic=logic,
            table=self.table,
            publisher=broker,
            clock=clock,
            metrics=metrics or StreamMetrics(CollectorRegistry(), f"safeguard_{name}"),
            checks_topic=f"{name}-checks",
            dead_letters_topic=dead_letters_topic,
            retry=RetryPolicy(first_delay_seconds=0, max_delay_seconds=0),
        )
        self.driver.rebuild(self.table.items(), set(range(broker.partitions)))

    async def poll(self) -> int:
        """Process what was published to the inputs since the last poll; return how many."""
        taken = 0
        while True:
            pending = [m for m in self.broker.log[self.position :] if m.topic in self.inputs]
            self.position = len(self.broker.log)
            if not pending:
                return taken
            for start in range(0, len(pending), self.batch_max):
                await self.driver.process(pending[start : start + self.batch_max])
            taken += len(pending)

    async def tick(self) -> None:
        """Send the checks of every deadline passed by now, as the timer does."""

        async def send(partition: int, keys: list[str]) -> None:
            await self.broker.publish(
                [Record(self.driver.checks_topic, b"", check_message(keys), partition)]
            )

        await send_due_checks(self.driver.schedule, self.clock.now(), send)

    def next_due(self) -> datetime | None:
        """Return the earliest deadline on the schedule, if any."""
        return self.driver.schedule.earliest()


async def settle(runtimes: Sequence[MemoryRuntime[S]]) -> None:
    """Tick and poll every runtime until none has anything left to do at this instant."""
    while True:
        for runtime in runtimes:
            await runtime.tick()
        taken = 0
        for runtime in runtimes:
            taken += await runtime.poll()
        if not taken:
            return
