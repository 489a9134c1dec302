"""The weekly digest and the monthly pack: sent once by two desk pods sharing one
PostgreSQL, to each area's strategic lead on a real SMTP server; a send that fails is
retried and shows as overdue (the alert's gauge), never skipped.

Both pods' clocks are one FakeClock, moved by hand:

1. Mon 2 Nov 2026 06:50 (London is on GMT): the schedules begin; nothing is due.
2. 07:05: the digest of week 2026-W44 is due for north and south; the SMTP server is
   not there yet, so both attempts fail and are retried.
3. 07:30: still failing; the overdue gauge says 2.
4. The server starts; 08:00: each area's digest arrives once; the gauge goes to 0.
5. Tue 3 Nov 07:05: October's pack is due: each area's lead receives it once, the PDF
   and the figures attached, the figures' SHA-256 in the message.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from devtools.broker import SESSION_SECONDS, create_topics
from devtools.stack import DEFAULT_POLICY
from services.common.clock import FakeClock
from services.common.kafka import Topics
from tests.fixtures.broker import produce
from tests.fixtures.desk import DeskServer, desk_settings
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.smtp import SmtpInbox
from tests.fixtures.stack import wait_until
from tests.fixtures.views import outcome_record

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 2, 6, 50, tzinfo=UTC)
LEAD = "strategic-lead@example.org"


@dataclass
class Env:
    pods: list[DeskServer]
    clock: FakeClock
    inbox: SmtpInbox
    database_url: str

    def sends(self) -> list[tuple[str, str, str, str, int]]:
        engine = sa.create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                rows = connection.execute(
                    sa.text(
                        "SELECT kind, period, area, status, attempts FROM scheduled_sends "
                        "ORDER BY kind, period, area"
                    )
                )
                return [tuple(r) for r in rows]  # type: ignore[misc]
        finally:
            engine.dispose()

    def leased(self) -> int:
        """Count the sends some pod holds now (an attempt in progress)."""
        engine = sa.create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                return int(
                    connection.execute(
                        sa.text(
                            "SELECT count(*) FROM scheduled_sends WHERE leased_until IS NOT NULL"
                        )
                    ).scalar_one()
                )
        finally:
            engine.dispose()

    def gauge(self, name: str, **labels: str) -> float:
        """Every pod exports the same gauge (from the one database): the largest."""
        return max(pod.metric(name, **labels) for pod in self.pods)

    def total(self, name: str, **labels: str) -> float:
        """A counter, over both pods."""
        return sum(pod.metric(name, **labels) for pod in self.pods)


@pytest.fixture(scope="module")
def env(
    kafka_bootstrap: str, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(**{k: f"s{suffix}.{v}" for k, v in Topics().model_dump().items()})
    audit_topic = f"s{suffix}.safeguarding.audit.v1"
    create_topics(kafka_bootstrap, [*topics.model_dump().values(), audit_topic])
    due = datetime(2026, 10, 28, 12, tzinfo=UTC)
    produce(
        kafka_bootstrap,
        topics.outcomes,
        [
            outcome_record("al-sch-n1", "met", due_at=due, fulfilled_at=due - timedelta(hours=1)),
            outcome_record("al-sch-n2", "breached", due_at=due, child_id="C-SCH-2"),
            outcome_record("al-sch-s1", "breached", due_at=due, area="south", child_id="C-SCH-3"),
        ],
    )
    inbox = SmtpInbox()  # not started: the relay is down at first
    url = postgres.create()
    clock = FakeClock(START)
    pods = []
    for n in range(2):
        settings = desk_settings(
            database_url=url,
            bootstrap=kafka_bootstrap,
            topics=topics,
            audit_topic=audit_topic,
            group=f"desk-{suffix}",
            policy_file=Path(DEFAULT_POLICY),
            smtp={
                "host": "127.0.0.1",
                "port": inbox.port,
                "security": "none",
                "timeout_seconds": 2,
            },
            schedule={
                "interval_seconds": 0.2,
                "gauges_interval_seconds": 0.2,
                "retry_initial_seconds": 60,
                "retry_max_seconds": 600,
            },
            projector={
                "enabled": n == 0,
                "group_id": f"desk-{suffix}",
                "session_timeout_seconds": SESSION_SECONDS,
            },
        )
        pods.append(DeskServer(settings, clock=clock).start())
    environment = Env(pods, clock, inbox, url)
    try:
        assert wait_until(
            lambda: pods[0].metric("safeguard_desk_projector_records_total", topic="outcomes") >= 3
        )
        yield environment
    finally:
        for pod in pods:
            pod.stop()
        if inbox._controller._thread is not None:  # noqa: SLF001 - started by the test
            inbox.stop()


def test_a_failed_send_is_retried_shown_overdue_and_sent_once_by_two_pods(env: Env) -> None:
    assert wait_until(
        lambda: env.gauge("safeguard_desk_scheduled_sends_overdue", kind="digest") == 0
    )
    assert env.sends() == []  # nothing was due when the schedules began

    env.clock.set(START + timedelta(minutes=15))
    assert wait_until(
        lambda: (
            env.total("safeguard_desk_scheduled_sends_total", kind="digest", outcome="failed") >= 2
        )
    )
    failed = env.sends()
    assert [(k, p, a, s) for k, p, a, s, _ in failed] == [
        ("digest", "2026-W44", "north", "failed"),
        ("digest", "2026-W44", "south", "failed"),
    ]

    env.clock.set(START + timedelta(minutes=40))
    assert wait_until(
        lambda: env.gauge("safeguard_desk_scheduled_sends_overdue", kind="digest") == 2
    )

    # Time moves on by more than a lease only once no attempt is in flight: a send still
    # running when its lease runs out is taken again by the other pod (late, never lost,
    # and then possibly twice), which a jump of the test's clock must not provoke.
    assert wait_until(lambda: env.leased() == 0)
    env.inbox.start()
    env.clock.set(START + timedelta(minutes=70))
    assert wait_until(lambda: [s[3] for s in env.sends()] == ["sent", "sent"])
    mails = env.inbox.wait_for(lambda m: "Weekly digest" in str(m.message["Subject"]))
    assert sorted(str(m.message["Subject"]) for m in mails) == [
        "[Safeguard] Weekly digest north, 2026-W44: no rule below the floor",
        "[Safeguard] Weekly digest south, 2026-W44: no rule below the floor",
    ]
    assert all(m.to == [LEAD] for m in mails)
    north = next(m for m in mails if "north" in str(m.message["Subject"]))
    text = north.message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "social-care-referral: - - - - 50.0%" in text
    assert "child C-SCH-2 social-care-referral: 4 days" in text
    assert wait_until(
        lambda: env.gauge("safeguard_desk_scheduled_sends_overdue", kind="digest") == 0
    )
    assert env.total("safeguard_desk_scheduled_sends_total", kind="digest", outcome="sent") >= 1


def test_the_monthly_pack_goes_to_each_areas_lead_once_with_its_figures(env: Env) -> None:
    env.clock.set(datetime(2026, 11, 3, 7, 5, tzinfo=UTC))
    assert wait_until(
        lambda: [s[3] for s in env.sends() if s[0] == "pack"] == ["sent", "sent"], timeout=90
    )
    packs = env.inbox.wait_for(lambda m: "Assurance pack" in str(m.message["Subject"]))
    assert sorted(str(m.message["Subject"]) for m in packs) == [
        "[Safeguard] Assurance pack north, 2026-10",
        "[Safeguard] Assurance pack south, 2026-10",
    ]
    north = next(m for m in packs if "north" in str(m.message["Subject"]))
    attachments = {a.get_filename(): a.get_content() for a in north.message.iter_attachments()}
    pdf = attachments["safeguard-assurance-2026-10-north.pdf"]
    figures = attachments["safeguard-assurance-2026-10-north.json"]
    assert bytes(pdf).startswith(b"%PDF-")
    sha = hashlib.sha256(bytes(figures)).hexdigest()
    body = north.message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert sha in body
    # Figures as of the moment the pack fell due: a retry would carry the same hash.
    stored = [s for s in env.sends() if s[0] == "pack" and s[2] == "north"]
    assert stored[0][4] == 1
    # Both pods ran the schedule: still one message per area and kind.
    assert len(env.inbox.wait_for(lambda m: "Weekly digest" in str(m.message["Subject"]))) == 2
