"""`safeguard desk rebuild` makes, from the topics alone, the rows the live desk holds.

A whole stack runs: incidents raise alerts, one is acknowledged through the desk, a
child's chronology and the alert list are read (audited), and a record the desk can
never project is put on the alert views. Once the live desk has read every topic to its
end, the rebuild fills an empty database; every table but the sessions then holds the
same rows in both, and the unprojectable record was dead-lettered once, not again.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy
from typer.testing import CliRunner

from devtools.stack import DevStack
from services.cli.main import app
from services.desk.database import Database
from services.desk.projection import read_offsets
from services.desk.rebuild import NOT_REBUILT, progress, spans
from services.desk.records import topic_kinds
from services.desk.schema import metadata
from services.desk.settings import DeskSettings
from tests.fixtures.broker import produce, read_all
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.stack import Client, StackFactory, wait_until

pytestmark = pytest.mark.e2e

runner = CliRunner()
# Written when the rebuild ends, not by what it rebuilds.
WHEN_WRITTEN = {"projector_offsets": {"caught_up_at", "updated_at"}}


def incident(n: int) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"rebuild-{n}",
        "source": "urn:safeguard:source:control-room",
        "type": "incident.reported",
        "time": (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": {
            "incident_id": f"INC-RB-{n}",
            "category": "domestic_abuse",
            "area": "north" if n % 2 else "south",
            "children": [{"child_id": f"C-RB-{n}", "present": True, "age": 6 + n}],
        },
    }


def desk_env(stack: DevStack) -> dict[str, str]:
    """The desk pod's settings, as a rebuild run beside it reads them."""
    spec = next(s for s in stack.specs if s.name == "desk")
    return {k: v for k, v in stack.environment(spec).items() if k.startswith("DESK_")}


def desk_settings(stack: DevStack) -> DeskSettings:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in desk_env(stack).items():
            patch.setenv(name, value)
        return DeskSettings()


def rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every rebuilt table's rows, in primary-key order, without the write-time columns."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            for table in metadata.sorted_tables:
                if table.name in NOT_REBUILT:
                    continue
                skip = WHEN_WRITTEN.get(table.name, set())
                columns = [c for c in table.columns if c.name not in skip]
                query = sqlalchemy.select(*columns).order_by(*table.primary_key.columns)
                found[table.name] = [tuple(row) for row in connection.execute(query)]
    finally:
        engine.dispose()
    return found


def caught_up(settings: DeskSettings) -> bool:
    """Tell whether the database of `settings` holds every topic up to its end now."""

    async def check() -> bool:
        target = await spans(
            settings, list(topic_kinds(settings.kafka.topics, settings.audit_topic))
        )
        database = Database(settings.database_url.get_secret_value(), settings.db, pooled=False)
        try:
            async with database.read() as connection:
                stored = await read_offsets(connection, list(target))
        finally:
            await database.close()
        return progress(target, stored).complete

    return asyncio.run(check())


def test_a_rebuild_from_the_topics_gives_the_same_rows(
    stack_factory: StackFactory, postgres: PostgresServer
) -> None:
    stack = stack_factory()
    desk = stack.url("desk")
    for n in range(1, 5):
        code, body, _ = Client().request("POST", f"{stack.url('ingest')}/v1/events", incident(n))
        assert code == 202, body

    def listed() -> list[dict[str, Any]] | None:
        alerts = Client().request("GET", f"{desk}/v1/alerts?limit=100")[1]["alerts"]
        return alerts if len({a["subject_id"] for a in alerts}) == 4 else None

    alerts = wait_until(listed, timeout=90)
    assert alerts, "the alerts were not raised"
    first = alerts[0]["alert_id"]
    code, body, _ = Client().request("POST", f"{desk}/v1/alerts/{first}/ack", {"note": "on it"})
    assert code == 202, body
    assert wait_until(
        lambda: Client().request("GET", f"{desk}/v1/alerts/{first}")[1]["status"] == "acknowledged",
        timeout=60,
    )
    assert Client().request("GET", f"{desk}/v1/children/C-RB-1")[0] == 200
    produce(stack.bootstrap, stack.topics.alert_views, [(b"al-broken", b"not json")])

    assert stack.database_url is not None
    live = desk_settings(stack)
    assert wait_until(lambda: caught_up(live), timeout=60), "the live desk did not catch up"
    letters_before = len(read_all(stack.bootstrap, stack.topics.deadletter))

    empty = postgres.create(template=None)
    try:
        env = desk_env(stack)
        result = runner.invoke(
            app, ["desk", "rebuild", "--url", empty, "--interval", "0.5"], env=env
        )
        assert result.exit_code == 0, result.output
        assert "rebuilt:" in result.stdout

        assert rows(empty) == rows(stack.database_url)
        assert rows(empty)["alerts"], "nothing was rebuilt"
        assert len(read_all(stack.bootstrap, stack.topics.deadletter)) == letters_before

        # Again into the same database: refused, its offsets would make it a no-op.
        again = runner.invoke(app, ["desk", "rebuild", "--url", empty], env=env)
        assert again.exit_code == 1
        assert "already holds a projection" in again.stderr
    finally:
        postgres.drop(empty)
