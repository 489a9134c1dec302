"""The notify service's part of the stream core: the escalation ladder's decisions as changes.

It reads three co-partitioned topics keyed by alert id (plus its checks): risk's alerts
(`alert.raised` opens a record, `alert.resolved` closes it), the desk's commands
(`alert.acknowledged`, `alert.closed`: applied, then published on the notifications
topic as the trail of who acted) and the notifications topic itself, for the outcomes of
deliveries. Its own trail there (escalations, acknowledgements, closures, re-openings)
is not read back as input.

Every decision is pure: a `Change` carries the records to publish (escalations,
re-openings, accepted commands, the alert's view for the desk) and its effects as data
(deliveries to start, deliveries whose outcome was read, what to count), which
`applied` carries out once the record is written. Grouped level-1 messages find their
siblings among the alerts already written and those decided earlier in the same batch
(`View.decided`), so a batch decided again after a failed publish groups and counts
exactly as one attempt would.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from schemas.alerts import AlertRaised, AlertRaisedEvent, parse_alert
from schemas.notifications import (
    AlertAcknowledgedEvent,
    AlertClosedEvent,
    AlertEscalated,
    NotificationFailedEvent,
    NotificationSentEvent,
    alert_escalated_event,
    alert_reopened_event,
    parse_notification,
)
from services.common.stream.driver import Change, View
from services.common.stream.inputs import Input, Record
from services.notify.alert_view import alert_view
from services.notify.escalation import (
    Decision,
    Limits,
    Siblings,
    Step,
    advance,
    next_due,
    on_acknowledged,
    on_closed,
    on_outcome,
    on_resolved,
    open_record,
    prune_deliveries,
    siblings_of,
)
from services.notify.index import AlertIndex
from services.notify.ledger import AlertRecord, AlertStatus, PendingDelivery
from services.notify.metrics import NotifyMetrics
from services.notify.policy import NotifyPolicy, chain_for
from services.notify.rota import Calendars

log = structlog.get_logger(__name__)

# The format of the table's values this release writes; it reads this one and the one
# before (0: uncompressed JSON of the same model).
TABLE_VERSION = 1


class UnknownAlertError(LookupError):
    """An event about an alert never raised here."""


@dataclass(frozen=True)
class NotifyTopics:
    """What notify reads and publishes."""

    alerts: str
    notifications: str
    commands: str
    alert_views: str


class Deliveries(Protocol):
    """The background deliveries, as the logic sees them."""

    def in_flight(self) -> Collection[str]:
        """Return the notifications handed over here whose outcome is not read back yet."""
        ...

    def start(self, record: AlertRecord, pending: PendingDelivery) -> None:
        """Hand a notification to its channel in the background."""
        ...

    def finished(self, notification_id: str) -> None:
        """Forget a notification whose outcome was read back."""
        ...

    def forget_done(self) -> None:
        """Keep only the deliveries still running (after a rebalance)."""
        ...


@dataclass
class NotifyEffects:
    """What a written change makes notify do and count."""

    dispatches: list[PendingDelivery] = field(default_factory=list)
    finished: str | None = None
    duplicate: bool = False
    unmatched: bool = False
    acknowledged_after: float | None = None
    steps: list[Step] = field(default_factory=list)
    expired: bool = False


class _Everything(Collection[str]):
    """Contains every notification id: while recovering, none counts as lost."""

    def __contains__(self, item: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


EVERYTHING = _Everything()


class NotifyLogic:
    """Codecs, decisions and effects of the notify service."""

    def __init__(  # noqa: PLR0913 - the logic's collaborators
        self,
        policy: NotifyPolicy,
        metrics: NotifyMetrics,
        topics: NotifyTopics,
        deliveries: Deliveries,
        *,
        limits: Limits,
        group_window: timedelta,
        default_url: str | None,
        calendars: Callable[[], Calendars] = dict,
    ) -> None:
        self.policy = policy
        self.metrics = metrics
        self.topics = topics
        self.deliveries = deliveries
        self.limits = limits
        self.group_window = group_window
        self.default_url = default_url
        # The rota feeds' shifts as last fetched: who is on duty when an alert is raised.
        self.calendars = calendars
        self.retention = policy.resolved_retention
        self.index = AlertIndex(metrics)
        # After a recovery, outcomes published before the restart may still be unread in
        # the notifications topic (no order across topics with the checks): a grace is
        # waited before an unanswered notification counts as lost, or it would go twice.
        self._recovered_at: datetime | None = None

    # -- codecs -------------------------------------------------------------------------

    def encode(self, state: AlertRecord) -> bytes:
        """Return the table value: deflated JSON (level 1).

        A record repeats its field names, receivers and timeline entries: it shrinks to
        about a third for some 10 microseconds, where the table is the worker's memory.
        """
        state.version = TABLE_VERSION
        return zlib.compress(state.model_dump_json(exclude_defaults=True).encode(), 1)

    def decode(self, raw: bytes) -> AlertRecord:
        """Return the record a table value holds (deflated JSON, or JSON as once written)."""
        if raw[:1] != b"{":
            raw = zlib.decompress(raw)
        return AlertRecord.model_validate_json(raw)

    def due(self, state: AlertRecord) -> datetime | None:
        """Return when the record next needs looking at: a step, a lost delivery, or expiry."""
        times = [t for t in (next_due(state, self.limits), self._expires(state)) if t]
        if not times:
            return None
        earliest = min(times)
        if self._recovered_at is not None:
            earliest = max(earliest, self._recovered_at + self.limits.orphan_grace)
        return earliest

    def _expires(self, state: AlertRecord) -> datetime | None:
        if state.status is not AlertStatus.RESOLVED or state.resolved_at is None:
            return None
        if any(p.outcome is None for p in state.deliveries.values()):
            return None  # the resolution notices are still on their way
        return state.resolved_at + self.retention

    # -- decisions ----------------------------------------------------------------------

    def apply(
        self, message: Input, view: View[AlertRecord], now: datetime
    ) -> list[Change[AlertRecord]]:
        """Apply an alert, a command or a delivery outcome to its alert's record."""
        value = message.value or b""
        if message.topic == self.topics.alerts:
            return self._on_alert(value, view, now)
        if message.topic == self.topics.commands:
            return self._on_command(value, view, now)
        return self._on_notification(value, view, now)

    def _on_alert(
        self, value: bytes, view: View[AlertRecord], now: datetime
    ) -> list[Change[AlertRecord]]:
        alert = parse_alert(value)
        if isinstance(alert, AlertRaisedEvent):
            return self._on_raised(alert.data, view, now)
        record = _require(view, alert.data.alert_id)
        had_resolution = record.resolution is not None
        if on_resolved(record, alert.data, now):
            return [self._change(record, view, now)]
        if not had_resolution and record.resolution is not None:
            return [self._change(record, view, now, Decision(), duplicate=True)]
        return [_duplicate(record.alert.alert_id)]

    def _on_command(
        self, value: bytes, view: View[AlertRecord], now: datetime
    ) -> list[Change[AlertRecord]]:
        event = parse_notification(value)
        if isinstance(event, AlertAcknowledgedEvent):
            record = _require(view, event.data.alert_id)
            if not on_acknowledged(record, event.data):
                return [_duplicate(record.alert.alert_id)]
            waited = (event.data.acknowledged_at - record.alert.raised_at).total_seconds()
            change = self._change(record, view, now, acknowledged_after=max(0.0, waited))
        elif isinstance(event, AlertClosedEvent):
            record = _require(view, event.data.alert_id)
            if not on_closed(record, event.data):
                return [_duplicate(record.alert.alert_id)]
            change = self._change(record, view, now)
        else:
            return []  # not a command: nothing for notify to apply
        # The notifications topic is the trail of who acted: the accepted command joins it.
        trail = Record(self.topics.notifications, record.alert.alert_id.encode(), value)
        change.records.insert(0, trail)
        return [change]

    def _on_notification(
        self, value: bytes, view: View[AlertRecord], now: datetime
    ) -> list[Change[AlertRecord]]:
        event = parse_notification(value)
        if not isinstance(event, NotificationSentEvent | NotificationFailedEvent):
            return []  # notify's own trail: the table already has it
        finished = event.data.notification_id
        record = view.get(event.data.alert_id)
        if record is None:
            # An outcome can reach the broker before the table write of the alert it
            # follows, which a crash then loses: the alert is read again and its
            # notification handed over again under the same id (the contract's "worker
            # died before its outcome was recorded"). Nothing to apply it to; not an error.
            log.info("outcome_unmatched", alert_id=event.data.alert_id, notification_id=finished)
            effects = NotifyEffects(finished=finished, unmatched=True)
            return [Change(event.data.alert_id, None, effects=[effects], write=False)]
        if not on_outcome(record, event.data, now):
            change = _duplicate(record.alert.alert_id)
            change.effects[0].finished = finished
            return [change]
        change = self._change(record, view, now)
        change.effects[0].finished = finished
        return [change]

    def _on_raised(
        self, alert: AlertRaised, view: View[AlertRecord], now: datetime
    ) -> list[Change[AlertRecord]]:
        if view.get(alert.alert_id) is not None:
            log.info("duplicate_dropped", alert_id=alert.alert_id, type="alert.raised")
            return [_duplicate(alert.alert_id)]
        chain = chain_for(
            self.policy,
            alert.severity,
            alert.area,
            default_url=self.default_url,
            at=alert.raised_at,
            calendars=self.calendars(),
        )
        # An alert that starts higher up its ladder is told at once: no group window.
        hold = timedelta(0) if alert.start_level else self.group_window
        record = open_record(alert, chain, now, hold=hold)
        return [self._change(record, view, now)]

    def check(
        self, key: str, state: AlertRecord, view: View[AlertRecord], now: datetime
    ) -> Change[AlertRecord] | None:
        """Take the steps that fell due, hand lost deliveries over again, or let go."""
        expires = self._expires(state)
        if expires is not None and expires <= now:
            return Change(key, None, effects=[NotifyEffects(expired=True)])
        decision = advance(state, now, self.limits, self._not_lost(now), self._siblings(view))
        if decision.steps or decision.dispatches or decision.reopened:
            return self._change(state, view, now, decision)
        return None

    def _not_lost(self, now: datetime) -> Collection[str]:
        """Return the notifications that are not lost, however late their outcome."""
        if self._recovered_at is not None and now < self._recovered_at + self.limits.orphan_grace:
            return EVERYTHING
        return self.deliveries.in_flight()

    def _siblings(self, view: View[AlertRecord]) -> Siblings:
        def siblings(record: AlertRecord) -> list[AlertRecord]:
            trigger = record.alert.trigger
            ids = self.index.same_trigger(trigger.source, trigger.id)
            ids.update(k for k, other in view.decided() if other.alert.trigger == trigger)
            ids.discard(record.alert.alert_id)
            found = [other for alert_id in sorted(ids) if (other := view.get(alert_id))]
            return siblings_of(record, found, self.group_window)

        return siblings

    def _change(  # noqa: PLR0913 - a change and what it carries
        self,
        record: AlertRecord,
        view: View[AlertRecord],
        now: datetime,
        decision: Decision | None = None,
        *,
        duplicate: bool = False,
        acknowledged_after: float | None = None,
    ) -> Change[AlertRecord]:
        if decision is None:
            decision = advance(record, now, self.limits, self._not_lost(now), self._siblings(view))
        prune_deliveries(record)
        record.revision += 1
        alert_id = record.alert.alert_id
        key = alert_id.encode()
        records = []
        if decision.reopened is not None:
            value = alert_reopened_event(decision.reopened).to_json()
            records.append(Record(self.topics.notifications, key, value))
        for step in decision.escalations:
            data = AlertEscalated(
                alert_id=alert_id,
                level=step.level,
                previous_level=step.previous_level,
                reason=step.reason,
                scheduled_at=step.scheduled_at,
                escalated_at=step.taken_at,
                recipients=list(step.recipients),
            )
            records.append(
                Record(self.topics.notifications, key, alert_escalated_event(data).to_json())
            )
        records.append(Record(self.topics.alert_views, key, alert_view(record, now)))
        effects = NotifyEffects(
            dispatches=list(decision.dispatches),
            duplicate=duplicate,
            acknowledged_after=acknowledged_after,
            steps=list(decision.steps),
        )
        return Change(alert_id, record, records, self.due(record), effects=[effects])

    # -- effects ------------------------------------------------------------------------

    def applied(self, changes: Sequence[Change[AlertRecord]]) -> None:
        """Start deliveries, forget finished ones, count, and keep the index in step."""
        for change in changes:
            if change.write:
                self.index.put(change.key, change.state)
            for effects in change.effects:
                if isinstance(effects, NotifyEffects):
                    self._carry_out(change, effects)

    def _carry_out(self, change: Change[AlertRecord], effects: NotifyEffects) -> None:
        if effects.finished is not None:
            self.deliveries.finished(effects.finished)
        if effects.duplicate:
            self.metrics.duplicates.inc()
        if effects.unmatched:
            self.metrics.unmatched_outcomes.inc()
        if effects.expired:
            log.info("alert_expired", alert_id=change.key)
        if effects.acknowledged_after is not None:
            self.metrics.time_to_acknowledge.observe(effects.acknowledged_after)
        for step in effects.steps:
            self._took(change.key, step)
        if change.state is not None:
            for pending in effects.dispatches:
                self.deliveries.start(change.state, pending)

    def _took(self, alert_id: str, step: Step) -> None:
        if step.reason is not None:
            self.metrics.escalations.labels(level=str(step.level)).inc()
        if step.clock_driven:
            error = (step.taken_at - step.scheduled_at).total_seconds()
            self.metrics.timing_error.observe(max(0.0, error))
        log.info(
            "escalation_step",
            alert_id=alert_id,
            level=step.level,
            round=step.round,
            reason=step.reason.value if step.reason else None,
        )

    def rebuilt(self, key: str, state: AlertRecord) -> None:
        """Index a recovered alert."""
        self.index.put(key, state)

    def forget(self, now: datetime) -> None:
        """Clear the index before a rebuild; wait a grace before anything counts as lost."""
        self.index.clear()
        self.deliveries.forget_done()
        self._recovered_at = now


def _duplicate(alert_id: str) -> Change[AlertRecord]:
    """Return a change that only counts a repeat."""
    return Change(alert_id, None, effects=[NotifyEffects(duplicate=True)], write=False)


def _require(view: View[AlertRecord], alert_id: str) -> AlertRecord:
    record = view.get(alert_id)
    if record is None:
        raise UnknownAlertError(alert_id)
    return record
