"""The desk's projection throughput and its queue query at 100,000 alerts.

    .venv/bin/python bench/desk_projection.py [--alerts 100000] [--audit 100000] [--queries 500]
                                              [--batch 1000]

Starts a development broker and PostgreSQL (or uses KAFKA_BOOTSTRAP_SERVERS and
DESK_TEST_DATABASE_URL), produces `--alerts` alert views (one per alert, as notify
publishes them; a third open, a third acknowledged, a third resolved, two areas) and
`--audit` audit records, and runs the desk's projector in this process on a fresh
database until every record is a row. Prints, beside the targets:
- projection throughput, rows per second, for alert views and for audit records (each
  batch's rows and offsets in one transaction);
- the work queue's first page, a filtered page, a page deep in the queue (by cursor),
  the severity counts, the filters' choices and a whole console queue page (the three
  together), and the API list's first page: p50 and p99 over `--queries` runs each,
  each on a pooled connection as a request makes it, from the database holding every
  alert; and the plan of the first page (the index it uses).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kafka import KafkaProducer
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devtools.broker import SESSION_SECONDS, DevBroker, create_topics, wait_until_answers  # noqa: E402
from devtools.postgres import DevPostgres  # noqa: E402
from devtools.stack import DEV_TOKENS_FILE  # noqa: E402
from services.common.clock import SystemClock  # noqa: E402
from services.common.kafka import KafkaSettings, Topics  # noqa: E402
from services.desk import migrate, queries  # noqa: E402
from services.desk.database import Database  # noqa: E402
from services.desk.metrics import DeskMetrics  # noqa: E402
from services.desk.projector import Projector  # noqa: E402
from services.desk.records import topic_kinds  # noqa: E402
from services.desk.schema import alerts, audit_records  # noqa: E402
from services.desk.settings import DeskSettings  # noqa: E402
from tests.fixtures.views import alert_view, alert_view_record, audit_record  # noqa: E402

TARGET_ROWS_PER_SECOND = 5_000  # the stream services' own target: 5,000 events a second
TARGET_QUEUE_P99_MS = 50.0
RESOLVED = (
    2  # the third of every three statuses  # a queue page well inside the console's 5 s refresh
)


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> float:
    started = time.monotonic()
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=512 * 1024
    )
    for key, value in records:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()
    return time.monotonic() - started


def views(count: int) -> list[tuple[bytes, bytes]]:
    now = datetime.now(UTC)
    return [
        alert_view_record(
            alert_view(
                f"al-bench-{n:07d}",
                severity=("medium", "high", "critical")[n % 3],
                status=("open", "acknowledged", "resolved")[(n // 3) % 3],
                area=("north", "south")[n % 2],
                child_id=f"C-{n % 20000}",
                raised_at=now - timedelta(minutes=n % 50000),
                due_at=None if n % 10 == 0 else now - timedelta(minutes=n % 70000),
                acknowledged_by="duty" if (n // 3) % 3 == 1 else None,
                closed=(now, "duplicate") if (n // 3) % 3 == RESOLVED else None,
            )
        )
        for n in range(count)
    ]


async def project(
    settings: DeskSettings, database: Database, table: object, expected: int
) -> tuple[float, float]:
    """Run a projector until `table` holds `expected` rows.

    Returns the seconds until its first row (the group join, the assignment) and from
    then until the last.
    """
    kinds = topic_kinds(settings.kafka.topics, settings.audit_topic)
    projector = Projector(
        settings, database, DeskMetrics(CollectorRegistry()), SystemClock(), kinds
    )
    started = time.monotonic()
    first = None
    task = asyncio.create_task(projector.run())
    try:
        while True:
            async with database.read() as connection:
                rows = (
                    await connection.execute(select(func.count()).select_from(table))
                ).scalar_one()  # type: ignore[arg-type]
            if rows and first is None:
                first = time.monotonic()
            if rows >= expected:
                first = first or time.monotonic()
                return first - started, time.monotonic() - first
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def timings(database: Database, runs: int) -> dict[str, list[float]]:
    """Time each query as a request makes it: a pooled connection, the query, the rows."""
    queue = queries.AlertFilter(statuses=frozenset({"open", "acknowledged"}))
    north = queries.AlertFilter(
        statuses=frozenset({"open", "acknowledged"}), areas=frozenset({"north"}), severity="high"
    )
    after = None
    for _ in range(40):  # a cursor 40 pages (1,000 rows) down
        async with database.read() as connection:
            _page, cursor = await queries.queue_page(connection, queue, 25, after)
        after = queries.queue_cursor(cursor) if cursor else None
    calls: dict[str, Callable[[AsyncConnection], Awaitable[object]]] = {
        "queue first page": lambda c: queries.queue_page(c, queue, 25),
        "queue north, high": lambda c: queries.queue_page(c, north, 25),
        "queue page 40": lambda c: queries.queue_page(c, queue, 25, after),
        "severity counts": lambda c: queries.severity_counts(c, queue),
        "list first page": lambda c: queries.alert_page(c, queries.AlertFilter(), 100),
        "filter choices": lambda c: queries.choices(c, queue),
        "console queue page": lambda c: console_page(c, queue),
    }
    found: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            started = time.perf_counter()
            async with database.read() as connection:
                await call(connection)
            found[name].append((time.perf_counter() - started) * 1000)
    return found


async def console_page(connection: AsyncConnection, queue: queries.AlertFilter) -> None:
    """Run what one work-queue page (or its refresh) asks of the database."""
    await queries.queue_page(connection, queue, 25)
    await queries.severity_counts(connection, queue)
    await queries.choices(connection, queue)


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))]


async def run(args: argparse.Namespace, bootstrap: str, url: str) -> None:
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    topics = Topics(**{k: f"{prefix}.{v}" for k, v in Topics().model_dump().items()})
    audit_topic = f"{prefix}.safeguarding.audit.v1"
    create_topics(bootstrap, [*topics.model_dump().values(), audit_topic])
    settings = DeskSettings(
        tokens_file=DEV_TOKENS_FILE,
        database_url=url,
        kafka=KafkaSettings(bootstrap_servers=bootstrap, topics=topics),
        audit_topic=audit_topic,
        projector={
            "group_id": prefix,
            "session_timeout_seconds": SESSION_SECONDS,
            "max_records": args.batch,
        },
    )
    database = Database(url, settings.db)
    load = os.getloadavg()[0]
    print(
        f"projection (batches of {settings.projector.max_records} records; load average {load:.1f})",
        flush=True,
    )
    # One topic at a time: the projector reads every topic, so each is produced only
    # once the previous one is projected.
    made = views(args.alerts)
    produce(bootstrap, topics.alert_views, made)
    size = sum(len(v) for _, v in made) / len(made)
    join, took = await project(settings, database, alerts, args.alerts)
    print(
        f"  alert views ({size:.0f} B): {args.alerts / took:8,.0f} rows/s "
        f"({args.alerts:,} in {took:.1f} s after {join:.1f} s to join and seek)   target {TARGET_ROWS_PER_SECOND:,}"
    )
    produce(
        bootstrap,
        audit_topic,
        [
            audit_record("alert.viewed", alert_id=f"al-bench-{n % 1000:07d}")
            for n in range(args.audit)
        ],
    )
    join, took = await project(settings, database, audit_records, args.audit)
    print(
        f"  audit records:      {args.audit / took:8,.0f} rows/s "
        f"({args.audit:,} in {took:.1f} s after {join:.1f} s to join and seek)   target {TARGET_ROWS_PER_SECOND:,}"
    )
    print(f"  load average now {os.getloadavg()[0]:.1f}")
    # What autovacuum does in time: statistics, and the visibility map index-only scans need.
    async with database.engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.execute(text("VACUUM ANALYZE alerts"))
    found = await timings(database, args.queries)
    print(f"\nqueries at {args.alerts:,} alerts ({args.queries} runs each)")
    for name, values in found.items():
        print(
            f"  {name:18s} p50 {statistics.median(values):6.2f} ms   p99 {p(values, 99):6.2f} ms   target p99 {TARGET_QUEUE_P99_MS:.0f} ms"
        )
    async with database.read() as connection:
        plan = await connection.execute(
            text(
                "EXPLAIN SELECT alert_id FROM alerts WHERE status IN ('open', 'acknowledged') "
                "ORDER BY severity_rank DESC, overdue_since, alert_id LIMIT 26"
            )
        )
        print("\nthe queue's plan:\n  " + "\n  ".join(r[0] for r in plan))
    await database.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, default=100_000)
    parser.add_argument("--audit", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--batch", type=int, default=1000, help="DESK_PROJECTOR__MAX_RECORDS")
    args = parser.parse_args()
    os.environ.setdefault("SAFEGUARD_ENV", "development")
    external_broker = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None if external_broker else DevBroker().start()
    bootstrap = external_broker or broker.bootstrap  # type: ignore[union-attr]
    if external_broker:
        wait_until_answers(bootstrap)
    external_db = os.environ.get("DESK_TEST_DATABASE_URL")
    postgres = None if external_db else DevPostgres(remove_on_stop=True).start()
    try:
        if external_db:
            url = external_db
        elif postgres is not None:
            url = postgres.create_database(f"bench_{uuid.uuid4().hex[:6]}")
        migrate.upgrade(url)
        asyncio.run(run(args, bootstrap, url))
    finally:
        if postgres is not None:
            postgres.close()
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
