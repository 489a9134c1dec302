"""The stream core: one commit path for every input and deadline of risk and notify.

A service supplies a `Logic`: codecs for its states and pure decisions (`apply` for an
input, `check` for a key whose deadline came) that return `Change`s: records to publish,
the key's new state (None deletes it), when to look at the key next, and effects (data:
metrics to count, deliveries to start) that the logic carries out once the state is
written. The driver does the rest, the same way for both services and for every batch,
one message or five hundred:

1. **Decide** every message of the batch; later messages see the earlier ones' states
   (`View`), and nothing is changed outside the batch while deciding.
2. **Publish** every record (and dead letter) together, waiting for the broker's
   acknowledgement of each: one round trip a batch. A failure is transient: the whole
   batch is decided again from the table (nothing was written) after a backoff, for as
   long as it takes, so a retried batch sends and counts exactly what one attempt would.
3. **Write** each key once, with its last state, and put its next deadline on the
   schedule.
4. **Apply** the effects (`Logic.applied`), once.

Publish, then write: a crash between the two runs the input again and re-publishes under
the same deterministic ids (dropped downstream), whereas state written first could lose
what should have been published. Input that can never succeed (it does not decode, its
sender may not send it, or the logic raises on it) is dead-lettered with the reason,
published with the batch (a refusal's audit record with it).

The driver does no I/O of its own: the table, the publisher and the clock are handed in,
so it runs the same under Faust (`services.common.stream.faust_runtime`), in memory for
tests and for `safeguard backtest` (`services.common.stream.memory`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas.deadletter import DeadLetterReason
from schemas.errors import FieldError
from services.common.clock import Clock
from services.common.stream.inputs import Forbidden, Input, Record, classify, dead_letter
from services.common.stream.retry import RetryPolicy, retry_until_done
from services.common.stream.schedule import DeadlineSchedule

log = structlog.get_logger(__name__)


class Stateful(Protocol):
    """What the driver needs of a state: the partition that owns it."""

    partition: int | None


S = TypeVar("S", bound=Stateful)

CHECK_RETRY = timedelta(minutes=1)


@dataclass
class Change(Generic[S]):
    """What a decision does to one key: publish, write `state` (None deletes it), then effects."""

    key: str
    state: S | None
    records: list[Record] = field(default_factory=list)
    due: datetime | None = None
    # Carried out by `Logic.applied` once the state is written: never on a failed attempt.
    effects: list[Any] = field(default_factory=list)
    # False: only publish the records (an event forwarded to another partition).
    write: bool = True


class View(Generic[S]):
    """The states a batch's decisions read: the table, overlaid with the batch's own changes."""

    def __init__(self, read: Callable[[str], S | None], decode: Callable[[bytes], S]) -> None:
        self._read = read
        self._decode = decode
        self._written: dict[str, bytes | None] = {}

    def get(self, key: str) -> S | None:
        """Return a key's state as the batch has it so far: a fresh copy the caller may change."""
        if key in self._written:
            raw = self._written[key]
            return None if raw is None else self._decode(raw)
        return self._read(key)

    def decided(self) -> Iterator[tuple[str, S]]:
        """Yield the keys decided so far in this batch, with their states (deleted ones not)."""
        for key, raw in self._written.items():
            if raw is not None:
                yield key, self._decode(raw)

    def _put(self, key: str, raw: bytes | None) -> None:
        self._written[key] = raw


class Logic(Protocol[S]):
    """What a service supplies: codecs, pure decisions, and the effects of what was written."""

    def encode(self, state: S) -> bytes:
        """Return a state's table value."""
        ...

    def decode(self, raw: bytes) -> S:
        """Return the state a table value holds."""
        ...

    def due(self, state: S) -> datetime | None:
        """Return when the key must be looked at next, if ever."""
        ...

    def apply(self, message: Input, view: View[S], now: datetime) -> list[Change[S]]:
        """Decide what an input changes; raise InvalidEvent/MalformedJSON if it is bad."""
        ...

    def check(self, key: str, state: S, view: View[S], now: datetime) -> Change[S] | None:
        """Decide what a key whose deadline may have come changes, if anything."""
        ...

    def applied(self, changes: Sequence[Change[S]]) -> None:
        """Carry out the effects of changes just written, in order (indexes, metrics, I/O)."""
        ...

    def rebuilt(self, key: str, state: S) -> None:
        """Note a state found in the table by a rebuild (indexes, gauges)."""
        ...

    def forget(self, now: datetime) -> None:
        """Clear what `rebuilt` and `applied` keep, before a rebuild at `now`."""
        ...


class Table(Protocol):
    """Where states live: a key-value table whose writes belong to a partition."""

    def get(self, key: bytes) -> bytes | None:
        """Return a key's value, or None."""
        ...

    def put(self, key: bytes, value: bytes | None, origin: Input) -> None:
        """Write (None: delete) a key, as part of processing `origin` (whose partition owns it)."""
        ...


class Publisher(Protocol):
    """Sends records and returns once the broker has every one."""

    async def publish(self, records: Sequence[Record]) -> None:
        """Send every record; raise if any was not acknowledged."""
        ...


class StreamMetrics:
    """The stream core's own metrics, under the service's prefix (`safeguard_<service>_`)."""

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


@dataclass
class _Batch(Generic[S]):
    """What one attempt at a batch decided."""

    view: View[S]
    records: list[Record] = field(default_factory=list)
    changes: list[Change[S]] = field(default_factory=list)
    # Per key: the message whose partition owns it, for its single write.
    origins: dict[str, Input] = field(default_factory=dict)
    dead: list[tuple[Input, DeadLetterReason, list[FieldError]]] = field(default_factory=list)
    # Keys whose check raised: looked at again later rather than dead-lettered.
    recheck: list[tuple[datetime, int, str]] = field(default_factory=list)
    # Keys checked with nothing to do: watched again at their next deadline.
    watch: list[tuple[datetime, int, str]] = field(default_factory=list)


def check_message(keys: list[str]) -> bytes:
    """Return the value of a check message: "check these keys" (up to CHECK_BATCH of them)."""
    return json.dumps({"check": keys}).encode()


class StreamDriver(Generic[S]):
    """Decides, publishes, writes and applies batches of input and check messages."""

    def __init__(  # noqa: PLR0913 - the driver's collaborators
        self,
        *,
        logic: Logic[S],
        table: Table,
        publisher: Publisher,
        clock: Clock,
        metrics: StreamMetrics,
        checks_topic: str,
        dead_letters_topic: str,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.logic = logic
        self.table = table
        self.publisher = publisher
        self.clock = clock
        self.metrics = metrics
        self.checks_topic = checks_topic
        self.dead_letters_topic = dead_letters_topic
        self.retry = retry or RetryPolicy()
        self.schedule = DeadlineSchedule()
        self.degraded = False

    # -- reading ------------------------------------------------------------------------

    def get(self, key: str) -> S | None:
        """Return a key's state from the table, or None."""
        raw = self.table.get(key.encode())
        return None if raw is None else self.logic.decode(raw)

    # -- the commit path ----------------------------------------------------------------

    async def process(self, inputs: Sequence[Input]) -> None:
        """Decide, publish, write and apply a batch of inputs (see the module docstring)."""
        if not inputs:
            return
        started = time.perf_counter()

        async def attempt() -> _Batch[S]:
            batch = self._decide(inputs)
            await self.publish([*batch.records, *self._dead_letters(batch)])
            return batch

        def failed(exc: Exception, attempt: int, delay: float) -> None:
            self.transient_failure("publish", exc, attempt, delay, inputs[0])

        batch, failures = await retry_until_done(attempt, self.retry, failed)
        self._write(batch)
        self.recovered_from_fault(failures)
        self.metrics.batch_messages.observe(len(inputs))
        each = (time.perf_counter() - started) / len(inputs)
        for _ in inputs:
            self.metrics.processing.observe(each)

    async def publish(self, records: Sequence[Record]) -> None:
        """Publish records within the publish timeout (raises when it is not met)."""
        if records:
            async with asyncio.timeout(self.retry.publish_timeout_seconds):
                await self.publisher.publish(records)

    def _decide(self, inputs: Sequence[Input]) -> _Batch[S]:
        batch: _Batch[S] = _Batch(View(self.get, self.logic.decode))
        now = self.clock.now()
        for message in inputs:
            if message.topic == self.checks_topic:
                self._decide_checks(message, batch, now)
                continue
            try:
                changes = self.logic.apply(message, batch.view, now)
            except Exception as exc:
                reason, errors = classify(exc)
                if reason is DeadLetterReason.PROCESSING_ERROR:
                    log.exception(
                        "processing_failed",
                        error=type(exc).__name__,
                        topic=message.topic,
                        partition=message.partition,
                        offset=message.offset,
                    )
                batch.dead.append((message, reason, errors))
                if isinstance(exc, Forbidden):
                    batch.records.extend(exc.records)
                continue
            for change in changes:
                self._add(batch, change, message)
        return batch

    def _decide_checks(self, message: Input, batch: _Batch[S], now: datetime) -> None:
        for key in json.loads(message.value or b"{}")["check"]:
            state = batch.view.get(key)
            if state is None or state.partition != message.partition:
                continue  # gone, or not this partition's (a stale entry after a move)
            try:
                change = self.logic.check(key, state, batch.view, now)
            except Exception as exc:
                log.exception("check_failed", error=type(exc).__name__, partition=message.partition)
                batch.recheck.append((now + CHECK_RETRY, message.partition, key))
                continue
            if change is not None:
                self._add(batch, change, message)
            elif (due := self.logic.due(state)) is not None:
                batch.watch.append((due, message.partition, key))

    def _add(self, batch: _Batch[S], change: Change[S], origin: Input) -> None:
        batch.records.extend(change.records)
        batch.changes.append(change)
        if not change.write:
            return
        if change.state is not None:
            change.state.partition = origin.partition
        raw = None if change.state is None else self.logic.encode(change.state)
        batch.view._put(change.key, raw)  # noqa: SLF001 - the batch owns its view
        batch.origins[change.key] = origin

    def _dead_letters(self, batch: _Batch[S]) -> list[Record]:
        at = self.clock.now()
        return [
            dead_letter(self.dead_letters_topic, message, reason, errors, at)
            for message, reason, errors in batch.dead
        ]

    def _write(self, batch: _Batch[S]) -> None:
        # Each key once, with its last state, from the message whose partition owns it.
        for key, raw in batch.view._written.items():  # noqa: SLF001 - the batch owns its view
            self.table.put(key.encode(), raw, batch.origins[key])
        for change in batch.changes:
            if change.write and change.state is not None and change.due is not None:
                assert change.state.partition is not None  # noqa: S101 - set by _add
                self.schedule.push(change.due, change.state.partition, change.key)
        for due, partition, key in (*batch.recheck, *batch.watch):
            self.schedule.push(due, partition, key)
        for message, reason, _ in batch.dead:
            self.metrics.deadlettered.labels(reason=reason.value).inc()
            log.warning(
                "dead_lettered",
                reason=reason.value,
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
            )
        self.logic.applied(batch.changes)

    # -- faults -------------------------------------------------------------------------

    def transient_failure(
        self, stage: str, exc: Exception, attempt: int, delay: float, message: Input | None = None
    ) -> None:
        """Count, log and report (not ready) a failure that passes; the caller retries."""
        self.metrics.transient_failures.labels(stage=stage).inc()
        self.metrics.degraded.set(1)
        self.degraded = True
        where = (
            {}
            if message is None
            else {"topic": message.topic, "partition": message.partition, "offset": message.offset}
        )
        log.warning(
            "transient_failure",
            stage=stage,
            error=type(exc).__name__,
            attempt=attempt + 1,
            retry_in_seconds=delay,
            **where,
        )

    def recovered_from_fault(self, failures: int) -> None:
        """Report healthy again after a retried operation went through."""
        if failures:
            log.info("transient_failure_over", attempts=failures)
        if self.degraded:
            self.degraded = False
            self.metrics.degraded.set(0)

    # -- deadlines ----------------------------------------------------------------------

    def rebuild(self, states: Iterable[tuple[str, bytes]], active: set[int]) -> int:
        """Rebuild the schedule and the logic's indexes from the table's active states."""
        self.schedule.clear()
        self.logic.forget(self.clock.now())
        for key, raw in states:
            state = self.logic.decode(raw)
            if state.partition not in active:
                continue  # a standby copy: its active owner watches it
            self.logic.rebuilt(key, state)
            if (due := self.logic.due(state)) is not None:
                self.schedule.push(due, state.partition, key)
        log.info("schedule_rebuilt", deadlines=len(self.schedule))
        return len(self.schedule)
