"""The projector: an aiokafka consumer that writes the topics into PostgreSQL.

Exactly once into the database, on a broker that offers at-least-once: the rows of a
batch and the next offset of each partition it read are written in one transaction
(services.desk.projection), and on every assignment the consumer seeks to the offsets
stored there, never to the group's. A crash before the commit loses nothing (the batch
is read again); a crash after it repeats nothing (the stored offsets are past it). The
writes are idempotent as well, so a topic replayed from the start changes nothing.

A record that can never be projected (not JSON, not valid, a tombstone) is skipped:
counted by reason, logged with its topic, partition and offset, never its payload; its
offset is committed with the rest. A transient failure (the database or the broker not
answering) is retried with backoff for as long as it lasts: nothing is dropped, and
the batch in hand is written once the database is back.
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

from services.common.clock import Clock
from services.desk.broker import aiokafka_options
from services.desk.database import Database
from services.desk.errors import DatabaseUnavailable
from services.desk.metrics import DeskMetrics
from services.desk.projection import Partition, mark_caught_up, read_offsets, write_batch
from services.desk.records import Batch, Change, Kind, Skipped, arrival, decode
from services.desk.settings import DeskSettings

log = structlog.get_logger(__name__)


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
        jitter: float = 0.5 + random.random() / 2  # noqa: S311 - jitter, not security
        return delay * jitter

    def reset(self) -> None:
        """Start again from the initial delay."""
        self.attempt = 0


@dataclass(frozen=True)
class Decoded:
    """One record, decoded: its offset, and its changes or why it has none."""

    offset: int
    changes: list[Change] | Skipped


Prepared = dict[TopicPartition, list[Decoded]]


class Projector:
    """Consumes the read side's topics into the database, offsets in the same transaction."""

    def __init__(
        self,
        settings: DeskSettings,
        database: Database,
        metrics: DeskMetrics,
        clock: Clock,
        kinds: dict[str, Kind],
    ) -> None:
        self.settings = settings
        self.config = settings.projector
        self.database = database
        self.metrics = metrics
        self.clock = clock
        self.kinds = kinds
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
            tp: [
                Decoded(r.offset, decode(self.kinds[tp.topic], r.value, arrival(r.timestamp)))
                for r in records
            ]
            for tp, records in batches.items()
        }

    def _select(
        self, consumer: AIOKafkaConsumer, prepared: Prepared
    ) -> tuple[Batch, dict[Partition, int], dict[TopicPartition, list[Decoded]]]:
        """Return what to write now: rows, next offsets, and the records they come from.

        Only partitions still assigned, and only records at or past the position (what
        the database holds): a record fetched before a seek, or fetched again after one,
        is not written twice. A batch is always contiguous with the position: the seek
        (under the same lock) moves the consumer to the position, and a batch decoded
        before it starts where the last write ended.
        """
        owned = consumer.assignment()
        batch = Batch()
        offsets: dict[Partition, int] = {}
        taken: dict[TopicPartition, list[Decoded]] = {}
        for tp, items in prepared.items():
            start = self.positions.get(tp)
            if tp not in owned or start is None:
                continue
            kept = [item for item in items if item.offset >= start]
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
