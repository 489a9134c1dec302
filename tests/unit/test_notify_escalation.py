"""The escalation ladder, every path, with a fake clock: pure functions, no broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from schemas.alerts import AlertRaised, AlertResolved, EventRef, Severity, SubjectKind
from schemas.notifications import (
    AlertAcknowledged,
    AlertClosed,
    Channel,
    EscalationReason,
    FailureReason,
    NotificationFailed,
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
    on_closed,
    on_outcome,
    on_resolved,
    open_record,
)
from services.notify.ledger import AlertRecord, AlertStatus, PendingDelivery
from services.notify.policy import Chain, ChainLevel, Recipient

T0 = datetime(2026, 11, 20, 21, 0, tzinfo=UTC)
LIMITS = Limits(max_retry=timedelta(minutes=5), orphan_grace=timedelta(seconds=15))
DESK = Recipient(name="duty-desk", channel=Channel.WEBHOOK, url="http://x/h", secret="s")
SENIOR = Recipient(name="senior", channel=Channel.EMAIL, to=("senior@example.org",))
LEAD = Recipient(name="lead", channel=Channel.EMAIL, to=("lead@example.org",))

# The critical ladder of docs/design.md: duty desk at once, senior at 15 min, lead at 60 min,
# repeat every 30 min.
CRITICAL = Chain(
    levels=(
        ChainLevel(level=1, route="duty", after=timedelta(0), recipients=(DESK,)),
        ChainLevel(level=2, route="senior", after=timedelta(minutes=15), recipients=(SENIOR,)),
        ChainLevel(level=3, route="lead", after=timedelta(minutes=60), recipients=(DESK, LEAD)),
    ),
    repeat=timedelta(minutes=30),
)


def raised(alert_id: str = "al-1") -> AlertRaised:
    return AlertRaised(
        alert_id=alert_id,
        rule="child-in-custody",
        severity=Severity.CRITICAL,
        subject_kind=SubjectKind.CHILD,
        child_id="C-1",
        area="north",
        trigger=EventRef(source="urn:x", id="e-1"),
        due_at=T0 - timedelta(hours=1),
        raised_at=T0,
        summary="A charged child has been detained past the 4 h limit.",
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def start(clock: FakeClock, chain: Chain = CRITICAL) -> tuple[AlertRecord, Decision]:
    record = open_record(raised(), chain, clock.now())
    return record, advance(record, clock.now(), LIMITS)


def outcome(
    pending: PendingDelivery, at: datetime, *, failed: FailureReason | None = None
) -> NotificationSent | NotificationFailed:
    fields = {
        "notification_id": pending.notification_id,
        "alert_id": "al-1",
        "purpose": pending.purpose,
        "channel": pending.recipient.channel,
        "recipient": pending.recipient.name,
        "level": pending.level,
        "round": pending.round,
        "attempts": 1,
        "first_attempt_at": at,
        "finished_at": at,
    }
    if failed is not None:
        return NotificationFailed(**fields, reason=failed, detail="http_503")
    return NotificationSent(**fields)


def deliver_all(record: AlertRecord, decision: Decision, at: datetime) -> None:
    for pending in decision.dispatches:
        assert on_outcome(record, outcome(pending, at), at)


def who(decision: Decision) -> list[tuple[str, int, int]]:
    return [(p.recipient.name, p.level, p.round) for p in decision.dispatches]


def kinds(record: AlertRecord) -> list[str]:
    return [entry.kind for entry in record.timeline]


def test_level_one_goes_out_at_raise_and_level_two_is_due_after_its_wait(clock: FakeClock) -> None:
    record, decision = start(clock)
    assert who(decision) == [("duty-desk", 1, 0)]
    assert decision.steps[0].reason is None  # level 1 is not an escalation
    assert decision.escalations == []
    assert decision.dispatches[0].notification_id == "al-1:1:0:duty-desk"
    # Retries of level 1 stop when level 2 is due.
    assert decision.dispatches[0].deadline == T0 + timedelta(minutes=5)
    deliver_all(record, decision, T0)
    assert next_due(record, LIMITS) == T0 + timedelta(minutes=15)
    assert kinds(record) == ["raised", "notification"]


def test_unacknowledged_alert_climbs_every_level_and_repeats(clock: FakeClock) -> None:
    record, decision = start(clock)
    deliver_all(record, decision, T0)

    clock.advance(timedelta(minutes=14, seconds=59))
    assert advance(record, clock.now(), LIMITS).steps == []

    clock.set(T0 + timedelta(minutes=15, seconds=1))
    decision = advance(record, clock.now(), LIMITS)
    assert who(decision) == [("senior", 2, 0)]
    (step,) = decision.escalations
    assert (step.level, step.previous_level, step.reason) == (2, 1, EscalationReason.SCHEDULE)
    assert step.scheduled_at == T0 + timedelta(minutes=15)
    assert step.clock_driven
    deliver_all(record, decision, clock.now())
    # Next: the 30-minute repeat of level 2 comes before level 3.
    assert next_due(record, LIMITS) == T0 + timedelta(minutes=45, seconds=1)

    clock.set(T0 + timedelta(minutes=45, seconds=1))
    decision = advance(record, clock.now(), LIMITS)
    assert who(decision) == [("senior", 2, 1)]
    assert decision.escalations == []
    assert decision.steps[0].clock_driven
    deliver_all(record, decision, clock.now())

    clock.set(T0 + timedelta(minutes=60))
    decision = advance(record, clock.now(), LIMITS)
    assert who(decision) == [("duty-desk", 3, 0), ("lead", 3, 0)]
    deliver_all(record, decision, clock.now())
    # At the top, it keeps repeating.
    assert next_due(record, LIMITS) == T0 + timedelta(minutes=90)
    clock.set(T0 + timedelta(minutes=90))
    assert who(advance(record, clock.now(), LIMITS)) == [("duty-desk", 3, 1), ("lead", 3, 1)]
    assert kinds(record).count("escalated") == 2


def test_acknowledged_before_level_two_stops_the_ladder(clock: FakeClock) -> None:
    record, decision = start(clock)
    deliver_all(record, decision, T0)
    clock.advance(timedelta(minutes=10))
    ack = AlertAcknowledged(
        alert_id="al-1", by="DM 4411", principal="dev", note="on it", acknowledged_at=clock.now()
    )
    assert on_acknowledged(record, ack)
    assert record.status is AlertStatus.ACKNOWLEDGED
    assert next_due(record, LIMITS) is None
    clock.advance(timedelta(hours=5))
    assert advance(record, clock.now(), LIMITS).dispatches == []
    assert not on_acknowledged(record, ack)  # a second acknowledgement changes nothing
    assert kinds(record) == ["raised", "notification", "acknowledged"]
    assert record.timeline[-1].by == "DM 4411"
    assert record.timeline[-1].note == "on it"


def test_acknowledged_between_repeats_stops_the_next_repeat(clock: FakeClock) -> None:
    record, decision = start(clock)
    deliver_all(record, decision, T0)
    clock.set(T0 + timedelta(minutes=15))
    deliver_all(record, advance(record, clock.now(), LIMITS), clock.now())
    clock.set(T0 + timedelta(minutes=45))
    deliver_all(record, advance(record, clock.now(), LIMITS), clock.now())  # repeat 1
    clock.set(T0 + timedelta(minutes=50))
    ack = AlertAcknowledged(alert_id="al-1", by="x", principal="p", acknowledged_at=clock.now())
    assert on_acknowledged(record, ack)
    clock.set(T0 + timedelta(minutes=75))
    assert advance(record, clock.now(), LIMITS).steps == []
    assert (record.level, record.round) == (2, 1)


def test_resolved_before_the_first_delivery_is_sent_once_as_a_resolved_breach(
    clock: FakeClock,
) -> None:
    # Raised and resolved together (the fulfilment was already known, late): level 1 is
    # told once that the breach happened and is resolved; no page, no all-clear after it.
    record = open_record(raised(), CRITICAL, clock.now(), hold=timedelta(seconds=30))
    assert on_resolved(record, resolution(clock.now()), clock.now())
    decision = advance(record, clock.now(), LIMITS)
    assert [(p.purpose, p.recipient.name, p.level) for p in decision.dispatches] == [
        (NotificationPurpose.RESOLUTION, "duty-desk", 1)
    ]
    deliver_all(record, decision, clock.now())
    assert advance(record, clock.now(), LIMITS).dispatches == []
    assert next_due(record, LIMITS) is None
    assert record.level == 0
    assert kinds(record) == ["raised", "resolved", "notification"]


def test_closed_by_hand_before_the_first_delivery_tells_nobody(clock: FakeClock) -> None:
    # Whoever closed it in the console knows; there was no breach notice to correct.
    record = open_record(raised(), CRITICAL, clock.now(), hold=timedelta(seconds=30))
    closed = AlertClosed(alert_id="al-1", by="x", principal="p", closed_at=clock.now())
    assert on_closed(record, closed)
    assert advance(record, clock.now(), LIMITS).dispatches == []


def test_resolved_while_level_one_is_in_flight_tells_the_recipient_once_reached(
    clock: FakeClock,
) -> None:
    record, decision = start(clock)
    (level_one,) = decision.dispatches
    assert on_resolved(record, resolution(clock.now()), clock.now())
    assert advance(record, clock.now(), LIMITS).dispatches == []  # not reached yet
    clock.advance(timedelta(seconds=2))
    assert on_outcome(record, outcome(level_one, clock.now()), clock.now())
    notice = advance(record, clock.now(), LIMITS)
    assert who(notice) == [("duty-desk", 1, 0)]
    assert notice.dispatches[0].purpose is NotificationPurpose.RESOLUTION
    assert notice.dispatches[0].notification_id == "al-1:resolved:duty-desk"
    assert advance(record, clock.now(), LIMITS).dispatches == []  # once


def test_resolution_tells_everyone_reached_once_at_their_highest_level(clock: FakeClock) -> None:
    record, decision = start(clock)
    deliver_all(record, decision, T0)
    clock.set(T0 + timedelta(minutes=15))
    level_two = advance(record, clock.now(), LIMITS)
    (senior,) = level_two.dispatches
    on_outcome(record, outcome(senior, clock.now(), failed=FailureReason.REJECTED), clock.now())
    clock.set(T0 + timedelta(minutes=15, seconds=1))
    level_three = advance(record, clock.now(), LIMITS)  # brought forward by the failure
    deliver_all(record, level_three, clock.now())
    closed = AlertClosed(alert_id="al-1", by="DM", principal="p", closed_at=clock.now())
    assert on_closed(record, closed)
    notices = advance(record, clock.now(), LIMITS)
    # The senior manager was never reached, so is not told it is over.
    assert sorted(who(notices)) == [("duty-desk", 3, 0), ("lead", 3, 0)]
    assert not on_closed(record, closed)
    assert not on_resolved(record, resolution(clock.now()), clock.now())
    assert record.resolution is not None  # kept for the record: how late it was


def test_a_channel_that_fails_escalates_at_once(clock: FakeClock) -> None:
    record, decision = start(clock)
    (desk,) = decision.dispatches
    clock.advance(timedelta(seconds=40))  # retries ran out
    failed = outcome(desk, clock.now(), failed=FailureReason.SERVER_ERROR)
    assert on_outcome(record, failed, clock.now())
    assert next_due(record, LIMITS) == clock.now()
    decision = advance(record, clock.now(), LIMITS)
    assert who(decision) == [("senior", 2, 0)]
    (step,) = decision.escalations
    assert step.reason is EscalationReason.DELIVERY_FAILED
    assert not step.clock_driven  # not a timer firing late: no timing error to observe
    entry = record.timeline[1]
    assert entry.kind == "notification"
    assert entry.delivery is not None
    assert (entry.delivery.outcome, entry.delivery.reason) == ("failed", FailureReason.SERVER_ERROR)
    # Level 3 keeps its own time; the failure brought forward only the next level.
    deliver_all(record, decision, clock.now())
    assert next_due(record, LIMITS) == clock.now() + timedelta(minutes=30)
    clock.set(T0 + timedelta(minutes=60))
    assert [p.level for p in advance(record, clock.now(), LIMITS).dispatches] == [3, 3]
    # A repeated outcome is dropped.
    assert not on_outcome(record, failed, clock.now())


def test_failure_after_acknowledgement_or_at_the_top_does_not_escalate(clock: FakeClock) -> None:
    record, decision = start(clock)
    (desk,) = decision.dispatches
    ack = AlertAcknowledged(alert_id="al-1", by="x", principal="p", acknowledged_at=clock.now())
    on_acknowledged(record, ack)
    on_outcome(record, outcome(desk, clock.now(), failed=FailureReason.TIMEOUT), clock.now())
    assert advance(record, clock.now(), LIMITS).steps == []

    top = Chain(levels=CRITICAL.levels[:1], repeat=timedelta(minutes=30))
    record, decision = start(clock, top)
    on_outcome(
        record,
        outcome(decision.dispatches[0], clock.now(), failed=FailureReason.TIMEOUT),
        clock.now(),
    )
    assert advance(record, clock.now(), LIMITS).steps == []
    assert next_due(record, LIMITS) == T0 + timedelta(minutes=30)


def test_steps_missed_during_an_outage_are_taken_in_order_once(clock: FakeClock) -> None:
    record, decision = start(clock)
    deliver_all(record, decision, T0)
    clock.set(T0 + timedelta(minutes=100))  # level 2, its repeat, level 3 and more missed
    decision = advance(record, clock.now(), LIMITS)
    assert who(decision) == [("senior", 2, 0), ("duty-desk", 3, 0), ("lead", 3, 0)]
    assert [s.scheduled_at - T0 for s in decision.steps] == [
        timedelta(minutes=15),
        timedelta(minutes=60),
    ]
    # Every delivery gets the whole budget up to the next step, level 2's included.
    assert {p.deadline for p in decision.dispatches} == {clock.now() + LIMITS.max_retry}
    assert advance(record, clock.now(), LIMITS).steps == []
    deliver_all(record, decision, clock.now())
    assert next_due(record, LIMITS) == clock.now() + timedelta(minutes=30)


def test_notification_lost_with_its_worker_is_handed_over_again_under_its_id(
    clock: FakeClock,
) -> None:
    record, decision = start(clock)
    (desk,) = decision.dispatches
    assert next_due(record, LIMITS) == desk.deadline + LIMITS.orphan_grace
    clock.set(desk.deadline + LIMITS.orphan_grace - timedelta(seconds=1))
    assert advance(record, clock.now(), LIMITS).dispatches == []
    clock.set(desk.deadline + LIMITS.orphan_grace)
    # Still being delivered by this worker (a backlog, not a crash): not an orphan.
    assert advance(record, clock.now(), LIMITS, running={desk.notification_id}).dispatches == []
    again = advance(record, clock.now(), LIMITS)
    assert [p.notification_id for p in again.dispatches] == [desk.notification_id]
    assert again.dispatches[0].dispatches == 2
    assert on_outcome(record, outcome(desk, clock.now()), clock.now())
    assert not on_outcome(record, outcome(desk, clock.now()), clock.now())  # the late twin


def test_retry_budget_ends_at_the_next_step_or_the_cap(clock: FakeClock) -> None:
    short = Chain(
        levels=(
            CRITICAL.levels[0],
            ChainLevel(level=2, route="s", after=timedelta(seconds=20), recipients=(SENIOR,)),
        ),
        repeat=None,
    )
    record, decision = start(clock, short)
    assert decision.dispatches[0].deadline == T0 + timedelta(seconds=20)
    deliver_all(record, decision, T0)
    clock.set(T0 + timedelta(seconds=20))
    top = advance(record, clock.now(), LIMITS)
    assert top.dispatches[0].deadline == clock.now() + LIMITS.max_retry  # no next step
    deliver_all(record, top, clock.now())
    assert next_due(record, LIMITS) is None


def resolution(at: datetime) -> AlertResolved:
    return AlertResolved(
        alert_id="al-1",
        rule="child-in-custody",
        resolved_at=at,
        fulfilled_at=at,
        late_by_seconds=3600,
        fulfilment=EventRef(source="urn:x", id="rel-1"),
    )
