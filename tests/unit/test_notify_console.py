"""The console's pure parts: sessions on a fake clock, the queue's order and filters, what
the pages and messages say. The pages themselves are tested in a browser (tests/browser)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from schemas.alerts import AlertRaised, AlertResolved, EventRef, Severity, SubjectKind
from schemas.notifications import AlertClosed, Channel, NotificationPurpose, ResolutionReason
from services.common.auth import Authenticator, Principal, Role, TokenEntry, hash_token
from services.common.clock import FakeClock
from services.common.environment import ENV_VARIABLE
from services.notify.console import ConsoleConfig, QueryError, QueueQuery, present, render
from services.notify.console.sessions import Sessions, SignedIn, TokenIdentity, same
from services.notify.delivery import Content, email_message, webhook_body
from services.notify.escalation import open_record
from services.notify.index import AlertFilter, AlertIndex, InvalidCursor, decode_urgent_cursor
from services.notify.ledger import AlertStatus, GroupMember, PendingDelivery
from services.notify.metrics import NotifyMetrics
from services.notify.policy import Chain, ChainLevel, Recipient

T0 = datetime(2026, 11, 20, 21, 0, tzinfo=UTC)
DESK = Recipient(name="duty-desk", channel=Channel.WEBHOOK, url="http://x/h", secret="s")
MAIL = Recipient(name="duty-email", channel=Channel.EMAIL, to=("duty@example.org",))
CHAIN = Chain(
    levels=(
        ChainLevel(level=1, route="duty", after=timedelta(0), recipients=(DESK, MAIL)),
        ChainLevel(level=2, route="senior", after=timedelta(hours=1), recipients=(MAIL,)),
    ),
    repeat=timedelta(hours=2),
    ack_timeout=timedelta(hours=4),
)
PRINCIPAL = Principal(name="duty-north", sources=(), roles=frozenset({Role.READ}))


def alert(
    alert_id: str, severity: Severity, due: timedelta | None, area: str = "north"
) -> AlertRaised:
    return AlertRaised(
        alert_id=alert_id,
        rule="welfare-check",
        severity=severity,
        subject_kind=SubjectKind.CHILD,
        child_id="C-1",
        area=area,
        trigger=EventRef(source="urn:x", id="e-1"),
        due_at=None if due is None else T0 - due,
        raised_at=T0,
        summary="No welfare check.",
    )


# -- sessions ----------------------------------------------------------------------------


def test_a_session_ends_after_its_idle_limit_and_is_touched_by_use() -> None:
    clock = FakeClock(T0)
    sessions = Sessions(clock, idle=timedelta(minutes=30), max_age=timedelta(hours=12))
    session = sessions.start(SignedIn(PRINCIPAL, "t"))
    clock.advance(timedelta(minutes=29))
    assert sessions.find(session.id) is session  # used: the idle clock starts again
    clock.advance(timedelta(minutes=29))
    assert sessions.find(session.id) is session
    clock.advance(timedelta(minutes=30))
    assert sessions.find(session.id) is None
    assert len(sessions) == 0


def test_a_session_ends_at_its_maximum_age_however_busy() -> None:
    clock = FakeClock(T0)
    sessions = Sessions(clock, idle=timedelta(minutes=30), max_age=timedelta(hours=1))
    session = sessions.start(SignedIn(PRINCIPAL, "t"))
    for _ in range(6):  # used every 11 min: never idle, but 66 min old at the end
        clock.advance(timedelta(minutes=11))
        found = sessions.find(session.id)
    assert found is None


def test_sign_out_forgets_the_session_and_ids_are_unguessable() -> None:
    sessions = Sessions(FakeClock(T0), idle=timedelta(minutes=30), max_age=timedelta(hours=1))
    one = sessions.start(SignedIn(PRINCIPAL, "t"))
    two = sessions.start(SignedIn(PRINCIPAL, "t"))
    assert one.id != two.id
    assert one.csrf != two.csrf
    assert len(one.id) >= 40
    sessions.end(one.id)
    assert sessions.find(one.id) is None
    assert sessions.find(two.id) is two
    assert sessions.find(None) is None
    assert sessions.find("") is None


def test_csrf_values_compare_exactly_and_a_missing_one_never_matches() -> None:
    assert same("abc", "abc")
    assert not same("abc", "abd")
    assert not same("abc", None)
    assert not same("", "")


def test_the_token_identity_checks_the_token_once() -> None:
    entry = TokenEntry(name="duty", sha256=hash_token("s3cret"), roles=frozenset({Role.READ}))
    identity = TokenIdentity(Authenticator([entry], development=True))
    assert identity.fields == ("token",)
    who = identity.complete({"token": " s3cret "})
    assert who is not None
    assert who.principal.name == "duty"
    assert who.credential == "s3cret"
    assert identity.complete({"token": "wrong"}) is None
    assert identity.complete({}) is None


# -- the work queue ----------------------------------------------------------------------


def index_of(*alerts: AlertRaised) -> AlertIndex:
    index = AlertIndex(NotifyMetrics(CollectorRegistry()))
    for a in alerts:
        index.put(a.alert_id, open_record(a, CHAIN, T0))
    return index


def test_the_queue_orders_by_severity_then_how_overdue_and_pages_by_cursor() -> None:
    index = index_of(
        alert("al-m", Severity.MEDIUM, timedelta(days=9)),
        alert("al-h1", Severity.HIGH, timedelta(hours=1)),
        alert("al-h2", Severity.HIGH, timedelta(days=2)),
        alert("al-c", Severity.CRITICAL, timedelta(minutes=5)),
        alert("al-p", Severity.HIGH, None),  # a pattern: overdue since its raise
    )
    first, cursor = index.urgent_page(AlertFilter(), 2)
    assert [s.alert_id for s in first] == ["al-c", "al-h2"]
    assert cursor is not None
    rest, end = index.urgent_page(AlertFilter(), 10, decode_urgent_cursor(cursor))
    assert [s.alert_id for s in rest] == ["al-h1", "al-p", "al-m"]
    assert end is None
    assert index.severity_counts(AlertFilter()) == {"critical": 1, "high": 3, "medium": 1}
    with pytest.raises(InvalidCursor):
        decode_urgent_cursor("not-a-cursor")


def test_the_queue_hides_other_areas_and_resolved_alerts() -> None:
    index = index_of(
        alert("al-n", Severity.HIGH, timedelta(hours=1)),
        alert("al-s", Severity.HIGH, timedelta(hours=1), area="south"),
    )
    north = Principal(
        name="n", sources=(), roles=frozenset({Role.READ}), areas=frozenset({"north"})
    )
    matches = AlertFilter(visible=north.may_see_area)
    assert [s.alert_id for s in index.urgent_page(matches, 10)[0]] == ["al-n"]
    record = open_record(alert("al-n", Severity.HIGH, timedelta(hours=1)), CHAIN, T0)
    record.status = AlertStatus.RESOLVED
    index.put("al-n", record)
    open_only = AlertFilter(statuses=frozenset({AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED}))
    assert [s.alert_id for s in index.urgent_page(open_only, 10)[0]] == ["al-s"]


def test_queue_filters_are_checked_and_links_keep_them() -> None:
    query = QueueQuery.parse({"severity": "high", "area": "north", "status": "open"})
    assert query.link() == "/console/queue?area=north&severity=high&status=open"
    assert query.link(severity=None) == "/console/queue?area=north&status=open"
    for bad in ({"severity": "urgent"}, {"status": "resolved"}, {"area": "<script>"}):
        with pytest.raises(QueryError):
            QueueQuery.parse(bad)
    with pytest.raises(InvalidCursor):
        QueueQuery.parse({"after": "garbage"})


# -- what the pages say --------------------------------------------------------------------


def test_spans_read_as_a_duty_manager_says_them() -> None:
    assert present.span(timedelta(days=25, hours=3, minutes=7)) == "25 d 3 h"
    assert present.span(timedelta(hours=4, minutes=10)) == "4 h 10 min"
    assert present.span(timedelta(minutes=3, seconds=5)) == "3 min"
    assert present.span(timedelta(seconds=40)) == "40 s"
    assert present.span(timedelta(seconds=-5)) == "0 s"


def test_a_closure_by_hand_is_shown_apart_from_a_fulfilment() -> None:
    record = open_record(alert("al-1", Severity.HIGH, timedelta(hours=1)), CHAIN, T0)
    record.closure = AlertClosed(
        alert_id="al-1",
        by="DM 1",
        principal="duty",
        reason=ResolutionReason.DUPLICATE,
        closed_at=T0,
    )
    shown = present.outcome(record)
    assert shown.fulfilled is None
    assert shown.reason == "Duplicate of another alert"
    record.resolution = AlertResolved(
        alert_id="al-1",
        rule="welfare-check",
        resolved_at=T0,
        fulfilled_at=T0,
        late_by_seconds=7200,
        fulfilment=EventRef(source="urn:x", id="visit-1"),
    )
    both = present.outcome(record)
    assert both.fulfilled is not None
    assert "2 h 0 min late" in both.fulfilled
    assert both.closed is not None


def test_the_ladder_says_who_each_level_reaches_and_what_became_of_it() -> None:
    record = open_record(alert("al-1", Severity.HIGH, timedelta(hours=1)), CHAIN, T0)
    record.level = 1
    record.status = AlertStatus.ACKNOWLEDGED
    rungs = present.ladder(record)
    assert [(r.level, r.state) for r in rungs] == [
        (1, "reached"),
        (2, "not needed (acknowledged)"),
    ]
    assert rungs[0].recipients == ["duty-desk (webhook)", "duty-email (email)"]
    assert rungs[1].due == "2026-11-20 22:00:00 UTC"


def test_the_chronology_merges_risks_view_with_the_breaches_newest_first() -> None:
    record = open_record(alert("al-1", Severity.HIGH, timedelta(hours=1)), CHAIN, T0)
    child = {
        "recent_events": [
            {"type": "incident.reported", "at": (T0 - timedelta(days=1)).isoformat()}
        ],
        "open_obligations": [
            {
                "rule": "school-notification",
                "due_at": (T0 + timedelta(days=2)).isoformat(),
                "severity": "medium",
                "status": "pending",
            }
        ],
    }
    items = present.chronology(child, [record])
    assert [i["kind"] for i in items] == ["Due", "Breach", "Event"]
    assert items[1]["alert_id"] == "al-1"
    assert present.chronology(None, []) == []


def test_templates_escape_what_people_typed() -> None:
    html = render("problem.html", title="<b>t</b>", message="<script>x</script>", session=None)
    assert "<script>x</script>" not in html
    assert "&lt;script&gt;" in html


# -- what the messages say ---------------------------------------------------------------


def pending(members: list[GroupMember] | None = None) -> PendingDelivery:
    return PendingDelivery(
        notification_id="al-1:1:0:duty-email",
        purpose=NotificationPurpose.ALERT,
        recipient=MAIL,
        level=1,
        round=0,
        dispatched_at=T0,
        deadline=T0,
        members=members or [],
    )


def test_every_message_carries_its_console_link_and_a_group_lists_each_alert() -> None:
    one = alert("al-1", Severity.HIGH, timedelta(hours=1))
    two = alert("al-2", Severity.CRITICAL, timedelta(hours=1))
    record = open_record(one, CHAIN, T0)
    grouped = pending([GroupMember.of(one), GroupMember.of(two)])
    content = Content.of(record, grouped, "https://console.example.org/")
    body = json.loads(webhook_body(content, grouped))
    # The group leads with its most severe alert and lists it first (issue 21).
    assert body["console_url"] == "https://console.example.org/console/alerts/al-2"
    assert body["alert"]["alert_id"] == "al-2"
    assert [a["console_url"] for a in body["alerts"]] == [
        "https://console.example.org/console/alerts/al-2",
        "https://console.example.org/console/alerts/al-1",
    ]
    mail = email_message(content, grouped, sender="s@example.org")
    text = mail.get_body(preferencelist=("plain",))
    assert text is not None
    assert "https://console.example.org/console/alerts/al-2" in text.get_content()
    assert mail["Subject"] == "[Safeguard] Level 1: 2 alerts from one event, highest critical"


def test_a_breach_fulfilled_before_anyone_was_told_reads_as_a_resolved_breach() -> None:
    record = open_record(alert("al-1", Severity.HIGH, timedelta(hours=1)), CHAIN, T0)
    record.status = AlertStatus.RESOLVED
    record.resolution = AlertResolved(
        alert_id="al-1",
        rule="welfare-check",
        resolved_at=T0,
        fulfilled_at=T0,
        late_by_seconds=60,
        fulfilment=EventRef(source="urn:x", id="visit-1"),
    )
    notice = pending().model_copy(update={"purpose": NotificationPurpose.RESOLUTION})
    content = Content.of(record, notice, None)
    assert json.loads(webhook_body(content, notice))["resolved_breach"] is True
    subject = email_message(content, notice, sender="s@example.org")["Subject"]
    assert subject.startswith("[Safeguard] Resolved breach:")


def test_session_cookies_are_secure_outside_development(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not ConsoleConfig.of(risk_url=None, refresh_seconds=5).secure_cookies
    monkeypatch.delenv(ENV_VARIABLE)
    assert ConsoleConfig.of(risk_url=None, refresh_seconds=5).secure_cookies
