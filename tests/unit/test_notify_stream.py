"""Notify's real logic through the real stream driver, in memory, with time moved by hand.

The escalation ladder of the default policy (critical: duty desk at once, senior managers
after 15 min, strategic lead after 60 min, repeated every 30 min, acknowledgements
timing out after an hour) is walked step by step at the exact times it is due. The
same behaviours against real processes and a real broker are in
tests/integration/test_notify_escalation.py; what needs a crash is tested there.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from devtools.stack import DEFAULT_POLICY
from schemas.alerts import AlertRaised, EventRef, Severity, SubjectKind, alert_raised_event
from schemas.notifications import (
    AlertAcknowledged,
    AlertClosed,
    ResolutionReason,
    alert_acknowledged_event,
    alert_closed_event,
)
from schemas.views import AlertView
from services.common.clock import FakeClock
from services.common.stream.inputs import Record
from services.notify.ledger import AlertStatus
from tests.fixtures.pipeline import TOPICS, Pipeline

T0 = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)  # 2 a.m. on a Monday
MIN = timedelta(minutes=1)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def pipeline() -> Pipeline:
    return Pipeline(FakeClock(T0))


def raised(
    severity: Severity = Severity.CRITICAL, *, trigger: str | None = None, at: datetime = T0
) -> AlertRaised:
    alert_id = f"al-{uuid.uuid4().hex[:12]}"
    return AlertRaised(
        alert_id=alert_id,
        rule="child-in-custody",
        severity=severity,
        subject_kind=SubjectKind.CHILD,
        child_id="C-1",
        area="north",
        trigger=EventRef(source="urn:test", id=trigger or alert_id),
        due_at=at - MIN,
        raised_at=at,
        summary="A charged child still in police custody 4h after detention",
    )


def raise_alert(loop: asyncio.AbstractEventLoop, p: Pipeline, alert: AlertRaised) -> None:
    value = alert_raised_event(alert).to_json()
    loop.run_until_complete(
        p.broker.publish([Record(TOPICS.alerts, alert.alert_id.encode(), value)])
    )
    loop.run_until_complete(p.run())


def steps(p: Pipeline, alert_id: str) -> list[tuple[int, int, str, timedelta]]:
    """Every hand-over for an alert: level, round, recipient and how long after T0."""
    return [
        (s.pending.level, s.pending.round, s.pending.recipient.name, s.at - T0)
        for s in p.receivers.sent
        if s.alert_id == alert_id and s.pending.purpose == "alert"
    ]


def test_an_unacknowledged_critical_alert_climbs_each_level_exactly_when_due(
    loop, pipeline
) -> None:
    alert = raised()
    raise_alert(loop, pipeline, alert)
    loop.run_until_complete(pipeline.advance(timedelta(minutes=95)))

    assert steps(pipeline, alert.alert_id) == [
        (1, 0, "duty-desk", timedelta(0)),
        (2, 0, "duty-desk", 15 * MIN),
        (2, 0, "senior-managers", 15 * MIN),
        (2, 1, "duty-desk", 45 * MIN),  # the current level repeated 30 min after its step
        (2, 1, "senior-managers", 45 * MIN),
        (3, 0, "duty-desk", 60 * MIN),
        (3, 0, "strategic-lead", 60 * MIN),
        (3, 1, "duty-desk", 90 * MIN),
        (3, 1, "strategic-lead", 90 * MIN),
    ]
    escalated = pipeline.published(TOPICS.notifications, lambda e: e["type"] == "alert.escalated")
    assert [(e["data"]["level"], e["data"]["reason"]) for e in escalated] == [
        (2, "schedule"),
        (3, "schedule"),
    ]
    record = pipeline.record(alert.alert_id)
    assert (record.level, record.round) == (3, 1)
    # Each step taken at its time: the timing error is nothing at all on a fake clock.
    reg = pipeline.notify_registry
    assert pipeline.metric(reg, "safeguard_notify_escalation_timing_error_seconds_sum") == 0
    assert pipeline.metric(reg, "safeguard_notify_escalations_total", level="2") == 1


def test_the_alert_view_says_what_happens_next_and_to_whom(loop, pipeline) -> None:
    alert = raised()
    raise_alert(loop, pipeline, alert)
    views = [
        AlertView.model_validate(e["data"])
        for e in pipeline.published(TOPICS.alert_views)
        if e["data"]["alert"]["alert_id"] == alert.alert_id
    ]
    latest = views[-1]
    assert [v.revision for v in views] == list(range(1, len(views) + 1))
    assert latest.status is AlertStatus.OPEN
    assert latest.next_step is not None
    assert (latest.next_step.kind, latest.next_step.level, latest.next_step.at) == (
        "level",
        2,
        T0 + 15 * MIN,
    )
    assert latest.next_step.recipients == ["duty-desk", "senior-managers"]
    assert [r.after_seconds for r in latest.ladder] == [0, 900, 3600]
    assert "example.org" not in str(latest.model_dump())  # names, never addresses


def test_acknowledging_stops_the_ladder_and_resolving_tells_whoever_was_reached(
    loop, pipeline
) -> None:
    alert = raised(Severity.HIGH)
    raise_alert(loop, pipeline, alert)
    ack = AlertAcknowledged(
        alert_id=alert.alert_id,
        by="DM 4411",
        principal="dev",
        note="calling",
        acknowledged_at=T0 + 5 * MIN,
    )
    loop.run_until_complete(pipeline.advance(5 * MIN))
    loop.run_until_complete(
        pipeline.command(alert.alert_id, alert_acknowledged_event(ack, request_id="a1").to_json())
    )
    loop.run_until_complete(pipeline.advance(3 * 60 * MIN))  # level 2 was due at 1 h
    assert steps(pipeline, alert.alert_id) == [(1, 0, "duty-desk", timedelta(0))]
    assert pipeline.record(alert.alert_id).status is AlertStatus.ACKNOWLEDGED
    # The accepted command joins the trail on the notifications topic.
    trail = pipeline.published(TOPICS.notifications, lambda e: e["type"] == "alert.acknowledged")
    assert [e["data"]["by"] for e in trail] == ["DM 4411"]

    closed = AlertClosed(
        alert_id=alert.alert_id,
        by="DM 4411",
        principal="dev",
        reason=ResolutionReason.FULFILLED_ELSEWHERE,
        closed_at=pipeline.clock.now(),
    )
    command = alert_closed_event(closed, request_id="c1").to_json()
    loop.run_until_complete(pipeline.command(alert.alert_id, command))
    loop.run_until_complete(pipeline.command(alert.alert_id, command))  # a repeat: no effect
    notices = [s for s in pipeline.receivers.sent if s.pending.purpose == "resolution"]
    assert [s.pending.recipient.name for s in notices] == ["duty-desk"]
    assert pipeline.record(alert.alert_id).status is AlertStatus.RESOLVED
    assert (
        pipeline.metric(pipeline.notify_registry, "safeguard_notify_duplicates_dropped_total") == 1
    )


def test_a_failed_delivery_brings_the_next_level_forward_at_once(loop, pipeline) -> None:
    pipeline.receivers.failing.add("duty-desk")
    alert = raised(Severity.MEDIUM)  # level 2 is a day away by the policy
    raise_alert(loop, pipeline, alert)
    assert [
        (lvl, who) for lvl, _, who, at in steps(pipeline, alert.alert_id) if at == timedelta(0)
    ] == [
        (1, "duty-desk"),
        (2, "duty-desk"),
        (2, "senior-managers"),
    ]
    escalated = pipeline.published(TOPICS.notifications, lambda e: e["type"] == "alert.escalated")
    assert [e["data"]["reason"] for e in escalated] == ["delivery_failed"]


def test_a_restarted_worker_takes_the_step_that_fell_due_once(loop, pipeline) -> None:
    alert = raised()
    raise_alert(loop, pipeline, alert)
    loop.run_until_complete(pipeline.advance(20 * MIN))  # level 2 taken
    pipeline.restart_notify()  # down, then recovered from the table: level 3 is on its schedule
    pipeline.clock.advance(50 * MIN)  # level 3 fell due at 60 min while it was down
    loop.run_until_complete(pipeline.advance(timedelta(0)))
    taken = steps(pipeline, alert.alert_id)
    assert [(lvl, who) for lvl, rnd, who, _ in taken if rnd == 0] == [
        (1, "duty-desk"),
        (2, "duty-desk"),
        (2, "senior-managers"),
        (3, "duty-desk"),
        (3, "strategic-lead"),
    ]
    # Taken on the first check after recovery, not at its due time: late, never lost.
    assert taken[-1][3] == 70 * MIN


def test_a_delivery_with_no_outcome_is_handed_over_again_under_the_same_id(loop, pipeline) -> None:
    pipeline.receivers.answer = False  # the delivering worker dies: no outcome ever comes
    alert = raised(Severity.HIGH)
    raise_alert(loop, pipeline, alert)
    pipeline.restart_notify()
    pipeline.receivers.answer = True
    first = pipeline.receivers.sent[0]
    loop.run_until_complete(pipeline.advance(MIN))
    assert len(pipeline.receivers.sent) == 1  # its budget and the grace have not passed
    loop.run_until_complete(pipeline.advance(10 * MIN))
    again = [s for s in pipeline.receivers.sent[1:] if s.pending.level == 1]
    assert [s.pending.notification_id for s in again] == [first.pending.notification_id]
    assert again[0].pending.dispatches == 2


def test_an_outcome_read_before_its_alert_is_not_a_dead_letter(loop) -> None:
    # A crash lost the table write of an alert whose notification had gone out: its
    # outcome is on the topic, and the alert is read again after it.
    alert = raised(Severity.HIGH)
    first = Pipeline(FakeClock(T0))
    raise_alert(loop, first, alert)
    [outcome] = first.broker.records(TOPICS.notifications)
    assert json.loads(outcome.value or b"")["type"] == "notification.sent"

    pipeline = Pipeline(FakeClock(T0))
    pipeline.broker.append(Record(outcome.topic, outcome.key, outcome.value or b""))
    loop.run_until_complete(pipeline.run())
    assert pipeline.broker.records(TOPICS.deadletter) == []
    reg = pipeline.notify_registry
    assert pipeline.metric(reg, "safeguard_notify_outcomes_unmatched_total") == 1
    assert pipeline.notify.driver.get(alert.alert_id) is None

    raise_alert(loop, pipeline, alert)
    [again] = pipeline.receivers.sent
    assert again.pending.notification_id == first.receivers.sent[0].pending.notification_id
    assert pipeline.record(alert.alert_id).deliveries[again.pending.notification_id].outcome
    assert pipeline.broker.records(TOPICS.deadletter) == []


def test_one_events_alerts_go_out_as_one_message_even_across_a_restart(loop) -> None:
    pipeline = Pipeline(FakeClock(T0), group_window=timedelta(seconds=30))
    alerts = [raised(Severity.HIGH, trigger="INC-7") for _ in range(3)]
    for alert in alerts:
        raise_alert(loop, pipeline, alert)
    loop.run_until_complete(pipeline.advance(timedelta(seconds=10)))
    assert pipeline.receivers.sent == []  # inside the group window
    pipeline.restart_notify()
    loop.run_until_complete(pipeline.advance(timedelta(seconds=30)))
    messages = pipeline.receivers.to("duty-desk")
    assert len(messages) == 1
    listed = {m.alert_id for m in messages[0].pending.members}
    assert listed == {a.alert_id for a in alerts}
    for alert in alerts:  # every alert's own record says it was told
        record = pipeline.record(alert.alert_id)
        assert [d.outcome for d in record.deliveries.values() if d.level == 1] == ["sent"]


def test_an_acknowledgement_without_the_work_done_reopens_the_alert(loop, pipeline) -> None:
    alert = raised()
    raise_alert(loop, pipeline, alert)
    ack = AlertAcknowledged(
        alert_id=alert.alert_id, by="DM", principal="dev", acknowledged_at=T0 + 2 * MIN
    )
    loop.run_until_complete(pipeline.advance(2 * MIN))
    loop.run_until_complete(
        pipeline.command(alert.alert_id, alert_acknowledged_event(ack, request_id="a").to_json())
    )
    loop.run_until_complete(pipeline.advance(61 * MIN))  # critical: an acknowledgement holds 1 h
    reopened = pipeline.published(TOPICS.notifications, lambda e: e["type"] == "alert.reopened")
    assert [e["data"]["reopened_at"] for e in reopened] == ["2026-11-02T03:02:00Z"]
    assert pipeline.record(alert.alert_id).status is AlertStatus.OPEN
    # The current level (1) told again at the reopening.
    assert steps(pipeline, alert.alert_id)[-1] == (1, 1, "duty-desk", 62 * MIN)


def test_a_batch_retried_after_a_failed_publish_sends_and_counts_what_one_attempt_would(
    loop,
) -> None:
    results = []
    for failures in (0, 3):
        pipeline = Pipeline(FakeClock(T0), group_window=timedelta(seconds=30))
        alerts = [raised(Severity.HIGH, trigger="INC-9") for _ in range(3)]
        for alert in alerts:
            raise_alert(loop, pipeline, alert)
        # The batch that takes level 1 (and publishes the alerts' views) fails.
        pipeline.broker.fail_publishes, pipeline.broker.fail_topic = failures, TOPICS.alert_views
        loop.run_until_complete(pipeline.advance(timedelta(seconds=31)))
        reg = pipeline.notify_registry
        results.append(
            (
                len(pipeline.receivers.sent),
                sorted(len(s.pending.members) for s in pipeline.receivers.sent),
                pipeline.metric(reg, "safeguard_notify_duplicates_dropped_total"),
                pipeline.metric(reg, "safeguard_notify_escalation_timing_error_seconds_count"),
                pipeline.metric(reg, "safeguard_notify_transient_failures_total", stage="publish"),
            )
        )
    once, retried = results
    assert once[:4] == retried[:4] == (1, [3], 0, 0)
    assert retried[4] == 3  # it did fail, three times


def test_a_retried_batch_counts_an_acknowledgement_and_a_repeat_once(loop, pipeline) -> None:
    first, second = raised(Severity.HIGH), raised(Severity.HIGH)
    raise_alert(loop, pipeline, first)
    raise_alert(loop, pipeline, second)
    ack = AlertAcknowledged(
        alert_id=first.alert_id, by="DM", principal="dev", acknowledged_at=T0 + MIN
    )
    pipeline.clock.advance(MIN)
    # One batch: an acknowledgement and a repeated raise; its publish fails twice.
    loop.run_until_complete(
        pipeline.broker.publish(
            [
                Record(
                    TOPICS.commands,
                    first.alert_id.encode(),
                    alert_acknowledged_event(ack, request_id="a").to_json(),
                ),
                Record(
                    TOPICS.alerts, second.alert_id.encode(), alert_raised_event(second).to_json()
                ),
            ]
        )
    )
    pipeline.broker.fail_publishes, pipeline.broker.fail_topic = 2, TOPICS.notifications
    loop.run_until_complete(pipeline.run())
    reg = pipeline.notify_registry
    assert pipeline.metric(reg, "safeguard_notify_time_to_acknowledge_seconds_count") == 1
    assert pipeline.metric(reg, "safeguard_notify_duplicates_dropped_total") == 1
    trail = pipeline.published(TOPICS.notifications, lambda e: e["type"] == "alert.acknowledged")
    assert len(trail) == 1
    assert pipeline.broker.fail_publishes == 0  # the failures did happen


def test_an_alert_starting_at_level_three_tells_every_level_up_to_it_once_at_once(loop) -> None:
    pipeline = Pipeline(FakeClock(T0), group_window=timedelta(seconds=30))
    alert = raised().model_copy(update={"rule": "custody-accommodation-refused", "start_level": 3})
    raise_alert(loop, pipeline, alert)  # no group window: it cannot wait
    told = steps(pipeline, alert.alert_id)
    assert sorted(who for _, _, who, _ in told) == [
        "duty-desk",
        "senior-managers",
        "strategic-lead",
    ]
    assert {(level, at) for level, _, _, at in told} == {(3, timedelta(0))}
    escalated = pipeline.published(TOPICS.notifications, lambda e: e["type"] == "alert.escalated")
    assert [(e["data"]["level"], e["data"]["reason"]) for e in escalated] == [
        (2, "start_level"),
        (3, "start_level"),
    ]
    loop.run_until_complete(pipeline.advance(31 * MIN))  # the top level repeated after 30 min
    assert sorted(who for level, rnd, who, _ in steps(pipeline, alert.alert_id) if rnd == 1) == [
        "duty-desk",
        "strategic-lead",
    ]


def test_who_is_on_duty_when_the_alert_is_raised_is_told(loop, tmp_path) -> None:
    policy = yaml.safe_load(DEFAULT_POLICY.read_text())
    policy["receivers"]["night-desk"] = {"channel": "email", "to": ["night@example.org"]}
    policy["rota"] = {
        "default": {
            "duty-manager": {
                "shifts": [{"start": "20:00", "end": "08:00", "receivers": ["night-desk"]}]
            }
        }
    }
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    pipeline = Pipeline(FakeClock(T0), policy=path)  # 2 a.m.: the night shift
    alert = raised(Severity.HIGH)
    raise_alert(loop, pipeline, alert)
    assert [who for _, _, who, _ in steps(pipeline, alert.alert_id)] == ["night-desk"]
