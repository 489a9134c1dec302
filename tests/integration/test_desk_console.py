"""The desk's console over HTTP (an in-process desk, the real broker and PostgreSQL):
sign-in and sessions, CSRF, roles and areas, the queue and its refresh, the alert page
acting through commands (a stand-in for notify applies them), the child, report and
audit pages, the security headers, and the notice when the projection is behind.
The pages in a real browser are tests/browser/test_desk_console.py."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from devtools.broker import create_topics
from services.common.auth import Role
from services.common.clock import FakeClock
from services.common.kafka import Topics
from tests.fixtures import loopback
from tests.fixtures.broker import produce
from tests.fixtures.desk import DeskServer, desk_settings
from tests.fixtures.fake_notify import FakeNotify
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.stack import wait_until
from tests.fixtures.tokens import TokenSet
from tests.fixtures.views import alert_view, alert_view_record, child_view_record, outcome_record

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
H = timedelta(hours=1)
TOKENS = TokenSet.matrix().add("dpo", roles=[Role.AUDIT])
VIEWS = {
    v.alert.alert_id: v
    for v in (
        alert_view(
            "al-con-crit",
            severity="critical",
            area="north",
            child_id="C-CON",
            raised_at=NOW - 2 * H,
            due_at=NOW - 3 * H,
        ),
        alert_view(
            "al-con-high",
            severity="high",
            area="north",
            child_id="C-CON",
            raised_at=NOW - H,
            due_at=NOW - 26 * H,
        ),
        alert_view("al-con-south", severity="high", area="south", raised_at=NOW - H),
        alert_view(
            "al-con-med",
            severity="medium",
            area="north",
            raised_at=NOW - 5 * H,
            status="acknowledged",
            acknowledged_by="duty-north",
        ),
    )
}


@dataclass
class Console:
    desk: DeskServer
    clock: FakeClock
    notify: FakeNotify
    database_url: str

    def browser(self, name: str | None = None) -> httpx.Client:
        client = loopback.Client(base_url=self.desk.url, follow_redirects=False, timeout=30)
        if name is not None:
            client.get("/console/sign-in")
            answer = client.post(
                "/console/sign-in",
                data={"csrf": client.cookies["safeguard_signin"], "token": TOKENS.secret(name)},
            )
            assert answer.status_code == 303, answer.text
        return client


@pytest.fixture(scope="module")
def console(
    kafka_bootstrap: str, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Console]:
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(**{k: f"c{suffix}.{v}" for k, v in Topics().model_dump().items()})
    audit_topic = f"c{suffix}.safeguarding.audit.v1"
    create_topics(kafka_bootstrap, [*topics.model_dump().values(), audit_topic])
    produce(kafka_bootstrap, topics.alert_views, [alert_view_record(v) for v in VIEWS.values()])
    produce(kafka_bootstrap, topics.child_views, [child_view_record("C-CON")])
    produce(
        kafka_bootstrap,
        topics.outcomes,
        [outcome_record("al-con-high", "breached", due_at=NOW - 26 * H)],
    )
    url = postgres.create()
    folder: Path = tmp_path_factory.mktemp("console")
    clock = FakeClock(NOW)
    settings = desk_settings(
        database_url=url,
        bootstrap=kafka_bootstrap,
        topics=topics,
        audit_topic=audit_topic,
        group=f"console-{suffix}",
        tokens_file=TOKENS.write(folder / "tokens.yaml"),
    )
    desk = DeskServer(settings, clock=clock).start()
    notify = FakeNotify(kafka_bootstrap, topics.commands, topics.alert_views, VIEWS).start()
    try:
        assert wait_until(
            lambda: (
                desk.metric("safeguard_desk_projector_records_total", topic="alert_views")
                >= len(VIEWS)
            ),
            timeout=60,
        )
        yield Console(desk, clock, notify, url)
    finally:
        notify.stop()
        desk.stop()
        postgres.drop(url)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def test_sign_in_gives_a_strict_cookie_and_refuses_bad_tokens_and_forged_forms(
    console: Console,
) -> None:
    client = console.browser()
    page = client.get("/console/sign-in")
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    pre = client.cookies["safeguard_signin"]
    bad = client.post("/console/sign-in", data={"csrf": pre, "token": "nope"})
    assert bad.status_code == 401
    assert "That token is not valid." in bad.text
    forged = loopback.post(
        f"{console.desk.url}/console/sign-in", data={"token": TOKENS.secret("reader")}
    )
    assert forged.status_code == 403
    assert (
        client.post(
            "/console/sign-in", data={"csrf": pre, "token": TOKENS.secret("sender")}
        ).status_code
        == 403
    )
    good = client.post("/console/sign-in", data={"csrf": pre, "token": TOKENS.secret("reader")})
    assert good.status_code == 303
    assert good.headers["Location"] == "/console/queue"
    cookie = good.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/console" in cookie
    assert client.get("/console").headers["Location"] == "/console/queue"
    dpo = console.browser("dpo")
    assert dpo.get("/console/queue").status_code == 403  # audit only: no alerts
    assert dpo.get("/console/audit").status_code == 200
    assert (
        loopback.get(f"{console.desk.url}/console/queue", follow_redirects=False).headers[
            "Location"
        ]
        == "/console/sign-in"
    )


def test_the_queue_orders_filters_and_scopes(console: Console) -> None:
    north = console.browser("duty-north")
    page = north.get("/console/queue")
    assert page.status_code == 200
    order = re.findall(r'data-alert-id="([^"]+)"', page.text)
    assert order == ["al-con-crit", "al-con-high", "al-con-med"]  # severity, then overdue
    assert "al-con-south" not in page.text
    assert ">3</span> in all" in page.text
    narrowed = north.get("/console/queue?severity=high")
    assert re.findall(r'data-alert-id="([^"]+)"', narrowed.text) == ["al-con-high"]
    live = north.get("/console/queue/live?status=acknowledged")
    assert re.findall(r'data-alert-id="([^"]+)"', live.text) == ["al-con-med"]
    assert north.get("/console/queue?severity=low").status_code == 422
    assert north.get("/console/queue?after=garbage").status_code == 422
    assert loopback.get(f"{console.desk.url}/console/queue/live").status_code == 401


def test_the_alert_page_acts_through_a_command_and_shows_the_result(console: Console) -> None:
    north = console.browser("duty-north")
    page = north.get("/console/alerts/al-con-high")
    assert page.status_code == 200
    assert "Escalation ladder" in page.text
    assert 'id="ack-form"' in page.text
    csrf = csrf_of(page.text)
    assert (
        north.post("/console/alerts/al-con-high/acknowledge", data={"note": "x"}).status_code == 403
    )
    done = north.post(
        "/console/alerts/al-con-high/acknowledge", data={"csrf": csrf, "note": "Calling now"}
    )
    assert done.status_code == 303
    assert done.headers["Location"] == "/console/alerts/al-con-high?done=acknowledged"
    after = north.get(done.headers["Location"])
    assert "Acknowledged." in after.text
    assert "Calling now" in after.text
    assert 'id="ack-form"' not in after.text
    assert (
        north.post("/console/alerts/al-con-high/acknowledge", data={"csrf": csrf}).status_code
        == 409
    )
    no_reason = north.post("/console/alerts/al-con-high/resolve", data={"csrf": csrf})
    assert no_reason.status_code == 422
    resolved = north.post(
        "/console/alerts/al-con-high/resolve",
        data={"csrf": csrf, "reason": "duplicate", "note": "see al-con-crit"},
    )
    assert resolved.status_code == 303
    final = north.get(resolved.headers["Location"])
    assert "Closed by hand, not a fulfilment" in final.text
    assert console.notify.applied == ["alert.acknowledged", "alert.closed"]
    assert north.get("/console/alerts/al-con-south").status_code == 404
    assert north.get("/console/alerts/al-nope").status_code == 404
    reader = console.browser("reader")
    shown = reader.get("/console/alerts/al-con-crit")
    assert 'id="ack-form"' not in shown.text
    assert (
        reader.post(
            "/console/alerts/al-con-crit/acknowledge", data={"csrf": csrf_of(shown.text)}
        ).status_code
        == 403
    )


def test_the_child_report_and_audit_pages(console: Console) -> None:
    north = console.browser("duty-north")
    child = north.get("/console/children/C-CON")
    assert child.status_code == 200
    assert "incident.reported" in child.text
    assert "al-con-crit" in child.text
    assert north.get("/console/children/C-NOBODY").status_code == 404
    path = "/console/reports/timeliness?from=2026-01-01&to=2026-04-01"
    # Breached, then closed by hand above (its view's closure reached the report): not
    # measured, counted by its reason.
    report = wait_until(
        lambda: (
            (page := north.get(path)).status_code == 200
            and "0 of 0 over 25 days" in page.text
            and "(duplicate 1)" in page.text
            and page
        ),
        timeout=30,
    )
    assert report, north.get(path).text[-2000:]
    assert "style=" not in report.text
    as_csv = north.get("/console/reports/timeliness?from=2026-01-01&to=2026-04-01&format=csv")
    assert as_csv.headers["Content-Type"].startswith("text/csv")
    assert north.get("/console/audit").status_code == 403
    dpo = console.browser("dpo")

    def found() -> str | None:
        page = dpo.get("/console/audit?kind=child_id&value=C-CON&from=2026-01-01")
        # The child's page was read just now: wait for that record, not an older one.
        return page.text if "child.viewed" in page.text and "duty-north" in page.text else None

    text = wait_until(found, timeout=30)
    assert text, "the child's readers never showed"
    assert "child.viewed" in text
    exported = dpo.get("/console/audit?kind=principal&value=duty-north&from=2026-01-01&format=csv")
    assert exported.text.startswith("at,actor,action")
    assert dpo.get("/console/audit?kind=nonsense&value=x").status_code == 422


def _marked(url: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        marked = connection.execute(
            sa.text("SELECT count(*) FROM projector_offsets WHERE caught_up_at IS NOT NULL")
        ).scalar_one()
    engine.dispose()
    return int(marked)


def test_the_pages_say_when_the_projection_is_behind(console: Console) -> None:
    # Every partition of the seven topics (the events and dead letters too) is marked read to its end, the empty ones too
    # (the notifications topic has no record here): a quiet system is not "behind".
    assert wait_until(lambda: _marked(console.database_url) == 7 * 4, timeout=20)
    reader = console.browser("reader")
    assert 'id="stale"' not in reader.get("/console/queue").text
    console.clock.advance(timedelta(minutes=5))
    try:
        stale = reader.get("/console/queue").text
        assert 'id="stale"' in stale
        assert "may be 300 s old" in stale or "may be 29" in stale or "s old" in stale
    finally:
        console.clock.set(NOW)


def test_sign_out_ends_the_session_everywhere(console: Console) -> None:
    client = console.browser("reader")
    page = client.get("/console/queue")
    assert client.post("/console/sign-out", data={"csrf": "wrong"}).status_code == 403
    out = client.post("/console/sign-out", data={"csrf": csrf_of(page.text)})
    assert out.status_code == 303
    assert out.headers["Location"] == "/console/sign-in"
    assert client.get("/console/queue").headers["Location"] == "/console/sign-in"
