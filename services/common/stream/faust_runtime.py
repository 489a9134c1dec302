"""The stream core under Faust: the agent, the timer, recovery, the table and the producer.

Faust is why the services have changelogs, standbys and rebalancing; this module is
where it meets the driver (`services.common.stream.driver`), which decides and commits:

- **One writer per key.** One agent reads the service's input topics and its own checks
  topic (co-partitioned) in batches (`take_events`, which acks a batch's messages only
  once the loop's body is done with them, so no offset is committed past a message
  whose changes are not written); it is the only writer of the table.
- **Deadlines are data.** The table is the truth; the driver's schedule is an index of
  `(due, partition, key)` rebuilt from the active partitions whenever they are assigned
  (`table.on_recover`): a worker also holds standby copies of other partitions, and
  watching those would fire alerts twice. The timer only sends "check these keys"
  messages to the owning partition, where the check runs inside the stream.
- **Not ready** (`ready()`) from a rebalance until recovered, and while a transient
  failure is being retried.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterator, Sequence
from typing import Any, Generic, TypeVar, cast

import faust
from faust.streams import _current_event
from faust.types import EventT, ProducerT

from services.common.clock import Clock
from services.common.stream.driver import (
    Logic,
    S,
    StreamDriver,
    StreamMetrics,
    check_message,
)
from services.common.stream.inputs import Input, Record
from services.common.stream.retry import RetryPolicy
from services.common.stream.schedule import CHECK_BATCH, send_due_checks

T = TypeVar("T")

# aiokafka's default `max_batch_size` (bytes per partition per batch).
DEFAULT_BATCH_BYTES = 16384
# Input messages taken together: Faust's and aiokafka's cost per message (stream, ack,
# produce round trip) is most of the time, and a batch pays the publish round trip
# once. `BATCH_WITHIN` bounds what a quiet stream adds to a message's latency.
BATCH_MAX = 500
BATCH_WITHIN_SECONDS = 0.02


class FaustTable:
    """A Faust table of bytes as the driver's `Table`."""

    def __init__(self, table: Any) -> None:  # noqa: ANN401 - faust tables are untyped
        self.table = table

    def get(self, key: bytes) -> bytes | None:
        """Return a key's value, or None."""
        value: bytes | None = self.table.get(key)
        return value

    def put(self, key: bytes, value: bytes | None, origin: Input) -> None:
        """Write a key from the stream of the message that owns it.

        Faust sends the changelog record (and rocksdb picks its database) by the current
        event's partition, which in a batch is not the agent's own: it is set to the
        owning message's event for the write.
        """
        token = _current_event.set(weakref.ref(cast("EventT[Any]", origin.handle)))
        try:
            if value is not None:
                self.table[key] = value
            elif self.table.get(key) is not None:
                del self.table[key]
        finally:
            _current_event.reset(token)


class FaustPublisher:
    """Publishes through Faust's producer, or through a producer of its own.

    With `own`, a producer of its own, so that `StreamSettings.producer_max_batch_size`
    (one record per batch on the development broker, whose end offsets after a batch of
    several records are wrong and make table recovery skip changelog records) binds the
    changelog only: records read by consumers, which do not depend on end offsets, keep
    the producer's batching. Otherwise Faust's producer, the changelog's: a service
    whose records should not reach the broker before the state they follow (notify's
    delivery outcomes name an alert its table should hold after a crash) keeps them
    behind its changelog records in one producer: mostly, not always (a partition's
    backlog of batches leaves one per request), so the logic must still tolerate it.
    """

    def __init__(self, app: faust.App, *, own: bool, max_batch_size: int | None) -> None:
        self.app = app
        self.own = own
        self.max_batch_size = max_batch_size
        self._producer: ProducerT | None = None
        self._lock = asyncio.Lock()

    async def publish(self, records: Sequence[Record]) -> None:
        """Hand every record to the producer, then wait for each acknowledgement."""
        producer = await self.producer()
        pending = [
            await producer.send(r.topic, r.key, r.value, r.partition, None, None) for r in records
        ]
        for future in pending:
            await future

    async def producer(self) -> ProducerT:
        """Return the producer, started."""
        if not self.own:
            producer: ProducerT = await self.app.maybe_start_producer()
            return producer
        async with self._lock:
            if self._producer is None:
                producer = self.app.transport.create_producer(beacon=self.app.beacon)
                producer.max_batch_size = self.max_batch_size or DEFAULT_BATCH_BYTES
                await producer.start()
                self._producer = producer
            return self._producer

    async def stop(
        self,
        _sender: Any,  # noqa: ANN401 - faust signal arguments are untyped
        /,
        *_args: Any,  # noqa: ANN401
        **_kwargs: Any,  # noqa: ANN401
    ) -> None:
        """Stop the producer of its own, if any (a Faust signal receiver)."""
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


def to_input(event: EventT[Any]) -> Input:
    """Return the driver's view of a Faust event."""
    message = event.message
    value = message.value
    return Input(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=value if isinstance(value, bytes) else None,
        handle=event,
    )


class FaustProcessor(Generic[S]):
    """The agent, table, timer and recovery around one `StreamDriver`."""

    def __init__(  # noqa: PLR0913 - the processor's collaborators
        self,
        app: faust.App,
        *,
        inputs: list[str],
        table: str,
        partitions: int,
        logic: Logic[S],
        dead_letters_topic: str,
        clock: Clock,
        metrics: StreamMetrics,
        check_interval_seconds: float,
        retry: RetryPolicy | None = None,
        batch_max: int = BATCH_MAX,
        batch_within_seconds: float = BATCH_WITHIN_SECONDS,
        own_publisher: bool = False,
        publish_max_batch_size: int | None = None,
    ) -> None:
        self.app = app
        self.inputs = inputs
        self.batch_max = batch_max
        self.batch_within_seconds = batch_within_seconds
        self.clock = clock
        self.recovered = False
        self.checks_name = f"{app.conf.id}-checks"
        # One channel over every input and the checks: one stream, so everything about a
        # key is handled in order by one coroutine. `internal` makes Faust create the
        # checks topic (the inputs exist already and are left as they are).
        self.channel = app.topic(
            *inputs,
            self.checks_name,
            key_serializer="raw",
            value_serializer="raw",
            internal=True,
            partitions=partitions,
        )
        # Bytes keys and values declared as types (not a Schema): recovery decodes by
        # them, and a compact encoded value costs far less memory than parsed objects.
        self.table = app.Table(
            table, default=None, partitions=partitions, key_type=bytes, value_type=bytes
        )
        self.publisher = FaustPublisher(
            app, own=own_publisher, max_batch_size=publish_max_batch_size
        )
        self.driver: StreamDriver[S] = StreamDriver(
            logic=logic,
            table=FaustTable(self.table),
            publisher=self.publisher,
            clock=clock,
            metrics=metrics,
            checks_topic=self.checks_name,
            dead_letters_topic=dead_letters_topic,
            retry=retry,
        )
        app.agent(self.channel, name="process")(self._run)
        app.timer(check_interval_seconds, name="send_checks")(self._send_checks)
        self.table.on_recover(self._rebuild)
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_before_shutdown.connect(self.publisher.stop)

    def ready(self) -> bool:
        """Tell whether partitions are recovered and nothing is being retried."""
        return self.recovered and not self.driver.degraded

    def get(self, key: str) -> S | None:
        """Return a key's state from this worker's table (standby copies included), or None."""
        return self.driver.get(key)

    def active_partitions(self) -> set[int]:
        """Return the partitions of the inputs this worker is the active owner of."""
        topic = self.inputs[0]
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic}

    def forward_from(self, topic: faust.TopicT, *, name: str) -> None:
        """Also read `topic` (not co-partitioned with the table) in batches through the driver.

        The logic must only publish what such a message decides, never write: the
        message's partition does not own a key of the table.
        """
        self.app.agent(topic, name=name)(self._run)

    async def _run(self, stream: Any) -> None:  # noqa: ANN401 - faust streams are untyped
        async for events in stream.take_events(self.batch_max, within=self.batch_within_seconds):
            for chunk in self._chunks(events):
                await self.driver.process([to_input(event) for event in chunk])

    def _chunks(self, events: Sequence[EventT[Any]]) -> Iterator[list[EventT[Any]]]:
        # A check message holds up to CHECK_BATCH keys: 500 of them taken together would
        # be one batch of 250,000 decisions, held in memory (and walked by the garbage
        # collector) until the last is taken. Batches are bounded by keys, not messages.
        chunk: list[EventT[Any]] = []
        weight = 0
        for event in events:
            cost = CHECK_BATCH if event.message.topic == self.checks_name else 1
            if chunk and weight + cost > self.batch_max:
                yield chunk
                chunk, weight = [], 0
            chunk.append(event)
            weight += cost
        if chunk:
            yield chunk

    async def _send_checks(self) -> None:
        async def send(partition: int, keys: list[str]) -> None:
            # Awaiting the broker's answer (not just the buffer) is what lets a lost check
            # put its keys back on the schedule.
            await self.driver.publish(
                [Record(self.checks_name, b"", check_message(keys), partition)]
            )

        await send_due_checks(self.driver.schedule, self.clock.now(), send)

    async def _rebuild(self) -> None:
        states = ((key.decode(), raw) for key, raw in self.table.items() if raw is not None)
        self.driver.rebuild(states, self.active_partitions())
        self.recovered = True

    async def _on_revoked(
        self,
        _sender: Any,  # noqa: ANN401 - faust signal arguments are untyped
        /,
        *_args: Any,  # noqa: ANN401
        **_kwargs: Any,  # noqa: ANN401
    ) -> None:
        # Not ready until the new assignment is recovered and the schedule rebuilt.
        self.recovered = False
