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

Three more behaviours, still pure:

- **Acknowledgement is not the work done.** An acknowledged alert still unresolved
  `ack_timeout` (the chain's, per severity) after the acknowledgement is reopened: open
  again, its current level told again at once, and the ladder's waits counted anew from
  the reopening (the gap to the next level is the policy's gap, not already spent).
- **Grouping.** Level 1 waits `hold_until` (the raise plus the policy's group window).
  The first alert of a trigger whose hold ends leads: its level-1 message to a receiver
  lists every sibling (same trigger event) still waiting for level 1 to that receiver.
  A sibling that finds itself listed in a leader's pending message records its own
  notification as `grouped_into` that one and sends nothing; the leader's worker
  publishes an outcome for every listed alert. The follower's notification stays
  pending in its own record, with the leader's deadline, so if no outcome comes back (the
  leader's worker died, the outcome was lost) it is handed over on its own like any
  orphan: late, never lost (a receiver may then see it twice, never not at all).
- **Raised and resolved together.** A breach whose fulfilment is known before level 1
  went out (risk publishes both together when the fulfilment was already late) is sent
  once, to level 1, as a resolution notice: not a page followed by an all-clear. Not to
  a paging channel (PagerDuty): a notice there would open an incident to close it.
- **Acknowledgements mirrored.** Channels that keep an alert's state of their own
  (PagerDuty) are told of an acknowledgement, once per acknowledgement, if an alert
  notification reached them; a resolution tells every channel reached, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from schemas.alerts import AlertRaised, AlertResolved
from schemas.notifications import (
    AlertAcknowledged,
    AlertClosed,
    AlertReopened,
    Channel,
    EscalationReason,
    NotificationFailed,
    NotificationPurpose,
    NotificationSent,
)
from services.notify.ledger import (
    AlertRecord,
    AlertStatus,
    Delivery,
    GroupMember,
    NextStepNote,
    PendingDelivery,
    add_entry,
)
from services.notify.policy import Chain, ChainLevel, Recipient


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
    reopened: AlertReopened | None = None

    @property
    def escalations(self) -> list[Step]:
        """Return the steps that raised the level (published as `alert.escalated`)."""
        return [step for step in self.steps if step.reason is not None]


# The alerts of the same trigger event raised within a window of each other: a record's
# siblings, as the caller finds them (this worker's table). Pure code only filters them.
Siblings = Callable[[AlertRecord], Iterable[AlertRecord]]


def open_record(
    alert: AlertRaised, chain: Chain, now: datetime, *, hold: timedelta = timedelta(0)
) -> AlertRecord:
    """Start the record of a newly raised alert; `advance` sends level 1 after `hold`."""
    record = AlertRecord(alert=alert, chain=chain)
    if hold > timedelta(0):
        record.hold_until = now + hold
    add_entry(record, now, "raised")
    return record


def _ladder_start(record: AlertRecord) -> datetime:
    return record.ladder_from or record.alert.raised_at


# Channels holding an alert's state of their own, told when it is acknowledged.
MIRRORS_ACKNOWLEDGEMENT = frozenset({Channel.PAGERDUTY})
# Channels that page: a breach already resolved when first told is not sent there.
PAGES = frozenset({Channel.PAGERDUTY})


def notification_id(alert_id: str, purpose: NotificationPurpose, *parts: object) -> str:
    """Return the deterministic id of one notification (the webhook `Idempotency-Key`)."""
    if purpose is NotificationPurpose.RESOLUTION:
        return ":".join([alert_id, "resolved", *map(str, parts)])
    if purpose is NotificationPurpose.ACKNOWLEDGEMENT:
        return ":".join([alert_id, "acknowledged", *map(str, parts)])
    return ":".join([alert_id, *map(str, parts)])


def _start_level(record: AlertRecord) -> int:
    """Return the level an alert's first step reaches (above 1: the levels below told with it)."""
    return min(record.alert.start_level or 1, len(record.chain.levels))


def _level_due(record: AlertRecord) -> tuple[datetime, EscalationReason | None] | None:
    nxt = record.chain.at(record.level + 1)
    if nxt is None:
        return None
    scheduled = _ladder_start(record) + nxt.after
    if 0 < record.level < _start_level(record):
        # Climbing to the start level: due with level 1, taken in the same advance.
        return record.last_step_at or scheduled, EscalationReason.START_LEVEL
    if record.level == 0:
        if record.hold_until is not None:
            return max(scheduled, record.hold_until), None
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


def _take_step(
    record: AlertRecord,
    now: datetime,
    decision: Decision,
    siblings: Siblings | None = None,
) -> bool:
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
    start = _start_level(record)
    if record.round == 0 and record.level < start:
        return True  # told with the start level, once per receiver
    recipients = rung.recipients
    if record.round == 0 and record.level == start > 1:
        # Every receiver of the levels up to the start level, each once.
        everyone = [r for level in record.chain.levels[:start] for r in level.recipients]
        recipients = tuple({r.name: r for r in everyone}.values())
    first = record.level == 1 and record.round == 0 and record.hold_until is not None
    for recipient in recipients:
        if first and siblings is not None and _grouped(record, recipient, now, decision, siblings):
            continue
        _dispatch_alert(record, decision, recipient, now, deadline)
    return True


def _dispatch_alert(
    record: AlertRecord,
    decision: Decision,
    recipient: Recipient,
    now: datetime,
    deadline: datetime,
) -> None:
    """Hand the current step's alert notification to one recipient."""
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


def _grouped(
    record: AlertRecord,
    recipient: Recipient,
    now: datetime,
    decision: Decision,
    siblings: Siblings,
) -> bool:
    """Send level 1 to `recipient` inside a sibling's message, or lead one; True if handled.

    False leaves the ordinary single message to the caller.
    """
    alert_id = record.alert.alert_id
    ident = notification_id(alert_id, NotificationPurpose.ALERT, 1, 0, recipient.name)
    if ident in record.deliveries:
        return True  # already told (an outcome from a leader arrived before this step)
    others = [s for s in siblings(record) if s.alert.alert_id != alert_id]
    for sibling in others:
        leader = _first_message(sibling, recipient.name)
        if leader is not None and any(m.alert_id == alert_id for m in leader.members):
            record.deliveries[ident] = PendingDelivery(
                notification_id=ident,
                purpose=NotificationPurpose.ALERT,
                recipient=recipient,
                level=1,
                round=0,
                dispatched_at=now,
                # The leader's budget: past it and the grace, this one goes out on its own.
                deadline=max(leader.deadline, now),
                grouped_into=leader.notification_id,
            )
            return True
    waiting = [s for s in others if _waits_for_level_one(s, recipient.name)]
    if not waiting:
        return False
    _dispatch(
        record,
        decision,
        ident,
        purpose=NotificationPurpose.ALERT,
        recipient=recipient,
        level=1,
        round_=0,
        now=now,
        deadline=now,
    )
    members = [record, *sorted(waiting, key=lambda s: s.alert.alert_id)]
    record.deliveries[ident].members = [
        GroupMember.of(m.alert, _after_level_one(m, now)) for m in members
    ]
    return True


def _after_level_one(record: AlertRecord, now: datetime) -> NextStepNote | None:
    """Return what an alert's ladder does next once level 1 is told at `now`.

    Each listed alert keeps its own ladder (a group mixes severities): the message
    shows each one's own countdown, not the leader's.
    """
    rung = record.chain.at(2)
    level_at = _ladder_start(record) + rung.after if rung is not None else None
    repeat_at = now + record.chain.repeat if record.chain.repeat is not None else None
    if rung is not None and level_at is not None and (repeat_at is None or level_at <= repeat_at):
        return NextStepNote(
            at=level_at, kind="level", level=2, route=rung.route, recipients=list(_names(rung))
        )
    first = record.chain.at(1)
    if repeat_at is None or first is None:
        return None
    return NextStepNote(
        at=repeat_at, kind="repeat", level=1, route=first.route, recipients=list(_names(first))
    )


def _first_message(record: AlertRecord, recipient: str) -> PendingDelivery | None:
    ident = notification_id(record.alert.alert_id, NotificationPurpose.ALERT, 1, 0, recipient)
    pending = record.deliveries.get(ident)
    return pending if pending is not None and pending.members else None


def _waits_for_level_one(record: AlertRecord, recipient: str) -> bool:
    rung = record.chain.at(1)
    return (
        record.status is AlertStatus.OPEN
        and record.level == 0
        and record.hold_until is not None
        and rung is not None
        and any(r.name == recipient for r in rung.recipients)
    )


def siblings_of(
    record: AlertRecord, candidates: Iterable[AlertRecord], window: timedelta
) -> list[AlertRecord]:
    """Keep the candidates raised from the same trigger event within `window` of `record`."""
    trigger = record.alert.trigger
    return [
        c
        for c in candidates
        if c.alert.trigger == trigger and abs(c.alert.raised_at - record.alert.raised_at) <= window
    ]


def _reopen_due(record: AlertRecord) -> datetime | None:
    ack = record.acknowledgement
    if record.status is not AlertStatus.ACKNOWLEDGED or ack is None:
        return None
    if record.chain.ack_timeout is None:
        return None
    return ack.acknowledged_at + record.chain.ack_timeout


def _reopen(record: AlertRecord, now: datetime, decision: Decision) -> None:
    """Open an acknowledged alert again and tell its current level again, at once."""
    ack = record.acknowledgement
    assert ack is not None  # noqa: S101 - only called when _reopen_due found one
    record.status = AlertStatus.OPEN
    record.reopened_at = now
    rung = record.chain.at(record.level)
    # The ladder goes on from the current level: the next level's wait counts from now.
    record.ladder_from = now - (rung.after if rung is not None else timedelta(0))
    if record.level == 0:
        record.hold_until = now  # acknowledged before level 1 went out: send it now
    decision.reopened = AlertReopened(
        alert_id=record.alert.alert_id,
        level=max(1, record.level),
        acknowledged_at=ack.acknowledged_at,
        reopened_at=now,
    )
    add_entry(record, now, "reopened", level=record.level, by=ack.by)
    if rung is None:
        return
    record.round += 1
    record.last_step_at = now
    decision.steps.append(
        Step(
            level=record.level,
            round=record.round,
            previous_level=record.level,
            scheduled_at=now,
            taken_at=now,
            reason=None,
            recipients=tuple(r.name for r in rung.recipients),
        )
    )
    for recipient in rung.recipients:
        _dispatch_alert(record, decision, recipient, now, now)


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
    record: AlertRecord,
    now: datetime,
    limits: Limits,
    running: Collection[str] = (),
    siblings: Siblings | None = None,
) -> Decision:
    """Take every step due by `now`, tell reached recipients of a resolution, re-send orphans.

    `running` names notifications this worker is still delivering (or whose outcome it
    published and has not yet read back): those are not orphans, however late.
    `siblings` finds the alerts level 1 may be grouped with (None: never grouped).
    """
    decision = Decision()
    reopen_at = _reopen_due(record)
    if reopen_at is not None and reopen_at <= now:
        _reopen(record, now, decision)
    if record.status is AlertStatus.OPEN:
        while _take_step(record, now, decision, siblings):
            pass
        # Budgets end at the step after all those taken now: when several fell due at
        # once (after an outage), the lower levels still get a real chance.
        deadline = _deadline(record, now, limits)
        for pending in decision.dispatches:
            pending.deadline = deadline
    elif record.status is AlertStatus.ACKNOWLEDGED:
        _mirror_acknowledgement(record, now, limits, decision)
    elif record.status is AlertStatus.RESOLVED:
        _tell_resolved_breach(record, now, limits, decision)
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
            pending.grouped_into = None  # a listed alert whose message was lost: on its own
            pending.dispatches += 1
            pending.dispatched_at = now
            pending.deadline = now + max(limits.min_retry, budget)
            decision.dispatches.append(pending)
    return decision


def _mirror_acknowledgement(
    record: AlertRecord, now: datetime, limits: Limits, decision: Decision
) -> None:
    """Tell the channels that mirror acknowledgements and were reached: once per ack."""
    ack = record.acknowledgement
    if ack is None:
        return
    stamp = int(ack.acknowledged_at.timestamp() * 1000)
    for name, told in _reached(record).items():
        if told.recipient.channel not in MIRRORS_ACKNOWLEDGEMENT:
            continue
        _dispatch(
            record,
            decision,
            notification_id(
                record.alert.alert_id, NotificationPurpose.ACKNOWLEDGEMENT, stamp, name
            ),
            purpose=NotificationPurpose.ACKNOWLEDGEMENT,
            recipient=told.recipient,
            level=told.level,
            round_=0,
            now=now,
            deadline=now + limits.max_retry,
        )


def _tell_resolved_breach(
    record: AlertRecord, now: datetime, limits: Limits, decision: Decision
) -> None:
    """Fulfilled before level 1 went out: tell level 1 once, as a resolved breach."""
    if record.level != 0 or record.resolution is None or record.closure is not None:
        return
    rung = record.chain.at(1)
    if rung is None:
        return
    for recipient in rung.recipients:
        if recipient.channel in PAGES:
            continue
        _dispatch(
            record,
            decision,
            notification_id(record.alert.alert_id, NotificationPurpose.RESOLUTION, recipient.name),
            purpose=NotificationPurpose.RESOLUTION,
            recipient=recipient,
            level=1,
            round_=0,
            now=now,
            deadline=now + limits.max_retry,
        )


@dataclass(frozen=True)
class Upcoming:
    """What happens next to an alert nobody acts on: when, of what kind, to which level."""

    at: datetime
    kind: Literal["level", "repeat", "reopen"]
    level: int
    recipients: tuple[str, ...]


def upcoming(record: AlertRecord) -> Upcoming | None:
    """Return the next step the ladder will take if nobody acts, if any."""
    if record.status is AlertStatus.ACKNOWLEDGED:
        reopen_at = _reopen_due(record)
        rung = record.chain.at(max(1, record.level))
        if reopen_at is None or rung is None:
            return None
        return Upcoming(reopen_at, "reopen", rung.level, _names(rung))
    if record.status is not AlertStatus.OPEN:
        return None
    level_due = _due_time(_level_due(record))
    repeat_due = _repeat_due(record)
    if level_due is not None and (repeat_due is None or level_due <= repeat_due):
        rung = record.chain.at(record.level + 1)
        return None if rung is None else Upcoming(level_due, "level", rung.level, _names(rung))
    if repeat_due is not None and (rung := record.chain.at(record.level)) is not None:
        return Upcoming(repeat_due, "repeat", rung.level, _names(rung))
    return None


def _names(rung: ChainLevel) -> tuple[str, ...]:
    return tuple(r.name for r in rung.recipients)


def next_due(record: AlertRecord, limits: Limits) -> datetime | None:
    """Return when the record next needs `advance`, or None when nothing is pending."""
    times = []
    if record.status is AlertStatus.OPEN:
        nxt = _next_step_at(record)
        if nxt is not None:
            times.append(nxt)
    reopen_at = _reopen_due(record)
    if reopen_at is not None:
        times.append(reopen_at)
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
    if pending is None:
        pending = _told_in_group(record, outcome)
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
            grouped_into=pending.grouped_into,
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


def _told_in_group(
    record: AlertRecord, outcome: NotificationSent | NotificationFailed
) -> PendingDelivery | None:
    """Note as told an alert a leader's message listed before its own level-1 step.

    The step then finds the notification handed over and sends nothing (never twice).
    """
    rung = record.chain.at(1)
    if outcome.level != 1 or outcome.round != 0 or record.level != 0 or rung is None:
        return None
    expected = notification_id(
        record.alert.alert_id, NotificationPurpose.ALERT, 1, 0, outcome.recipient
    )
    recipient = next((r for r in rung.recipients if r.name == outcome.recipient), None)
    if outcome.notification_id != expected or recipient is None:
        return None
    pending = PendingDelivery(
        notification_id=expected,
        purpose=NotificationPurpose.ALERT,
        recipient=recipient,
        level=1,
        round=0,
        dispatched_at=outcome.first_attempt_at,
        deadline=outcome.finished_at,
        grouped_into=outcome.grouped_into,
    )
    record.deliveries[expected] = pending
    return pending


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
    add_entry(
        record,
        closed.closed_at,
        "resolved",
        by=closed.by,
        note=closed.note,
        closed_because=closed.reason,
    )
    return True
