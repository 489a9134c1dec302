"""Teams and PagerDuty: each channel's payloads, retries and credentials, against receivers
that check them (tests/fixtures/paging.py: PagerDuty's Events v2 schema, the published
Adaptive Card schema), and the alert's life mirrored to PagerDuty through the real logic.

Only waiting is faked: the backoff's sleep moves a fake clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from devtools.stack import DEFAULT_POLICY
from schemas.alerts import AlertRaised, EventRef, Severity, SubjectKind, alert_raised_event
from schemas.notifications import (
    AlertAcknowledged,
    AlertClosed,
    Channel,
    FailureReason,
    NotificationPurpose,
    alert_acknowledged_event,
    alert_closed_event,
)
from services.common.clock import FakeClock
from services.common.smtp import SmtpSettings
from services.common.stream.inputs import Record
from services.notify.channels import EmailChannel, WebhookChannel
from services.notify.content import Content, Presentation
from services.notify.delivery import Deliverer, Result
from services.notify.escalation import open_record
from services.notify.ledger import GroupMember, PendingDelivery
from services.notify.metrics import NotifyMetrics
from services.notify.pagerduty import PagerDutyChannel, PagerDutySettings, pagerduty_events
from services.notify.policy import Chain, ChainLevel, Recipient, load_policy
from services.notify.retry import Backoff
from services.notify.teams import MAX_LISTED, TeamsChannel, adaptive_card, teams_message
from tests.fixtures.paging import (
    PagerDutyReceiver,
    TeamsReceiver,
    pagerduty_errors,
    teams_errors,
)
from tests.fixtures.pipeline import TOPICS, Pipeline

T0 = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
KEY = "R0UT1NGK3Y0000000000000000000000"
POLICY = load_policy(DEFAULT_POLICY)
CONSOLE = "https://desk.example.org"


def alert(alert_id: str = "al-1", severity: Severity = Severity.CRITICAL, **changes) -> AlertRaised:
    fields = {
        "alert_id": alert_id,
        "rule": "child-in-custody",
        "severity": severity,
        "subject_kind": SubjectKind.CHILD,
        "child_id": "C-PD-1",
        "area": "north",
        "trigger": EventRef(source="urn:test", id="e-1"),
        "due_at": T0 - 2 * MIN,
        "raised_at": T0 - MIN,
        "summary": "A charged child still in police custody 4h after detention",
    } | changes
    return AlertRaised.model_validate(fields)


PD = Recipient(name="pd-duty", channel=Channel.PAGERDUTY, secret="pd_duty")
TEAMS = Recipient(name="teams-duty", channel=Channel.TEAMS, secret="teams_duty")
CHAIN = Chain(
    levels=(
        ChainLevel(level=1, route="duty-manager", after=timedelta(0), recipients=(PD, TEAMS)),
        ChainLevel(level=2, route="senior-manager", after=15 * MIN, recipients=(PD,)),
    ),
    repeat=30 * MIN,
    ack_timeout=timedelta(hours=1),
)


def pending(
    recipient: Recipient,
    purpose: NotificationPurpose = NotificationPurpose.ALERT,
    members: list[GroupMember] | None = None,
    budget: float = 60,
) -> PendingDelivery:
    return PendingDelivery(
        notification_id=f"al-1:1:0:{recipient.name}",
        purpose=purpose,
        recipient=recipient,
        level=1,
        round=0,
        dispatched_at=T0,
        deadline=T0 + timedelta(seconds=budget),
        members=members or [],
    )


def content(members: list[GroupMember] | None = None, **changes) -> Content:
    record = open_record(alert(), CHAIN, T0 - MIN)
    record.level = 1
    record.last_step_at = T0
    target = pending(PD, members=members)
    fields = Content.of(record, target, CONSOLE, Presentation.of(POLICY))
    return fields if not changes else Content(**{**fields.__dict__, **changes})


def deliverer(
    clock: FakeClock, pd: PagerDutyReceiver | None = None, teams: TeamsReceiver | None = None
) -> tuple[Deliverer, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(timedelta(seconds=seconds))

    return (
        Deliverer(
            webhook=WebhookChannel(clock),
            email=EmailChannel(SmtpSettings(host="127.0.0.1", port=1, security="none")),
            secrets={},
            backoff=Backoff(initial_seconds=1, max_seconds=8),
            clock=clock,
            metrics=NotifyMetrics(CollectorRegistry()),
            attempt_timeout=2,
            sleep=sleep,
            draw=lambda: 1.0,
            teams=TeamsChannel(clock, {"teams_duty": teams.url} if teams else {}),
            pagerduty=PagerDutyChannel(
                clock,
                {"pd_duty": KEY},
                PagerDutySettings(events_url=pd.url if pd else "http://127.0.0.1:1/v2/enqueue"),
            ),
            backoffs={
                Channel.TEAMS: Backoff(initial_seconds=3, max_seconds=30),
                Channel.PAGERDUTY: Backoff(initial_seconds=5, max_seconds=40),
            },
            presentation=Presentation.of(POLICY),
        ),
        slept,
    )


def deliver(sender: Deliverer, what: Content, target: PendingDelivery) -> Result:
    async def run() -> Result:
        try:
            return await sender.deliver(what, target)
        finally:
            await sender.close()

    return asyncio.run(run())


# -- PagerDuty ---------------------------------------------------------------------------


def test_a_trigger_is_a_valid_events_v2_event_keyed_by_the_alert_id(
    pagerduty: PagerDutyReceiver,
) -> None:
    sender, _ = deliverer(FakeClock(T0), pd=pagerduty)
    result = deliver(sender, content(), pending(PD))
    assert (result.outcome, result.attempts) == ("sent", 1)
    (event,) = pagerduty.events("trigger", "al-1")
    assert event["routing_key"] == KEY
    payload = event["payload"]
    assert payload["severity"] == "critical"
    assert payload["summary"].startswith("critical child-in-custody, overdue 2 min: A charged")
    details = payload["custom_details"]
    assert details["due_at_local"] == "Fri 4 Dec 2026 02:58 GMT"
    assert details["what_to_do"].startswith("Review the child's detention now")
    assert "PACE 1984 s.38(6)" in details["basis"]
    assert event["links"] == [
        {
            "href": f"{CONSOLE}/console/alerts/al-1?act=acknowledge",
            "text": "Acknowledge in Safeguard",
        }
    ]
    # A processor outside the force: no subject id goes to PagerDuty.
    assert "C-PD-1" not in json.dumps(event)


def test_a_grouped_message_triggers_each_alert_under_its_own_dedup_key(
    pagerduty: PagerDutyReceiver,
) -> None:
    one = alert("al-g1", Severity.HIGH, rule="welfare-check")
    two = alert("al-g2", Severity.CRITICAL)
    members = [GroupMember.of(one), GroupMember.of(two)]
    record = open_record(one, CHAIN, T0)
    target = pending(PD, members=members)
    what = Content.of(record, target, CONSOLE, Presentation.of(POLICY))
    events = pagerduty_events(what, target, routing_key=KEY, source="safeguard")
    assert [e["dedup_key"] for e in events] == ["al-g2", "al-g1"]  # most severe first
    assert all(pagerduty_errors(e) == [] for e in events)
    assert events[1]["payload"]["component"] == "welfare-check"
    sender, _ = deliverer(FakeClock(T0), pd=pagerduty)
    assert deliver(sender, what, target).outcome == "sent"
    assert {e["dedup_key"] for e in pagerduty.events("trigger")} >= {"al-g1", "al-g2"}


def test_acknowledge_and_resolve_carry_only_the_routing_key_and_dedup_key() -> None:
    what = content()
    for purpose, action in (
        (NotificationPurpose.ACKNOWLEDGEMENT, "acknowledge"),
        (NotificationPurpose.RESOLUTION, "resolve"),
    ):
        (event,) = pagerduty_events(what, pending(PD, purpose), routing_key=KEY, source="s")
        assert event == {"routing_key": KEY, "event_action": action, "dedup_key": "al-1"}
        assert pagerduty_errors(event) == []


def test_the_schema_refuses_what_pagerduty_would() -> None:
    good = pagerduty_events(content(), pending(PD), routing_key=KEY, source="s")[0]
    assert pagerduty_errors(good) == []
    assert pagerduty_errors(good | {"event_action": "page"})
    assert pagerduty_errors(good | {"payload": good["payload"] | {"severity": "high"}})
    assert pagerduty_errors(good | {"payload": good["payload"] | {"summary": "x" * 1025}})
    assert pagerduty_errors({"routing_key": KEY, "event_action": "resolve"})  # no dedup_key


def test_pagerduty_rate_limits_are_retried_at_its_own_pace(pagerduty: PagerDutyReceiver) -> None:
    pagerduty.script = [(429, {}), (500, {})]
    sender, slept = deliverer(FakeClock(T0), pd=pagerduty)
    result = deliver(sender, content(), pending(PD))
    assert (result.outcome, result.attempts) == ("sent", 3)
    assert slept == [5.0, 10.0]  # PagerDuty's backoff, not the webhooks' 1 s


def test_an_invalid_event_or_a_missing_key_fails_at_once(pagerduty: PagerDutyReceiver) -> None:
    pagerduty.script = [(400, {})]
    sender, slept = deliverer(FakeClock(T0), pd=pagerduty)
    result = deliver(sender, content(), pending(PD))
    assert (result.outcome, result.reason, result.detail, slept) == (
        "failed",
        FailureReason.CLIENT_ERROR,
        "http_400",
        [],
    )
    unknown = PD.model_copy(update={"secret": "nobody"})
    sender, _ = deliverer(FakeClock(T0), pd=pagerduty)
    result = deliver(sender, content(), pending(unknown))
    assert (result.outcome, result.reason, result.detail) == (
        "failed",
        FailureReason.MISCONFIGURED,
        "no_key",
    )


# -- Teams -------------------------------------------------------------------------------


def test_the_card_is_a_valid_adaptive_card_whose_buttons_open_the_console(
    teams: TeamsReceiver,
) -> None:
    sender, _ = deliverer(FakeClock(T0), teams=teams)
    result = deliver(sender, content(), pending(TEAMS))
    assert result.outcome == "sent"
    assert teams.refused[-1] == []  # the receiver's schema check passed
    card = teams.cards()[-1]
    assert [(a["title"], a["url"]) for a in card["actions"]] == [
        ("Acknowledge", f"{CONSOLE}/console/alerts/al-1?act=acknowledge"),
        ("Open in the console", f"{CONSOLE}/console/alerts/al-1"),
    ]
    facts = {f["title"]: f["value"] for f in card["body"][2]["facts"]}
    assert facts["Subject"] == "child C-PD-1"
    assert facts["Due"] == "Fri 4 Dec 2026 02:58 GMT"
    assert facts["Overdue for"] == "2 min"
    assert facts["Next"].startswith("Escalates to level 2 (senior-manager: pd-duty) at Fri 4 Dec")
    assert "in 14 min" in facts["Next"]
    texts = [b.get("text", "") for b in card["body"]]
    assert "What to do" in texts


def test_the_card_schema_check_refuses_what_teams_would_not_render() -> None:
    good = json.loads(teams_message(content(), pending(TEAMS)))
    assert teams_errors(good) == []
    card = good["attachments"][0]["content"]
    bad_action = {**card, "actions": [{"type": "Action.OpenUrl", "title": "x"}]}  # no url
    assert teams_errors(
        {**good, "attachments": [{**good["attachments"][0], "content": bad_action}]}
    )
    bad_element = {**card, "body": [{"type": "TextBlock", "txt": "typo"}]}
    assert teams_errors(
        {**good, "attachments": [{**good["attachments"][0], "content": bad_element}]}
    )


def test_a_large_group_lists_at_most_ten_alerts_in_the_card() -> None:
    members = [GroupMember.of(alert(f"al-{n:02}", Severity.HIGH)) for n in range(14)]
    card = adaptive_card(content(members), pending(TEAMS, members=members))
    listed = [b for b in card["body"] if b["type"] == "Container"]
    assert len(listed) == MAX_LISTED
    assert card["body"][-4]["text"] == "and 4 more, in the console"
    assert len(json.dumps(card)) < 28_000  # Teams' message limit


def test_teams_throttling_is_retried_honouring_retry_after(teams: TeamsReceiver) -> None:
    teams.script = [(429, {"Retry-After": "7"}), (502, {})]
    sender, slept = deliverer(FakeClock(T0), teams=teams)
    result = deliver(sender, content(), pending(TEAMS))
    assert (result.outcome, result.attempts) == ("sent", 3)
    assert slept == [7.0, 6.0]  # Retry-After as a floor, then Teams' own backoff


def test_a_flow_url_without_its_signature_is_a_final_failure(teams: TeamsReceiver) -> None:
    clock = FakeClock(T0)
    unsigned = teams.url.split("&sig=")[0]
    sender, slept = deliverer(clock)
    sender.teams = TeamsChannel(clock, {"teams_duty": unsigned})
    result = deliver(sender, content(), pending(TEAMS))
    assert (result.outcome, result.detail, slept) == ("failed", "http_401", [])


# -- the alert's life mirrored, through the real logic -----------------------------------


def paging_policy(folder: Path) -> Path:
    policy = yaml.safe_load(DEFAULT_POLICY.read_text())
    policy["receivers"]["pd-duty"] = {"channel": "pagerduty", "secret": "pd_duty"}
    policy["receivers"]["teams-duty"] = {"channel": "teams", "secret": "teams_duty"}
    policy["routing"]["default"]["duty-manager"] = ["duty-desk", "pd-duty", "teams-duty"]
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


def test_pagerduty_is_triggered_acknowledged_and_resolved_with_the_alert(tmp_path: Path) -> None:
    pipeline = Pipeline(FakeClock(T0), policy=paging_policy(tmp_path))
    raised = alert("al-life", raised_at=T0, due_at=T0 - MIN)
    loop = asyncio.new_event_loop()
    try:
        value = alert_raised_event(raised).to_json()
        loop.run_until_complete(pipeline.broker.publish([Record(TOPICS.alerts, b"al-life", value)]))
        loop.run_until_complete(pipeline.run())
        ack = AlertAcknowledged(
            alert_id="al-life", by="DM 1", principal="dev", acknowledged_at=T0 + 2 * MIN
        )
        loop.run_until_complete(pipeline.advance(2 * MIN))
        command = alert_acknowledged_event(ack, request_id="a1").to_json()
        loop.run_until_complete(pipeline.command("al-life", command))
        loop.run_until_complete(pipeline.command("al-life", command))  # a repeat: told once
        closed = AlertClosed(alert_id="al-life", by="DM 1", principal="dev", closed_at=T0 + 9 * MIN)
        loop.run_until_complete(pipeline.advance(7 * MIN))
        closing = alert_closed_event(closed, request_id="c1").to_json()
        loop.run_until_complete(pipeline.command("al-life", closing))
    finally:
        loop.close()
    told = [(s.pending.recipient.name, s.pending.purpose.value) for s in pipeline.receivers.sent]
    assert told == [
        ("duty-desk", "alert"),
        ("pd-duty", "alert"),
        ("teams-duty", "alert"),
        ("pd-duty", "acknowledgement"),  # only the channel that keeps state of its own
        ("duty-desk", "resolution"),
        ("pd-duty", "resolution"),
        ("teams-duty", "resolution"),
    ]
    ack_notice = pipeline.receivers.to("pd-duty")[1].pending
    assert (
        ack_notice.notification_id
        == f"al-life:acknowledged:{int((T0 + 2 * MIN).timestamp() * 1000)}:pd-duty"
    )


def test_a_breach_resolved_before_anyone_was_told_pages_nobody(tmp_path: Path) -> None:
    pipeline = Pipeline(FakeClock(T0), policy=paging_policy(tmp_path), group_window=MIN)
    raised = alert("al-late", raised_at=T0, due_at=T0 - MIN)
    loop = asyncio.new_event_loop()
    try:
        from schemas.alerts import AlertResolved, alert_resolved_event  # noqa: PLC0415

        resolved = AlertResolved(
            alert_id="al-late",
            rule="child-in-custody",
            resolved_at=T0,
            fulfilled_at=T0,
            late_by_seconds=60,
            fulfilment=EventRef(source="urn:test", id="release-1"),
        )
        loop.run_until_complete(
            pipeline.broker.publish(
                [
                    Record(TOPICS.alerts, b"al-late", alert_raised_event(raised).to_json()),
                    Record(TOPICS.alerts, b"al-late", alert_resolved_event(resolved).to_json()),
                ]
            )
        )
        loop.run_until_complete(pipeline.advance(2 * MIN))
    finally:
        loop.close()
    told = sorted(s.pending.recipient.name for s in pipeline.receivers.sent)
    assert told == ["duty-desk", "teams-duty"]  # told as a resolved breach; no page
