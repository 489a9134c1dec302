"""The notify service as a real process on the real broker, with a real webhook receiver
and a real SMTP server, and a policy whose waits are seconds instead of hours.

Alerts are written straight onto the alerts topic, as the risk service would, and
acknowledgements and closures onto the commands topic, as the desk would; what notify
made of them is read from the alert views it publishes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devtools.broker import create_topics, free_port
from devtools.stack import DevStack
from schemas.alerts import AlertRaised, EventRef, Severity, SubjectKind, alert_raised_event
from services.common.processes import kill
from tests.fixtures.broker import produce, read_topic
from tests.fixtures.desk_topics import acknowledge, alert_view, close
from tests.fixtures.smtp import Mail, SmtpInbox
from tests.fixtures.stack import Client, wait_until
from tests.fixtures.webhook import WebhookReceiver, signature_valid

pytestmark = pytest.mark.integration

SECRET = b"test-desk-key"
LEVEL_2_AFTER = 4.0
LEVEL_3_AFTER = 8.0
# How far a step may land from its due time here: the timer's interval, a produce and a
# consume, and a loaded CI machine.
SLACK = 2.0

POLICY = f"""
escalation:
  critical:
    levels:
      - route: duty
      - route: senior
        after: {int(LEVEL_2_AFTER)}s
      - route: lead
        after: {int(LEVEL_3_AFTER)}s
    repeat: 1h
  high:
    levels:
      - route: duty
      - route: senior
        after: {int(LEVEL_2_AFTER)}s
    repeat: 1h
  medium:
    levels:
      - route: bounce
      - route: senior
        after: 1h
routing:
  default:
    duty: [desk]
    senior: [desk, seniors]
    lead: [desk, lead]
    bounce: [bouncing]
receivers:
  desk: {{channel: webhook, secret: desk_key}}
  seniors: {{channel: email, to: [seniors@example.org]}}
  lead: {{channel: email, to: [lead@example.org]}}
  bouncing: {{channel: email, to: [reject-me@example.org]}}
"""


@pytest.fixture(scope="module")
def notify(
    kafka_bootstrap: str,
    webhook: WebhookReceiver,
    smtp_inbox: SmtpInbox,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DevStack]:
    folder = tmp_path_factory.mktemp("notify")
    policy = folder / "policy.yaml"
    policy.write_text(POLICY)
    suffix = uuid.uuid4().hex[:8]
    log_path = folder / "notify.log"
    with log_path.open("wb") as log:
        stack = DevStack(
            bootstrap=kafka_bootstrap,
            data_dir=folder / "data",
            webhook_url=webhook.url,
            notify_port=free_port(),
            topic_prefix=f"n{suffix}.",
            app_suffix=f"-{suffix}",
            policy_file=policy,
            log_json=True,
            output=log,
            extra_env={
                "NOTIFY_WEBHOOK_SECRETS__DESK_KEY": SECRET.decode(),
                "NOTIFY_SMTP__HOST": "127.0.0.1",
                "NOTIFY_SMTP__PORT": str(smtp_inbox.port),
                "NOTIFY_SMTP__SECURITY": "none",
                "NOTIFY_SMTP__SENDER": "safeguard@example.org",
                "NOTIFY_DELIVERY__ORPHAN_GRACE_SECONDS": "3",
            },
        )
        create_topics(kafka_bootstrap, stack.topic_names())
        try:
            stack.start_service("notify")
            stack.wait_ready("notify", timeout=90)
            yield stack
        except Exception:
            log.flush()
            print(log_path.read_text()[-20000:])  # noqa: T201 - shown only on failure
            raise
        finally:
            stack.stop()


def raise_alert(stack: DevStack, severity: Severity, trigger: str | None = None) -> AlertRaised:
    alert_id = f"al-{uuid.uuid4().hex}"
    alert = AlertRaised(
        alert_id=alert_id,
        rule="child-in-custody",
        severity=severity,
        subject_kind=SubjectKind.CHILD,
        child_id="C-INT-1",
        area="north",
        trigger=EventRef(source="urn:test", id=trigger or alert_id),
        due_at=datetime.now(UTC) - timedelta(minutes=1),
        raised_at=datetime.now(UTC),
        summary="A charged child has been detained past the limit.",
    )
    produce(
        stack.bootstrap,
        stack.topics.alerts,
        [(alert_id.encode(), alert_raised_event(alert).to_json())],
    )
    return alert


def notifications(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["delivery"] for e in record.get("timeline", []) if e["kind"] == "notification"]


def hooks(webhook: WebhookReceiver, alert_id: str) -> list[dict[str, Any]]:
    return webhook.wait_for(lambda b: b["alert"]["alert_id"] == alert_id, timeout=0)


def at(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry["at"])


def test_unacknowledged_alert_climbs_all_three_levels_on_time(
    notify: DevStack, webhook: WebhookReceiver, smtp_inbox: SmtpInbox
) -> None:
    alert = raise_alert(notify, Severity.CRITICAL)
    t0 = alert.raised_at

    record = wait_until(
        lambda: len(notifications(r := alert_view(notify, alert.alert_id))) >= 5 and r,
        timeout=LEVEL_3_AFTER + 20,
    )
    sent = notifications(record)
    assert sorted((d["level"], d["recipient"], d["outcome"]) for d in sent) == [
        (1, "desk", "sent"),
        (2, "desk", "sent"),
        (2, "seniors", "sent"),
        (3, "desk", "sent"),
        (3, "lead", "sent"),
    ]
    escalated = [e for e in record["timeline"] if e["kind"] == "escalated"]
    assert [(e["level"], e["reason"]) for e in escalated] == [(2, "schedule"), (3, "schedule")]
    # Each level taken at its time: not early, and late by less than the slack.
    for entry, wait in zip(escalated, (LEVEL_2_AFTER, LEVEL_3_AFTER), strict=True):
        due = t0 + timedelta(seconds=wait)
        assert datetime.fromisoformat(entry["scheduled_at"]) == due
        assert timedelta(0) <= at(entry) - due < timedelta(seconds=SLACK)
    first = next(e for e in record["timeline"] if e["kind"] == "notification")
    assert at(first) - t0 < timedelta(seconds=SLACK)

    # The webhook got each level once, signed, with its idempotency key.
    bodies = hooks(webhook, alert.alert_id)
    assert sorted(b["level"] for b in bodies) == [1, 2, 3]
    for body in bodies:
        raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        headers = next(
            h for h in webhook.headers if h.get("Idempotency-Key") == body["notification_id"]
        )
        # Standard Webhooks, checked by the receiver's own implementation.
        assert headers["webhook-id"] == body["notification_id"]
        assert signature_valid(SECRET, headers, raw)
        assert body["notification_id"] == f"{alert.alert_id}:{body['level']}:0:desk"

    # Email: level 2 to the senior managers, level 3 to the strategic lead, summary only.
    mails = smtp_inbox.wait_for(lambda m: alert.alert_id in m.message.get_body().get_content())
    assert sorted(m.to[0] for m in mails) == ["lead@example.org", "seniors@example.org"]
    for mail in mails:
        assert_email_names_the_alert_and_its_subject(mail, alert)

    # The audit trail on the notifications topic.
    events = [
        json.loads(r.value)
        for r in read_topic(notify.bootstrap, notify.topics.notifications, expect=7)
        if r.key == alert.alert_id.encode()
    ]
    types = sorted(e["type"] for e in events)
    assert types == ["alert.escalated"] * 2 + ["notification.sent"] * 5


def assert_email_names_the_alert_and_its_subject(mail: Mail, alert: AlertRaised) -> None:
    plain = mail.message.get_body(preferencelist=("plain",))
    markup = mail.message.get_body(preferencelist=("html",))
    assert plain is not None
    assert markup is not None
    for part in (plain.get_content(), markup.get_content()):
        assert alert.alert_id in part
        assert alert.summary in part
        assert "child-in-custody" in part
        assert "child C-INT-1" in part  # the pseudonymous subject id, as issue 21 asks
        assert "Overdue for" in part
        assert "GMT" in part or "BST" in part  # local times, not UTC ISO


def test_acknowledgement_stops_escalation_and_resolving_tells_who_was_reached(
    notify: DevStack, webhook: WebhookReceiver
) -> None:
    alert = raise_alert(notify, Severity.HIGH)
    assert wait_until(lambda: notifications(alert_view(notify, alert.alert_id)))
    acknowledge(notify, alert.alert_id, by="DM 4411", note="calling")

    record = wait_until(
        lambda: (r := alert_view(notify, alert.alert_id)).get("status") == "acknowledged" and r
    )
    ack = record["timeline"][-1]
    assert (ack["kind"], ack["by"], ack["note"]) == ("acknowledged", "DM 4411", "calling")
    # A second acknowledgement (a retried command) changes nothing.
    acknowledge(notify, alert.alert_id, by="DM 4412", note="again")

    # Proof that level 2 never came: a control alert raised after the acknowledgement
    # reaches level 2, and the acknowledged one's level 2 was due before the control's.
    control = raise_alert(notify, Severity.HIGH)
    assert webhook.wait_for(
        lambda b: b["alert"]["alert_id"] == control.alert_id and b["level"] == 2,
        timeout=LEVEL_2_AFTER + 20,
    )
    assert [b["level"] for b in hooks(webhook, alert.alert_id)] == [1]
    assert "escalated" not in [e["kind"] for e in alert_view(notify, alert.alert_id)["timeline"]]

    close(notify, alert.alert_id, note="child released")
    record = wait_until(
        lambda: (
            (r := alert_view(notify, alert.alert_id))["timeline"][-1]["kind"] == "notification"
            and r["status"] == "resolved"
            and r
        )
    )
    assert [e["kind"] for e in record["timeline"]] == [
        "raised",
        "notification",
        "acknowledged",
        "resolved",
        "notification",
    ]
    assert record["closure"]["by"] == "dev"
    assert record["acknowledgement"]["by"] == "DM 4411"
    notice = next(b for b in hooks(webhook, alert.alert_id) if b["purpose"] == "resolution")
    assert notice["resolution"]["how"] == "by_hand"


def test_failed_delivery_is_recorded_counted_and_escalates_at_once(
    notify: DevStack, webhook: WebhookReceiver
) -> None:
    alert = raise_alert(notify, Severity.MEDIUM)  # level 1: a mailbox the server refuses
    # Level 2 is an hour away by the policy; the failure brings it forward.
    assert webhook.wait_for(
        lambda b: b["alert"]["alert_id"] == alert.alert_id and b["level"] == 2,
        timeout=20,
    )
    record = wait_until(
        lambda: len(notifications(r := alert_view(notify, alert.alert_id))) >= 2 and r
    )
    failed = next(d for d in notifications(record) if d["outcome"] == "failed")
    assert (failed["channel"], failed["reason"], failed["detail"]) == (
        "email",
        "rejected",
        "smtp_550",
    )
    assert failed["attempts"] == 1  # a 5xx reply is final: no retries
    escalated = next(e for e in record["timeline"] if e["kind"] == "escalated")
    assert escalated["reason"] == "delivery_failed"
    assert at(escalated) - alert.raised_at < timedelta(seconds=10)
    _, metrics, _ = Client().request("GET", f"{notify.url('notify')}/metrics")
    assert (
        'safeguard_notify_notifications_failed_total{channel="email",reason="rejected"}' in metrics
    )
    assert 'safeguard_notify_escalations_total{level="2"}' in metrics


def test_restart_mid_escalation_neither_loses_nor_repeats_a_step(
    notify: DevStack, webhook: WebhookReceiver, smtp_inbox: SmtpInbox
) -> None:
    alert = raise_alert(notify, Severity.CRITICAL)
    # Wait until level 2 is delivered and recorded, then kill before level 3 is due.
    assert wait_until(
        lambda: (
            sum(d["level"] == 2 for d in notifications(alert_view(notify, alert.alert_id))) == 2
        ),
        timeout=LEVEL_2_AFTER + 20,
    )
    kill(notify.processes.pop("notify"))
    notify.start_service("notify")
    notify.wait_ready("notify", timeout=90)

    # Level 3 fell due while the worker was down (or soon after): it is sent once.
    record = wait_until(
        lambda: len(notifications(r := alert_view(notify, alert.alert_id))) >= 5 and r,
        timeout=60,
    )
    sent = notifications(record)
    assert sorted((d["level"], d["recipient"]) for d in sent) == [
        (1, "desk"),
        (2, "desk"),
        (2, "seniors"),
        (3, "desk"),
        (3, "lead"),
    ]
    assert [e["level"] for e in record["timeline"] if e["kind"] == "escalated"] == [2, 3]
    bodies = hooks(webhook, alert.alert_id)
    assert sorted(b["level"] for b in bodies) == [1, 2, 3]
    mails = smtp_inbox.wait_for(lambda m: alert.alert_id in m.message.get_body().get_content())
    assert sorted(m.to[0] for m in mails) == ["lead@example.org", "seniors@example.org"]


def test_grouped_level_one_survives_a_worker_killed_inside_the_window(
    notify: DevStack, webhook: WebhookReceiver
) -> None:
    # Level 1 waits a group window so that one event's alerts go out as one message. The
    # wait is on the table (each record's hold), not in memory: a worker killed inside
    # the window loses nothing, and the restarted worker still sends one message.
    kill(notify.processes.pop("notify"))
    notify.extra_env["NOTIFY_GROUP_WINDOW_SECONDS"] = "8"
    notify.start_service("notify")
    notify.wait_ready("notify", timeout=90)
    trigger = f"inc-{uuid.uuid4().hex[:8]}"
    alerts = [raise_alert(notify, Severity.HIGH, trigger=trigger) for _ in range(3)]
    ids = {a.alert_id for a in alerts}
    assert wait_until(lambda: all(alert_view(notify, i).get("status") == "open" for i in ids))
    kill(notify.processes.pop("notify"))
    notify.start_service("notify")
    notify.wait_ready("notify", timeout=90)

    def told(body: dict[str, Any]) -> set[str]:
        listed = {a["alert_id"] for a in body.get("alerts", [])}
        return ({body["alert"]["alert_id"]} | listed) & ids if body["level"] == 1 else set()

    assert wait_until(
        lambda: set().union(*(told(b) for b in webhook.wait_for(told, timeout=0))) == ids,
        timeout=60,
    )
    messages = webhook.wait_for(told, timeout=0)
    assert len(messages) == 1  # one message, listing all three
    assert {a["alert_id"] for a in messages[0]["alerts"]} == ids
    # Each alert's own record says it was told, and in which message.
    for alert_id in ids:
        record = wait_until(lambda i=alert_id: notifications(alert_view(notify, i)), timeout=20)
        first = [d for d in record if d["level"] == 1]
        assert [(d["recipient"], d["outcome"]) for d in first] == [("desk", "sent")]
        # The message belongs to the alert whose hold ended first (its notification id
        # says which); it leads with the most severe, which may be another.
        if alert_id != messages[0]["notification_id"].split(":")[0]:
            assert first[0]["grouped_into"] == messages[0]["notification_id"]
