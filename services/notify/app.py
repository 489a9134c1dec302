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

from services.common.clock import Clock
from services.common.faust_web import add_probe_pages
from services.common.stream.driver import StreamMetrics
from services.common.stream.faust_runtime import FaustProcessor
from services.common.stream.inputs import Record
from services.common.stream.retry import RetryPolicy
from services.common.streams import faust_options, raw_topic
from services.notify.delivery import Deliverer
from services.notify.dispatch import Dispatcher
from services.notify.escalation import Limits
from services.notify.ledger import AlertRecord
from services.notify.logic import NotifyLogic, NotifyTopics
from services.notify.metrics import NotifyMetrics
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
        deliverer: Deliverer,
        metrics: NotifyMetrics,
        calendars: Callable[[], Calendars] = dict,
    ) -> None:
        check_settings(policy, settings)
        self.settings = settings
        self.policy = policy
        self.clock = clock
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
        self.app = faust.App(settings.app_id, **options)
        self.topics = settings.kafka.topics
        self.notifications_out = raw_topic(self.app, self.topics.notifications)
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
