"""The ladder's later rules, pure: reopening after `ack_timeout`, grouping by trigger event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from schemas.alerts import AlertRaised, EventRef, Severity, SubjectKind
from schemas.notifications import (
    AlertAcknowledged,
    Channel,
    NotificationPurpose,
    NotificationSent,
)
from services.common.clock import FakeClock
from services.notify.escalation import (
    Decision,
    Limits,
    advance,
    next_due,
    on_acknowledged,
    on_outcome,
    open_record,
    siblings_of,
)
from services.notify.ledger import AlertRecord, AlertStatus, PendingDelivery
from services.notify.policy import (
    DEFAULT_ACK_TIMEOUTS,
    Chain,
    ChainLevel,
    NotifyPolicy,
    Recipient,
    chain_for,
)

T0 = datetime(2026, 11, 20, 21, 0, tzinfo=UTC)
LIMITS = Limits(max_retry=timedelta(minutes=5), orphan_grace=timedelta(seconds=15))
HOLD = timedelta(seconds=30)
DESK = Recipient(name="duty-desk", channel=Channel.WEBHOOK, url="http://x/h", secret="s")
SENIOR = Recipient(name="senior", channel=Channel.EMAIL, to=("senior@example.org",))
HIGH = Chain(
    levels=(
        ChainLevel(level=1, route="duty", after=timedelta(0), recipients=(DESK,)),
        ChainLevel(level=2, route="senior", after=timedelta(hours=1), recipients=(SENIOR,)),
    ),
    repeat=timedelta(hours=2),
    ack_timeout=timedelta(hours=4),
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def raised(alert_id: str, *, trigger: str = "inc-1", rule: str = "welfare-check") -> AlertRaised:
    return AlertRaised(
        alert_id=alert_id,
        rule=rule,
        severity=Severity.HIGH,
        subject_kind=SubjectKind.CHILD,
        child_id=f"C-{alert_id}",
        area="north",
        trigger=EventRef(source="urn:x", id=trigger),
        due_at=T0 - timedelta(hours=1),
        raised_at=T0,
        summary="No welfare check.",
    )


def sent(pending: PendingDelivery, at: datetime, **extra: object) -> NotificationSent:
    return NotificationSent.model_validate(
        {
            "notification_id": pending.notification_id,
            "alert_id": pending.notification_id.split(":")[0],
            "purpose": pending.purpose,
            "channel": pending.recipient.channel,
            "recipient": pending.recipient.name,
            "level": pending.level,
            "round": pending.round,
            "attempts": 1,
            "first_attempt_at": at,
            "finished_at": at,
            **extra,
        }
    )


def deliver_all(record: AlertRecord, decision: Decision, at: datetime) -> None:
    for pending in decision.dispatches:
        assert on_outcome(record, sent(pending, at), at)


def who(decision: Decision) -> list[tuple[str, int, int]]:
    return [(p.recipient.name, p.level, p.round) for p in decision.dispatches]


# -- an acknowledgement is not the work done ------------------------------------------


def acknowledged_at_ten_minutes(clock: FakeClock) -> AlertRecord:
    record = open_record(raised("al-1"), HIGH, clock.now())
    deliver_all(record, advance(record, clock.now(), LIMITS), clock.now())
    clock.advance(timedelta(minutes=10))
    ack = AlertAcknowledged(
        alert_id="al-1", by="DM 4411", principal="p", acknowledged_at=clock.now()
    )
    assert on_acknowledged(record, ack)
    return record


def test_an_acknowledged_alert_is_due_again_after_its_ack_timeout(clock: FakeClock) -> None:
    record = acknowledged_at_ten_minutes(clock)
    # Level 2 (at 1 h) is not due while acknowledged; the reopening is.
    assert next_due(record, LIMITS) == T0 + timedelta(minutes=10, hours=4)
    clock.advance(timedelta(hours=3, minutes=59))
    assert advance(record, clock.now(), LIMITS).dispatches == []
    assert record.status is AlertStatus.ACKNOWLEDGED


def test_reopening_tells_the_current_level_again_and_the_next_level_waits_its_gap(
    clock: FakeClock,
) -> None:
    record = acknowledged_at_ten_minutes(clock)
    clock.set(T0 + timedelta(minutes=10, hours=4))
    decision = advance(record, clock.now(), LIMITS)
    assert record.status is AlertStatus.OPEN
    assert record.reopened_at == clock.now()
    assert decision.reopened is not None
    assert decision.reopened.acknowledged_at == T0 + timedelta(minutes=10)
    # Level 1 again (a new round, so a new notification id), not level 2 at once.
    assert who(decision) == [("duty-desk", 1, 1)]
    assert decision.dispatches[0].notification_id == "al-1:1:1:duty-desk"
    assert [e.kind for e in record.timeline][-1] == "reopened"
    deliver_all(record, decision, clock.now())
    # Level 2 comes the policy's gap (1 h) after the reopening, not at once.
    assert next_due(record, LIMITS) == clock.now() + timedelta(hours=1)
    clock.advance(timedelta(hours=1))
    assert who(advance(record, clock.now(), LIMITS)) == [("senior", 2, 0)]


def test_a_reopened_alert_can_be_acknowledged_again_and_reopens_once_per_ack(
    clock: FakeClock,
) -> None:
    record = acknowledged_at_ten_minutes(clock)
    clock.set(T0 + timedelta(minutes=10, hours=4))
    first = advance(record, clock.now(), LIMITS)
    assert first.reopened is not None
    deliver_all(record, first, clock.now())
    assert advance(record, clock.now(), LIMITS).reopened is None  # once, however often checked
    clock.advance(timedelta(minutes=5))
    again = AlertAcknowledged(
        alert_id="al-1", by="DM 7", principal="p", acknowledged_at=clock.now()
    )
    assert on_acknowledged(record, again)
    assert next_due(record, LIMITS) == clock.now() + timedelta(hours=4)


def test_alerts_raised_before_ack_timeouts_existed_are_never_reopened(clock: FakeClock) -> None:
    record = open_record(raised("al-1"), HIGH.model_copy(update={"ack_timeout": None}), T0)
    deliver_all(record, advance(record, T0, LIMITS), T0)
    ack = AlertAcknowledged(alert_id="al-1", by="x", principal="p", acknowledged_at=T0)
    assert on_acknowledged(record, ack)
    assert next_due(record, LIMITS) is None
    clock.advance(timedelta(days=30))
    assert advance(record, clock.now(), LIMITS).reopened is None


def test_policy_defaults_and_overrides_of_ack_timeout() -> None:
    policy = NotifyPolicy.model_validate(
        {
            "escalation": {
                "critical": {"levels": [{"route": "duty"}]},
                "high": {"levels": [{"route": "duty"}], "ack_timeout": "2h"},
                "medium": {"levels": [{"route": "duty"}]},
            },
            "routing": {"default": {"duty": ["desk"]}},
            "receivers": {"desk": {"channel": "email", "to": ["d@example.org"]}},
        }
    )
    assert policy.ack_timeout(Severity.CRITICAL) == DEFAULT_ACK_TIMEOUTS[Severity.CRITICAL]
    assert {
        Severity.CRITICAL: timedelta(hours=1),
        Severity.HIGH: timedelta(hours=4),
        Severity.MEDIUM: timedelta(hours=24),
    } == DEFAULT_ACK_TIMEOUTS
    assert policy.ack_timeout(Severity.HIGH) == timedelta(hours=2)
    chain = chain_for(policy, Severity.HIGH, None, default_url=None)
    assert chain.ack_timeout == timedelta(hours=2)
    assert policy.group_window == timedelta(seconds=30)


# -- grouping: one message per receiver for the alerts of one trigger event ------------


class Table:
    """The records of one worker, as the service's sibling lookup sees them."""

    def __init__(self) -> None:
        self.records: dict[str, AlertRecord] = {}

    def open(self, alert: AlertRaised, now: datetime) -> AlertRecord:
        record = open_record(alert, HIGH, now, hold=HOLD)
        self.records[alert.alert_id] = record
        return record

    def siblings(self, record: AlertRecord) -> list[AlertRecord]:
        return siblings_of(record, self.records.values(), HOLD)


def test_level_one_waits_for_the_group_window(clock: FakeClock) -> None:
    table = Table()
    record = table.open(raised("al-1"), clock.now())
    assert advance(record, clock.now(), LIMITS, siblings=table.siblings).dispatches == []
    assert next_due(record, LIMITS) == T0 + HOLD
    clock.advance(HOLD)
    assert who(advance(record, clock.now(), LIMITS, siblings=table.siblings)) == [
        ("duty-desk", 1, 0)
    ]


def test_the_first_alert_whose_hold_ends_sends_one_message_listing_its_siblings(
    clock: FakeClock,
) -> None:
    table = Table()
    a = table.open(raised("al-a"), clock.now())
    b = table.open(raised("al-b", rule="school-notification"), clock.now())
    other = table.open(raised("al-c", trigger="inc-2"), clock.now())
    clock.advance(HOLD)
    lead = advance(b, clock.now(), LIMITS, siblings=table.siblings)
    assert who(lead) == [("duty-desk", 1, 0)]
    message = lead.dispatches[0]
    assert [m.alert_id for m in message.members] == ["al-b", "al-a"]  # its own first
    # The sibling is listed: it records its notification as inside that one, sends nothing.
    follow = advance(a, clock.now(), LIMITS, siblings=table.siblings)
    assert follow.dispatches == []
    mine = a.deliveries["al-a:1:0:duty-desk"]
    assert mine.grouped_into == message.notification_id
    assert mine.outcome is None
    assert a.level == 1
    # Another event's alert is not listed and goes out on its own.
    alone = advance(other, clock.now(), LIMITS, siblings=table.siblings)
    assert who(alone) == [("duty-desk", 1, 0)]
    assert alone.dispatches[0].members == []
    # The leader's outcome for the listed alert completes its record.
    listed = sent(mine, clock.now(), grouped_into=message.notification_id)
    assert on_outcome(a, listed, clock.now())
    assert a.timeline[-1].delivery is not None
    assert a.timeline[-1].delivery.grouped_into == message.notification_id


def test_an_outcome_that_arrives_before_the_siblings_own_step_counts_as_told(
    clock: FakeClock,
) -> None:
    table = Table()
    a = table.open(raised("al-a"), clock.now())
    b = table.open(raised("al-b"), clock.now())
    clock.advance(HOLD)
    message = advance(a, clock.now(), LIMITS, siblings=table.siblings).dispatches[0]
    early = PendingDelivery(
        notification_id="al-b:1:0:duty-desk",
        purpose=NotificationPurpose.ALERT,
        recipient=DESK,
        level=1,
        round=0,
        dispatched_at=clock.now(),
        deadline=clock.now(),
    )
    assert on_outcome(b, sent(early, clock.now(), grouped_into=message.notification_id), T0)
    # Its own step then finds it handed over: never twice.
    assert advance(b, clock.now(), LIMITS, siblings=table.siblings).dispatches == []
    assert b.level == 1


def test_a_listed_alert_whose_outcome_never_comes_goes_out_on_its_own(clock: FakeClock) -> None:
    # The leader's worker died and its partition moved where the sibling is not: late,
    # never lost.
    table = Table()
    a = table.open(raised("al-a"), clock.now())
    b = table.open(raised("al-b"), clock.now())
    clock.advance(HOLD)
    advance(a, clock.now(), LIMITS, siblings=table.siblings)
    assert advance(b, clock.now(), LIMITS, siblings=table.siblings).dispatches == []
    deadline = b.deliveries["al-b:1:0:duty-desk"].deadline
    clock.set(deadline + LIMITS.orphan_grace)
    resent = advance(b, clock.now(), LIMITS, siblings=table.siblings)
    assert [p.notification_id for p in resent.dispatches] == ["al-b:1:0:duty-desk"]
    assert resent.dispatches[0].grouped_into is None
    assert resent.dispatches[0].members == []


def test_siblings_are_the_same_trigger_within_the_window() -> None:
    table = Table()
    a = table.open(raised("al-a"), T0)
    later = raised("al-late").model_copy(update={"raised_at": T0 + timedelta(minutes=5)})
    table.open(later, T0)
    table.open(raised("al-x", trigger="inc-9"), T0)
    assert [s.alert.alert_id for s in siblings_of(a, table.records.values(), HOLD)] == ["al-a"]


def test_an_alert_acknowledged_before_level_one_went_out_pages_level_one_when_reopened(
    clock: FakeClock,
) -> None:
    # Seen in the console during the group window and acknowledged there: nobody was
    # paged. If the work is still not done after the timeout, level 1 is paged then.
    record = open_record(raised("al-1"), HIGH, clock.now(), hold=HOLD)
    ack = AlertAcknowledged(alert_id="al-1", by="x", principal="p", acknowledged_at=clock.now())
    assert on_acknowledged(record, ack)
    clock.advance(HOLD)
    assert advance(record, clock.now(), LIMITS).dispatches == []
    clock.set(T0 + timedelta(hours=4))
    decision = advance(record, clock.now(), LIMITS)
    assert decision.reopened is not None
    assert who(decision) == [("duty-desk", 1, 0)]
    assert record.status is AlertStatus.OPEN
