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
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import structlog
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError, KafkaTimeoutError

from services.common.kafka import KafkaSettings
from services.ingest.errors import BrokerUnavailable
from services.ingest.settings import ProducerSettings

log = structlog.get_logger(__name__)

Record = tuple[bytes, bytes]
T = TypeVar("T")


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
        # send() runs on one thread: more would only contend for the producer's locks and
        # the GIL (measured with bench/ingest_throughput.py). Connecting and probing get
        # their own thread, so a bootstrap that hangs cannot hold up a readiness probe.
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-send")
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ingest-kafka")
        self._producer: Any = None
        self._connecting: asyncio.Task[Any] | None = None
        self._admin: Any = None
        self._probing: asyncio.Task[bool] | None = None
        self._closing: set[asyncio.Future[None]] = set()

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

    async def _connected(self) -> Any:  # noqa: ANN401
        """Return the producer, creating it once however many requests wait for it."""
        if self._producer is not None:
            return self._producer
        if self._connecting is None:
            self._connecting = _background(self._connect())
        # shield: a request that gives up must not cancel the connection others wait on.
        return await asyncio.shield(self._connecting)

    async def _connect(self) -> Any:  # noqa: ANN401
        try:
            self._producer = await self._run(self._new_producer)
            log.info("producer_connected")
            return self._producer
        finally:
            self._connecting = None

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
        deadline = loop.time() + self._timeout
        producer: Any = None
        try:
            async with asyncio.timeout_at(deadline):
                producer = await self._connected()
                futures = await loop.run_in_executor(
                    self._sender, self._send_all, producer, topic, records
                )
                await _all_acknowledged(loop, futures)
        except (KafkaError, OSError, TimeoutError) as exc:
            if producer is not None and not isinstance(exc, TimeoutError | KafkaTimeoutError):
                # An error the broker reported (not mere silence) can leave an idempotent
                # producer unusable for good, e.g. UnknownProducerIdError after the broker
                # lost its state; a fresh producer gets a fresh producer id.
                self._retire(producer)
            log.warning("write_failed", error=type(exc).__name__, records=len(records))
            raise BrokerUnavailable(
                f"the broker did not acknowledge the write in time ({type(exc).__name__}); "
                "retry later"
            ) from exc

    def _retire(self, producer: Any) -> None:  # noqa: ANN401
        if self._producer is not producer:
            return
        self._producer = None
        log.warning("producer_replaced")

        def close() -> None:
            try:
                producer.close(timeout=self._timeout)
            except Exception as exc:  # noqa: BLE001 - closing a broken producer may fail any way
                log.warning("producer_close_failed", error=type(exc).__name__)

        closing = asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    # --- readiness -----------------------------------------------------------------------

    def _probe(self, topic: str) -> bool:
        # A real round trip each time: the producer's cached metadata would still list the
        # topic's partitions long after the broker went away.
        timeout_ms = int(self._readiness_timeout * 1000)
        try:
            if self._admin is None:
                self._admin = KafkaAdminClient(
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
        """Tell whether the broker answers with metadata for `topic`, within the timeout."""
        if self._probing is None:
            self._probing = _background(self._probe_once(topic))
        try:
            async with asyncio.timeout(self._readiness_timeout):
                return await asyncio.shield(self._probing)
        except TimeoutError:
            log.warning("broker_not_ready", error="TimeoutError")
            return False

    async def _probe_once(self, topic: str) -> bool:
        try:
            return await self._run(self._probe, topic)
        finally:
            self._probing = None

    # --- shutdown ------------------------------------------------------------------------

    def close(self) -> None:
        """Flush and close the producer and the probe client."""
        if self._producer is not None:
            self._producer.close(timeout=self._timeout)
            self._producer = None
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        self._sender.shutdown(wait=True, cancel_futures=True)
        self._executor.shutdown(wait=True, cancel_futures=True)


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


def _all_acknowledged(
    loop: asyncio.AbstractEventLoop, futures: Sequence[Any]
) -> asyncio.Future[None]:
    """Return a future settled when every record is acknowledged, or the first failed."""
    acknowledgements = _Acknowledgements(loop, len(futures))
    for future in futures:
        future.add_callback(acknowledgements.on_success)
        future.add_errback(acknowledgements.on_error)
    return acknowledgements.done
