"""The projector: an aiokafka consumer that writes the topics into PostgreSQL.

Exactly once into the database, on a broker that offers at-least-once: the rows of a
batch and the next offset of each partition it read are written in one transaction
(services.desk.projection), and on every assignment the consumer seeks to the offsets
stored there, never to the group's. A crash before the commit loses nothing (the batch
is read again); a crash after it repeats nothing (the stored offsets are past it). The
writes are idempotent as well, so a topic replayed from the start changes nothing.

A record that can never be projected (not JSON, not valid) is dead-lettered on
`safeguarding.deadletter.v1` with its reason and bytes (`safeguard deadletter` repairs and
replays it), before the batch's offsets move past it, and counted and logged with its
topic, partition and offset, never its payload; a tombstone is skipped, counted. A
transient failure (the database or the broker not answering) is retried with backoff for
as long as it lasts: nothing is dropped, and the batch in hand is written once the
database is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from schemas.deadletter import DeadLetterReason
from schemas.errors import FieldError
from services.common.clock import Clock
from services.common.stream.inputs import Input, dead_letter
from services.desk.broker import Publisher, aiokafka_options
from services.desk.database import Database
from services.desk.errors import BrokerUnavailable, DatabaseUnavailable
from services.desk.metrics import DeskMetrics
from services.desk.projection import Partition, mark_caught_up, read_offsets, write_batch
from services.desk.records import Batch, Change, Kind, Skipped, arrival, decode
from services.desk.settings import DeskSettings

log = structlog.get_logger(__name__)
# An instance of its own: the module-level generator is the test framework's to seed.
JITTER = random.Random()  # noqa: S311 - jitter, not security


class Backoff:
    """Exponential backoff with jitter between `initial` and `maximum` seconds."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.attempt = 0

    def next_delay(self) -> float:
        """Return how long to wait before the next attempt."""
        delay = min(self.maximum, self.initial * float(2**self.attempt))
        self.attempt += 1
        jitter: float = 0.5 + JITTER.random() / 2
        return delay * jitter

    def reset(self) -> None:
        """Start again from the initial delay."""
        self.attempt = 0


# What a skipped record is dead-lettered as (a tombstone is simply nothing to project).
# Events and dead letters are read only for figures: risk dead-letters a bad event itself,
# and a dead letter dead-lettered again would be read again.
NOT_DEAD_LETTERED = frozenset({Kind.EVENTS, Kind.DEADLETTER})
DEAD_LETTERED = {
    "invalid_json": DeadLetterReason.INVALID_JSON,
    "invalid_record": DeadLetterReason.INVALID_EVENT,
}


@dataclass(frozen=True)
class Decoded:
    """One record, decoded: its offset, and its changes or why it has none."""

    offset: int
    changes: list[Change] | Skipped
    # Why it is dead-lettered, and the record as it came: for what is dead-lettered only.
    dead: DeadLetterReason | None = None
    key: bytes | None = None
    value: bytes | None = None


@dataclass(frozen=True)
class Fetched:
    """A partition's decoded records, and how many times it had been sought when fetched."""

    seeks: int
    items: list[Decoded]


Prepared = dict[TopicPartition, Fetched]


class Projector:
    """Consumes the read side's topics into the database, offsets in the same transaction."""

    def __init__(  # noqa: PLR0913 - the projector's collaborators
        self,
        settings: DeskSettings,
        database: Database,
        metrics: DeskMetrics,
        clock: Clock,
        kinds: dict[str, Kind],
        *,
        publisher: Publisher | None,
    ) -> None:
        self.settings = settings
        self.config = settings.projector
        self.database = database
        self.metrics = metrics
        self.clock = clock
        self.kinds = kinds
        # None: a rebuild, which reads again what was dead-lettered when first read.
        self.publisher = publisher
        self.consumer: AIOKafkaConsumer | None = None
        # The next offset to project per partition: what the database holds, as far as
        # this projector knows (for the lag and the caught-up heartbeat).
        self.positions: dict[TopicPartition, int] = {}
        self.last_heartbeat = 0.0
        self.running = False
        # A batch is written, and partitions are sought, one at a time. `positions` is the
        # truth about what is written: a batch keeps only the records at or past it, for
        # the partitions still assigned, whatever the consumer handed out around a seek.
        self.lock = asyncio.Lock()
        # Seeks per partition: records fetched before a partition's latest seek are never
        # written, as the records between the sought offset and theirs may be in none.
        self.seeks: dict[TopicPartition, int] = {}

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        """Project until cancelled; a consumer that fails is replaced after a backoff."""
        backoff = Backoff(self.config.retry_initial_seconds, self.config.retry_max_seconds)
        self.running = True
        try:
            while True:
                try:
                    await self._consume()
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if task is None or task.cancelling():
                        raise  # the desk is stopping
                    # A cancellation nobody asked of this task (one a library's timeout let
                    # out of a write): a fault like any other, not the end of projecting.
                    self.metrics.retries.labels(cause="consumer").inc()
                    log.warning("projector_restarting", error="CancelledError")
                    await asyncio.sleep(backoff.next_delay())
                except Exception as error:  # noqa: BLE001 - the loop must outlive any fault
                    self.metrics.retries.labels(cause="consumer").inc()
                    log.warning("projector_restarting", error=type(error).__name__)
                    await asyncio.sleep(backoff.next_delay())
        finally:
            self.running = False

    async def _consume(self) -> None:
        kafka = self.settings.kafka
        consumer = AIOKafkaConsumer(
            **aiokafka_options(kafka),
            group_id=self.config.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(self.config.session_timeout_seconds * 1000),
            heartbeat_interval_ms=1000,
            max_poll_records=self.config.max_records,
        )
        consumer.subscribe(list(self.kinds), listener=_Listener(self, consumer))
        self.consumer = consumer
        # One batch is written while the next is fetched and decoded: the database and
        # this process work at the same time, in order (one write at a time).
        writing: asyncio.Task[None] | None = None
        try:
            await consumer.start()
            while True:
                batches = await consumer.getmany(
                    timeout_ms=int(self.config.poll_timeout_seconds * 1000),
                    max_records=self.config.max_records,
                )
                prepared = self._decode(batches) if batches else None
                if writing is not None:
                    await writing
                    writing = None
                if prepared is not None:
                    writing = asyncio.create_task(self._apply(consumer, prepared))
                await self._heartbeat(consumer)
        finally:
            if writing is not None:
                writing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writing
            self.consumer = None
            self.positions = {}
            await consumer.stop()

    # -- one batch ---------------------------------------------------------------------

    def _decode(self, batches: dict[TopicPartition, list[Any]]) -> Prepared:
        """Decode a batch's records (the CPU-bound part, done while the last one is written)."""
        return {
            tp: Fetched(
                self.seeks.get(tp, 0), [self._decoded(self.kinds[tp.topic], r) for r in records]
            )
            for tp, records in batches.items()
        }

    @staticmethod
    def _decoded(kind: Kind, record: Any) -> Decoded:  # noqa: ANN401 - aiokafka's records
        changes = decode(kind, record.value, arrival(record.timestamp))
        if (
            isinstance(changes, Skipped)
            and changes.reason in DEAD_LETTERED
            and kind not in NOT_DEAD_LETTERED
        ):
            reason = DEAD_LETTERED[changes.reason]
            return Decoded(record.offset, changes, reason, record.key, record.value)
        return Decoded(record.offset, changes)

    def _select(
        self, consumer: AIOKafkaConsumer, prepared: Prepared
    ) -> tuple[Batch, dict[Partition, int], dict[TopicPartition, list[Decoded]]]:
        """Return what to write now: rows, next offsets, and the records they come from.

        Only partitions still assigned, only records fetched since the partition's last
        seek, and only those at or past the position (what the database holds). A batch is
        then contiguous with the position: the seek (under the same lock) moves the
        consumer and the position together, and every later batch starts where the one
        before it ended. A batch dropped here (its partition revoked, or sought since) is
        fetched again from the sought offset, so nothing between is skipped.
        """
        owned = consumer.assignment()
        batch = Batch()
        offsets: dict[Partition, int] = {}
        taken: dict[TopicPartition, list[Decoded]] = {}
        for tp, fetched in prepared.items():
            start = self.positions.get(tp)
            if tp not in owned or start is None or fetched.seeks != self.seeks.get(tp, 0):
                continue
            kept = [item for item in fetched.items if item.offset >= start]
            if not kept:
                continue
            for item in kept:
                if not isinstance(item.changes, Skipped):
                    for change in item.changes:
                        batch.add(change)
            offsets[tp.topic, tp.partition] = kept[-1].offset + 1
            taken[tp] = kept
        return batch, offsets, taken

    async def _apply(self, consumer: AIOKafkaConsumer, prepared: Prepared) -> None:
        backoff = Backoff(self.config.retry_initial_seconds, self.config.retry_max_seconds)
        while True:
            async with self.lock:
                batch, offsets, taken = self._select(consumer, prepared)
                if not offsets:
                    return
                try:
                    await self._dead_letter(taken)
                except BrokerUnavailable:
                    self.metrics.retries.labels(cause="broker").inc()
                    await asyncio.sleep(backoff.next_delay())
                    continue
                started = time.monotonic()
                caught_up = {
                    p for p, offset in offsets.items() if offset >= (self._end(consumer, p) or 0)
                }
                try:
                    async with self.database.write() as connection:
                        await write_batch(connection, batch, offsets, caught_up, self.clock.now())
                except DatabaseUnavailable:
                    self.metrics.retries.labels(cause="database").inc()
                else:
                    self.metrics.batch_seconds.observe(time.monotonic() - started)
                    for (topic, partition), offset in offsets.items():
                        self.positions[TopicPartition(topic, partition)] = offset
                    break
            await asyncio.sleep(backoff.next_delay())
        self._count(taken)
        self._lag(consumer)

    async def _dead_letter(self, taken: dict[TopicPartition, list[Decoded]]) -> None:
        """Publish what can never be projected, before its offset is committed."""
        if self.publisher is None:
            return
        at = self.clock.now()
        topic = self.settings.kafka.topics.deadletter
        for tp, items in taken.items():
            for item in items:
                if item.dead is not None:
                    message = Input(tp.topic, tp.partition, item.offset, item.key, item.value)
                    errors = [FieldError(loc="(root)", msg=item.dead.value)]
                    record = dead_letter(topic, message, item.dead, errors, at)
                    await self.publisher.publish(
                        record.topic, record.key or b"", record.value, what="a dead letter"
                    )

    def _count(self, taken: dict[TopicPartition, list[Decoded]]) -> None:
        """Count the records written, and the skipped among them, with their reasons."""
        for tp, items in taken.items():
            kind = self.kinds[tp.topic]
            self.metrics.records.labels(topic=kind.value).inc(len(items))
            for item in items:
                if isinstance(item.changes, Skipped):
                    reason = item.changes.reason
                    self.metrics.skipped.labels(topic=kind.value, reason=reason).inc()
                    log.warning(
                        "projector_record_skipped",
                        topic=tp.topic,
                        partition=tp.partition,
                        offset=item.offset,
                        reason=reason,
                    )

    def _end(self, consumer: AIOKafkaConsumer, partition: Partition) -> int | None:
        end: int | None = consumer.highwater(TopicPartition(*partition))
        return end

    def _lag(self, consumer: AIOKafkaConsumer) -> None:
        totals: dict[Kind, int] = dict.fromkeys(self.kinds.values(), 0)
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            position = self.positions.get(tp)
            if end is not None and position is not None:
                totals[self.kinds[tp.topic]] += max(0, end - position)
        for kind, lag in totals.items():
            self.metrics.lag.labels(topic=kind.value).set(lag)

    async def _heartbeat(self, consumer: AIOKafkaConsumer) -> None:
        """Mark the partitions read to their end as caught up, once per interval."""
        now = time.monotonic()
        if now - self.last_heartbeat < self.config.heartbeat_interval_seconds:
            return
        self.last_heartbeat = now
        done: dict[Partition, int] = {}
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            position = self.positions.get(tp)
            if end is not None and position is not None and position >= end:
                done[tp.topic, tp.partition] = position
        self._lag(consumer)
        if not done:
            return
        try:
            async with self.lock, self.database.write() as connection:
                await mark_caught_up(connection, done, self.clock.now())
        except DatabaseUnavailable:
            self.metrics.retries.labels(cause="heartbeat").inc()

    # -- assignment ----------------------------------------------------------------------

    async def assigned_partitions(
        self, consumer: AIOKafkaConsumer, assigned: Iterable[TopicPartition]
    ) -> None:
        """Seek each newly assigned partition to the database's offset (or the start)."""
        async with self.lock:
            await self._seek(consumer, list(assigned))

    async def revoked_partitions(self, revoked: Iterable[TopicPartition]) -> None:
        """Forget revoked partitions (after a write in progress ends): nothing more of theirs."""
        async with self.lock:
            for tp in revoked:
                self.positions.pop(tp, None)

    async def _seek(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
        backoff = Backoff(self.config.retry_initial_seconds, self.config.retry_max_seconds)
        while True:
            try:
                async with self.database.read() as connection:
                    stored = await read_offsets(
                        connection, [(tp.topic, tp.partition) for tp in partitions]
                    )
                break
            except DatabaseUnavailable:
                # Nothing can be projected without knowing where to start: wait for it.
                self.metrics.retries.labels(cause="assignment").inc()
                await asyncio.sleep(backoff.next_delay())
        fresh = [tp for tp in partitions if (tp.topic, tp.partition) not in stored]
        starts = await consumer.beginning_offsets(fresh) if fresh else {}
        targets = {
            tp: stored.get((tp.topic, tp.partition), int(starts.get(tp, 0))) for tp in partitions
        }
        # No await from here on: every position moves at once, the consumer's and ours.
        self.positions = {tp: o for tp, o in self.positions.items() if tp in consumer.assignment()}
        for tp, offset in targets.items():
            consumer.seek(tp, offset)
            self.positions[tp] = offset
            self.seeks[tp] = self.seeks.get(tp, 0) + 1
        log.info("projector_assigned", partitions=len(partitions))


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, projector: Projector, consumer: AIOKafkaConsumer) -> None:
        self.projector = projector
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.projector.revoked_partitions(revoked)
        log.info("projector_revoked", partitions=len(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.projector.assigned_partitions(self.consumer, assigned)
