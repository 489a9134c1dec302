"""Teams and PagerDuty from the real notify process, on the real broker.

An alert reaches a PagerDuty receiver and a Teams receiver (tests/fixtures/paging.py:
each checks what it is sent against PagerDuty's Events v2 schema and the published
Adaptive Card schema, as the services would). Acknowledging it (a command, as the
desk publishes it) acknowledges it in PagerDuty; resolving it resolves it there and
tells Teams. A PagerDuty that is down at first is retried until it takes the trigger:
late, never lost.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from devtools.broker import create_topics, free_port
from devtools.stack import DevStack
from schemas.alerts import AlertRaised, EventRef, Severity, SubjectKind, alert_raised_event
from schemas.notifications import ResolutionReason
from tests.fixtures.broker import produce
from tests.fixtures.desk_topics import acknowledge, alert_view, close
from tests.fixtures.paging import PagerDutyReceiver, TeamsReceiver
from tests.fixtures.stack import wait_until
from tests.fixtures.webhook import WebhookReceiver

pytestmark = pytest.mark.integration

KEY = "R0UT1NGK3Y0000000000000000000000"
POLICY = """
escalation:
  critical: {levels: [{route: duty}, {route: senior, after: 1h}]}
  high: {levels: [{route: duty}, {route: senior, after: 1h}]}
  medium: {levels: [{route: duty}, {route: senior, after: 1h}]}
routing:
  default: {duty: [pager, channel], senior: [pager]}
receivers:
  pager: {channel: pagerduty, secret: duty_pager}
  channel: {channel: teams, secret: duty_channel}
"""


@pytest.fixture(scope="module")
def notify(
    kafka_bootstrap: str,
    webhook: WebhookReceiver,
    pagerduty: PagerDutyReceiver,
    teams: TeamsReceiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DevStack]:
    folder = tmp_path_factory.mktemp("paging")
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
            topic_prefix=f"p{suffix}.",
            app_suffix=f"-{suffix}",
            policy_file=policy,
            log_json=True,
            output=log,
            extra_env={
                "NOTIFY_PUBLIC_URL": "https://desk.example.org",
                "NOTIFY_PAGERDUTY_KEYS__DUTY_PAGER": KEY,
                "NOTIFY_PAGERDUTY__EVENTS_URL": pagerduty.url,
                "NOTIFY_TEAMS_URLS__DUTY_CHANNEL": teams.url,
                "NOTIFY_DELIVERY__PAGERDUTY__INITIAL_BACKOFF_SECONDS": "0.5",
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
            # Neither secret ever reaches the log.
            text = log_path.read_text(errors="replace")
            assert KEY not in text
            assert "s1gn4tur3" not in text


def raise_alert(stack: DevStack) -> AlertRaised:
    alert_id = f"al-{uuid.uuid4().hex}"
    alert = AlertRaised(
        alert_id=alert_id,
        rule="child-in-custody",
        severity=Severity.CRITICAL,
        subject_kind=SubjectKind.CHILD,
        child_id="C-PAGE-1",
        area="north",
        trigger=EventRef(source="urn:test", id=alert_id),
        due_at=datetime.now(UTC) - timedelta(minutes=3),
        raised_at=datetime.now(UTC),
        summary="A charged child has been detained past the limit.",
    )
    produce(
        stack.bootstrap,
        stack.topics.alerts,
        [(alert_id.encode(), alert_raised_event(alert).to_json())],
    )
    return alert


def test_pagerduty_follows_the_alert_and_teams_gets_its_card(
    notify: DevStack, pagerduty: PagerDutyReceiver, teams: TeamsReceiver
) -> None:
    pagerduty.script = [(503, {}), (503, {})]  # down at first: retried within the budget
    alert = raise_alert(notify)
    (trigger,) = pagerduty.wait_for(
        lambda e: e["event_action"] == "trigger" and e["dedup_key"] == alert.alert_id
    )
    assert trigger["routing_key"] == KEY
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["client_url"] == (
        f"https://desk.example.org/console/alerts/{alert.alert_id}?act=acknowledge"
    )
    assert "C-PAGE-1" not in json.dumps(trigger)
    assert [r for r in pagerduty.refused if r == ["scripted"]] == [["scripted"]] * 2

    messages = teams.wait_for(lambda m: alert.alert_id in json.dumps(m))
    card = messages[0]["attachments"][0]["content"]
    assert card["body"][0]["text"].startswith("Level 1: critical child-in-custody, overdue 3 min")
    assert card["actions"][0]["url"].endswith(f"/console/alerts/{alert.alert_id}?act=acknowledge")

    acknowledge(notify, alert.alert_id, by="DM 7")
    assert pagerduty.wait_for(
        lambda e: e["event_action"] == "acknowledge" and e["dedup_key"] == alert.alert_id
    )
    close(notify, alert.alert_id, reason=ResolutionReason.DUPLICATE)
    assert pagerduty.wait_for(
        lambda e: e["event_action"] == "resolve" and e["dedup_key"] == alert.alert_id
    )
    resolved = teams.wait_for(
        lambda m: alert.alert_id in json.dumps(m) and "Resolved" in json.dumps(m)
    )
    assert resolved

    # The alert's record names each channel and purpose, and every delivery was sent.
    def deliveries() -> list[tuple[str, str, str]] | None:
        body = alert_view(notify, alert.alert_id)
        found = [
            (e["delivery"]["channel"], e["delivery"]["purpose"], e["delivery"]["outcome"])
            for e in body.get("timeline", [])
            if e["kind"] == "notification"
        ]
        return found if len(found) == 5 else None

    assert sorted(wait_until(deliveries, timeout=30) or []) == [
        ("pagerduty", "acknowledgement", "sent"),
        ("pagerduty", "alert", "sent"),
        ("pagerduty", "resolution", "sent"),
        ("teams", "alert", "sent"),
        ("teams", "resolution", "sent"),
    ]
