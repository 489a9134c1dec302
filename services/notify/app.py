"""The notify service's Faust app: alerts in, notifications out, and the alert API.

`record` consumes `safeguarding.alerts.v1` (keyed by alert id, so one alert's messages
stay in order on one partition), keeps each alert's record in a table, and delivers
level-1 notifications. The web pages read the same table.
"""

from __future__ import annotations

from typing import Any

import faust
import structlog
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry

from schemas.alerts import AlertRaisedEvent, AlertResolvedEvent, parse_alert
from schemas.deadletter import DeadLetterReason
from schemas.errors import FieldError, InvalidEvent, MalformedJSON
from services.common.auth import Authenticator, Role
from services.common.clock import Clock
from services.common.deadletter import DeadLetters
from services.common.faust_web import add_probe_pages, authorise, error
from services.common.streams import faust_options, raw_topic
from services.notify.ledger import AlertRecord, AlertStatus, on_delivery, on_raised, on_resolved
from services.notify.metrics import NotifyMetrics
from services.notify.settings import NotifySettings
from services.notify.webhook import WebhookChannel

log = structlog.get_logger(__name__)


class NotifyService:
    """The notify service's topics, table, channels and pages."""

    def __init__(
        self,
        settings: NotifySettings,
        clock: Clock,
        registry: CollectorRegistry,
        auth: Authenticator,
        webhook: WebhookChannel,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.auth = auth
        self.webhook = webhook
        self.metrics = NotifyMetrics(registry)
        self.recovered = False
        self.app = faust.App(
            settings.app_id,
            **faust_options(
                settings.kafka, settings.stream, web_host=settings.host, web_port=settings.port
            ),
        )
        topics = settings.kafka.topics
        self.alerts_topic = raw_topic(self.app, topics.alerts)
        self.dead_letters = DeadLetters(
            raw_topic(self.app, topics.deadletter), clock, self.metrics.deadlettered
        )
        self.table = self.app.Table(
            "alerts",
            default=None,
            schema=faust.Schema(key_serializer="raw", value_serializer="json"),
        )
        self.app.agent(self.alerts_topic, name="record")(self._record)
        self.table.on_recover(self._on_recover)
        self.app.on_before_shutdown.connect(self._close_channels)
        add_probe_pages(self.app, registry, ready=lambda: self.recovered)
        self._add_pages()

    async def _close_channels(
        self,
        _sender: Any,  # noqa: ANN401 - faust signal arguments are untyped
        /,
        *_args: Any,  # noqa: ANN401
        signal: Any,  # noqa: ANN401, ARG002
        **_kwargs: Any,  # noqa: ANN401
    ) -> None:
        await self.webhook.close()

    async def _on_recover(self) -> None:
        self.recovered = True

    async def _record(self, stream: Any) -> None:  # noqa: ANN401 - faust streams are untyped
        async for event in stream.events():
            message = event.message
            try:
                alert = parse_alert(message.value or b"")
            except MalformedJSON as exc:
                await self.dead_letters.send(message, DeadLetterReason.INVALID_JSON, exc.errors)
                continue
            except InvalidEvent as exc:
                await self.dead_letters.send(message, DeadLetterReason.INVALID_EVENT, exc.errors)
                continue
            try:
                await self._apply(alert)
            except Exception as exc:
                log.exception(
                    "processing_failed", partition=message.partition, offset=message.offset
                )
                await self.dead_letters.send(
                    message,
                    DeadLetterReason.PROCESSING_ERROR,
                    [FieldError(loc="(root)", msg=type(exc).__name__)],
                )

    async def _apply(self, alert: AlertRaisedEvent | AlertResolvedEvent) -> None:
        key = alert.data.alert_id.encode()
        existing = self._load(key)
        now = self.clock.now()
        if isinstance(alert, AlertRaisedEvent):
            record = on_raised(existing, alert.data, now)
            if record is None:
                self.metrics.duplicates.inc()
                return
            # Saved before delivery so that the alert is listed even if delivery is slow.
            self.table[key] = record.model_dump(mode="json")
            delivery = await self.webhook.send(str(self.settings.webhook_url), alert.data, level=1)
            if delivery.outcome == "sent":
                self.metrics.notifications.labels(channel=delivery.channel).inc()
            else:
                self.metrics.notifications_failed.labels(
                    channel=delivery.channel, reason=delivery.reason or "unknown"
                ).inc()
            on_delivery(record, delivery, self.clock.now())
            self.table[key] = record.model_dump(mode="json")
            return
        if existing is None:
            raise UnknownAlertError(alert.data.alert_id)
        if on_resolved(existing, alert.data, now):
            self.table[key] = existing.model_dump(mode="json")
        else:
            self.metrics.duplicates.inc()

    def _load(self, key: bytes) -> AlertRecord | None:
        raw = self.table.get(key)
        return None if raw is None else AlertRecord.model_validate(raw)

    def _add_pages(self) -> None:
        service = self

        @self.app.page("/v1/alerts")
        async def list_alerts(self: View, request: Request) -> Response:
            _, refusal = authorise(self, request, service.auth, Role.READ)
            if refusal is not None:
                return refusal
            wanted = request.query.get("status")
            if wanted is not None and wanted not in set(AlertStatus):
                return error(
                    self, 422, "invalid_query", f"status must be one of {sorted(AlertStatus)}"
                )
            records = [AlertRecord.model_validate(raw) for raw in service.table.values()]
            alerts = [
                _summary(r)
                for r in sorted(records, key=lambda r: r.alert.raised_at, reverse=True)
                if wanted is None or r.status == wanted
            ]
            return self.json({"alerts": alerts})

        @self.app.page("/v1/alerts/{alert_id}")
        async def get_alert(self: View, request: Request, alert_id: str) -> Response:
            _, refusal = authorise(self, request, service.auth, Role.READ)
            if refusal is not None:
                return refusal
            record = service._load(alert_id.encode())
            if record is None:
                return error(self, 404, "not_found", "no such alert")
            return self.json(record.model_dump(mode="json", exclude_none=True))


class UnknownAlertError(LookupError):
    """A resolution for an alert never raised here."""


def _summary(record: AlertRecord) -> dict[str, Any]:
    alert = record.alert
    return {
        "alert_id": alert.alert_id,
        "rule": alert.rule,
        "severity": alert.severity.value,
        "status": record.status.value,
        "raised_at": alert.raised_at.isoformat(),
        "due_at": alert.due_at.isoformat() if alert.due_at else None,
        "summary": alert.summary,
        "subject_kind": alert.subject_kind.value,
        "subject_id": alert.subject_id,
        "area": alert.area,
    }
