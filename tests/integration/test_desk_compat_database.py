"""The released records of tests/fixtures/compat/v1-desk-topics.json, decoded by this
projector, are written by `write_batch` into a migrated PostgreSQL: every row lands, and
writing the same batch again (a replay) changes nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa

from services.desk.database import Database
from services.desk.projection import write_batch
from services.desk.records import Batch, Kind
from services.desk.schema import (
    alerts,
    audit_records,
    children,
    dead_letters,
    notification_events,
    obligations,
    offender_managers,
    refused_fulfilments,
    source_days,
)
from services.desk.settings import DatabaseSettings
from tests.unit.test_desk_compat import ARRIVED, CHILD, DECISION, REFERRAL, batch

pytestmark = pytest.mark.integration

COUNTS = {
    alerts: 2,
    children: 1,
    obligations: 3,
    notification_events: 8,
    audit_records: 2,
    dead_letters: 1,
    source_days: 4,
    offender_managers: 1,
    refused_fulfilments: 1,
}


def everything() -> Batch:
    folded = Batch()
    for kind in Kind:
        single = batch(kind)
        for rows in vars(single).values():
            for change in rows.values():
                folded.add(change)
    return folded


async def write_and_read(url: str) -> list[dict[str, Any]]:
    database = Database(url, DatabaseSettings())
    try:
        answers = []
        for _ in range(2):
            async with database.write() as connection:
                await write_batch(connection, everything(), {}, set(), ARRIVED)
            async with database.read() as connection:
                counts = {
                    t.name: (
                        await connection.execute(sa.select(sa.func.count()).select_from(t))
                    ).scalar_one()
                    for t in COUNTS
                }
                states = dict(
                    (await connection.execute(sa.select(alerts.c.alert_id, alerts.c.status))).all()
                )
                child = (
                    await connection.execute(
                        sa.select(children.c.revision).where(children.c.child_id == CHILD)
                    )
                ).scalar_one()
            answers.append({"counts": counts, "states": states, "child": child})
        return answers
    finally:
        await database.close()


def test_the_released_records_are_written_and_a_replay_changes_nothing(database_url: str) -> None:
    first, again = asyncio.run(write_and_read(database_url))
    assert first["counts"] == {t.name: n for t, n in COUNTS.items()}
    assert first["states"] == {REFERRAL: "resolved", DECISION: "open"}
    assert first["child"] == 5
    assert again == first
