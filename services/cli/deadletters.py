"""Dead-letter repair: read `safeguarding.deadletter.v1`, select, describe and replay.

A dead letter (`schemas.deadletter.DeadLetter`) keeps the original record's topic,
partition, offset, key and value with the reason it could not be accepted. Once the
cause is fixed (a release, a policy change), `replay` writes the original key and bytes
back to the original topic and partition, where the service reads them again.

Replaying is safe to repeat. What a replay does on each topic:

- `safeguarding.events.v1` and risk's `-subjects`: risk drops an event whose
  `(source, id)` it has already applied to the subject, so an event that was in fact
  processed changes nothing, and one that was not is applied once, late.
- `safeguarding.alerts.v1`: notify drops a raise or resolution of an alert it already
  holds (alert ids are deterministic).
- `safeguarding.notifications.v1`: notify drops repeated acknowledgements, closures and
  delivery outcomes by their CloudEvent id.
- `safeguarding.outcomes.v1`: the timeliness table's merge is idempotent and
  commutative: a repeat changes nothing.
- risk's and notify's `-checks`: a check finds nothing to do when nothing is due.

Each record is a dead letter's position (`<partition>:<offset>` on the dead-letter topic,
its `ref`). What is shown by default names no one: the reason, the errors (locations and
messages, never values), the original position, and the CloudEvent's `type`, `source`,
`id` and `time` when the value is one. The key (a child's or offender's id, as ingest
keys events) and the value are shown only on request, and that consultation is audited,
as every replay is (`deadletter.viewed`, `deadletter.replayed` on
`safeguarding.audit.v1`, source `urn:safeguard:cli`, actor the operator's name). The
audit record is written, and acknowledged by the broker, before the action.

Kafka consumer groups are not used: partitions are assigned and read from the start
(or from `since`, by the broker's time index) to the end they had when reading began.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from pydantic import ValidationError

from schemas.audit import AuditAction, RecordRef
from schemas.deadletter import DeadLetter, DeadLetterReason
from services.common.audit import AUDIT_TOPIC, audit_record
from services.common.auth import Principal
from services.common.kafka import Topics
from services.common.kafka_clients import bootstrapped

DEADLETTER_TOPIC = Topics().deadletter
POLL_TIMEOUT_MS = 500
# A partition that yields nothing for this many polls, short of the end it reported, is lost.
STALL_POLLS = 60
SEND_TIMEOUT_SECONDS = 30.0
INDEX_MARGIN = timedelta(minutes=10)
# What the value's decoding put in place of bytes that were not UTF-8 when dead-lettered.
REPLACEMENT = "\ufffd"
# CloudEvents attributes that identify an event without saying anything about a person
# (`subject` can hold an id, `data` is the payload).
ENVELOPE_FIELDS = ("type", "source", "id", "time")


class DeadLetterError(RuntimeError):
    """The dead-letter topic could not be read, or an audit record could not be written."""


@dataclass(frozen=True)
class Located:
    """A record of the dead-letter topic: where it is, and the dead letter it holds."""

    partition: int
    offset: int
    timestamp: datetime
    letter: DeadLetter | None
    """None when the record is not a dead letter this version can read."""

    @property
    def ref(self) -> str:
        """Return how a person names it: `<partition>:<offset>` on the dead-letter topic."""
        return f"{self.partition}:{self.offset}"

    @property
    def failed_at(self) -> datetime:
        """Return when it was dead-lettered (the broker's time for an unreadable one)."""
        return self.letter.failed_at if self.letter is not None else self.timestamp


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command acts on; an empty selection matches every one."""

    refs: frozenset[str] = frozenset()
    reasons: frozenset[DeadLetterReason] = frozenset()
    since: datetime | None = None
    until: datetime | None = None
    key: str | None = None
    original_topic: str | None = None

    @property
    def empty(self) -> bool:
        """Tell whether nothing narrows the selection."""
        return self == Selection()

    def __call__(self, located: Located) -> bool:
        """Tell whether `located` is selected."""
        letter = located.letter
        if self.refs and located.ref not in self.refs:
            return False
        if self.since is not None and located.failed_at < self.since:
            return False
        if self.until is not None and located.failed_at >= self.until:
            return False
        if not (self.reasons or self.key is not None or self.original_topic is not None):
            return True
        if letter is None:
            return False
        return (
            (not self.reasons or letter.reason in self.reasons)
            and (self.key is None or letter.original_key() == self.key.encode())
            and (self.original_topic is None or letter.topic == self.original_topic)
        )


def read_dead_letters(
    options: dict[str, Any],
    topic: str = DEADLETTER_TOPIC,
    *,
    since: datetime | None = None,
    timeout_ms: int = 10_000,
) -> list[Located]:
    """Read the dead-letter topic up to its current end, oldest failure first."""
    consumer = bootstrapped(
        KafkaConsumer,
        **options,
        enable_auto_commit=False,
        group_id=None,
        request_timeout_ms=max(timeout_ms, 5_000) + 1_000,
        consumer_timeout_ms=timeout_ms,
    )
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise DeadLetterError(f"topic {topic} does not exist or has no partitions")
        found: list[Located] = []
        for partition in sorted(partitions):
            found.extend(_read_partition(consumer, TopicPartition(topic, partition), since))
    except KafkaError as exc:
        raise DeadLetterError(f"cannot read {topic}: {type(exc).__name__}") from exc
    finally:
        consumer.close()
    return sorted(found, key=lambda located: (located.failed_at, located.ref))


def _read_partition(
    consumer: KafkaConsumer, tp: TopicPartition, since: datetime | None
) -> Iterator[Located]:
    consumer.assign([tp])
    end = consumer.end_offsets([tp])[tp]
    start = None
    if since is not None:
        # The broker's time is when the dead letter was written, close to its `failed_at`
        # but on another clock: look a little earlier, then filter on `failed_at`.
        lookup = since - INDEX_MARGIN
        start = consumer.offsets_for_times({tp: int(lookup.timestamp() * 1000)}).get(tp)
        if start is None:
            return  # nothing at or after `since`
    if start is None:
        consumer.seek_to_beginning(tp)
    else:
        consumer.seek(tp, start.offset)
    idle = 0
    while consumer.position(tp) < end:
        records = consumer.poll(timeout_ms=POLL_TIMEOUT_MS).get(tp, [])
        idle = 0 if records else idle + 1
        if idle > STALL_POLLS:
            raise DeadLetterError(
                f"partition {tp.partition} stopped at offset {consumer.position(tp)} of {end}"
            )
        for record in records:
            if record.offset >= end:
                break
            yield Located(
                partition=record.partition,
                offset=record.offset,
                timestamp=datetime.fromtimestamp(record.timestamp / 1000, tz=UTC),
                letter=_letter(record.value),
            )


def _letter(value: bytes | None) -> DeadLetter | None:
    if value is None:
        return None
    try:
        return DeadLetter.model_validate_json(value)
    except ValidationError:
        return None


def envelope(letter: DeadLetter) -> dict[str, str]:
    """Return the CloudEvent attributes that name the original event, when it is one."""
    if letter.value is None:
        return {}
    try:
        document = json.loads(letter.value)
    except ValueError:
        return {}
    if not isinstance(document, dict):
        return {}
    return {name: str(document[name]) for name in ENVELOPE_FIELDS if name in document}


def summary(located: Located) -> dict[str, Any]:
    """Return what `ls` and `show` print by default: nothing about a person."""
    letter = located.letter
    if letter is None:
        return {
            "ref": located.ref,
            "failed_at": located.failed_at.isoformat(),
            "reason": "unreadable",
            "errors": [],
        }
    return {
        "ref": located.ref,
        "failed_at": letter.failed_at.isoformat(),
        "reason": letter.reason.value,
        "errors": [str(error) for error in letter.errors],
        "original": {"topic": letter.topic, "partition": letter.partition, "offset": letter.offset},
        "event": envelope(letter),
        "key_present": letter.key is not None,
        "value_bytes": None if letter.value is None else len(letter.value.encode()),
        "replayable": replay_problem(letter) is None,
    }


def personal(located: Located) -> dict[str, Any]:
    """Return the key and the value: personal data, shown only when asked for and audited."""
    letter = located.letter
    if letter is None:
        return {}
    value: Any = letter.value
    if value is not None:
        with contextlib.suppress(ValueError):  # not JSON: shown as the text it is
            value = json.loads(value)
    return {"key": letter.key, "key_encoding": letter.key_encoding, "value": value}


def replay_problem(letter: DeadLetter) -> str | None:
    """Return why a dead letter cannot be replayed byte for byte, or None when it can."""
    if letter.value is None:
        return "no value (a tombstone): nothing to replay"
    if REPLACEMENT in letter.value:
        return "its value was not UTF-8: the original bytes were not kept"
    return None


@dataclass
class Replayed:
    """What became of one selected dead letter."""

    ref: str
    topic: str | None
    partition: int | None = None
    offset: int | None = None
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return it as JSON-ready data."""
        return {
            "ref": self.ref,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "problem": self.problem,
        }


@dataclass
class Auditor:
    """Writes the command line's audit records and waits until the broker has each."""

    producer: KafkaProducer
    actor: Principal
    topic: str = AUDIT_TOPIC
    deadletter_topic: str = DEADLETTER_TOPIC
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def record(self, action: AuditAction, located: Iterable[Located]) -> None:
        """Record `action` on each dead letter; raise DeadLetterError unless all were taken."""
        futures = []
        for item in located:
            key, value = audit_record(
                "cli",
                action,
                self.actor,
                self.now(),
                record=RecordRef(
                    topic=self.deadletter_topic, partition=item.partition, offset=item.offset
                ),
            )
            futures.append(self.producer.send(self.topic, key=key, value=value))
        try:
            for future in futures:
                future.get(timeout=SEND_TIMEOUT_SECONDS)
        except KafkaError as exc:
            raise DeadLetterError(
                f"the audit trail ({self.topic}) did not take the record: {type(exc).__name__};"
                " nothing was done"
            ) from exc


def producer(options: dict[str, Any]) -> KafkaProducer:
    """Return a producer that waits for every in-sync replica, as ingest's does."""
    # Not idempotent: on the development broker an idempotent kafka-python producer can
    # stay wedged after a network fault; a repeat is harmless here anyway.
    return KafkaProducer(**options, acks="all", retries=5, linger_ms=0, max_block_ms=15_000)


def replay(selected: Sequence[Located], send: KafkaProducer, auditor: Auditor) -> list[Replayed]:
    """Audit, then write each selected dead letter's key and bytes back where they came from.

    Dead letters that cannot be replayed byte for byte are reported and neither audited
    nor sent. Raises DeadLetterError, sending nothing, when the audit records are not taken.
    """
    results: list[Replayed] = []
    ready: list[tuple[Located, DeadLetter]] = []
    for located in selected:
        letter = located.letter
        if letter is None:
            results.append(Replayed(located.ref, None, problem="not a readable dead letter"))
            continue
        problem = replay_problem(letter)
        if problem is not None:
            results.append(Replayed(located.ref, letter.topic, letter.partition, problem=problem))
            continue
        ready.append((located, letter))
    if not ready:
        return results
    auditor.record(AuditAction.DEADLETTER_REPLAYED, [located for located, _ in ready])
    pending = []
    for located, letter in ready:
        try:
            # Its own partition: where its key (or its sender) put it, and where a
            # subject's other events are. Another if the topic has fewer partitions now.
            known = send.partitions_for(letter.topic) or set()
            partition = letter.partition if letter.partition in known else None
            value = (letter.value or "").encode()
            key = letter.original_key()
            pending.append(
                (
                    located,
                    letter,
                    send.send(letter.topic, key=key, value=value, partition=partition),
                )
            )
        except KafkaError as exc:
            results.append(Replayed(located.ref, letter.topic, problem=_not_sent(exc)))
    for located, letter, future in pending:
        try:
            metadata = future.get(timeout=SEND_TIMEOUT_SECONDS)
        except KafkaError as exc:
            results.append(Replayed(located.ref, letter.topic, problem=_not_sent(exc)))
            continue
        results.append(Replayed(located.ref, letter.topic, metadata.partition, metadata.offset))
    order = {located.ref: n for n, located in enumerate(selected)}
    return sorted(results, key=lambda result: order[result.ref])


def _not_sent(exc: Exception) -> str:
    return f"not sent: {type(exc).__name__} (replaying again is safe)"
