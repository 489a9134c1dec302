"""What the stream core reads and writes: input messages, records to publish, dead letters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from schemas.deadletter import DeadLetter, DeadLetterReason
from schemas.errors import FieldError, InvalidEvent, MalformedJSON


@dataclass(frozen=True)
class Input:
    """One message taken from an input topic.

    `handle` is the runtime's own object for the message (Faust's event), handed back
    when a state this message decided is written; the core never looks inside it.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    handle: object = None


@dataclass(frozen=True)
class Record:
    """A record to publish before the states it follows are written."""

    topic: str
    key: bytes | None
    value: bytes
    # None: the producer's partitioner (by key) decides.
    partition: int | None = None


class Forbidden(Exception):
    """An input its sender was not allowed to send: dead-lettered `forbidden`.

    `errors` name what was not allowed (locations and codes, never values); `records`
    (the refusal's audit record) are published with the dead letter, in the same batch.
    """

    def __init__(self, errors: list[FieldError], records: Sequence[Record] = ()) -> None:
        super().__init__("; ".join(str(error) for error in errors))
        self.errors = errors
        self.records = list(records)


def classify(exc: Exception) -> tuple[DeadLetterReason, list[FieldError]]:
    """Say why an input can never succeed: not JSON, not a valid event, forbidden, or a failure."""
    if isinstance(exc, MalformedJSON):
        return DeadLetterReason.INVALID_JSON, exc.errors
    if isinstance(exc, InvalidEvent):
        return DeadLetterReason.INVALID_EVENT, exc.errors
    if isinstance(exc, Forbidden):
        return DeadLetterReason.FORBIDDEN, exc.errors
    return DeadLetterReason.PROCESSING_ERROR, [FieldError(loc="(root)", msg=type(exc).__name__)]


def dead_letter(
    topic: str,
    message: Input,
    reason: DeadLetterReason,
    errors: list[FieldError],
    at: datetime,
) -> Record:
    """Return the dead-letter record of a message: why, where it came from, its bytes."""
    record = DeadLetter.from_record(
        reason=reason,
        errors=errors,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        failed_at=at,
    )
    return Record(topic, message.key, record.model_dump_json().encode())
