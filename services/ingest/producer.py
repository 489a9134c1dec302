"""Writes accepted events to Kafka with kafka-python and reports only once the broker has them.

kafka-python is synchronous: `send()` may block while it fetches metadata, so it runs in a
worker thread, and its futures are bridged onto the event loop so a request waits for
the broker's acknowledgement (acks=all) without holding a thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import structlog
from kafka import KafkaProducer
from kafka.errors import KafkaError

from services.common.kafka import KafkaSettings
from services.ingest.errors import BrokerUnavailable

log = structlog.get_logger(__name__)

Record = tuple[bytes, bytes]


class EventWriter:
    """Produces records to one topic, acks=all, bounded in time."""

    def __init__(self, kafka: KafkaSettings, *, timeout_seconds: float) -> None:
        self._kafka = kafka
        self._timeout = timeout_seconds
        self._producer: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> Any:  # noqa: ANN401 - kafka-python is untyped
        with self._lock:
            if self._producer is None:
                timeout_ms = int(self._timeout * 1000)
                self._producer = KafkaProducer(
                    **self._kafka.kafka_python_options(),
                    acks="all",
                    enable_idempotence=True,
                    linger_ms=2,
                    max_block_ms=timeout_ms,
                    request_timeout_ms=timeout_ms,
                    delivery_timeout_ms=timeout_ms + 1000,
                    bootstrap_timeout_ms=timeout_ms,
                    client_id="safeguard-ingest",
                )
            return self._producer

    def _send_all(self, topic: str, records: Sequence[Record]) -> list[Any]:
        producer = self._connect()
        return [producer.send(topic, key=key, value=value) for key, value in records]

    async def write(self, topic: str, records: Sequence[Record]) -> None:
        """Write every record, returning once the broker acknowledged all of them.

        Raises BrokerUnavailable when the broker cannot be reached or does not
        acknowledge within the timeout; some records may then have been written, which
        is safe because consumers drop repeated `(source, id)` pairs when the caller
        retries.
        """
        loop = asyncio.get_running_loop()
        try:
            kafka_futures = await asyncio.wait_for(
                loop.run_in_executor(None, self._send_all, topic, records), self._timeout
            )
        except (KafkaError, TimeoutError) as exc:
            raise BrokerUnavailable(f"broker did not take the write: {type(exc).__name__}") from exc
        waiters = [self._bridge(loop, f) for f in kafka_futures]
        try:
            await asyncio.wait_for(asyncio.gather(*waiters), self._timeout)
        except (KafkaError, TimeoutError) as exc:
            raise BrokerUnavailable(
                f"broker did not acknowledge the write: {type(exc).__name__}"
            ) from exc

    @staticmethod
    def _bridge(loop: asyncio.AbstractEventLoop, kafka_future: Any) -> asyncio.Future[None]:  # noqa: ANN401
        waiter: asyncio.Future[None] = loop.create_future()

        def settle(exc: BaseException | None) -> None:
            if waiter.done():
                return
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)

        kafka_future.add_callback(lambda _meta: loop.call_soon_threadsafe(settle, None))
        kafka_future.add_errback(lambda exc: loop.call_soon_threadsafe(settle, exc))
        return waiter

    async def ready(self, topic: str) -> bool:
        """Tell whether the broker answers with metadata for `topic` right now."""
        loop = asyncio.get_running_loop()

        def probe() -> bool:
            return bool(self._connect().partitions_for(topic))

        try:
            return await asyncio.wait_for(loop.run_in_executor(None, probe), self._timeout)
        except (KafkaError, TimeoutError) as exc:
            log.warning("broker_not_ready", error=type(exc).__name__)
            return False

    def close(self) -> None:
        """Flush and close the producer."""
        if self._producer is not None:
            self._producer.close(timeout=self._timeout)
