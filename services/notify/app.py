"""The notify service's Faust app: Kafka plumbing around the pure escalation ladder.

The stream core (`services/common/stream/`) with `NotifyLogic` (`services/notify/
logic.py`) reads three co-partitioned topics keyed by alert id (same partition count, so
partition p of each belongs to the same worker) and keeps one record per alert:
`safeguarding.alerts.v1` (raises and resolutions), `safeguarding.commands.v1`
(acknowledgements and closures by hand from people) and `safeguarding.notifications.v1`
(the outcomes of deliveries), plus its own checks topic. A step is taken inside the
stream, so it happens once, on the partition's active owner, and a step that fell due
while the worker was down is taken on the first check after recovery. Deliveries run in
the background (`services/notify/dispatch.py`) so a slow receiver never holds up the
stream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import faust
import structlog
from prometheus_client import CollectorRegistry

from schemas.audit import AuditAction
from services.common.audit import publish_audit
from services.common.auth import Authenticator, Principal
from services.common.clock import Clock
from services.common.faust_web import add_probe_pages
from services.common.stream.driver import StreamMetrics
from services.common.stream.faust_runtime import FaustProcessor
from services.common.stream.inputs import Record
from services.common.stream.retry import RetryPolicy
from services.common.streams import faust_options, raw_topic
from services.notify.console import ConsoleConfig, add_console
from services.notify.console.sessions import Sessions, TokenIdentity
from services.notify.delivery import Deliverer
from services.notify.dispatch import Dispatcher
from services.notify.escalation import Limits
from services.notify.http import AlertActions, AlertReads, add_alert_pages
from services.notify.ledger import AlertRecord
from services.notify.logic import NotifyLogic, NotifyTopics
from services.notify.metrics import NotifyMetrics
from services.notify.peers import Peers
from services.notify.policy import NotifyPolicy
from services.notify.rota import Calendars
from services.notify.settings import NotifySettings

log = structlog.get_logger(__name__)


class ConfigError(ValueError):
    """The settings do not provide what the policy needs (a secret, a URL)."""


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
        calendars: Callable[[], Calendars] = dict,
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
        self.group_window = (
            policy.group_window
            if settings.group_window_seconds is None
            else timedelta(seconds=settings.group_window_seconds)
        )
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
        retry = RetryPolicy(
            publish_timeout_seconds=settings.stream.publish_timeout_seconds,
            max_delay_seconds=settings.stream.retry_max_delay_seconds,
        )
        stream_metrics = StreamMetrics(registry, "safeguard_notify")
        self.dispatcher = Dispatcher(
            deliverer,
            publish=self._publish,
            notifications_topic=self.topics.notifications,
            retry=retry,
            on_failure=lambda exc, attempt, delay: self.processor.driver.transient_failure(
                "outcome", exc, attempt, delay
            ),
            max_concurrent=d.max_concurrent,
            public_url=str(settings.public_url) if settings.public_url else None,
        )
        self.logic = NotifyLogic(
            policy,
            metrics,
            NotifyTopics(
                alerts=self.topics.alerts,
                notifications=self.topics.notifications,
                commands=self.topics.commands,
                alert_views=self.topics.alert_views,
            ),
            self.dispatcher,
            limits=self.limits,
            group_window=self.group_window,
            default_url=str(settings.webhook_url) if settings.webhook_url else None,
            calendars=calendars,
        )
        self.index = self.logic.index
        self.processor: FaustProcessor[AlertRecord] = FaustProcessor(
            self.app,
            inputs=[self.topics.alerts, self.topics.notifications, self.topics.commands],
            table="alerts",
            partitions=settings.stream.partitions,
            logic=self.logic,
            dead_letters_topic=self.topics.deadletter,
            clock=clock,
            metrics=stream_metrics,
            check_interval_seconds=settings.check_interval_seconds,
            retry=retry,
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
        # A command: the worker that owns the alert applies it in order with the rest.
        await self.processor.driver.publish(
            [Record(self.topics.commands, alert_id.encode(), value)]
        )

    async def _publish(self, records: Sequence[Record]) -> None:
        await self.processor.driver.publish(records)

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
        await self.dispatcher.stop()
