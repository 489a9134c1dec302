"""Publishing what a Faust agent could not accept to `safeguarding.deadletter.v1`."""

from __future__ import annotations

import structlog
from faust.types import Message, TopicT
from prometheus_client import Counter

from schemas.deadletter import DeadLetter, DeadLetterReason
from schemas.errors import FieldError
from services.common.clock import Clock

log = structlog.get_logger(__name__)


class DeadLetters:
    """Sends a record of a failed message, with the reason, and counts it."""

    def __init__(self, topic: TopicT, clock: Clock, counter: Counter) -> None:
        self._topic = topic
        self._clock = clock
        self._counter = counter

    async def send(
        self,
        message: Message,
        reason: DeadLetterReason,
        errors: list[FieldError],
    ) -> None:
        """Dead-letter a Kafka message (a faust `Message`) and wait for the broker."""
        record = DeadLetter.from_record(
            reason=reason,
            errors=errors,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            value=message.value if isinstance(message.value, bytes) else None,
            failed_at=self._clock.now(),
        )
        sent = await self._topic.send(key=message.key, value=record.model_dump_json().encode())
        await sent
        self._counter.labels(reason=reason.value).inc()
        log.warning(
            "dead_lettered",
            reason=reason.value,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
        )
