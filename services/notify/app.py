"""The notify service's Faust app: Kafka plumbing around the pure escalation ladder.

One agent, `notify`, reads three co-partitioned topics keyed by alert id (same partition
count, so partition p of each belongs to the same worker):

- `safeguarding.alerts.v1`: `alert.raised` opens a record and sends level 1 at once;
  `alert.resolved` closes it and tells whoever was reached.
- `safeguarding.notifications.v1`: acknowledgements and by-hand closures (published by
  the HTTP API, so they are ordered with everything else about the alert and survive
  restarts) and delivery outcomes (published by the background deliveries).
- `<app id>-checks`: "check these alerts" messages from the timer.

The agent is the only writer of the table. The timer only looks at an in-memory index
of due times and sends a check message to the partition that owns the alert; the step
is taken inside the stream, so it happens once, on the partition's active owner, and a
step that fell due while the worker was down is taken on the first check after recovery.
Deliveries run in background tasks so a slow receiver never holds up the stream; their
outcomes come back as `notification.sent` / `notification.failed` events.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Collection, Iterator
from datetime import timedelta
from typing import Any

import faust
import structlog
from prometheus_client import CollectorRegistry

from schemas.alerts import AlertRaised, AlertRaisedEvent, AlertResolved, parse_alert
from schemas.deadletter import DeadLetterReason
from schemas.errors import FieldError, InvalidEvent, MalformedJSON
from schemas.notifications import (
    AlertAcknowledgedEvent,
    AlertClosedEvent,
    AlertEscalated,
    NotificationFailed,
    NotificationFailedEvent,
    NotificationSent,
    NotificationSentEvent,
    alert_escalated_event,
    notification_failed_event,
    notification_sent_event,
    parse_notification,
)
from services.common.auth import Authenticator
from services.common.clock import Clock
from services.common.deadletter import DeadLetters
from services.common.faust_web import add_probe_pages
from services.common.schedule import DeadlineSchedule, send_due_checks
from services.common.streams import faust_options, raw_topic
from services.notify.delivery import Content, Deliverer
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
from services.notify.http import add_alert_pages
from services.notify.ledger import AlertRecord, AlertStatus, PendingDelivery
from services.notify.metrics import NotifyMetrics
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


class StatusIndex:
    """Status of each unresolved alert this worker owns, feeding the two gauges."""

    def __init__(self, metrics: NotifyMetrics) -> None:
        self._metrics = metrics
        self._status: dict[str, AlertStatus] = {}

    def set(self, alert_id: str, status: AlertStatus) -> None:
        """Note an alert's status (a resolved one stops being counted)."""
        if status is AlertStatus.RESOLVED:
            self._status.pop(alert_id, None)
        else:
            self._status[alert_id] = status
        self._refresh()

    def clear(self) -> None:
        """Forget everything (before a rebuild)."""
        self._status.clear()
        self._refresh()

    def _refresh(self) -> None:
        self._metrics.alerts_open.set(len(self._status))
        unacknowledged = sum(1 for s in self._status.values() if s is AlertStatus.OPEN)
        self._metrics.alerts_unacknowledged.set(unacknowledged)


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


class NotifyService:
    """The notify service's topics, table, schedule, deliveries and pages."""

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
        self.schedule = DeadlineSchedule()
        self.statuses = StatusIndex(self.metrics)
        self.recovered = False
        self._tasks: set[asyncio.Task[None]] = set()
        # Notifications handed over by this worker whose outcome it has not read back yet.
        self._running: dict[str, asyncio.Task[None]] = {}
        # After a recovery, outcomes published before the restart may still be unread in
        # the notifications topic (no order across topics with the checks): wait a grace
        # before treating an unanswered notification as lost, or it would be sent twice.
        self._orphans_after = clock.now()
        self._slots = asyncio.Semaphore(d.max_concurrent)
        options = faust_options(
            settings.kafka, settings.stream, web_host=settings.host, web_port=settings.port
        )
        # Every step writes a record of a few KiB to the changelog: with Faust's default
        # 16 KiB batches a burst of escalations turns into thousands of tiny requests. A
        # batch size set in the settings wins (Tansu needs 1, see StreamSettings).
        options.setdefault("producer_max_batch_size", 1_048_576)
        options["producer_linger"] = 0.005
        self.app = faust.App(settings.app_id, **options)
        self.topics = settings.kafka.topics
        self.checks_name = f"{settings.app_id}-checks"
        # One channel over the three topics: one stream, so everything about an alert is
        # handled in order by one coroutine. `internal` makes Faust create the checks
        # topic (the other two exist already and are left as they are).
        self.inputs = self.app.topic(
            self.topics.alerts,
            self.topics.notifications,
            self.checks_name,
            key_serializer="raw",
            value_serializer="raw",
            internal=True,
            partitions=settings.stream.partitions,
        )
        self.notifications_out = raw_topic(self.app, self.topics.notifications)
        self.checks_out = raw_topic(self.app, self.checks_name)
        self.dead_letters = DeadLetters(
            raw_topic(self.app, self.topics.deadletter), clock, self.metrics.deadlettered
        )
        # String keys (JSON on the changelog) and JSON values: with raw keys, Faust's
        # recovery decodes changelog keys as JSON anyway and fails, so a restarted
        # worker would never finish recovering.
        self.table = self.app.Table(
            "alerts", default=None, key_type=str, partitions=settings.stream.partitions
        )
        self.app.agent(self.inputs, name="notify")(self._process)
        self.app.timer(settings.check_interval_seconds, name="send_checks")(self._send_checks)
        self.table.on_recover(self._rebuild)
        self.app.on_before_shutdown.connect(self._shutdown)
        add_probe_pages(self.app, registry, ready=lambda: self.recovered)
        add_alert_pages(self)

    # -- stream ----------------------------------------------------------------------

    async def _process(self, stream: Any) -> None:  # noqa: ANN401 - faust streams are untyped
        async for event in stream.events():
            message = event.message
            try:
                await self._handle(message)
            except MalformedJSON as exc:
                await self.dead_letters.send(message, DeadLetterReason.INVALID_JSON, exc.errors)
            except InvalidEvent as exc:
                await self.dead_letters.send(message, DeadLetterReason.INVALID_EVENT, exc.errors)
            except Exception as exc:
                log.exception(
                    "processing_failed",
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                )
                await self.dead_letters.send(
                    message,
                    DeadLetterReason.PROCESSING_ERROR,
                    [FieldError(loc="(root)", msg=type(exc).__name__)],
                )

    async def _handle(self, message: Any) -> None:  # noqa: ANN401 - faust messages are untyped
        value = message.value or b""
        partition = message.partition
        if message.topic == self.checks_name:
            await self._check(json.loads(value)["check"], partition)
        elif message.topic == self.topics.alerts:
            alert = parse_alert(value)
            if isinstance(alert, AlertRaisedEvent):
                await self._on_raised(alert.data, partition)
            else:
                await self._on_resolved(alert.data, partition)
        else:
            await self._on_notification(parse_notification(value), partition)

    async def _on_raised(self, alert: AlertRaised, partition: int) -> None:
        if self.load(alert.alert_id) is not None:
            self.metrics.duplicates.inc()
            log.info("duplicate_dropped", alert_id=alert.alert_id, type="alert.raised")
            return
        now = self.clock.now()
        default_url = str(self.settings.webhook_url) if self.settings.webhook_url else None
        chain = chain_for(self.policy, alert.severity, alert.area, default_url=default_url)
        record = open_record(alert, chain, now)
        await self._commit(
            [(record, advance(record, now, self.limits, self._not_orphans()))], partition
        )

    async def _on_resolved(self, resolved: AlertResolved, partition: int) -> None:
        record = self._require(resolved.alert_id)
        had_resolution = record.resolution is not None
        if on_resolved(record, resolved, self.clock.now()):
            await self._commit(
                [(record, advance(record, self.clock.now(), self.limits, self._not_orphans()))],
                partition,
            )
            return
        self.metrics.duplicates.inc()
        if not had_resolution and record.resolution is not None:
            await self._commit([(record, Decision())], partition)

    async def _on_notification(self, event: Any, partition: int) -> None:  # noqa: ANN401 - a union
        if isinstance(event, AlertAcknowledgedEvent):
            record = self._require(event.data.alert_id)
            if not on_acknowledged(record, event.data):
                self.metrics.duplicates.inc()
                return
            waited = (event.data.acknowledged_at - record.alert.raised_at).total_seconds()
            self.metrics.time_to_acknowledge.observe(max(0.0, waited))
        elif isinstance(event, AlertClosedEvent):
            record = self._require(event.data.alert_id)
            if not on_closed(record, event.data):
                self.metrics.duplicates.inc()
                return
        elif isinstance(event, NotificationSentEvent | NotificationFailedEvent):
            self._running.pop(event.data.notification_id, None)
            record = self._require(event.data.alert_id)
            if not on_outcome(record, event.data, self.clock.now()):
                self.metrics.duplicates.inc()
                return
        else:
            return  # alert.escalated: our own audit record; the table already has it
        await self._commit(
            [(record, advance(record, self.clock.now(), self.limits, self._not_orphans()))],
            partition,
        )

    async def _check(self, keys: list[str], partition: int) -> None:
        now = self.clock.now()
        items = []
        for key in keys:
            record = self.load(key)
            if record is None or record.partition != partition:
                continue
            decision = advance(record, now, self.limits, self._not_orphans())
            if decision.steps or decision.dispatches:
                items.append((record, decision))
            elif (due := next_due(record, self.limits)) is not None:
                self.schedule.push(max(due, self._orphans_after), partition, key)
        if items:
            await self._commit(items, partition)

    async def _commit(self, items: list[tuple[AlertRecord, Decision]], partition: int) -> None:
        # Escalations reach the broker before the records are written: a crash between
        # makes the input run again and re-publish under the same event ids (dropped by
        # consumers), whereas records written first could lose the audit events.
        pending = []
        for record, decision in items:
            for step in decision.escalations:
                data = AlertEscalated(
                    alert_id=record.alert.alert_id,
                    level=step.level,
                    previous_level=step.previous_level,
                    reason=step.reason,
                    scheduled_at=step.scheduled_at,
                    escalated_at=step.taken_at,
                    recipients=list(step.recipients),
                )
                value = alert_escalated_event(data).to_json()
                pending.append(
                    await self.notifications_out.send(key=data.alert_id.encode(), value=value)
                )
        for future in pending:
            await future
        for record, decision in items:
            alert_id = record.alert.alert_id
            record.partition = partition
            self.table[alert_id] = record.model_dump(mode="json")
            self.statuses.set(alert_id, record.status)
            self._observe(alert_id, decision)
            for delivery in decision.dispatches:
                self._start_delivery(record, delivery)
            if (due := next_due(record, self.limits)) is not None:
                self.schedule.push(due, partition, alert_id)

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

    # -- deliveries ------------------------------------------------------------------

    def _start_delivery(self, record: AlertRecord, pending: PendingDelivery) -> None:
        content = Content.of(record)
        # A fresh context: the task must not keep the stream's current event alive.
        task = asyncio.get_running_loop().create_task(
            self._deliver(record.alert.alert_id, content, pending.model_copy()),
            context=contextvars.Context(),
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._running[pending.notification_id] = task

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
        if result.outcome == "sent":
            value = notification_sent_event(NotificationSent(**fields)).to_json()
        else:
            failed = NotificationFailed(**fields, reason=result.reason, detail=result.detail)
            value = notification_failed_event(failed).to_json()
        try:
            future = await self.notifications_out.send(key=alert_id.encode(), value=value)
            await future
        except Exception:
            # The record still shows it pending: after its grace it is handed over again.
            log.exception("outcome_not_published", notification_id=pending.notification_id)

    # -- timer, recovery, shutdown ---------------------------------------------------

    async def _send_checks(self) -> None:
        async def send(partition: int, keys: list[str]) -> object:
            body = json.dumps({"check": keys}).encode()
            return await self.checks_out.send(value=body, partition=partition)

        await send_due_checks(self.schedule, self.clock.now(), send)

    async def _rebuild(self) -> None:
        active = {
            tp.partition
            for tp in self.app.assignor.assigned_actives()
            if tp.topic == self.topics.alerts
        }
        self.schedule.clear()
        self.statuses.clear()
        # Partitions may have moved: a finished delivery's outcome is on the topic for
        # whoever owns it now; only deliveries still running here are not orphans.
        self._running = {k: t for k, t in self._running.items() if not t.done()}
        self._orphans_after = self.clock.now() + self.limits.orphan_grace
        for raw in self.table.values():
            record = AlertRecord.model_validate(raw)
            if record.partition not in active:
                continue  # a standby copy: its owner escalates it
            self.statuses.set(record.alert.alert_id, record.status)
            if (due := next_due(record, self.limits)) is not None:
                self.schedule.push(due, record.partition, record.alert.alert_id)
        self.recovered = True
        log.info("schedule_rebuilt", steps=len(self.schedule), partitions=len(active))

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

    def _not_orphans(self) -> Collection[str]:
        return EVERYTHING if self.clock.now() < self._orphans_after else self._running.keys()

    # -- reading ---------------------------------------------------------------------

    def load(self, alert_id: str) -> AlertRecord | None:
        """Return an alert's record from this worker's table, or None."""
        raw = self.table.get(alert_id)
        return None if raw is None else AlertRecord.model_validate(raw)

    def _require(self, alert_id: str) -> AlertRecord:
        record = self.load(alert_id)
        if record is None:
            raise UnknownAlertError(alert_id)
        return record
