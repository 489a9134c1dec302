"""The risk service's Faust app: Kafka plumbing around the pure engine.

Flow: `safeguarding.events.v1` -> the stream core (`services/common/stream/`) with
`RiskLogic` (`services/risk/logic.py`): each event is validated once (what is invalid is
dead-lettered) and applied to every subject it concerns whose home partition is the one
it arrived on; a copy for a subject homed elsewhere is forwarded to `<app id>-subjects`,
on that subject's home partition, and applied there. When the events topic's partition
count differs from the service's (`RISK_STREAM__PARTITIONS`), the processor cannot read
it co-partitioned: a `route` agent then forwards every event to its subjects' home
partitions. Either way one subject's changes are written from one partition. Each
direct producer's topic (`RISK_DIRECT_PRODUCERS_FILE`, services/risk/producers.py) is
read the same way, directly or through `route`, checked against the producer's scopes
(services/risk/logic.py). Deadlines
are data in the table; see the stream core for the schedule, the checks and the error
policy.
"""

from __future__ import annotations

from collections.abc import Sequence

import faust
import structlog
from prometheus_client import CollectorRegistry

from services.common.clock import Clock
from services.common.faust_web import add_probe_pages
from services.common.stream.driver import StreamMetrics
from services.common.stream.faust_runtime import FaustProcessor
from services.common.stream.retry import RetryPolicy
from services.common.streams import faust_options, raw_topic, topic_partitions
from services.risk.logic import RiskLogic, RiskTopics
from services.risk.metrics import RiskMetrics, register_calendar
from services.risk.policy import RiskPolicy
from services.risk.producers import DirectProducer
from services.risk.settings import RiskSettings
from services.risk.state import SubjectState

log = structlog.get_logger(__name__)


class RiskService:
    """The risk service's topics, processor and pages."""

    def __init__(
        self,
        settings: RiskSettings,
        policy: RiskPolicy,
        clock: Clock,
        registry: CollectorRegistry,
        producers: Sequence[DirectProducer] = (),
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = RiskMetrics(registry)
        register_calendar(registry, policy.obligations.school_notification.calendar, clock)
        self.app = faust.App(
            settings.app_id,
            **faust_options(
                settings.kafka, settings.stream, web_host=settings.host, web_port=settings.port
            ),
        )
        topics = settings.kafka.topics
        self.subjects_topic = self.app.topic(
            f"{settings.app_id}-subjects",
            internal=True,
            partitions=settings.stream.partitions,
            key_serializer="raw",
            value_serializer="raw",
        )
        partitions = settings.stream.partitions
        # Read the events topic (and each producer's) in the processor itself (no hop)
        # only when it is co-partitioned with the table; the broker is asked once, at start.
        direct = topic_partitions(settings.kafka, topics.events) == partitions
        log.info("events_input", direct=direct, partitions=partitions)
        direct_producers = frozenset(
            p.topic for p in producers if topic_partitions(settings.kafka, p.topic) == partitions
        )
        for producer in producers:
            log.info(
                "producer_input",
                producer=producer.name,
                direct=producer.topic in direct_producers,
            )
        self.logic = RiskLogic(
            policy,
            self.metrics,
            RiskTopics(
                alerts=topics.alerts,
                outcomes=topics.outcomes,
                subjects=self.subjects_topic.get_topic_name(),
                child_views=topics.child_views,
                events=topics.events if direct else None,
                producers={p.topic: p for p in producers},
                direct_producers=direct_producers,
                audit=settings.audit_topic,
            ),
            partitions=partitions,
        )
        inputs = [*([topics.events] if direct else []), *sorted(direct_producers)]
        routed = [
            *([] if direct else [topics.events]),
            *(p.topic for p in producers if p.topic not in direct_producers),
        ]
        self.processor: FaustProcessor[SubjectState] = FaustProcessor(
            self.app,
            inputs=[*inputs, self.subjects_topic.get_topic_name()],
            table="subjects",
            partitions=settings.stream.partitions,
            logic=self.logic,
            dead_letters_topic=topics.deadletter,
            clock=clock,
            metrics=StreamMetrics(registry, "safeguard_risk"),
            check_interval_seconds=settings.check_interval_seconds,
            retry=RetryPolicy(
                publish_timeout_seconds=settings.stream.publish_timeout_seconds,
                max_delay_seconds=settings.stream.retry_max_delay_seconds,
            ),
            batch_max=settings.stream.batch_max_messages,
            batch_within_seconds=settings.stream.batch_within_seconds,
            own_publisher=True,
            publish_max_batch_size=settings.stream.publish_max_batch_size,
        )
        if routed:
            # Forwarded only: the logic applies nothing read off a topic not co-partitioned.
            self.processor.forward_from(raw_topic(self.app, *routed), name="route")
        add_probe_pages(self.app, registry, ready=self.processor.ready)


def create_app(
    settings: RiskSettings,
    policy: RiskPolicy,
    clock: Clock,
    registry: CollectorRegistry,
    producers: Sequence[DirectProducer] = (),
) -> RiskService:
    """Wire the risk service, reading each direct producer's topic too."""
    return RiskService(settings, policy, clock, registry, producers)
