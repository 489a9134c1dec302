"""Writes accepted events to Kafka with kafka-python and reports only once the broker has them.

kafka-python is synchronous: `send()` may block while it fetches metadata or waits for
buffer space, so it runs on a small thread pool of its own, and the acknowledgements
(acks=all) are bridged onto the event loop with one wake-up per request, not per record.

Every write is bounded by one deadline: connecting, handing records over and waiting
for the acknowledgements together take at most `timeout_seconds`, after which the
caller gets BrokerUnavailable (HTTP 503). A write refused that way may still have
reached the broker, in part or whole; that is safe because consumers drop repeated
`(source, id)` pairs when the client retries. Transactions would make a batch atomic,
but Tansu does not support them, and at-least-once plus dedupe is what the design
chose anyway.

A producer is replaced when the broker reports an error (an idempotent producer can stay
unusable after one), and also when it only stays silent: after two write timeouts in a row
(writes under way together count once), or when a send is still unsettled past the
producer's delivery timeout (`producer_health.py`: after a network partition an
idempotent kafka-python producer stays wedged while a fresh one writes at once). The old
one is closed on a thread of its own, so neither the event loop nor the next write waits.

Readiness is the probe (the broker answers with the topic's metadata) and the writes:
while the last write failed and none succeeded since, ingest is ready only once the
producer that failed has been replaced by one that connected. Readiness therefore comes
back without traffic, as it must where an unready instance receives none.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError, KafkaTimeoutError
from prometheus_client import CollectorRegistry

from services.common.kafka import KafkaSettings
from services.common.kafka_clients import bootstrapped
from services.ingest.errors import BrokerUnavailable
from services.ingest.metrics import IngestMetrics
from services.ingest.producer_health import ProducerHealth, RetirementReason
from services.ingest.settings import ProducerSettings

log = structlog.get_logger(__name__)

Record = tuple[bytes, bytes]
T = TypeVar("T")

# A retired producer gets this long to settle what it still holds: enough for writes of
# other requests already on their way, short because it is retired for not answering.
_RETIRED_CLOSE_SECONDS = 1.0


@dataclass(eq=False)
class _Producer:
    """A kafka-python producer with its own send thread and its record of health.

    A send thread per producer: kafka-python's send() can block up to max_block_ms for
    metadata, and a send stuck on a retired producer must not hold up its successor's.
    """

    client: Any
    health: ProducerHealth
    sender: ThreadPoolExecutor


class EventWriter:
    """Produces records, acks=all and idempotent, each write bounded in time."""

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        timeout_seconds: float,
        readiness_timeout_seconds: float = 2.0,
        producer: ProducerSettings | None = None,
    ) -> None:
        self._kafka = kafka
        self._timeout = timeout_seconds
        self._readiness_timeout = readiness_timeout_seconds
        self._tuning = producer or ProducerSettings()
        # Connecting and probing get two threads, so a bootstrap that hangs cannot hold up
        # a readiness probe; closing retired producers gets its own, so a close that takes
        # its time holds up neither.
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ingest-kafka")
        self._closer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-close")
        self._producer: _Producer | None = None
        self._connecting: asyncio.Task[_Producer] | None = None
        self._admin: Any = None
        self._probing: asyncio.Task[bool] | None = None
        self._closing: set[asyncio.Future[None]] = set()
        # The last write failed and none has succeeded since; and the producer it failed on.
        self._failing = False
        self._failed_producer: _Producer | None = None
        # Counted on a private registry until the application hands over its metrics.
        self._metrics = IngestMetrics(CollectorRegistry())

    def report_to(self, metrics: IngestMetrics) -> None:
        """Count write failures and producer replacements on `metrics` from now on."""
        self._metrics = metrics
        metrics.writes_failing.set(int(self._failing))

    # --- writing -------------------------------------------------------------------------

    def _new_producer(self) -> Any:  # noqa: ANN401 - kafka-python is untyped
        timeout_ms = int(self._timeout * 1000)
        return KafkaProducer(
            **self._kafka.kafka_python_options(),
            acks="all",
            enable_idempotence=True,
            linger_ms=self._tuning.linger_ms,
            batch_size=self._tuning.batch_size_bytes,
            max_block_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
            # Records we already answered 503 for should not trickle in much later.
            delivery_timeout_ms=timeout_ms + self._tuning.linger_ms + 1000,
            bootstrap_timeout_ms=timeout_ms,
            client_id="safeguard-ingest",
        )

    async def _run(self, function: Callable[..., T], *args: Any) -> T:  # noqa: ANN401
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def _connected(self) -> _Producer:
        """Return the producer, creating it once however many requests wait for it."""
        if self._producer is not None:
            return self._producer
        if self._connecting is None:
            self._connecting = _background(self._connect())
        # shield: a request that gives up must not cancel the connection others wait on.
        return await asyncio.shield(self._connecting)

    async def _connect(self) -> _Producer:
        try:
            client = await self._run(self._new_producer)
            # kafka-python settles every record within its delivery timeout, by then
            # acknowledged or failed; one still open after it means a wedged producer.
            stale_after = self._timeout + (self._tuning.linger_ms + 1000) / 1000
            self._producer = _Producer(
                client,
                ProducerHealth(stale_after=stale_after),
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-send"),
            )
            log.info("producer_connected")
            return self._producer
        finally:
            self._connecting = None

    async def _usable(self) -> _Producer:
        """Return a producer to write with, replacing the current one if it went silent."""
        producer = await self._connected()
        reason = producer.health.retire_reason(asyncio.get_running_loop().time())
        if reason is None:
            return producer
        self._retire(producer, reason)
        return await self._connected()

    @staticmethod
    def _send_all(producer: Any, topic: str, records: Sequence[Record]) -> list[Any]:  # noqa: ANN401
        return [producer.send(topic, key=key, value=value) for key, value in records]

    async def write(self, topic: str, records: Sequence[Record]) -> None:
        """Write every record, returning once the broker acknowledged all of them.

        Raises BrokerUnavailable when the broker cannot be reached or does not
        acknowledge within the timeout (see the module docstring for what may then
        have been written).
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self._timeout
        producer: _Producer | None = None
        try:
            async with asyncio.timeout_at(deadline):
                producer = await self._usable()
                futures = await loop.run_in_executor(
                    producer.sender, self._send_all, producer.client, topic, records
                )
                await _tracked(loop, producer.health, futures)
            producer.health.acknowledged()
        except (KafkaError, OSError, TimeoutError) as exc:
            self._write_failed(producer, exc, started)
            log.warning("write_failed", error=type(exc).__name__, records=len(records))
            raise BrokerUnavailable(
                f"the broker did not acknowledge the write in time ({type(exc).__name__}); "
                "retry later"
            ) from exc
        self._failing = False
        self._failed_producer = None
        self._metrics.writes_failing.set(0)

    def _write_failed(self, producer: _Producer | None, exc: BaseException, started: float) -> None:
        timed_out = isinstance(exc, TimeoutError | KafkaTimeoutError)
        cause = (
            "timeout" if timed_out else "broker_error" if producer is not None else "unreachable"
        )
        self._metrics.write_failures.labels(error=cause).inc()
        self._failing = True
        self._metrics.writes_failing.set(1)
        if producer is None:
            # No producer could be created: there is nothing to replace.
            return
        self._failed_producer = producer
        if timed_out:
            now = asyncio.get_running_loop().time()
            producer.health.timed_out(started=started, now=now)
            reason = producer.health.retire_reason(now)
            if reason is not None:
                self._retire(producer, reason)
        else:
            # An error the broker reported (not mere silence) can leave an idempotent
            # producer unusable for good, e.g. UnknownProducerIdError after the broker
            # lost its state; a fresh producer gets a fresh producer id.
            self._retire(producer, RetirementReason.BROKER_ERROR)

    def _retire(self, producer: _Producer, reason: RetirementReason) -> None:
        if self._producer is not producer:
            return
        self._producer = None
        self._metrics.producer_replacements.labels(reason=reason.value).inc()
        log.warning(
            "producer_replaced",
            reason=reason.value,
            consecutive_timeouts=producer.health.consecutive_timeouts,
        )
        # Sends already queued there still run, and fail fast on the closed producer: a
        # cancelled one would cancel its request instead of answering it 503.
        producer.sender.shutdown(wait=False)
        closing = asyncio.get_running_loop().run_in_executor(
            self._closer, _close_producer, producer.client, _RETIRED_CLOSE_SECONDS
        )
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    # --- readiness -----------------------------------------------------------------------

    def _probe(self, topic: str) -> bool:
        # A real round trip each time: the producer's cached metadata would still list the
        # topic's partitions long after the broker went away.
        timeout_ms = int(self._readiness_timeout * 1000)
        try:
            if self._admin is None:
                self._admin = bootstrapped(
                    KafkaAdminClient,
                    **self._kafka.kafka_python_options(),
                    client_id="safeguard-ingest-probe",
                    request_timeout_ms=timeout_ms,
                    bootstrap_timeout_ms=timeout_ms,
                )
            described = self._admin.describe_topics([topic])
        except (KafkaError, OSError) as exc:
            log.warning("broker_not_ready", error=type(exc).__name__)
            admin, self._admin = self._admin, None
            if admin is not None:
                admin.close()
            return False
        return any(t["error_code"] == 0 and t["partitions"] for t in described)

    async def ready(self, topic: str) -> bool:
        """Tell whether the broker answers with metadata for `topic` and writes can succeed.

        Both within the readiness timeout; see the module docstring for the writes.
        """
        if self._probing is None:
            self._probing = _background(self._probe_once(topic))
        try:
            async with asyncio.timeout(self._readiness_timeout):
                return await asyncio.shield(self._probing) and await self._writable()
        except TimeoutError:
            log.warning("broker_not_ready", error="TimeoutError")
            return False
        except (KafkaError, OSError) as exc:
            log.warning("producer_not_ready", error=type(exc).__name__)
            return False

    async def _writable(self) -> bool:
        """Ready unless writes fail; then only once the failed producer has a successor."""
        if not self._failing:
            return True
        # The broker answers the probe, yet writes failed: the producer is the suspect.
        if self._producer is not None and self._producer is self._failed_producer:
            self._retire(self._producer, RetirementReason.READINESS)
        # A successor that connects has done a round trip with the broker (kafka-python
        # bootstraps in the constructor).
        await self._connected()
        return True

    async def _probe_once(self, topic: str) -> bool:
        try:
            return await self._run(self._probe, topic)
        finally:
            self._probing = None

    # --- shutdown ------------------------------------------------------------------------

    def close(self) -> None:
        """Flush and close the producer and the probe client."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            _close_producer(producer.client, self._timeout)
            producer.sender.shutdown(wait=True, cancel_futures=True)
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._closer.shutdown(wait=True, cancel_futures=False)


def _close_producer(producer: Any, timeout: float) -> None:  # noqa: ANN401 - kafka-python
    """Close a producer within about twice `timeout`, by force if it cannot flush.

    kafka-python's close() flushes first and raises when the flush times out, before it
    would force-close its I/O thread; that thread would then keep reconnecting forever
    (seen with a producer wedged by a partition). So the force-close is done here.
    """
    try:
        producer.close(timeout=timeout)
    except KafkaTimeoutError:
        log.warning("producer_close_forced")
        sender = producer._sender  # noqa: SLF001 - no public way to abandon pending records
        sender.force_close()
        sender.join(timeout)
        try:
            producer.close(timeout=0)
        except Exception as exc:  # noqa: BLE001 - a broken producer may fail to close any way
            log.warning("producer_close_failed", error=type(exc).__name__)
    except Exception as exc:  # noqa: BLE001 - a broken producer may fail to close any way
        log.warning("producer_close_failed", error=type(exc).__name__)


def _background(coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Start a task that callers await through shield(); its failure is theirs to see.

    When every caller gave up waiting, nobody retrieves the outcome; doing it here keeps
    asyncio from logging "exception was never retrieved".
    """
    task = asyncio.create_task(coroutine)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return task


class _Acknowledgements:
    """Settles one asyncio future when every kafka-python future succeeded, or one failed.

    kafka-python runs callbacks on its I/O thread, so the count is kept under a lock and
    the event loop is woken once per write, not once per record.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self._loop = loop
        self._remaining = count
        self._lock = threading.Lock()
        self.done: asyncio.Future[None] = loop.create_future()
        # Retrieve the exception even when nobody awaits any more (the request timed out).
        self.done.add_done_callback(lambda f: f.cancelled() or f.exception())
        if count == 0:
            self.done.set_result(None)

    def on_success(self, _metadata: object) -> None:
        with self._lock:
            self._remaining -= 1
            last = self._remaining == 0
        if last:
            self._wake(None)

    def on_error(self, exc: BaseException) -> None:
        self._wake(exc)

    def _wake(self, exc: BaseException | None) -> None:
        try:
            self._loop.call_soon_threadsafe(self._settle, exc)
        except RuntimeError:
            # The loop closed (service shutting down) before the broker answered.
            log.debug("acknowledgement_after_shutdown")

    def _settle(self, exc: BaseException | None) -> None:
        if self.done.done():
            return
        if exc is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(exc)


async def _tracked(
    loop: asyncio.AbstractEventLoop, health: ProducerHealth, futures: Sequence[Any]
) -> None:
    """Await `_all_acknowledged`, with the sends recorded as unsettled until it settles.

    The record outlives the request: a write that timed out stays unsettled in the
    producer until kafka-python acknowledges or expires it, or never, if it is wedged.
    """
    token = health.sent(loop.time())
    done = _all_acknowledged(loop, futures)
    done.add_done_callback(lambda _: health.settled(token))
    # shield: a request that gives up stops waiting; the sends stay unsettled all the same.
    await asyncio.shield(done)


def _all_acknowledged(
    loop: asyncio.AbstractEventLoop, futures: Sequence[Any]
) -> asyncio.Future[None]:
    """Return a future settled when every record is acknowledged, or the first failed."""
    acknowledgements = _Acknowledgements(loop, len(futures))
    for future in futures:
        future.add_callback(acknowledgements.on_success)
        future.add_errback(acknowledgements.on_error)
    return acknowledgements.done
