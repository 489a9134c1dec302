"""The desk's database on a real PostgreSQL: migrations, the SQL merge, views, sessions,
the list and queue queries, the analysts' role. No broker needed."""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
from collections.abc import Awaitable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from schemas.views import NextStep
from services.common.auth import Principal, Role
from services.common.clock import FakeClock
from services.common.kafka import Topics
from services.desk import migrate, queries
from services.desk.database import Database
from services.desk.errors import InvalidQuery
from services.desk.merge import ObligationFacts, from_closure, merge
from services.desk.metrics import DeskMetrics
from services.desk.projection import write_batch
from services.desk.records import Batch, Kind, decode
from services.desk.schema import metadata, obligations
from services.desk.sessions import Lifetimes, SessionStore, SignedIn, hash_id
from services.desk.settings import DatabaseSettings
from services.desk.urgency import Tier, urgency
from tests.fixtures import loopback
from tests.fixtures.desk import DeskServer, desk_environment, desk_settings
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.views import T0, alert_view, alert_view_record
from tests.unit.test_desk_projection_logic import facts_strategy

pytestmark = pytest.mark.integration
T = TypeVar("T")
H = timedelta(hours=1)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def db(module_database_url: str, loop: asyncio.AbstractEventLoop) -> Iterator[Database]:
    database = Database(module_database_url, DatabaseSettings())
    yield database
    loop.run_until_complete(database.close())


def run(loop: asyncio.AbstractEventLoop, coroutine: Awaitable[T]) -> T:
    return loop.run_until_complete(coroutine)


def test_the_migrations_make_exactly_the_schema_the_code_queries(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
        assert differences == []
        assert migrate.state_of(connection).usable
    engine.dispose()


def test_a_schema_behind_the_code_is_refused_with_the_revision_it_needs(
    postgres: PostgresServer,
) -> None:
    url = postgres.create(template=None)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            state = migrate.state_of(connection)
        assert state.problem is not None
        assert migrate.head() in state.problem
        assert "safeguard db upgrade" in state.problem
        migrate.upgrade(url)
        migrate.downgrade(url, "base")
        migrate.upgrade(url)
        with engine.connect() as connection:
            assert migrate.state_of(connection).problem is None
            # A revision this code does not know is a newer one (a rollout): usable.
            connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
            connection.commit()
            assert migrate.state_of(connection).usable
    finally:
        engine.dispose()
        postgres.drop(url)


def test_the_analysts_role_reads_the_views_and_nothing_else(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        connection.execute(sa.text("SET ROLE safeguard_analyst"))
        for view in ("analyst_obligations", "analyst_compliance_monthly", "analyst_alerts"):
            assert connection.execute(sa.text(f"SELECT count(*) FROM {view}")).scalar() == 0  # noqa: S608
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            connection.execute(sa.text("SELECT * FROM alerts"))
    engine.dispose()


def _facts() -> st.SearchStrategy[ObligationFacts]:
    return facts_strategy(rule="social-care-referral", hours=5)


def _outcome(at: int, fulfilled: int | None = None, area: str = "north") -> ObligationFacts:
    return ObligationFacts(
        "o-1",
        rule="social-care-referral",
        area=area,
        severity="high",
        triggered_at=T0 - H,
        due_at=T0,
        fulfilled_at=None if fulfilled is None else T0 + fulfilled * H,
        described_at=T0 + at * H,
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    records=st.lists(_facts(), min_size=1, max_size=6), cut=st.integers(min_value=0, max_value=6)
)
# Each rule of the merge met across the two batches, whatever hypothesis draws besides.
@example(records=[_outcome(1, fulfilled=1), _outcome(2, fulfilled=3)], cut=1)
@example(records=[_outcome(2, fulfilled=3), _outcome(1, fulfilled=1)], cut=1)
@example(records=[_outcome(1, area="south"), _outcome(1, area="north")], cut=1)
@example(records=[_outcome(2, area="south"), _outcome(1, area="north")], cut=1)
@example(
    records=[from_closure("o-1", T0 + H, "other"), from_closure("o-1", T0 + H, "duplicate")], cut=1
)
@example(
    records=[from_closure("o-1", T0 + H, "duplicate"), from_closure("o-1", T0 + H, "other")], cut=1
)
@example(
    records=[from_closure("o-1", T0 + 2 * H, None), from_closure("o-1", T0 + H, "other")], cut=1
)
def test_the_sql_merge_is_the_pure_merge(
    db: Database, loop: asyncio.AbstractEventLoop, records: list[ObligationFacts], cut: int
) -> None:
    """Records written in two batches, the second twice, give the row the pure merge gives."""
    key = f"o-{abs(hash((tuple(records), cut))):x}"
    records = [_rekey(r, key) for r in records]

    async def write(items: list[ObligationFacts]) -> None:
        batch = Batch()
        for item in items:
            batch.add(item)
        async with db.write() as connection:
            await write_batch(connection, batch, {}, set(), T0)

    async def stored() -> dict[str, Any]:
        async with db.read() as connection:
            row = (
                await connection.execute(
                    sa.select(obligations).where(obligations.c.obligation_id == key)
                )
            ).one()
            return dict(row._mapping)  # noqa: SLF001

    run(loop, write(records[:cut]))
    run(loop, write(records[cut:]))
    run(loop, write(records[cut:]))
    expected = ObligationFacts(key)
    for record in records:
        expected = merge(expected, record)
    row = run(loop, stored())
    assert {k: row[k] for k in row if k != "obligation_id"} == {
        k: getattr(expected, k) for k in row if k != "obligation_id"
    }


def _rekey(facts: ObligationFacts, key: str) -> ObligationFacts:
    from dataclasses import replace  # noqa: PLC0415

    return replace(facts, obligation_id=key)


def test_a_view_is_replaced_only_by_a_higher_revision(
    db: Database, loop: asyncio.AbstractEventLoop
) -> None:
    async def put(revision: int, status: str) -> None:
        batch = Batch()
        view = alert_view("al-rev", revision=revision, status=status)
        for change in decode(Kind.ALERT_VIEWS, alert_view_record(view)[1]):  # type: ignore[union-attr]
            batch.add(change)
        async with db.write() as connection:
            await write_batch(connection, batch, {}, set(), T0)

    async def status() -> str | None:
        async with db.read() as connection:
            return await queries.status_of(connection, "al-rev")

    run(loop, put(3, "acknowledged"))
    run(loop, put(2, "open"))
    assert run(loop, status()) == "acknowledged"
    run(loop, put(3, "open"))  # the same revision again: no change
    assert run(loop, status()) == "acknowledged"
    run(loop, put(4, "resolved"))
    assert run(loop, status()) == "resolved"


NORTH = Principal(
    name="duty-north", sources=(), roles=frozenset({Role.READ}), areas=frozenset({"north"})
)
EVERYONE = Principal(name="duty-all", sources=(), roles=frozenset({Role.READ}))


def test_the_list_and_the_queue_page_through_everything_in_order(
    database_url: str, loop: asyncio.AbstractEventLoop
) -> None:
    database = Database(database_url, DatabaseSettings())
    views = [
        alert_view(
            f"al-q{n:03d}",
            severity=("medium", "high", "critical")[n % 3],
            area=("north", "south", None)[n % 4 % 3],
            raised_at=T0 + (n % 7) * H,
            due_at=None if n % 5 == 0 else T0 - (n % 11) * H,
            status=("open", "acknowledged", "resolved")[n % 4 % 3],
            level=1 + n % 2,
        )
        for n in range(60)
    ]

    async def scenario() -> None:
        batch = Batch()
        for view in views:
            for change in decode(Kind.ALERT_VIEWS, alert_view_record(view)[1]):  # type: ignore[union-attr]
                batch.add(change)
        async with database.write() as connection:
            await write_batch(connection, batch, {}, set(), T0)
        for principal in (NORTH, EVERYONE):
            visible = [v for v in views if principal.may_see_area(v.alert.area)]
            queue_filter = queries.AlertFilter.for_principal(
                principal, statuses=frozenset({"open", "acknowledged"})
            )
            pages: list[str] = []
            after = None
            async with database.read() as connection:
                while True:
                    found, cursor = await queries.queue_page(connection, queue_filter, 7, after)
                    pages += [s.alert_id for s in found]
                    if cursor is None:
                        break
                    after = queries.queue_cursor(cursor)
                expected = sorted(
                    (v for v in visible if v.status.value != "resolved"),
                    key=lambda v: (
                        -v.alert.severity.rank,
                        urgency(v).tier,
                        urgency(v).at,
                        v.alert.alert_id,
                    ),
                )
                # Both tiers of open alerts are in the set: climbing, and at the top.
                assert {Tier.ESCALATING, Tier.TOP_OF_LADDER} <= {urgency(v).tier for v in expected}
                assert pages == [v.alert.alert_id for v in expected]
                listed: list[str] = []
                list_after = None
                while True:
                    found, cursor = await queries.alert_page(
                        connection, queries.AlertFilter.for_principal(principal), 9, list_after
                    )
                    listed += [s.alert_id for s in found]
                    if cursor is None:
                        break
                    list_after = queries.list_cursor(cursor)
                newest = sorted(
                    visible, key=lambda v: (-v.alert.raised_at.timestamp(), v.alert.alert_id)
                )
                assert listed == [v.alert.alert_id for v in newest]
                counts = await queries.severity_counts(connection, queue_filter)
                assert sum(counts.values()) == len(expected)
        await database.close()

    run(loop, scenario())
    with pytest.raises(InvalidQuery):
        queries.queue_cursor("bm90LWEtY3Vyc29y")
    with pytest.raises(InvalidQuery):
        queries.list_cursor("%%%")


def test_the_migration_fills_the_urgency_key_as_the_projector_does(
    database_url: str, loop: asyncio.AbstractEventLoop
) -> None:
    """Rows projected before 0004_night get the key the pure function gives new rows."""
    night = importlib.import_module("services.desk.migrations.versions.0004_night")
    database = Database(database_url, DatabaseSettings())
    step = NextStep(at=T0 + 2 * H, kind="repeat", level=1, recipients=["duty-desk"])
    climb = NextStep(at=T0 + H, kind="level", level=2, recipients=["senior-managers"])
    views = [
        alert_view("al-u1", level=1).model_copy(update={"next_step": climb}),
        alert_view("al-u2", level=1).model_copy(update={"next_step": step}),
        alert_view("al-u3", level=1, reopened_at=T0 + 3 * H).model_copy(update={"next_step": step}),
        alert_view("al-u4", level=2, due_at=None),
        alert_view("al-u5", status="acknowledged", acknowledged_by="duty").model_copy(
            update={"next_step": NextStep(at=T0 + 4 * H, kind="reopen", level=1, recipients=[])}
        ),
        alert_view("al-u6", status="resolved", closed=(T0 + H, "duplicate")),
        alert_view("al-u7", level=0),
    ]
    columns = ("urgency_tier", "urgency_at", "trigger_source", "trigger_id")

    async def scenario() -> None:
        batch = Batch()
        for view in views:
            for change in decode(Kind.ALERT_VIEWS, alert_view_record(view)[1]):  # type: ignore[union-attr]
                batch.add(change)
        async with database.write() as connection:
            await write_batch(connection, batch, {}, set(), T0)
        query = (
            sa.select(sa.column("alert_id"), *map(sa.column, columns))
            .select_from(sa.table("alerts"))
            .order_by(sa.column("alert_id"))
        )
        async with database.write() as connection:
            projected = (await connection.execute(query)).all()
            await connection.execute(
                sa.text(
                    "UPDATE alerts SET urgency_tier = 9, urgency_at = 'epoch', "
                    "trigger_source = '', trigger_id = ''"
                )
            )
            await connection.execute(sa.text(night.BACKFILL))
            filled = (await connection.execute(query)).all()
        assert filled == projected
        by_id = {row.alert_id: row for row in projected}
        for view in views:
            expected = urgency(view)
            row = by_id[view.alert.alert_id]
            assert (row.urgency_tier, row.urgency_at) == (expected.tier, expected.at)
        await database.close()

    run(loop, scenario())


def test_sessions_expire_are_capped_per_principal_and_keep_only_a_hash(
    database_url: str, loop: asyncio.AbstractEventLoop
) -> None:
    clock = FakeClock(T0)
    database = Database(database_url, DatabaseSettings())
    lifetimes = Lifetimes(idle=timedelta(minutes=30), max_age=timedelta(hours=1), per_principal=3)
    store = SessionStore(
        database, clock, lifetimes, DeskMetrics(__import__("prometheus_client").CollectorRegistry())
    )
    other_store = SessionStore(database, clock, lifetimes, store.metrics)  # another pod

    async def scenario() -> None:
        first_id, first = await store.start(SignedIn(NORTH))
        assert first.id_hash == hash_id(first_id) != first_id
        async with database.read() as connection:
            kept = (
                (await connection.execute(sa.text("SELECT id_hash FROM sessions"))).scalars().all()
            )
        assert first_id not in kept
        assert (await other_store.find(first_id)) is not None  # any pod serves it
        clock.advance(timedelta(minutes=29))
        assert (await store.find(first_id)) is not None  # used: idle counts again
        clock.advance(timedelta(minutes=29))
        found = await store.find(first_id)
        assert found is not None
        assert found.principal == NORTH
        clock.advance(timedelta(minutes=5))  # 63 min old: past the maximum age
        assert (await store.find(first_id)) is None
        # The cap: a fourth session of one principal evicts its oldest, nobody else's.
        everyone_id, _ = await store.start(SignedIn(EVERYONE))
        ids = []
        for _ in range(4):
            clock.advance(timedelta(seconds=1))
            ids.append((await store.start(SignedIn(NORTH)))[0])
        assert await store.count("duty-north") == 3
        assert (await store.find(ids[0])) is None
        assert all([await store.find(i) for i in ids[1:]])
        assert (await store.find(everyone_id)) is not None
        await store.end(ids[1])
        assert (await other_store.find(ids[1])) is None
        assert (await store.find("not-a-session")) is None
        assert (await store.find(None)) is None
        clock.advance(timedelta(minutes=31))
        assert (await store.find(ids[2])) is None  # idle
        await database.close()

    run(loop, scenario())


def test_the_desk_refuses_to_start_on_a_schema_older_than_its_code(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """As a process: exit status 1, naming the revision it needs and the command."""
    url = postgres.create(template=None)
    try:
        env = desk_environment(
            desk_settings(
                database_url=url,
                bootstrap="127.0.0.1:1",
                topics=Topics(),
                audit_topic="audit",
                group="never",
            )
        )
        done = subprocess.run(
            [sys.executable, "-m", "services.desk.main"],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1
        said = done.stderr.decode()
        assert f"needs revision {migrate.head()}" in said
        assert "safeguard db upgrade" in said
    finally:
        postgres.drop(url)


def test_readyz_says_why_when_the_schema_is_behind(postgres: PostgresServer) -> None:
    url = postgres.create(template=None)
    server = DeskServer(
        desk_settings(
            database_url=url,
            bootstrap="127.0.0.1:1",
            topics=Topics(),
            audit_topic="audit",
            group="never",
            projector={"enabled": False},
        )
    ).start()
    try:
        answer = loopback.get(f"{server.url}/readyz", timeout=10)
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "5"
        assert f"needs revision {migrate.head()}" in answer.json()["reason"]
        assert loopback.get(f"{server.url}/healthz", timeout=10).status_code == 200
        migrate.upgrade(url)
        ready = loopback.get(f"{server.url}/readyz", timeout=10)
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "schema": migrate.head()}
    finally:
        server.stop()
        postgres.drop(url)


def test_the_report_forgets_finished_obligations_after_its_retention_never_open_ones(
    db: Database, loop: asyncio.AbstractEventLoop
) -> None:
    """Pruned in SQL by the last of the due, fulfilment and closure times."""
    from services.desk.reports import prune  # noqa: PLC0415

    horizon = T0 - 1000 * H
    old, recent = horizon - 10 * H, horizon + 10 * H
    rows = {
        "p-met-old": ObligationFacts("p-met-old", rule="r", due_at=old, fulfilled_at=old),
        # due long ago, fulfilled after the horizon: its last date is recent, kept
        "p-met-late": ObligationFacts("p-met-late", rule="r", due_at=old, fulfilled_at=recent),
        "p-closed-old": ObligationFacts("p-closed-old", rule="r", due_at=old, closed_at=old),
        "p-open-old": ObligationFacts("p-open-old", rule="r", due_at=old - 5000 * H),
        "p-closure-only": from_closure("p-closure-only", old, "duplicate"),
        "p-recent": ObligationFacts("p-recent", rule="r", due_at=recent, fulfilled_at=recent),
    }

    async def go() -> tuple[int, set[str]]:
        batch = Batch()
        for facts in rows.values():
            batch.add(facts)
        async with db.write() as connection:
            await write_batch(connection, batch, {}, set(), T0)
        async with db.write() as connection:
            pruned = await prune(connection, horizon)
        async with db.read() as connection:
            left = await connection.execute(
                sa.select(obligations.c.obligation_id).where(
                    obligations.c.obligation_id.like("p-%")
                )
            )
            return pruned, {r.obligation_id for r in left}

    pruned, left = run(loop, go())
    assert pruned == 3
    assert left == {"p-met-late", "p-open-old", "p-recent"}


def test_the_gauges_count_caseloads_per_area_and_the_on_time_share_against_the_floor(
    db: Database, loop: asyncio.AbstractEventLoop
) -> None:
    """Per area, never per person: no manager id in any label."""
    from prometheus_client import CollectorRegistry, generate_latest  # noqa: PLC0415

    from services.desk.pack.gauges import AssuranceGauges  # noqa: PLC0415
    from services.desk.pack.policy import Assurance  # noqa: PLC0415
    from services.desk.records import ManagerRow  # noqa: PLC0415

    now = T0 + 1000 * H
    batch = Batch()
    for n, (offender, manager, area) in enumerate(
        [
            ("G-1", "GM-1", "east"),
            ("G-2", "GM-1", "east"),
            ("G-3", "GM-1", "east"),
            ("G-4", "GM-2", "east"),
            ("G-5", "GM-3", "west"),
        ]
    ):
        batch.add(
            ManagerRow(
                offender,
                (T0, "urn:s", f"g{n}"),
                {
                    "offender_id": offender,
                    "manager_id": manager,
                    "area": area,
                    "assigned_at": T0,
                    "event_source": "urn:s",
                    "event_id": f"g{n}",
                },
            )
        )
    # welfare-check in east, due in the last 7 days: 1 on time, 1 backdated, 1 overdue.
    due = now - 24 * H
    for n, (fulfilled, late) in enumerate([(due - H, None), (due - H, 7200.0), (None, None)]):
        batch.add(
            ObligationFacts(
                f"g-wc-{n}",
                rule="welfare-check",
                area="east",
                triggered_at=due - 12 * H,
                due_at=due,
                fulfilled_at=fulfilled,
                recorded_late_by_seconds=late,
                described_at=due,
            )
        )
    registry = CollectorRegistry()
    gauges = AssuranceGauges(registry)
    policy = Assurance(caseload_threshold=2, min_judged=3, on_time_floor={"default": 50})

    async def go() -> None:
        async with db.write() as connection:
            await write_batch(connection, batch, {}, set(), T0)
        async with db.read() as connection:
            await gauges.refresh(connection, policy, now)

    run(loop, go())

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("safeguard_desk_offender_caseload_max", area="east") == 3
    assert value("safeguard_desk_offender_managers", area="east") == 2
    assert value("safeguard_desk_offender_managers_over_threshold", area="east") == 1
    assert value("safeguard_desk_offender_managers_over_threshold", area="west") == 0
    assert value("safeguard_desk_offender_caseload_threshold") == 2
    on_time = value("safeguard_desk_on_time_ratio_7d", rule="welfare-check", area="east")
    assert on_time == pytest.approx(1 / 3)  # the backdated one is not on time
    assert value("safeguard_desk_judged_7d", rule="welfare-check", area="east") == 3
    assert value("safeguard_desk_on_time_floor_ratio", rule="welfare-check") == 0.5
    assert value("safeguard_desk_on_time_below_floor", rule="welfare-check", area="east") == 1
    assert b"GM-" not in generate_latest(registry)
