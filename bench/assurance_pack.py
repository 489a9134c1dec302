"""The assurance pack's generation time for a year of a large force's obligations.

    .venv/bin/python bench/assurance_pack.py [--obligations 200000] [--audit 100000] [--runs 3]

Starts a development PostgreSQL (or uses DESK_TEST_DATABASE_URL), writes `--obligations`
obligations due over the twelve months before the pack's moment (eight areas, every
rule; most met on time, some late, recorded late, closed by hand or still open, custody
transfers), `--audit` audit records, dead letters, source arrivals and 4,000 offender
manager assignments, then makes the partnership's pack of the last quarter (its trend
reads the four quarters before: every obligation of the year) and one area's, `--runs`
times each. Prints, beside the targets, the time to read the data (SQL), to compute the
figures, to render the HTML and to render the PDF, and the whole. Prints figures;
asserts nothing.
"""

# ruff: noqa: PLR2004 - the synthetic force's proportions are literals, read where used

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devtools.postgres import DevPostgres  # noqa: E402
from services.desk import migrate  # noqa: E402
from services.desk.database import Database  # noqa: E402
from services.desk.pack import data as pack_data  # noqa: E402
from services.desk.pack import render  # noqa: E402
from services.desk.pack.figures import compute, sha256  # noqa: E402
from services.desk.pack.period import quarter_of  # noqa: E402
from services.desk.pack.policy import Assurance  # noqa: E402
from services.desk.settings import DatabaseSettings  # noqa: E402

# A large force: about 200,000 obligations a year. The pack is a monthly or quarterly
# job, not a page: a minute for the PDF leaves a scheduled send far inside its hour, and
# the figures (JSON, the console's page) should come in seconds.
TARGET_FIGURES_SECONDS = 15.0
TARGET_PDF_SECONDS = 60.0
AS_OF = datetime(2026, 10, 1, tzinfo=UTC)
AREAS = [f"area-{n}" for n in range(8)]
RULES = [
    ("social-care-referral", timedelta(hours=24)),
    ("welfare-check", timedelta(hours=12)),
    ("school-notification", timedelta(hours=20)),
    ("strategy-discussion", timedelta(days=1)),
    ("marac-referral", timedelta(days=2)),
    ("referral-decision", timedelta(days=1)),
    ("exploitation-action", timedelta(hours=24)),
    ("missing-referral", timedelta(hours=24)),
    ("return-interview", timedelta(hours=72)),
    ("return-interview-shared", timedelta(hours=72)),
    ("offender-initial-visit", timedelta(days=14)),
    ("offender-routine-visit", timedelta(days=91)),
    ("offender-risk-assessment", timedelta(days=182)),
    ("forensic-examination", timedelta(days=90)),
    ("child-in-custody", timedelta(hours=4)),
]


# The mix: 70% met on time, 5% on time as claimed but recorded late, 17% late, 4% closed
# by hand, the rest still open.
ON_TIME, RECORDED_LATE, LATE, BY_HAND = 0.70, 0.75, 0.92, 0.96


def _rows(count: int, rng: random.Random) -> io.StringIO:  # noqa: C901 - one branch per kind
    """Obligations as COPY text: due uniformly over the year before AS_OF."""
    out = io.StringIO()
    year = 365 * 86400
    for n in range(count):
        rule, window = RULES[rng.randrange(len(RULES))]
        due = AS_OF - timedelta(seconds=rng.randrange(year))
        triggered = due - window
        roll = rng.random()
        fulfilled = closed = reason = late = requested = refused = None
        if roll < ON_TIME:
            fulfilled = due - timedelta(minutes=rng.randrange(1, 600))
        elif roll < RECORDED_LATE:
            fulfilled = due - timedelta(minutes=30)
            late = float(rng.randrange(3600, 86400))
        elif roll < LATE:
            fulfilled = due + timedelta(minutes=rng.randrange(1, 60 * 24 * 40))
        elif roll < BY_HAND:
            closed, reason = due + timedelta(hours=2), rng.choice(["duplicate", "other"])
        if fulfilled is not None and fulfilled > AS_OF:
            fulfilled = None
        if rule == "child-in-custody":
            requested = triggered + timedelta(hours=1) if rng.random() < 0.8 else None
            refused = triggered + timedelta(hours=2) if rng.random() < 0.2 else None

        def cell(value: object) -> str:
            if value is None:
                return "\\N"
            if isinstance(value, datetime):
                return value.isoformat()
            return str(value)

        fields = [
            f"ob-{n:07d}",
            rule,
            AREAS[n % len(AREAS)],
            "high",
            triggered,
            due,
            fulfilled,
            "t" if fulfilled is None or fulfilled > due else "f",
            closed,
            reason,
            due,
            "child",
            f"C-{n % 150_000:06d}",
            late,
            requested,
            refused,
        ]
        out.write("\t".join(cell(v) for v in fields) + "\n")
    out.seek(0)
    return out


def load(dsn: str, obligations: int, audit: int) -> None:
    """Fill the database by COPY (the projector's own speed is bench/desk_projection.py)."""
    rng = random.Random(23)
    with psycopg.connect(dsn) as connection, connection.cursor() as cursor:
        columns = (
            "obligation_id, rule, area, severity, triggered_at, due_at, fulfilled_at, breached, "
            "closed_at, close_reason, described_at, subject_kind, subject_id, "
            "recorded_late_by_seconds, transfer_requested_at, transfer_refused_at"
        )
        with cursor.copy(f"COPY obligations ({columns}) FROM STDIN") as copy:  # type: ignore[arg-type]
            copy.write(_rows(obligations, rng).read())
        actions = ["child.viewed", "alert.viewed", "alerts.listed", "alert.acknowledged"]
        with cursor.copy(
            "COPY audit_records (source, record_id, action, actor, at, child_id) FROM STDIN"
        ) as copy:
            for n in range(audit):
                action = actions[n % len(actions)]
                at = AS_OF - timedelta(seconds=rng.randrange(365 * 86400))
                child = f"C-{rng.randrange(150_000):06d}" if action == "child.viewed" else None
                copy.write_row(
                    ("urn:safeguard:desk", uuid.uuid4().hex, action, f"user-{n % 400}", at, child)
                )
        with cursor.copy(
            "COPY offender_managers (offender_id, manager_id, area, assigned_at, event_source, "
            "event_id) FROM STDIN"
        ) as copy:
            for n in range(4000):
                copy.write_row(
                    (
                        f"O-{n}",
                        f"OM-{n % 120}",
                        AREAS[n % 8],
                        AS_OF - timedelta(days=30),
                        "urn:safeguard:source:dpmu",
                        f"om-{n}",
                    )
                )
        with cursor.copy(
            'COPY dead_letters (topic, "partition", "offset", failed_at, reason, source) FROM STDIN'
        ) as copy:
            for n in range(2000):
                copy.write_row(
                    (
                        "safeguarding.events.v1",
                        0,
                        n,
                        AS_OF - timedelta(hours=n),
                        "invalid_event",
                        f"urn:safeguard:source:system-{n % 6}",
                    )
                )
        with cursor.copy("COPY source_days (source, day, first_at, last_at) FROM STDIN") as copy:
            for n in range(10):
                for day in range(365):
                    at = AS_OF - timedelta(days=day + (30 if n == 9 else 0))
                    copy.write_row((f"urn:safeguard:source:system-{n}", at.date(), at, at))
        connection.commit()
        cursor.execute("ANALYZE")


async def make(url: str, area: str | None) -> dict[str, float]:
    """Make one pack; return the seconds each step took."""
    database = Database(url, DatabaseSettings(statement_timeout_seconds=120))
    period = quarter_of(AS_OF - timedelta(days=1))
    history = period.history(4)
    times: dict[str, float] = {}
    try:
        started = time.perf_counter()
        async with database.read() as connection:
            read = await pack_data.read(connection, period, history, area, AS_OF)
        times["read"] = time.perf_counter() - started
        mark = time.perf_counter()
        figures = compute(
            read,
            period=period,
            history=history,
            area=area,
            as_of=AS_OF,
            policy=Assurance(),
            policy_version="bench",
            software_version="bench",
            roles_of=lambda _name: frozenset({"read"}),
            scope_of=lambda _name: None,
        )
        digest = sha256(figures)
        times["compute"] = time.perf_counter() - mark
        mark = time.perf_counter()
        html = render.document(figures, digest, generated_at="", caught_up=None, json_name="x")
        times["html"] = time.perf_counter() - mark
        mark = time.perf_counter()
        pdf = render.pdf(html)
        times["pdf"] = time.perf_counter() - mark
        times["total"] = time.perf_counter() - started
        times["states"] = float(len(read.states))
        times["pdf_kib"] = len(pdf) / 1024
    finally:
        await database.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--obligations", type=int, default=200_000)
    parser.add_argument("--audit", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    external = os.environ.get("DESK_TEST_DATABASE_URL")
    postgres = None if external else DevPostgres(remove_on_stop=True).start()
    try:
        name = f"bench_{uuid.uuid4().hex[:6]}"
        if postgres is not None:
            url = postgres.create_database(name)
        else:
            admin = make_url(external).set(drivername="postgresql")
            with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as c:
                c.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
            url = make_url(external).set(database=name).render_as_string(hide_password=False)
        migrate.upgrade(url)
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        started = time.perf_counter()
        load(dsn, args.obligations, args.audit)
        print(
            f"loaded {args.obligations:,} obligations and {args.audit:,} audit records "
            f"in {time.perf_counter() - started:.1f} s; load average {os.getloadavg()[0]:.1f}"
        )
        for label, area in (("partnership", None), ("one area", AREAS[0])):
            runs = [asyncio.run(make(url, area)) for _ in range(args.runs)]
            median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(
                f"{label:12s} ({median['states']:,.0f} obligations read, PDF {median['pdf_kib']:.0f} KiB), "
                f"median of {args.runs}: read {median['read']:.2f} s, compute {median['compute']:.2f} s, "
                f"HTML {median['html']:.2f} s, PDF {median['pdf']:.2f} s; "
                f"figures {median['read'] + median['compute']:.2f} s (target {TARGET_FIGURES_SECONDS:.0f} s), "
                f"whole pack {median['total']:.2f} s (target {TARGET_PDF_SECONDS:.0f} s); "
                f"load average {os.getloadavg()[0]:.1f}"
            )
    finally:
        if postgres is not None:
            postgres.close()


if __name__ == "__main__":
    main()
