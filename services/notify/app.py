"""The notify service's Faust app: Kafka plumbing around the pure escalation ladder.

The keyed-state processor (`services/common/processor.py`) reads three co-partitioned
topics keyed by alert id (same partition count, so partition p of each belongs to the
same worker) and keeps one record per alert:

- `safeguarding.alerts.v1`: `alert.raised` opens a record and sends level 1 at once;
  `alert.resolved` closes it and tells whoever was reached.
- `safeguarding.notifications.v1`: acknowledgements and by-hand closures (published by
  the HTTP API, so they are ordered with everything else about the alert and survive
  restarts) and delivery outcomes (published by the background deliveries).
- `<app id>-checks`: "check these alerts" messages from the processor's timer.

A step is taken inside the stream, so it happens once, on the partition's active owner,
and a step that fell due while the worker was down is taken on the first check after
recovery. A resolved alert leaves the table after the policy's `resolved_retention`.
Deliveries run in background tasks so a slow receiver never holds up the stream; their
outcomes come back as `notification.sent` / `notification.failed` events.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Collection, Iterator
from datetime import datetime, timedelta
from typing import Any

import faust
import structlog
from faust.types import Message
from prometheus_client import CollectorRegistry

from schemas.alerts import AlertRaised, AlertRaisedEvent, parse_alert
from schemas.audit import AuditAction
from schemas.notifications import (
    AlertAcknowledgedEvent,
    AlertClosedEvent,
    AlertEscalated,
    NotificationFailed,
    NotificationFailedEvent,
    NotificationPurpose,
    NotificationSent,
    NotificationSentEvent,
    alert_escalated_event,
    alert_reopened_event,
    notification_failed_event,
    notification_sent_event,
    parse_notification,
)
from services.common.audit import publish_audit
from services.common.auth import Authenticator, Principal
from services.common.clock import Clock
from services.common.faust_web import add_probe_pages
from services.common.processor import (
    Change,
    KeyedStateProcessor,
    ProcessorMetrics,
    Record,
    RetryPolicy,
)
from services.common.streams import faust_options, raw_topic
from services.notify.console import ConsoleConfig, add_console
from services.notify.console.sessions import Sessions, TokenIdentity
from services.notify.delivery import Content, Deliverer, Result
from services.notify.escalation import (
    Decision,
    Limits,
    advance,
    next_due,
    notification_id,
    on_acknowledged,
    on_closed,
    on_outcome,
    on_resolved,
    open_record,
    prune_deliveries,
    siblings_of,
)
from services.notify.http import AlertActions, AlertReads, add_alert_pages
from services.notify.index import AlertIndex
from services.notify.ledger import AlertRecord, AlertStatus, PendingDelivery
from services.notify.metrics import NotifyMetrics
from services.notify.peers import Peers
from services.notify.policy import NotifyPolicy, chain_for
from services.notify.settings import NotifySettings

log = structlog.get_logger(__name__)


class ConfigError(ValueError):
    """The settings do not provide what the policy needs (a secret, a URL)."""


class UnknownAlertError(LookupError):
    """An event about an alert never raised here."""


class _Everything(Collection[str]):
    """Contains every notification id: while recovering, none counts as an orphan."""

    def __contains__(self, item: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


EVERYTHING = _Everything()


def check_settings(policy: NotifyPolicy, settings: NotifySettings) -> None:
    """Refuse to start when a receiver could never be reached (fail now, not at 3 a.m.)."""
    missing = sorted(policy.secret_names() - set(settings.webhook_secrets))
    if missing:
        names = ", ".join(f"NOTIFY_WEBHOOK_SECRETS__{name.upper()}" for name in missing)
        raise ConfigError(f"webhook signing secrets not set: {names}")
    if policy.receivers_without_url() and settings.webhook_url is None:
        raise ConfigError(
            f"receivers {policy.receivers_without_url()} have no url "
            "and NOTIFY_WEBHOOK_URL is unset"
        )


class NotifyLogic:
    """The notify service's part of the processor: the escalation ladder and its events."""

    def __init__(self, service: NotifyService) -> None:
        self.service = service
        self.metrics = service.metrics
        self.limits = service.limits
        self.retention = service.policy.resolved_retention

    def encode(self, state: AlertRecord) -> bytes:
        """Return the table value."""
        return state.model_dump_json(exclude_defaults=True).encode()

    def decode(self, raw: bytes) -> AlertRecord:
        """Return the record a table value holds."""
        return AlertRecord.model_validate_json(raw)

    def due(self, state: AlertRecord) -> datetime | None:
        """Return when the record next needs looking at: a step, an orphan, or expiry."""
        times = [t for t in (next_due(state, self.limits), self._expires(state)) if t]
        if not times:
            return None
        # Outcomes published before a restart may still be unread: see `_orphans_after`.
        return max(min(times), self.service.orphans_after)

    def _expires(self, state: AlertRecord) -> datetime | None:
        if state.status is not AlertStatus.RESOLVED or state.resolved_at is None:
            return None
        if any(p.outcome is None for p in state.deliveries.values()):
            return None  # the resolution notices are still on their way
        return state.resolved_at + self.retention

    def apply(
        self, message: Message, state: Callable[[str], AlertRecord | None]
    ) -> list[Change[AlertRecord]]:
        """Apply an alert or notification event to its alert's record."""
        value = message.value or b""
        now = self.service.clock.now()
        if message.topic == self.service.topics.alerts:
            return self._on_alert(value, state, now)
        return self._on_notification(value, state, now)

    def _on_alert(
        self, value: bytes, state: Callable[[str], AlertRecord | None], now: datetime
    ) -> list[Change[AlertRecord]]:
        alert = parse_alert(value)
        if isinstance(alert, AlertRaisedEvent):
            return self._on_raised(alert.data, state(alert.data.alert_id), now)
        record = _require(state, alert.data.alert_id)
        had_resolution = record.resolution is not None
        if on_resolved(record, alert.data, now):
            return [self._change(record, now)]
        self.metrics.duplicates.inc()
        if not had_resolution and record.resolution is not None:
            return [self._change(record, now, Decision())]
        return []

    def _on_notification(
        self, value: bytes, state: Callable[[str], AlertRecord | None], now: datetime
    ) -> list[Change[AlertRecord]]:
        event = parse_notification(value)
        if isinstance(event, AlertAcknowledgedEvent):
            record = _require(state, event.data.alert_id)
            if not on_acknowledged(record, event.data):
                self.metrics.duplicates.inc()
                return []
            waited = (event.data.acknowledged_at - record.alert.raised_at).total_seconds()
            self.metrics.time_to_acknowledge.observe(max(0.0, waited))
        elif isinstance(event, AlertClosedEvent):
            record = _require(state, event.data.alert_id)
            if not on_closed(record, event.data):
                self.metrics.duplicates.inc()
                return []
        elif isinstance(event, NotificationSentEvent | NotificationFailedEvent):
            self.service.running.pop(event.data.notification_id, None)
            record = _require(state, event.data.alert_id)
            if not on_outcome(record, event.data, now):
                self.metrics.duplicates.inc()
                return []
        else:
            return []  # alert.escalated: our own audit record; the table already has it
        return [self._change(record, now)]

    def _on_raised(
        self, alert: AlertRaised, existing: AlertRecord | None, now: datetime
    ) -> list[Change[AlertRecord]]:
        if existing is not None:
            self.metrics.duplicates.inc()
            log.info("duplicate_dropped", alert_id=alert.alert_id, type="alert.raised")
            return []
        settings = self.service.settings
        default_url = str(settings.webhook_url) if settings.webhook_url else None
        chain = chain_for(self.service.policy, alert.severity, alert.area, default_url=default_url)
        hold = self.service.group_window
        return [self._change(open_record(alert, chain, now, hold=hold), now)]

    def check(self, key: str, state: AlertRecord, now: datetime) -> Change[AlertRecord] | None:
        """Take the steps that fell due, re-send orphans, or let an expired alert go."""
        expires = self._expires(state)
        if expires is not None and expires <= now:
            log.info("alert_expired", alert_id=key)
            return Change(key, None)
        decision = advance(
            state, now, self.limits, self.service.not_orphans(), self.service.siblings
        )
        if decision.steps or decision.dispatches or decision.reopened:
            return self._change(state, now, decision)
        return None

    def _change(
        self, record: AlertRecord, now: datetime, decision: Decision | None = None
    ) -> Change[AlertRecord]:
        if decision is None:
            decision = advance(
                record, now, self.limits, self.service.not_orphans(), self.service.siblings
            )
        prune_deliveries(record)
        alert_id = record.alert.alert_id
        records = []
        if decision.reopened is not None:
            value = alert_reopened_event(decision.reopened).to_json()
            records.append(Record(self.service.notifications_out, alert_id.encode(), value))
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
            value = alert_escalated_event(data).to_json()
            records.append(Record(self.service.notifications_out, alert_id.encode(), value))

        def written() -> None:
            self._observe(alert_id, decision)
            for delivery in decision.dispatches:
                self.service.start_delivery(record, delivery)

        # Decided, not yet written: a sibling decided later in the same batch must see it.
        self.service.unwritten[alert_id] = record
        return Change(alert_id, record, records, self.due(record), after=written)

    def _observe(self, alert_id: str, decision: Decision) -> None:
        for step in decision.steps:
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

    def observe(
        self,
        key: str,
        before: AlertRecord | None,  # noqa: ARG002 - part of the processor's Logic protocol
        after: AlertRecord | None,
    ) -> None:
        """Keep the alert index and the status gauges in step."""
        self.service.unwritten.pop(key, None)
        self.service.index.put(key, after)

    def forget(self) -> None:
        """Clear the index before a rebuild."""
        self.service.index.clear()
        self.service.unwritten.clear()
        # Partitions may have moved: a finished delivery's outcome is on the topic for
        # whoever owns it now; only deliveries still running here are not orphans.
        self.service.running = {k: t for k, t in self.service.running.items() if not t.done()}
        self.service.orphans_after = self.service.clock.now() + self.limits.orphan_grace


def _listed(pending: PendingDelivery) -> dict[str, str]:
    """Return the other alerts a grouped message lists: alert id -> their notification id."""
    return {
        m.alert_id: notification_id(
            m.alert_id, NotificationPurpose.ALERT, 1, 0, pending.recipient.name
        )
        for m in pending.members[1:]  # the first is the alert the message belongs to
    }


def _outcome(fields: dict[str, Any], result: Result) -> bytes:
    if result.outcome == "sent":
        return notification_sent_event(NotificationSent(**fields)).to_json()
    failed = NotificationFailed(**fields, reason=result.reason, detail=result.detail)
    return notification_failed_event(failed).to_json()


def _require(state: Callable[[str], AlertRecord | None], alert_id: str) -> AlertRecord:
    record = state(alert_id)
    if record is None:
        raise UnknownAlertError(alert_id)
    return record


class NotifyService:
    """The notify service's topics, processor, deliveries and pages."""

    def __init__(  # noqa: PLR0913 - the service's collaborators
        self,
        *,
        settings: NotifySettings,
        policy: NotifyPolicy,
        clock: Clock,
        registry: CollectorRegistry,
        auth: Authenticator,
        deliverer: Deliverer,
        metrics: NotifyMetrics,
    ) -> None:
        check_settings(policy, settings)
        self.settings = settings
        self.policy = policy
        self.clock = clock
        self.auth = auth
        self.deliverer = deliverer
        self.metrics = metrics
        d = settings.delivery
        self.limits = Limits(
            max_retry=timedelta(seconds=d.max_retry_seconds),
            orphan_grace=timedelta(seconds=d.orphan_grace_seconds),
        )
        self.index = AlertIndex(metrics)
        # Records decided in the batch being processed, until written (see `siblings`).
        self.unwritten: dict[str, AlertRecord] = {}
        self.group_window = (
            policy.group_window
            if settings.group_window_seconds is None
            else timedelta(seconds=settings.group_window_seconds)
        )
        self._tasks: set[asyncio.Task[None]] = set()
        # Notifications handed over by this worker whose outcome it has not read back yet.
        self.running: dict[str, asyncio.Task[None]] = {}
        # After a recovery, outcomes published before the restart may still be unread in
        # the notifications topic (no order across topics with the checks): wait a grace
        # before treating an unanswered notification as lost, or it would be sent twice.
        self.orphans_after = clock.now()
        self._slots = asyncio.Semaphore(d.max_concurrent)
        options = faust_options(
            settings.kafka, settings.stream, web_host=settings.host, web_port=settings.port
        )
        # Every step writes a record of a few KiB to the changelog: with Faust's default
        # 16 KiB batches a burst of escalations turns into thousands of tiny requests. A
        # batch size set in the settings wins (Tansu needs 1, see StreamSettings).
        options.setdefault("producer_max_batch_size", 1_048_576)
        options["producer_linger"] = 0.005
        if settings.canonical_url is not None:
            # Peers list their alerts for each other (services/notify/peers.py) here.
            options["canonical_url"] = str(settings.canonical_url)
        self.app = faust.App(settings.app_id, **options)
        self.topics = settings.kafka.topics
        self.notifications_out = raw_topic(self.app, self.topics.notifications)
        self.audit_topic = raw_topic(self.app, settings.audit_topic)
        self.processor: KeyedStateProcessor[AlertRecord] = KeyedStateProcessor(
            self.app,
            inputs=[self.topics.alerts, self.topics.notifications],
            table="alerts",
            partitions=settings.stream.partitions,
            logic=NotifyLogic(self),
            dead_letters_topic=self.topics.deadletter,
            clock=clock,
            metrics=ProcessorMetrics(registry, "safeguard_notify"),
            check_interval_seconds=settings.check_interval_seconds,
            retry=RetryPolicy(
                publish_timeout_seconds=settings.stream.publish_timeout_seconds,
                max_delay_seconds=settings.stream.retry_max_delay_seconds,
            ),
        )
        self.app.on_before_shutdown.connect(self._shutdown)
        add_probe_pages(self.app, registry, ready=self.processor.ready)
        reads = AlertReads(
            index=self.index,
            get=self.processor.get,
            partitions=self.processor.active_partitions,
            peers=Peers(self.app, self.processor.table.name),
        )
        add_alert_pages(
            self.app,
            reads,
            auth=auth,
            clock=clock,
            publish=self._publish_action,
            audit=self._audit,
        )
        # -- the duty-manager console (issue 12): its own block, same reads and actions --
        self.sessions = Sessions(
            clock,
            idle=timedelta(seconds=settings.console.session_idle_seconds),
            max_age=timedelta(seconds=settings.console.session_max_seconds),
        )
        add_console(
            self.app,
            reads,
            actions=AlertActions(
                reads, clock=clock, publish=self._publish_action, audit=self._audit
            ),
            audit=self._audit,
            clock=clock,
            identity=TokenIdentity(auth),
            sessions=self.sessions,
            config=ConsoleConfig.of(
                risk_url=str(settings.risk_url) if settings.risk_url else None,
                refresh_seconds=settings.console.refresh_seconds,
            ),
        )
        # -- end of the console block --
        # -- timeliness report (issue 13): its own global table, agent and page; see
        # services/notify/reports/service.py for why it is right with several workers.
        from services.notify.reports import add_reports  # noqa: PLC0415 - one wiring block

        self.reports = add_reports(
            self.app,
            topics=self.topics,
            partitions=settings.stream.partitions,
            hold=self.processor.hold,
            auth=auth,
            clock=clock,
            audit_topic=self.audit_topic,
            registry=registry,
            sessions=self.sessions,
            settings=settings.reports,
        )

    async def _audit(self, action: AuditAction, principal: Principal, alert_id: str | None) -> None:
        await publish_audit(
            self.audit_topic, "notify", action, principal, self.clock.now(), alert_id=alert_id
        )

    async def _publish_action(self, alert_id: str, value: bytes) -> None:
        await self.processor.publish([Record(self.notifications_out, alert_id.encode(), value)])

    # -- deliveries ------------------------------------------------------------------

    def siblings(self, record: AlertRecord) -> list[AlertRecord]:
        """Return this worker's alerts raised by the same trigger event, within the window."""
        trigger = record.alert.trigger
        found = []
        for alert_id in self.index.same_trigger(trigger.source, trigger.id):
            if alert_id == record.alert.alert_id:
                continue
            # The processor decides a batch before writing it: a sibling's lead decided
            # earlier in this batch is not in the table yet.
            other = self.unwritten.get(alert_id) or self.processor.get(alert_id)
            if other is not None:
                found.append(other)
        return siblings_of(record, found, self.group_window)

    def start_delivery(self, record: AlertRecord, pending: PendingDelivery) -> None:
        """Hand a notification to its channel in the background."""
        public_url = str(self.settings.public_url) if self.settings.public_url else None
        content = Content.of(record, pending, public_url)
        # A fresh context: the task must not keep the stream's current event alive.
        task = asyncio.get_running_loop().create_task(
            self._deliver(record.alert.alert_id, content, pending.model_copy()),
            context=contextvars.Context(),
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.running[pending.notification_id] = task
        for member in _listed(pending):
            # The listed alerts' notifications travel in this one: not orphans meanwhile.
            self.running[member] = task

    async def _deliver(self, alert_id: str, content: Content, pending: PendingDelivery) -> None:
        async with self._slots:
            result = await self.deliverer.deliver(content, pending)
        fields = {
            "notification_id": pending.notification_id,
            "alert_id": alert_id,
            "purpose": pending.purpose,
            "channel": pending.recipient.channel,
            "recipient": pending.recipient.name,
            "level": pending.level,
            "round": pending.round,
            "attempts": result.attempts,
            "first_attempt_at": result.first_attempt_at,
            "finished_at": result.finished_at,
        }
        records = [Record(self.notifications_out, alert_id.encode(), _outcome(fields, result))]
        for member_alert, member_id in _listed(pending).items():
            # Each listed alert learns from its own partition that it was told, and how.
            listed = {
                **fields,
                "notification_id": member_id,
                "alert_id": member_alert,
                "grouped_into": pending.notification_id,
            }
            records.append(
                Record(self.notifications_out, member_alert.encode(), _outcome(listed, result))
            )
        # The outcome is retried until the broker has it: while this task runs the
        # notification is not an orphan, so it is not sent again. A worker that dies here
        # leaves it pending, and the partition's next owner hands it over again.
        attempt = 0
        while True:
            try:
                await self.processor.publish(records)
            except Exception as exc:  # noqa: BLE001 - the broker is away: transient, retried
                delay = self.processor.retry.delay(attempt)
                self.processor.metrics.transient_failures.labels(stage="outcome").inc()
                log.warning(
                    "outcome_not_published",
                    error=type(exc).__name__,
                    notification_id=pending.notification_id,
                    retry_in_seconds=delay,
                )
                attempt += 1
                await asyncio.sleep(delay)
                continue
            return

    # -- shutdown -------------------------------------------------------------------

    async def _shutdown(
        self,
        _sender: Any,  # noqa: ANN401 - faust signal arguments are untyped
        /,
        *_args: Any,  # noqa: ANN401
        signal: Any,  # noqa: ANN401, ARG002
        **_kwargs: Any,  # noqa: ANN401
    ) -> None:
        # Deliveries cut short here have no outcome: after their grace the new owner of
        # the partition hands them over again under the same Idempotency-Key.
        for task in list(self._tasks):
            task.cancel()
        await self.deliverer.webhook.close()

    def not_orphans(self) -> Collection[str]:
        """Return the notifications that are not orphans, however late their outcome."""
        return EVERYTHING if self.clock.now() < self.orphans_after else self.running.keys()
