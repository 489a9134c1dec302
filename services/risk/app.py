"""The risk service's Faust app: Kafka plumbing around the pure engine.

Flow: `safeguarding.events.v1` -> `route` (validate, dead-letter what is invalid, copy the
event to each subject it concerns) -> `<app id>-subjects`, keyed by subject -> the keyed-
state processor (`services/common/processor.py`): the subject's state from the table, the
engine's decision, alerts published, then the state written. Deadlines are data in the
table; see the processor for the schedule, the checks and the error policy.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import faust
import structlog
from faust.types import Message
from prometheus_client import CollectorRegistry

from schemas.alerts import AlertRaised, alert_raised_event, alert_resolved_event
from schemas.audit import AuditAction
from schemas.events import parse_event_json
from schemas.outcomes import ObligationOutcome, OutcomeKind, outcome_event
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
from services.risk import outcomes, rules
from services.risk.caps import MAX_RECORD_BYTES, Capped, cap, fit
from services.risk.engine import Outcome, check, evaluate
from services.risk.http import add_child_page
from services.risk.metrics import RiskMetrics
from services.risk.policy import RiskPolicy
from services.risk.settings import RiskSettings
from services.risk.state import SubjectState, subject_key

log = structlog.get_logger(__name__)


class RiskLogic:
    """The risk service's part of the processor: the engine, and the alerts it publishes."""

    def __init__(
        self,
        policy: RiskPolicy,
        clock: Clock,
        metrics: RiskMetrics,
        alerts: faust.TopicT,
        outcomes: faust.TopicT,
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.metrics = metrics
        self.alerts = alerts
        self.outcomes = outcomes
        self.pending: Counter[str] = Counter()

    def encode(self, state: SubjectState) -> bytes:
        """Return the table value, capped further in the rare case it would not fit."""
        raw = state.to_json()
        if len(raw) <= MAX_RECORD_BYTES:
            return raw
        raw, capped = fit(state)
        self._report(state, capped)
        return raw

    def decode(self, raw: bytes) -> SubjectState:
        """Return the state a table value holds."""
        return SubjectState.from_json(raw)

    def due(self, state: SubjectState) -> datetime | None:
        """Return the earliest deadline still watched."""
        return state.next_due()

    def apply(
        self, message: Message, state: Callable[[str], SubjectState | None]
    ) -> list[Change[SubjectState]]:
        """Apply one event copy (keyed by subject) to its subject."""
        now = self.clock.now()
        parsed = parse_event_json(message.value or b"", now=now)
        key = (message.key or b"").decode()
        subject = state(key)
        if subject is None:
            kind, _, subject_id = key.partition(":")
            subject = SubjectState.model_validate({"kind": kind, "id": subject_id})
        before = outcomes.snapshot(subject)
        outcome = evaluate(subject, parsed, now, self.policy)
        if outcome.duplicate:
            self.metrics.duplicates.inc()
            log.info("duplicate_dropped", event_id=parsed.id, type=parsed.type)
            return []
        return [self._change(subject, outcome, before, now, event_type=parsed.type)]

    def check(
        self,
        key: str,  # noqa: ARG002 - part of the processor's Logic protocol
        state: SubjectState,
        now: datetime,
    ) -> Change[SubjectState] | None:
        """Raise what fell due for a subject, if anything."""
        before = outcomes.snapshot(state)
        outcome = check(state, now, self.policy)
        return self._change(state, outcome, before, now) if outcome.effects else None

    def _change(
        self,
        state: SubjectState,
        outcome: Outcome,
        before: dict[str, outcomes.Seen],
        now: datetime,
        event_type: str | None = None,
    ) -> Change[SubjectState]:
        self._report(state, cap(state))
        records = []
        for effect in outcome.effects:
            if isinstance(effect, AlertRaised):
                value = alert_raised_event(effect).to_json()
            else:
                value = alert_resolved_event(effect).to_json()
            records.append(Record(self.alerts, effect.alert_id.encode(), value))
        changed = outcomes.changes(before, state, now, self.policy.alert_key)
        for change in changed:
            value = outcome_event(change).to_json()
            records.append(Record(self.outcomes, change.obligation_id.encode(), value))

        def published() -> None:
            # Counted once the state is written, so a retried publish counts once.
            self._count(outcome, changed, event_type)

        return Change(state.key, state, records, state.next_due(), after=published)

    def _count(
        self, outcome: Outcome, changed: list[ObligationOutcome], event_type: str | None
    ) -> None:
        if event_type is not None:
            self.metrics.events.labels(type=event_type).inc()
        for lag in outcome.lags:
            self.metrics.deadline_lag.observe(lag)
        for change in changed:
            if change.outcome is OutcomeKind.OPENED:
                continue
            late = change.late_by_seconds
            on_time = change.outcome is OutcomeKind.MET and (late or 0) <= 0
            label = "met_on_time" if on_time else change.outcome.value
            self.metrics.closed.labels(rule=change.rule, outcome=label).inc()
            if late is not None and late > 0:
                self.metrics.lateness.labels(rule=change.rule).observe(late)
        for effect in outcome.effects:
            if isinstance(effect, AlertRaised):
                self.metrics.breaches.labels(rule=effect.rule, severity=effect.severity.value).inc()
                kind = "raised"
            else:
                self.metrics.resolutions.labels(rule=effect.rule).inc()
                kind = "resolved"
            log.info("alert_published", kind=kind, alert_id=effect.alert_id, rule=effect.rule)

    def _report(self, state: SubjectState, capped: Capped) -> None:
        for collection, count in capped.dropped.items():
            self.metrics.capped.labels(collection=collection).inc(count)
            log.warning("state_capped", kind=state.kind, collection=collection, dropped=count)

    def observe(
        self,
        key: str,  # noqa: ARG002 - part of the processor's Logic protocol
        before: SubjectState | None,
        after: SubjectState | None,
    ) -> None:
        """Keep the open-obligations gauge in step."""
        old = _pending_by_rule(before)
        new = _pending_by_rule(after)
        for rule in old.keys() | new.keys():
            self.pending[rule] += new[rule] - old[rule]
            self.metrics.open_obligations.labels(rule=rule).set(self.pending[rule])

    def forget(self) -> None:
        """Clear the gauge before a rebuild."""
        self.pending.clear()
        self.metrics.open_obligations.clear()


def _pending_by_rule(state: SubjectState | None) -> Counter[str]:
    if state is None:
        return Counter()
    return Counter(o.rule for o in state.obligations.values() if o.pending)


class RiskService:
    """The risk service's topics, processor and pages."""

    def __init__(
        self,
        settings: RiskSettings,
        policy: RiskPolicy,
        clock: Clock,
        registry: CollectorRegistry,
        auth: Authenticator,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = RiskMetrics(registry)
        self.app = faust.App(
            settings.app_id,
            **faust_options(
                settings.kafka, settings.stream, web_host=settings.host, web_port=settings.port
            ),
        )
        topics = settings.kafka.topics
        self.events_topic = raw_topic(self.app, topics.events)
        self.subjects_topic = self.app.topic(
            f"{settings.app_id}-subjects",
            internal=True,
            partitions=settings.stream.partitions,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.logic = RiskLogic(
            policy,
            clock,
            self.metrics,
            raw_topic(self.app, topics.alerts),
            raw_topic(self.app, topics.outcomes),
        )
        self.processor: KeyedStateProcessor[SubjectState] = KeyedStateProcessor(
            self.app,
            inputs=[self.subjects_topic.get_topic_name()],
            table="subjects",
            partitions=settings.stream.partitions,
            logic=self.logic,
            dead_letters_topic=topics.deadletter,
            clock=clock,
            metrics=ProcessorMetrics(registry, "safeguard_risk"),
            check_interval_seconds=settings.check_interval_seconds,
            retry=RetryPolicy(
                publish_timeout_seconds=settings.stream.publish_timeout_seconds,
                max_delay_seconds=settings.stream.retry_max_delay_seconds,
            ),
        )
        self.app.agent(self.events_topic, name="route")(self._route)
        add_probe_pages(self.app, registry, ready=self.processor.ready)
        audit_topic = raw_topic(self.app, settings.audit_topic)

        async def audit(principal: Principal, child_id: str) -> None:
            await publish_audit(
                audit_topic,
                "risk",
                AuditAction.CHILD_VIEWED,
                principal,
                clock.now(),
                child_id=child_id,
            )

        add_child_page(
            self.app,
            read=lambda child_id: self.processor.get(subject_key("child", child_id)),
            auth=auth,
            clock=clock,
            policy=policy,
            audit=audit,
        )

    async def _route(self, stream: Any) -> None:  # noqa: ANN401 - faust streams are untyped
        async for event in stream.events():
            message = event.message
            await self.processor.hold(
                message, functools.partial(self._copies, message), self.processor.publish
            )

    def _copies(self, message: Message) -> list[Record]:
        """Return one copy of the event per subject it concerns (raises if it is invalid)."""
        parsed = parse_event_json(message.value or b"", now=self.clock.now())
        # The bytes just validated travel on as they are: re-serialising would only be
        # undone by the next parse.
        return [
            Record(
                self.subjects_topic, subject_key(kind, subject_id).encode(), message.value or b""
            )
            for kind, subject_id in rules.subjects(parsed)
        ]


def create_app(
    settings: RiskSettings,
    policy: RiskPolicy,
    clock: Clock,
    registry: CollectorRegistry,
    auth: Authenticator,
) -> RiskService:
    """Wire the risk service."""
    return RiskService(settings, policy, clock, registry, auth)
