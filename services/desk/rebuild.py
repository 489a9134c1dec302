"""Rebuild the desk's database from the topics, into an empty database.

The topics are the truth; the database is a cache of them. A rebuild migrates an empty
database and runs the projector on it, under a consumer group of its own, until every
partition of the desk's topics is written up to the end it had when the rebuild began.
The desk pods go on serving from the old database meanwhile; once this returns, point
`DESK_DATABASE_URL` at the new one and restart them (docs/runbooks/procedures/
desk-rebuild.md). Only the console's sessions are not rebuilt: people sign in again.

What could never be projected was dead-lettered when it was first read: a rebuild counts
and logs it again, and publishes nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from services.common.clock import Clock, SystemClock
from services.desk.broker import aiokafka_options
from services.desk.database import Database
from services.desk.errors import DatabaseUnavailable
from services.desk.metrics import DeskMetrics
from services.desk.migrate import upgrade
from services.desk.projection import Partition, read_offsets
from services.desk.projector import Projector
from services.desk.records import topic_kinds
from services.desk.settings import DeskSettings

#: Tables the topics do not hold: left empty by a rebuild. Sessions and sign-ins are
#: people's; scheduled sends and their epochs are the schedule's own record of what was
#: sent (a rebuilt desk that forgot them would send every digest and pack again, so the
#: procedure carries them over with the sessions: docs/runbooks/procedures/desk-rebuild.md).
NOT_REBUILT = frozenset(
    {"sessions", "sign_in_attempts", "sign_in_counts", "scheduled_sends", "schedule_epochs"}
)


class RebuildRefused(RuntimeError):
    """The rebuild cannot start (a database already projected into, a missing topic)."""


@dataclass(frozen=True)
class Progress:
    """How far a rebuild is: records written and still to write, over every partition.

    `unseen` counts the partitions with no stored row yet: an empty one gets its row when
    the projector first finds it at its end, and the live desk holds that row too.
    """

    written: int
    remaining: int
    unseen: int = 0

    @property
    def complete(self) -> bool:
        """Every partition written to the end it had, and each with its row."""
        return self.remaining == 0 and self.unseen == 0


@dataclass(frozen=True)
class Span:
    """The offsets a partition had when the rebuild began: its first and its end."""

    first: int
    end: int


async def spans(settings: DeskSettings, topics: list[str]) -> dict[Partition, Span]:
    """Return every partition of `topics` with its first and end offsets now."""
    consumer = AIOKafkaConsumer(**aiokafka_options(settings.kafka), enable_auto_commit=False)
    await consumer.start()
    try:
        known = await consumer.topics()
        missing = sorted(set(topics) - known)
        if missing:
            raise RebuildRefused(f"no such topic: {', '.join(missing)}")
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        firsts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return {(tp.topic, tp.partition): Span(int(firsts[tp]), int(ends[tp])) for tp in partitions}


def progress(target: dict[Partition, Span], stored: dict[Partition, int]) -> Progress:
    """Return how much of `target` the stored offsets cover."""
    written = remaining = unseen = 0
    for partition, span in target.items():
        unseen += partition not in stored
        at = min(span.end, max(span.first, stored.get(partition, span.first)))
        written += at - span.first
        remaining += span.end - at
    return Progress(written=written, remaining=remaining, unseen=unseen)


async def rebuild(
    settings: DeskSettings,
    *,
    report: Callable[[Progress], None],
    clock: Clock | None = None,
    interval: float = 1.0,
) -> Progress:
    """Fill the empty database of `settings` from the topics; return what was written.

    `report` is told the progress every `interval` seconds and at the end. The database
    being away is waited out, as the projector waits it out; a database that already
    holds a projection is refused, since its offsets would make this a no-op.
    """
    url = settings.database_url.get_secret_value()
    await asyncio.to_thread(upgrade, url)
    kinds = topic_kinds(settings.kafka.topics, settings.audit_topic)
    target = await spans(settings, list(kinds))
    database = Database(url, settings.db, pooled=False)
    try:
        async with database.read() as connection:
            if await read_offsets(connection, list(target)):
                raise RebuildRefused(
                    "the database already holds a projection: rebuild into an empty one"
                )
        group = f"{settings.projector.group_id}-rebuild-{uuid.uuid4().hex[:8]}"
        own = settings.model_copy(
            update={"projector": settings.projector.model_copy(update={"group_id": group})}
        )
        metrics = DeskMetrics(CollectorRegistry())
        projector = Projector(own, database, metrics, clock or SystemClock(), kinds, publisher=None)
        task = asyncio.create_task(projector.run(), name="rebuild")
        try:
            while True:
                done = await _progress(database, target)
                if done is not None:
                    report(done)
                    if done.complete:
                        return done
                if task.done():
                    task.result()  # the projector ended: say why
                await asyncio.sleep(interval)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await database.close()


async def _progress(database: Database, target: dict[Partition, Span]) -> Progress | None:
    try:
        async with database.read() as connection:
            stored = await read_offsets(connection, list(target))
    except DatabaseUnavailable:
        return None
    return progress(target, stored)
