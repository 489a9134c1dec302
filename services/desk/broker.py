"""The desk's producer: audit records and commands, each answered for by the broker.

One aiokafka producer per process (acks=all, no idempotence: the development broker has
none, and every record here is identified by its own id). `publish` waits until the
broker has the record, within `timeout`; anything else (the broker down, a send that
times out, a producer that cannot start) is `BrokerUnavailable`: the request that needed
the record is answered 503 and nothing it would have done is done.

A desk that starts while the broker is away still serves what needs no record
(`/healthz`, `/readyz`, `/metrics`); the producer is started on first use.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.helpers import create_ssl_context

from services.common.kafka import KafkaSettings
from services.desk.errors import BrokerUnavailable

log = structlog.get_logger(__name__)


def aiokafka_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Return the connection options of `kafka` in aiokafka's spelling."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.servers,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.sasl_mechanism:
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = (
            kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
        )
    if kafka.security_protocol.endswith("SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=kafka.ssl_cafile, certfile=kafka.ssl_certfile, keyfile=kafka.ssl_keyfile
        )
    return options


class Publisher:
    """Sends records and waits for the broker's acknowledgement, or says it could not."""

    def __init__(self, kafka: KafkaSettings, *, timeout: float) -> None:
        self.kafka = kafka
        self.timeout = timeout
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    **aiokafka_options(self.kafka),
                    acks="all",
                    enable_idempotence=False,
                    request_timeout_ms=int(self.timeout * 1000),
                    linger_ms=0,
                )
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def publish(self, topic: str, key: bytes, value: bytes, *, what: str) -> None:
        """Send one record and wait for the broker to have it; `what` names it in a 503."""
        try:
            async with asyncio.timeout(self.timeout):
                producer = await self._started()
                await producer.send_and_wait(topic, value=value, key=key)
        except Exception as error:  # noqa: BLE001 - whatever failed, the record is not there
            # Type only: broker errors can quote configuration.
            log.warning("publish_failed", topic_kind=what, error=type(error).__name__)
            raise BrokerUnavailable(f"the broker did not take {what}; retry shortly") from None

    async def close(self) -> None:
        """Flush and stop the producer."""
        async with self._lock:
            if self._producer is not None:
                await self._producer.stop()
                self._producer = None
