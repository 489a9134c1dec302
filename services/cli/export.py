"""`safeguard export`: the events topic, from a moment on, as JSON lines for the backtest.

Each partition is read from the first offset whose timestamp is at or after `since`
(the broker's time index, `offsets_for_times`) up to the end it had when the export
started, into a temporary file. The partitions are then merged by record timestamp,
which keeps each partition's own order (and so each subject's: ingest keys events by
subject), so the file is in the order the risk service would have met the events.

Each line is the record's value, a CloudEvent, with one member added: `recordedat`, the
record's timestamp (when ingest wrote it), which the backtest takes as its arrival.
Records that are not JSON objects cannot carry it; the risk service dead-letters them,
so they are counted and left out.
"""

from __future__ import annotations

import heapq
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from kafka import KafkaConsumer, TopicPartition

from services.cli.backtest import ARRIVAL_FIELD
from services.common.kafka_clients import bootstrapped

POLL_TIMEOUT_MS = 500
# A partition that yields nothing for this long, short of the end it reported, is lost.
STALL_POLLS = 60


class ExportError(RuntimeError):
    """The topic could not be read."""


@dataclass
class ExportSummary:
    """What an export wrote."""

    written: int = 0
    skipped: int = 0
    partitions: dict[int, int] = field(default_factory=dict)
    first: datetime | None = None
    last: datetime | None = None


def to_millis(when: datetime) -> int:
    """Return a timestamp in the broker's unit: milliseconds since the epoch."""
    return int(when.timestamp() * 1000)


def from_millis(millis: int) -> datetime:
    """Return the UTC datetime of a broker timestamp."""
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def export_line(value: bytes | None, timestamp_ms: int) -> str | None:
    """Return the JSON line for one record, or None when it is not a JSON object."""
    if value is None:
        return None
    try:
        document = json.loads(value)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    document[ARRIVAL_FIELD] = from_millis(timestamp_ms).isoformat(timespec="milliseconds")
    return json.dumps(document, separators=(",", ":"))


def export(
    options: dict[str, Any],
    topic: str,
    since: datetime,
    out: IO[str],
    *,
    timeout_ms: int = 10_000,
) -> ExportSummary:
    """Write the records of `topic` from `since` to its current end to `out`."""
    consumer = bootstrapped(
        KafkaConsumer,
        **options,
        enable_auto_commit=False,
        group_id=None,
        request_timeout_ms=max(timeout_ms, 5_000) + 1_000,
        consumer_timeout_ms=timeout_ms,
    )
    summary = ExportSummary()
    with tempfile.TemporaryDirectory(prefix="safeguard-export-") as scratch:
        try:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                raise ExportError(f"topic {topic} does not exist or has no partitions")
            spools = []
            for partition in sorted(partitions):
                spool = open(f"{scratch}/{partition}.jsonl", "w+", encoding="utf-8")  # noqa: PTH123, SIM115 - closed below
                spools.append(spool)
                tp = TopicPartition(topic, partition)
                summary.partitions[partition] = _spool(consumer, tp, since, spool, summary)
                spool.seek(0)
        finally:
            consumer.close()
        try:
            for timestamp, line in heapq.merge(*(_spooled(s) for s in spools)):
                out.write(line)
                summary.written += 1
                moment = from_millis(timestamp)
                summary.first = summary.first or moment
                summary.last = moment
        finally:
            for spool in spools:
                spool.close()
    return summary


def _spool(
    consumer: KafkaConsumer,
    tp: TopicPartition,
    since: datetime,
    spool: IO[str],
    summary: ExportSummary,
) -> int:
    """Copy one partition from `since` to its end into `spool` as `timestamp<TAB>line`."""
    consumer.assign([tp])
    end = consumer.end_offsets([tp])[tp]
    found = consumer.offsets_for_times({tp: to_millis(since)}).get(tp)
    if found is None:
        return 0  # nothing at or after `since`
    consumer.seek(tp, found.offset)
    since_ms = to_millis(since)
    # Some brokers (Tansu) answer the time lookup with the first offset whatever the
    # time: records before the first one at or after `since` are skipped here too.
    started = False
    copied = 0
    idle = 0
    while consumer.position(tp) < end:
        batches = consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
        records = batches.get(tp, [])
        idle = 0 if records else idle + 1
        if idle > STALL_POLLS:
            raise ExportError(
                f"partition {tp.partition} stopped at offset {consumer.position(tp)} of {end}"
            )
        for record in records:
            if record.offset >= end:
                break
            if not started and record.timestamp < since_ms:
                continue
            started = True
            line = export_line(record.value, record.timestamp)
            if line is None:
                summary.skipped += 1
                continue
            spool.write(f"{record.timestamp}\t{line}\n")
            copied += 1
    return copied


def _spooled(spool: IO[str]) -> Iterator[tuple[int, str]]:
    for row in spool:
        timestamp, _, line = row.partition("\t")
        yield int(timestamp), line
