"""One keyed-state processor for risk and notify: state per key, deadlines, one error policy.

A service supplies a `Logic`: how to decode its table values and its input messages, and
pure decisions (`apply` for an input, `check` for a key whose deadline came) that return
a `Change`: the records to publish, the new state (or None to delete it) and when to look
at the key next. The processor does the rest, the same way for both services:

- **One writer per key.** One agent reads the service's input topics and its own checks
  topic (co-partitioned); it is the only writer of the table, so each decision is taken
  once, on the partition's active owner.
- **Deadlines are data.** The table is the truth; the schedule is an in-memory index of
  `(due, partition, key)` rebuilt from the active partitions whenever they are assigned.
  The timer only sends "check these keys" messages to the owning partition.
- **Publish, then write.** A change's records reach the broker before its state is
  written: a crash between the two makes the input run again and re-publish under the
  same deterministic ids (dropped downstream), whereas state written first could lose
  what should have been published.
- **Error policy.** Input that can never succeed (it does not decode, or the pure logic
  raises on it) goes to the dead-letter topic with the reason, counted. Everything else
  is transient (a publish that fails or times out, the broker gone, a dead-letter send
  that fails): the message is retried with bounded backoff while the partition is held,
  so its offset is never committed past it and nothing is lost or dead-lettered for a
  fault that passes. The service reports not ready while it is retrying.
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

import faust
import structlog
from faust.streams import _current_event
from faust.types import EventT, Message, ProducerT, TopicT
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas.deadletter import DeadLetter, DeadLetterReason
from schemas.errors import FieldError, InvalidEvent, MalformedJSON
from services.common.clock import Clock
from services.common.deadletter import DeadLetters
from services.common.schedule import CHECK_BATCH, DeadlineSchedule, send_due_checks

log = structlog.get_logger(__name__)


class Stateful(Protocol):
    """What the processor needs of a state: the partition that owns it."""

    partition: int | None


S = TypeVar("S", bound=Stateful)
T = TypeVar("T")

CHECK_RETRY = timedelta(minutes=1)
# Input messages taken together: Faust's and aiokafka's cost per message (stream, ack,
# produce round trip) is most of the time, and a batch pays the publish round trip
# once. `BATCH_WITHIN` bounds what a quiet stream adds to a message's latency.
BATCH_MAX = 500
BATCH_WITHIN_SECONDS = 0.02


@dataclass(frozen=True)
class Record:
    """A record to publish before the state is written."""

    topic: TopicT
    key: bytes | None
    value: bytes
    # None: the producer's partitioner (by key) decides.
    partition: int | None = None


@dataclass
class Change(Generic[S]):
    """What a decision does to one key: publish, then write `state` (None deletes it)."""

    key: str
    state: S | None
    records: list[Record] = field(default_factory=list)
    due: datetime | None = None
    # Run once the state is written (notify starts its deliveries here).
    after: Callable[[], None] | None = None
    # False: only publish the records (risk forwarding an event to another partition).
    write: bool = True


class Logic(Protocol[S]):
    """What a service supplies: codecs and pure decisions."""

    def encode(self, state: S) -> bytes:
        """Return a state's table value."""
        ...

    def decode(self, raw: bytes) -> S:
        """Return the state a table value holds."""
        ...

    def due(self, state: S) -> datetime | None:
        """Return when the key must be looked at next, if ever."""
        ...

    def apply(self, message: Message, state: Callable[[str], S | None]) -> list[Change[S]]:
        """Decide what an input message changes (raise InvalidEvent/MalformedJSON if bad)."""
        ...

    def check(self, key: str, state: S, now: datetime) -> Change[S] | None:
        """Decide what a key whose deadline may have come changes, if anything."""
        ...

    def observe(self, key: str, before: S | None, after: S | None) -> None:
        """Keep the service's indexes and gauges in step with a written change.

        A logic with a true `tracks_changes` attribute is called only by rebuilds (with
        `before` None): it follows written changes from their `after` callbacks.
        """
        ...

    def forget(self) -> None:
        """Clear the service's indexes before a rebuild."""
        ...


class ProcessorMetrics:
    """The processor's own metrics, under the service's prefix (`safeguard_<service>_`)."""

    def __init__(self, registry: CollectorRegistry, prefix: str) -> None:
        self.deadlettered = Counter(
            f"{prefix}_deadlettered_total",
            "Messages sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=registry,
        )
        self.transient_failures = Counter(
            f"{prefix}_transient_failures_total",
            "Attempts that failed for a reason that passes (publish, broker), by stage; "
            "the message is retried, never dropped.",
            ["stage"],
            registry=registry,
        )
        self.degraded = Gauge(
            f"{prefix}_degraded",
            "1 while a message is being retried after a transient failure.",
            registry=registry,
        )
        self.batch_messages = Histogram(
            f"{prefix}_batch_messages",
            "Messages taken and processed together.",
            registry=registry,
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
        )
        self.processing = Histogram(
            f"{prefix}_processing_seconds",
            "Time to process one input or check message, retries included.",
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 30),
        )


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff for transient failures, and how long a publish may take."""

    first_delay_seconds: float = 0.2
    max_delay_seconds: float = 10.0
    publish_timeout_seconds: float = 15.0

    def delay(self, attempt: int) -> float:
        """Return the pause before retry number `attempt` (0-based)."""
        return float(min(self.max_delay_seconds, self.first_delay_seconds * 2**attempt))


# aiokafka's default `max_batch_size` (bytes per partition per batch).
DEFAULT_BATCH_BYTES = 16384


@dataclass
class _Batch(Generic[S]):
    """What a batch of messages decided: records to publish first, then states to write."""

    records: list[Record] = field(default_factory=list)
    # Each change with the partition of the message that decided it.
    changes: list[tuple[Change[S], int]] = field(default_factory=list)
    # Per key: its last encoded state (None deletes it) and the event whose partition owns it.
    written: dict[str, tuple[bytes | None, EventT[Any]]] = field(default_factory=dict)
    before: dict[str, S | None] = field(default_factory=dict)
    dead_letters: list[tuple[Message, DeadLetterReason, list[FieldError]]] = field(
        default_factory=list
    )

    def dead(self, message: Message, reason: DeadLetterReason, errors: list[FieldError]) -> None:
        """Dead-letter `message` with the batch's records."""
        self.dead_letters.append((message, reason, errors))


class KeyedStateProcessor(Generic[S]):
    """The agent, table, schedule, checks and error policy shared by risk and notify."""

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
        metrics: ProcessorMetrics,
        check_interval_seconds: float,
        retry: RetryPolicy | None = None,
        batch_max: int = BATCH_MAX,
        batch_within_seconds: float = BATCH_WITHIN_SECONDS,
        own_publisher: bool = False,
        publish_max_batch_size: int | None = None,
    ) -> None:
        self.app = app
        self.batch_max = batch_max
        self.batch_within_seconds = batch_within_seconds
        self.own_publisher = own_publisher
        self.publish_max_batch_size = publish_max_batch_size
        self._publisher: ProducerT | None = None
        self._publisher_lock = asyncio.Lock()
        self.logic = logic
        self.clock = clock
        self.metrics = metrics
        self.retry = retry or RetryPolicy()
        self.schedule = DeadlineSchedule()
        self.recovered = False
        self.degraded = False
        self.checks_name = f"{app.conf.id}-checks"
        self.inputs = inputs
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
        self.checks_out = app.topic(self.checks_name, key_serializer="raw", value_serializer="raw")
        self.dead_letters_topic = app.topic(
            dead_letters_topic, key_serializer="raw", value_serializer="raw"
        )
        self.dead_letters = DeadLetters(self.dead_letters_topic, clock, metrics.deadlettered)
        # Bytes keys and values declared as types (not a Schema): recovery decodes by
        # them, and a compact encoded value costs far less memory than parsed objects.
        self.table = app.Table(
            table, default=None, partitions=partitions, key_type=bytes, value_type=bytes
        )
        app.agent(self.channel, name="process")(self._run)
        app.timer(check_interval_seconds, name="send_checks")(self._send_checks)
        self.table.on_recover(self._rebuild)
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_before_shutdown.connect(self._stop_publisher)

    # -- reading (the read model the HTTP pages use) ------------------------------------

    def ready(self) -> bool:
        """Tell whether partitions are recovered and nothing is being retried."""
        return self.recovered and not self.degraded

    def get(self, key: str) -> S | None:
        """Return a key's state from this worker's table, or None."""
        raw = self.table.get(key.encode())
        return None if raw is None else self.logic.decode(raw)

    def active_states(self) -> Iterator[tuple[str, S]]:
        """Yield every state whose partition this worker owns (standby copies skipped)."""
        active = self.active_partitions()
        for key, raw in self.table.items():
            state = self.logic.decode(raw)
            if state.partition in active:
                yield key.decode(), state

    def active_partitions(self) -> set[int]:
        """Return the partitions of the inputs this worker is the active owner of."""
        topic = self.inputs[0]
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic}

    # -- the stream ---------------------------------------------------------------------

    async def _run(self, stream: Any) -> None:  # noqa: ANN401 - faust streams are untyped
        # `take_events` acks a batch's messages only once this loop's body is done with
        # them, so no offset is committed past a message whose changes are not written.
        async for events in stream.take_events(self.batch_max, within=self.batch_within_seconds):
            for chunk in self._chunks(events):
                started = time.perf_counter()
                await self.process_batch(chunk)
                self.metrics.batch_messages.observe(len(chunk))
                each = (time.perf_counter() - started) / len(chunk)
                for _ in chunk:
                    self.metrics.processing.observe(each)

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

    async def process_batch(self, events: Sequence[EventT[Any]]) -> None:
        """Apply a batch of input and check messages: decide all, publish all, write all.

        The same error policy as `hold`, per batch: a message that can never succeed is
        dead-lettered (its record published with the batch's) and the others go on; a
        publish that fails is retried with backoff, the whole batch decided afresh from
        the table (nothing was written), for as long as it takes.
        """
        attempt = 0
        while True:
            batch = self._decide_batch(events)
            try:
                await self._commit_batch(batch)
            except Exception as exc:  # noqa: BLE001 - publishing failed: transient, retried
                await self._backoff("publish", exc, events[0].message, attempt)
                attempt += 1
                continue
            self._recovered_from_fault(attempt)
            return

    def _decide_batch(self, events: Sequence[EventT[Any]]) -> _Batch[S]:
        batch: _Batch[S] = _Batch()

        def state(key: str) -> S | None:
            # Later messages of the batch see the earlier ones' changes. Decoded afresh
            # each time: the logic changes the state it is given in place, and a decision
            # that raises half-way must leave nothing behind.
            if key in batch.written:
                raw = batch.written[key][0]
                return None if raw is None else self.logic.decode(raw)
            return self.get(key)

        for event in events:
            message = event.message
            try:
                changes = self._decide(message, state)
            except MalformedJSON as exc:
                batch.dead(message, DeadLetterReason.INVALID_JSON, exc.errors)
                continue
            except InvalidEvent as exc:
                batch.dead(message, DeadLetterReason.INVALID_EVENT, exc.errors)
                continue
            except Exception as exc:  # the pure logic raised: never succeeds
                log.exception(
                    "processing_failed",
                    error=type(exc).__name__,
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                )
                batch.dead(
                    message,
                    DeadLetterReason.PROCESSING_ERROR,
                    [FieldError(loc="(root)", msg=type(exc).__name__)],
                )
                continue
            for change in changes:
                batch.records.extend(change.records)
                batch.changes.append((change, message.partition))
                if not change.write:
                    continue
                if change.state is not None:
                    change.state.partition = message.partition
                raw = None if change.state is None else self.logic.encode(change.state)
                batch.written[change.key] = (raw, event)
        return batch

    async def _commit_batch(self, batch: _Batch[S]) -> None:
        dead = [self._dead_letter_record(*entry) for entry in batch.dead_letters]
        await self.publish([*batch.records, *dead])
        for message, reason, _ in batch.dead_letters:
            self.metrics.deadlettered.labels(reason=reason.value).inc()
            log.warning(
                "dead_lettered",
                reason=reason.value,
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
            )
        self._write_batch(batch)

    def _write_batch(self, batch: _Batch[S]) -> None:
        # Each key is written once, with its last state, from the event of the partition
        # that owns it: Faust sends the changelog record (and rocksdb picks its database)
        # by the current event's partition, which in a batch is not the agent's own.
        # A logic that keeps its indexes in step from its changes' `after` callbacks
        # (risk) is spared decoding every key's previous state again to observe it.
        observing = not getattr(self.logic, "tracks_changes", False)
        for key, (raw, event) in batch.written.items():
            encoded = key.encode()
            old = self.table.get(encoded)
            before = None if old is None or not observing else self.logic.decode(old)
            token = _current_event.set(weakref.ref(event))
            try:
                if raw is None:
                    if old is not None:
                        del self.table[encoded]
                else:
                    self.table[encoded] = raw
            finally:
                _current_event.reset(token)
            batch.before[key] = before
        for change, partition in batch.changes:
            if change.write and change.state is not None and change.due is not None:
                self.schedule.push(change.due, partition, change.key)
        observed: set[str] = set()
        for change, _ in reversed(batch.changes):
            # The service's indexes follow each key from before the batch to its last state.
            if observing and change.write and change.key not in observed:
                observed.add(change.key)
                self.logic.observe(change.key, batch.before[change.key], change.state)
        for change, _ in batch.changes:
            if change.after is not None:
                change.after()

    def _dead_letter_record(
        self, message: Message, reason: DeadLetterReason, errors: list[FieldError]
    ) -> Record:
        record = DeadLetter.from_record(
            reason=reason,
            errors=errors,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            value=message.value if isinstance(message.value, bytes) else None,
            failed_at=self.clock.now(),
        )
        return Record(self.dead_letters_topic, message.key, record.model_dump_json().encode())

    async def hold(
        self,
        message: Message,
        decide: Callable[[], T],
        commit: Callable[[T], Awaitable[None]],
    ) -> None:
        """Run `decide` then `commit` under the error policy, holding `message` until done.

        `decide` is pure: when it raises, the message can never succeed and is
        dead-lettered. When `commit` raises, the fault is transient: the decision is taken
        again from the table (nothing was written) and committed after a pause, for as
        long as it takes.
        """
        attempt = 0
        while True:
            try:
                decision = decide()
            except MalformedJSON as exc:
                await self._dead_letter(message, DeadLetterReason.INVALID_JSON, exc.errors)
                return
            except InvalidEvent as exc:
                await self._dead_letter(message, DeadLetterReason.INVALID_EVENT, exc.errors)
                return
            except Exception as exc:
                log.exception(
                    "processing_failed",
                    error=type(exc).__name__,
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                )
                await self._dead_letter(
                    message,
                    DeadLetterReason.PROCESSING_ERROR,
                    [FieldError(loc="(root)", msg=type(exc).__name__)],
                )
                return
            try:
                await commit(decision)
            except Exception as exc:  # noqa: BLE001 - publishing failed: transient, retried
                await self._backoff("publish", exc, message, attempt)
                attempt += 1
                continue
            self._recovered_from_fault(attempt)
            return

    def _decide(self, message: Message, get: Callable[[str], S | None]) -> list[Change[S]]:
        if message.topic != self.checks_name:
            return self.logic.apply(message, get)
        now = self.clock.now()
        changes = []
        for key in json.loads(message.value or b"{}")["check"]:
            state = get(key)
            if state is None or state.partition != message.partition:
                continue  # gone, or not this partition's (a stale entry after a move)
            try:
                change = self.logic.check(key, state, now)
            except Exception as exc:
                # Keep the deadline watched rather than dead-letter the other keys' checks.
                log.exception("check_failed", error=type(exc).__name__, partition=message.partition)
                self.schedule.push(now + CHECK_RETRY, message.partition, key)
                continue
            if change is not None:
                changes.append(change)
            elif (due := self.logic.due(state)) is not None:
                self.schedule.push(due, message.partition, key)
        return changes

    async def publish(self, records: list[Record]) -> None:
        """Send records and wait for the broker to have every one, within the timeout.

        All are handed to the producer before the first answer is awaited, so a batch
        costs about one round trip.
        """
        if not records:
            return
        async with asyncio.timeout(self.retry.publish_timeout_seconds):
            producer = await self.publisher()
            pending = [
                await producer.send(
                    r.topic.get_topic_name(), r.key, r.value, r.partition, None, None
                )
                for r in records
            ]
            for future in pending:
                await future

    async def publisher(self) -> ProducerT:
        """Return the producer of what the processor publishes, started.

        With `own_publisher`, a producer of its own, so that
        `StreamSettings.producer_max_batch_size` (one record per batch on the development
        broker, whose end offsets after a batch of several records are wrong and make
        table recovery skip changelog records) binds the changelog only: risk's alerts,
        outcomes, forwarded events and checks are read by consumers, which do not depend
        on end offsets, and keep the producer's batching. Otherwise Faust's producer,
        the changelog's: a service whose `after` callbacks lead to records that must not
        reach the broker before the state they follow (notify's delivery outcomes, which
        name an alert the table must already hold after a crash) keeps them behind its
        changelog records in one producer.
        """
        if not self.own_publisher:
            producer: ProducerT = await self.app.maybe_start_producer()
            return producer
        async with self._publisher_lock:
            if self._publisher is None:
                producer = self.app.transport.create_producer(beacon=self.app.beacon)
                producer.max_batch_size = self.publish_max_batch_size or DEFAULT_BATCH_BYTES
                await producer.start()
                self._publisher = producer
            return self._publisher

    async def _stop_publisher(
        self,
        _sender: Any,  # noqa: ANN401 - faust signal arguments are untyped
        /,
        *_args: Any,  # noqa: ANN401
        **_kwargs: Any,  # noqa: ANN401
    ) -> None:
        if self._publisher is not None:
            await self._publisher.stop()
            self._publisher = None

    async def _dead_letter(
        self, message: Message, reason: DeadLetterReason, errors: list[FieldError]
    ) -> None:
        attempt = 0
        while True:
            try:
                async with asyncio.timeout(self.retry.publish_timeout_seconds):
                    await self.dead_letters.send(message, reason, errors)
            except Exception as exc:  # noqa: BLE001 - a dead-letter send that fails is transient
                await self._backoff("deadletter", exc, message, attempt)
                attempt += 1
                continue
            self._recovered_from_fault(attempt)
            return

    async def _backoff(self, stage: str, exc: Exception, message: Message, attempt: int) -> None:
        self.metrics.transient_failures.labels(stage=stage).inc()
        self.metrics.degraded.set(1)
        self.degraded = True
        delay = self.retry.delay(attempt)
        log.warning(
            "transient_failure",
            stage=stage,
            error=type(exc).__name__,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            attempt=attempt + 1,
            retry_in_seconds=delay,
        )
        await asyncio.sleep(delay)

    def _recovered_from_fault(self, attempts: int) -> None:
        if attempts:
            log.info("transient_failure_over", attempts=attempts)
        if self.degraded:
            self.degraded = False
            self.metrics.degraded.set(0)

    # -- timer, recovery ----------------------------------------------------------------

    async def _send_checks(self) -> None:
        async def send(partition: int, keys: list[str]) -> None:
            # Awaiting the broker's answer (not just the buffer) is what lets a lost check
            # put its keys back on the schedule.
            body = json.dumps({"check": keys}).encode()
            await self.publish([Record(self.checks_out, b"", body, partition)])

        await send_due_checks(self.schedule, self.clock.now(), send)

    async def _rebuild(self) -> None:
        self.schedule.clear()
        self.logic.forget()
        for key, state in self.active_states():
            self.logic.observe(key, None, state)
            if (due := self.logic.due(state)) is not None:
                assert state.partition is not None  # noqa: S101 - active states have one
                self.schedule.push(due, state.partition, key)
        self.recovered = True
        log.info("schedule_rebuilt", deadlines=len(self.schedule))

    async def _on_revoked(
        self,
        _sender: Any,  # noqa: ANN401 - faust signal arguments are untyped
        /,
        *_args: Any,  # noqa: ANN401
        **_kwargs: Any,  # noqa: ANN401
    ) -> None:
        # Not ready until the new assignment is recovered and the schedule rebuilt.
        self.recovered = False
