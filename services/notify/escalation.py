"""The escalation ladder as pure functions of a record, an input and `now`.

Each function changes the record in place and says what the caller must do (publish an
escalation, hand notifications to channels) and when the alert next needs looking at.
Nothing here does I/O or reads a clock, so every path is tested with plain datetimes.

Timing: level N is due at `raised_at + after(N)` (waits count from the raise, as the
policy table reads), or at once when a delivery at the current level finally failed.
While no level is due, the current level is repeated every `repeat` after its last
step. Several steps due at once (after an outage) are taken in order, each once; missed
repeats are not made up. Acknowledging stops the ladder; resolving (by a fulfilment or
by hand) closes the alert and tells every recipient that was reached.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from schemas.alerts import AlertRaised, AlertResolved
from schemas.notifications import (
    AlertAcknowledged,
    AlertClosed,
    EscalationReason,
    NotificationFailed,
    NotificationPurpose,
    NotificationSent,
)
from services.notify.ledger import (
    AlertRecord,
    AlertStatus,
    Delivery,
    PendingDelivery,
    add_entry,
)
from services.notify.policy import Chain, Recipient


@dataclass(frozen=True)
class Limits:
    """Bounds on deliveries that do not come from the policy file."""

    max_retry: timedelta = timedelta(minutes=5)
    """Longest a notification is retried, even when the next step is further away."""
    min_retry: timedelta = timedelta(seconds=1)
    """Shortest budget, so every notification gets at least one real attempt."""
    orphan_grace: timedelta = timedelta(seconds=15)
    """How long after its deadline an outcome may still arrive before it is re-sent."""


@dataclass(frozen=True)
class Step:
    """A rung taken: level `level` told (again, when `round` > 0)."""

    level: int
    round: int
    previous_level: int
    scheduled_at: datetime
    taken_at: datetime
    reason: EscalationReason | None
    """`None` for level 1 at the raise and for repeats; set when the level rose."""
    recipients: tuple[str, ...]

    @property
    def clock_driven(self) -> bool:
        """Tell whether the step was due by the clock (not the raise, not a failure)."""
        if self.reason is None:
            return self.round > 0  # a repeat; level 1 goes out when the raise arrives
        return self.reason is EscalationReason.SCHEDULE


@dataclass
class Decision:
    """What `advance` asks the caller to do."""

    steps: list[Step] = field(default_factory=list)
    dispatches: list[PendingDelivery] = field(default_factory=list)

    @property
    def escalations(self) -> list[Step]:
        """Return the steps that raised the level (published as `alert.escalated`)."""
        return [step for step in self.steps if step.reason is not None]


def open_record(alert: AlertRaised, chain: Chain, now: datetime) -> AlertRecord:
    """Start the record of a newly raised alert; `advance` then sends level 1."""
    record = AlertRecord(alert=alert, chain=chain)
    add_entry(record, now, "raised")
    return record


def notification_id(alert_id: str, purpose: NotificationPurpose, *parts: object) -> str:
    """Return the deterministic id of one notification (the webhook `Idempotency-Key`)."""
    if purpose is NotificationPurpose.RESOLUTION:
        return ":".join([alert_id, "resolved", *map(str, parts)])
    return ":".join([alert_id, *map(str, parts)])


def _level_due(record: AlertRecord) -> tuple[datetime, EscalationReason | None] | None:
    nxt = record.chain.at(record.level + 1)
    if nxt is None:
        return None
    scheduled = record.alert.raised_at + nxt.after
    if record.level == 0:
        return scheduled, None
    if record.escalate_at is not None and record.escalate_at < scheduled:
        return record.escalate_at, EscalationReason.DELIVERY_FAILED
    return scheduled, EscalationReason.SCHEDULE


def _repeat_due(record: AlertRecord) -> datetime | None:
    if record.level == 0 or record.chain.repeat is None or record.last_step_at is None:
        return None
    return record.last_step_at + record.chain.repeat


def _next_step_at(record: AlertRecord) -> datetime | None:
    times = [t for t in (_repeat_due(record), _due_time(_level_due(record))) if t is not None]
    return min(times, default=None)


def _due_time(due: tuple[datetime, EscalationReason | None] | None) -> datetime | None:
    return None if due is None else due[0]


def _deadline(record: AlertRecord, now: datetime, limits: Limits) -> datetime:
    # Retries stop when the next step is due: by then someone else is being told.
    cap = now + limits.max_retry
    nxt = _next_step_at(record) if record.status is AlertStatus.OPEN else None
    deadline = cap if nxt is None else min(cap, nxt)
    return max(deadline, now + limits.min_retry)


def _take_step(record: AlertRecord, now: datetime, decision: Decision) -> bool:
    level_due = _level_due(record)
    if level_due is not None and level_due[0] <= now:
        scheduled, reason = level_due
        previous = record.level
        record.level += 1
        record.round = 0
        record.escalate_at = None
    else:
        repeat_due = _repeat_due(record)
        if repeat_due is None or repeat_due > now:
            return False
        scheduled, reason, previous = repeat_due, None, record.level
        record.round += 1
    record.last_step_at = now
    rung = record.chain.at(record.level)
    assert rung is not None  # noqa: S101 - level only rises to a level of the chain
    step = Step(
        level=record.level,
        round=record.round,
        previous_level=previous,
        scheduled_at=scheduled,
        taken_at=now,
        reason=reason,
        recipients=tuple(r.name for r in rung.recipients),
    )
    decision.steps.append(step)
    if reason is not None:
        add_entry(
            record, now, "escalated", level=record.level, reason=reason, scheduled_at=scheduled
        )
    deadline = now  # set by `advance` once every due step is taken
    for recipient in rung.recipients:
        _dispatch(
            record,
            decision,
            notification_id(
                record.alert.alert_id,
                NotificationPurpose.ALERT,
                record.level,
                record.round,
                recipient.name,
            ),
            purpose=NotificationPurpose.ALERT,
            recipient=recipient,
            level=record.level,
            round_=record.round,
            now=now,
            deadline=deadline,
        )
    return True


def _dispatch(  # noqa: PLR0913 - one argument per field of the delivery
    record: AlertRecord,
    decision: Decision,
    ident: str,
    *,
    purpose: NotificationPurpose,
    recipient: Recipient,
    level: int,
    round_: int,
    now: datetime,
    deadline: datetime,
) -> None:
    if ident in record.deliveries:  # already handed over: never twice
        return
    pending = PendingDelivery(
        notification_id=ident,
        purpose=purpose,
        recipient=recipient,
        level=level,
        round=round_,
        dispatched_at=now,
        deadline=deadline,
    )
    record.deliveries[ident] = pending
    decision.dispatches.append(pending)


def _reached(record: AlertRecord) -> dict[str, PendingDelivery]:
    """Recipients an alert notification reached, each with its highest-level delivery."""
    reached: dict[str, PendingDelivery] = {}
    for pending in record.deliveries.values():
        if pending.purpose is NotificationPurpose.ALERT and pending.outcome == "sent":
            best = reached.get(pending.recipient.name)
            if best is None or pending.level > best.level:
                reached[pending.recipient.name] = pending
    return reached


def prune_deliveries(record: AlertRecord) -> None:
    """Forget finished deliveries that nothing will look at again (in place).

    Kept: every delivery still waiting for its outcome, resolution notices, those of the
    current step, and per recipient the highest-level one that reached it (a resolution
    tells it). A repeat's notification id carries its round, so a forgotten id is never
    dispatched again; an outcome arriving late for one is dropped as a repeat.
    """
    keep = {p.notification_id for p in _reached(record).values()}
    record.deliveries = {
        ident: pending
        for ident, pending in record.deliveries.items()
        if pending.outcome is None
        or ident in keep
        or pending.purpose is not NotificationPurpose.ALERT
        or (pending.level, pending.round) == (record.level, record.round)
    }


def advance(
    record: AlertRecord, now: datetime, limits: Limits, running: Collection[str] = ()
) -> Decision:
    """Take every step due by `now`, tell reached recipients of a resolution, re-send orphans.

    `running` names notifications this worker is still delivering (or whose outcome it
    published and has not yet read back): those are not orphans, however late.
    """
    decision = Decision()
    if record.status is AlertStatus.OPEN:
        while _take_step(record, now, decision):
            pass
        # Budgets end at the step after all those taken now: when several fell due at
        # once (after an outage), the lower levels still get a real chance.
        deadline = _deadline(record, now, limits)
        for pending in decision.dispatches:
            pending.deadline = deadline
    elif record.status is AlertStatus.RESOLVED:
        for name, told in _reached(record).items():
            _dispatch(
                record,
                decision,
                notification_id(record.alert.alert_id, NotificationPurpose.RESOLUTION, name),
                purpose=NotificationPurpose.RESOLUTION,
                recipient=told.recipient,
                level=told.level,
                round_=0,
                now=now,
                deadline=now + limits.max_retry,
            )
    fresh = {pending.notification_id for pending in decision.dispatches}
    for pending in record.deliveries.values():
        if (
            pending.outcome is None
            and pending.notification_id not in fresh
            and pending.notification_id not in running
            and pending.deadline + limits.orphan_grace <= now
        ):
            # Its worker died (or its outcome was lost): hand it over again under the same
            # id, so a receiver that did get it can drop the repeat by Idempotency-Key.
            budget = pending.deadline - pending.dispatched_at
            pending.dispatches += 1
            pending.dispatched_at = now
            pending.deadline = now + max(limits.min_retry, budget)
            decision.dispatches.append(pending)
    return decision


def next_due(record: AlertRecord, limits: Limits) -> datetime | None:
    """Return when the record next needs `advance`, or None when nothing is pending."""
    times = []
    if record.status is AlertStatus.OPEN:
        nxt = _next_step_at(record)
        if nxt is not None:
            times.append(nxt)
    times.extend(
        pending.deadline + limits.orphan_grace
        for pending in record.deliveries.values()
        if pending.outcome is None
    )
    return min(times, default=None)


def on_outcome(
    record: AlertRecord, outcome: NotificationSent | NotificationFailed, now: datetime
) -> bool:
    """Record a delivery's outcome; False for one already known (or never dispatched).

    A failed alert notification at the current level brings the next level forward to
    `now`, unless the alert was acknowledged or closed meanwhile.
    """
    pending = record.deliveries.get(outcome.notification_id)
    if pending is None or pending.outcome is not None:
        return False
    failed = isinstance(outcome, NotificationFailed)
    pending.outcome = "failed" if failed else "sent"
    add_entry(
        record,
        outcome.finished_at,
        "notification",
        delivery=Delivery(
            notification_id=outcome.notification_id,
            purpose=outcome.purpose,
            channel=outcome.channel,
            recipient=outcome.recipient,
            level=outcome.level,
            round=outcome.round,
            attempts=outcome.attempts,
            outcome=pending.outcome,
            reason=outcome.reason if isinstance(outcome, NotificationFailed) else None,
            detail=outcome.detail if isinstance(outcome, NotificationFailed) else None,
        ),
    )
    if (
        failed
        and pending.purpose is NotificationPurpose.ALERT
        and record.status is AlertStatus.OPEN
        and pending.level == record.level
        and record.chain.at(record.level + 1) is not None
    ):
        record.escalate_at = now if record.escalate_at is None else min(record.escalate_at, now)
    return True


def on_acknowledged(record: AlertRecord, ack: AlertAcknowledged) -> bool:
    """Stop the ladder; False when the alert was not open (a repeat, or too late)."""
    if record.status is not AlertStatus.OPEN:
        return False
    record.status = AlertStatus.ACKNOWLEDGED
    record.acknowledgement = ack
    record.escalate_at = None
    add_entry(record, ack.acknowledged_at, "acknowledged", by=ack.by, note=ack.note)
    return True


def on_resolved(record: AlertRecord, resolved: AlertResolved, now: datetime) -> bool:
    """Close the alert because its fulfilment arrived; False when it was already closed."""
    if record.status is AlertStatus.RESOLVED:
        if record.resolution is None:
            # Closed by hand first: keep the fulfilment (and how late it was) for the record.
            record.resolution = resolved
        return False
    record.status = AlertStatus.RESOLVED
    record.resolution = resolved
    record.resolved_at = now
    add_entry(record, now, "resolved", by=resolved.resolved_by)
    return True


def on_closed(record: AlertRecord, closed: AlertClosed) -> bool:
    """Close the alert by hand; False when it was already closed."""
    if record.status is AlertStatus.RESOLVED:
        return False
    record.status = AlertStatus.RESOLVED
    record.closure = closed
    record.resolved_at = closed.closed_at
    add_entry(record, closed.closed_at, "resolved", by=closed.by, note=closed.note)
    return True
