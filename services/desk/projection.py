"""Writing a batch into PostgreSQL: the rows and the consumer offsets in one transaction.

Each table has its own idempotent upsert, so applying a batch twice (a crash after the
commit and before the consumer moved on, a replay of a topic from the start) leaves the
same rows:

- alerts and children: the stored view is replaced only by a higher `revision`;
- obligations: merged by the rules of `services.desk.merge`, written out in SQL;
- notification events, audit records, dead letters and refused fulfilments: inserted
  once per id, later copies ignored;
- a source's day: the earliest first and the latest last arrival;
- an offender's manager: replaced only by a later assignment (time, then source and id).

The offsets of the batch's partitions are written in the same transaction: after a crash
the projector resumes from exactly what was committed (services.desk.projector).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, func, literal_column, or_, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.desk.merge import ObligationFacts
from services.desk.records import Batch
from services.desk.schema import (
    alerts,
    audit_records,
    children,
    dead_letters,
    notification_events,
    obligations,
    offender_managers,
    projector_offsets,
    refused_fulfilments,
    source_days,
)

Partition = tuple[str, int]


async def write_batch(
    connection: AsyncConnection,
    batch: Batch,
    offsets: Mapping[Partition, int],
    caught_up: set[Partition],
    now: datetime,
) -> None:
    """Write the batch's rows and the partitions' next offsets (inside the caller's transaction)."""
    if batch.alerts:
        await _views(connection, alerts, "alert_id", [r.values for r in batch.alerts.values()])
    if batch.children:
        await _views(connection, children, "child_id", [r.values for r in batch.children.values()])
    if batch.obligations:
        await _obligations(connection, list(batch.obligations.values()))
    if batch.events:
        statement = insert(notification_events).on_conflict_do_nothing()
        await connection.execute(statement, [r.values for r in batch.events.values()])
    if batch.audit:
        statement = insert(audit_records).on_conflict_do_nothing()
        await connection.execute(statement, [r.values for r in batch.audit.values()])
    await _assurance(connection, batch)
    if offsets:
        await write_offsets(connection, offsets, caught_up, now)


async def _assurance(connection: AsyncConnection, batch: Batch) -> None:
    """Write the assurance pack's rows: dead letters, sources' days, managers, refusals."""
    for table, rows in (
        (dead_letters, [r.values for r in batch.dead_letters.values()]),
        (refused_fulfilments, [r.values for r in batch.refused.values()]),
    ):
        if rows:
            await connection.execute(insert(table).on_conflict_do_nothing(), rows)
    if batch.source_days:
        statement = insert(source_days)
        await connection.execute(
            statement.on_conflict_do_update(
                index_elements=["source", "day"],
                set_={
                    "first_at": func.least(source_days.c.first_at, statement.excluded.first_at),
                    "last_at": func.greatest(source_days.c.last_at, statement.excluded.last_at),
                },
            ),
            [
                {"source": d.source, "day": d.day, "first_at": d.first_at, "last_at": d.last_at}
                for d in batch.source_days.values()
            ],
        )
    if batch.managers:
        statement = insert(offender_managers)
        stored = tuple_(
            offender_managers.c.assigned_at,
            offender_managers.c.event_source.collate("C"),
            offender_managers.c.event_id.collate("C"),
        )
        given = tuple_(
            statement.excluded.assigned_at,
            statement.excluded.event_source.collate("C"),
            statement.excluded.event_id.collate("C"),
        )
        await connection.execute(
            statement.on_conflict_do_update(
                index_elements=["offender_id"],
                set_={
                    c.name: statement.excluded[c.name]
                    for c in offender_managers.columns
                    if c.name != "offender_id"
                },
                where=stored < given,
            ),
            [r.values for r in batch.managers.values()],
        )


async def _views(
    connection: AsyncConnection, table: Table, key: str, rows: list[dict[str, Any]]
) -> None:
    statement = insert(table)
    columns = {c.name: statement.excluded[c.name] for c in table.columns if c.name != key}
    await connection.execute(
        statement.on_conflict_do_update(
            index_elements=[key],
            set_=columns,
            where=table.c.revision < statement.excluded.revision,
        ),
        rows,
    )


def _facts_row(facts: ObligationFacts) -> dict[str, Any]:
    return {
        "obligation_id": facts.obligation_id,
        "rule": facts.rule,
        "area": facts.area,
        "severity": facts.severity,
        "triggered_at": facts.triggered_at,
        "due_at": facts.due_at,
        "fulfilled_at": facts.fulfilled_at,
        "breached": facts.breached,
        "closed_at": facts.closed_at,
        "close_reason": facts.close_reason,
        "described_at": facts.described_at,
        "subject_kind": facts.subject_kind,
        "subject_id": facts.subject_id,
        "recorded_late_by_seconds": facts.recorded_late_by_seconds,
        "transfer_requested_at": facts.transfer_requested_at,
        "transfer_refused_at": facts.transfer_refused_at,
    }


# The merge of services.desk.merge, in SQL: `obligations` the stored row, `excluded`
# the new facts.
_DESCRIPTION = (
    "({t}.described_at, {t}.due_at, {t}.triggered_at, COALESCE({t}.area, '') COLLATE \"C\", "
    "COALESCE({t}.rule, '') COLLATE \"C\", COALESCE({t}.severity, '') COLLATE \"C\", "
    "COALESCE({t}.subject_kind, '') COLLATE \"C\", COALESCE({t}.subject_id, '') COLLATE \"C\")"
)
_NEWER = (
    "excluded.described_at IS NOT NULL AND (obligations.described_at IS NULL OR "
    f"{_DESCRIPTION.format(t='excluded')} > {_DESCRIPTION.format(t='obligations')})"
)
# The earliest fulfilment keeps its own recorded lateness; on a tie, the larger.
_RECORDED_LATE = (
    "CASE WHEN excluded.fulfilled_at IS NULL THEN obligations.recorded_late_by_seconds "
    "WHEN obligations.fulfilled_at IS NULL OR excluded.fulfilled_at < obligations.fulfilled_at "
    "THEN excluded.recorded_late_by_seconds "
    "WHEN excluded.fulfilled_at = obligations.fulfilled_at THEN "
    "GREATEST(obligations.recorded_late_by_seconds, excluded.recorded_late_by_seconds) "
    "ELSE obligations.recorded_late_by_seconds END"
)
# Reason codes compare byte-wise (COLLATE "C"), as Python compares them.
_EARLIER_CLOSURE = (
    "excluded.closed_at IS NOT NULL AND (obligations.closed_at IS NULL OR "
    "(excluded.closed_at, COALESCE(excluded.close_reason, '') COLLATE \"C\") < "
    "(obligations.closed_at, COALESCE(obligations.close_reason, '') COLLATE \"C\"))"
)


async def _obligations(connection: AsyncConnection, facts: list[ObligationFacts]) -> None:
    described = (
        "rule",
        "area",
        "severity",
        "triggered_at",
        "due_at",
        "described_at",
        "subject_kind",
        "subject_id",
    )
    set_: dict[str, Any] = {
        name: literal_column(f"CASE WHEN {_NEWER} THEN excluded.{name} ELSE obligations.{name} END")
        for name in described
    }
    set_["breached"] = literal_column("obligations.breached OR excluded.breached")
    set_["fulfilled_at"] = literal_column("LEAST(obligations.fulfilled_at, excluded.fulfilled_at)")
    set_["recorded_late_by_seconds"] = literal_column(_RECORDED_LATE)
    for name in ("transfer_requested_at", "transfer_refused_at"):
        set_[name] = literal_column(f"LEAST(obligations.{name}, excluded.{name})")
    for name in ("closed_at", "close_reason"):
        set_[name] = literal_column(
            f"CASE WHEN {_EARLIER_CLOSURE} THEN excluded.{name} ELSE obligations.{name} END"
        )
    statement = insert(obligations)
    await connection.execute(
        statement.on_conflict_do_update(index_elements=["obligation_id"], set_=set_),
        [_facts_row(f) for f in facts],
    )


async def write_offsets(
    connection: AsyncConnection,
    offsets: Mapping[Partition, int],
    caught_up: set[Partition],
    now: datetime,
) -> None:
    """Record the next offset of each partition, and when it was last seen caught up."""
    rows = [
        {
            "topic": topic,
            "partition": partition,
            "next_offset": offset,
            "caught_up_at": now if (topic, partition) in caught_up else None,
            "updated_at": now,
        }
        for (topic, partition), offset in offsets.items()
    ]
    statement = insert(projector_offsets)
    await connection.execute(
        statement.on_conflict_do_update(
            index_elements=["topic", "partition"],
            set_={
                "next_offset": statement.excluded.next_offset,
                "updated_at": statement.excluded.updated_at,
                "caught_up_at": text(
                    "COALESCE(excluded.caught_up_at, projector_offsets.caught_up_at)"
                ),
            },
        ),
        rows,
    )


async def mark_caught_up(
    connection: AsyncConnection, partitions: Mapping[Partition, int], now: datetime
) -> None:
    """Note that these partitions had nothing left to read at `now` (an idle heartbeat).

    A partition nothing was ever written for gets its row (its position is then the
    truth: there was nothing to write). A stored row is touched only when its offset is
    the position given: a partition another projector has moved on is not claimed.
    """
    statement = insert(projector_offsets)
    await connection.execute(
        statement.on_conflict_do_update(
            index_elements=["topic", "partition"],
            set_={"caught_up_at": statement.excluded.caught_up_at},
            where=projector_offsets.c.next_offset == statement.excluded.next_offset,
        ),
        [
            {
                "topic": topic,
                "partition": partition,
                "next_offset": position,
                "caught_up_at": now,
                "updated_at": now,
            }
            for (topic, partition), position in partitions.items()
        ],
    )


async def read_offsets(
    connection: AsyncConnection, partitions: list[Partition]
) -> dict[Partition, int]:
    """Return the stored next offset of each partition that has one."""
    if not partitions:
        return {}
    conditions = [
        and_(projector_offsets.c.topic == topic, projector_offsets.c.partition == partition)
        for topic, partition in partitions
    ]
    result = await connection.execute(
        select(
            projector_offsets.c.topic,
            projector_offsets.c.partition,
            projector_offsets.c.next_offset,
        ).where(or_(*conditions))
    )
    return {(row.topic, row.partition): int(row.next_offset) for row in result}
