"""The risk service's Faust app: Kafka plumbing around the pure engine.

Flow: `safeguarding.events.v1` -> the keyed-state processor (`services/common/
processor.py`): each event is validated once (what is invalid is dead-lettered) and
applied to every subject it concerns whose home partition is the one it arrived on: the
subject's state from the table, the engine's decision, alerts and outcomes published,
then the state written. A copy for a subject homed elsewhere (the second child of an
incident, an event keyed by something else) is forwarded to `<app id>-subjects`, on that
subject's home partition, and applied there. A subject's home is the partition Kafka's
default partitioner gives its id, which is where ingest (keyed by child) puts its events,
so most events take no hop at all. When the events topic's partition count differs from
the service's (`RISK_STREAM__PARTITIONS`), the processor cannot read it co-partitioned:
a `route` agent then forwards every event to its subjects' home partitions. Either way
one subject's changes are written from one partition. Deadlines are data in the table;
see the processor for the schedule, the checks and the error policy.
"""

from __future__ import annotations

import functools
import zlib
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

import faust
import structlog
from faust.types import Message
from prometheus_client import CollectorRegistry

from schemas.alerts import AlertRaised, alert_raised_event, alert_resolved_event
from schemas.audit import AuditAction
from schemas.events import Event, parse_event_json
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
from services.common.streams import faust_options, key_partition, raw_topic, topic_partitions
from services.risk import outcomes, rules
from services.risk.caps import MAX_RECORD_BYTES, Capped, cap, fit
from services.risk.engine import Outcome, check, evaluate
from services.risk.http import add_child_page
from services.risk.metrics import RiskMetrics
from services.risk.policy import RiskPolicy
from services.risk.settings import RiskSettings
from services.risk.state import SubjectKind, SubjectState, subject_key

log = structlog.get_logger(__name__)


class RiskLogic:
    """The risk service's part of the processor: the engine, and the alerts it publishes."""

    # The open-obligations gauge follows each change from its own snapshot (`_change`),
    # so the processor need not decode a subject's previous state again to observe it.
    tracks_changes = True

    def __init__(  # noqa: PLR0913 - the logic's collaborators
        self,
        policy: RiskPolicy,
        clock: Clock,
        metrics: RiskMetrics,
        alerts: faust.TopicT,
        outcomes: faust.TopicT,
        *,
        subjects: faust.TopicT,
        partitions: int,
        events: str | None = None,
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.metrics = metrics
        self.alerts = alerts
        self.outcomes = outcomes
        self.subjects = subjects
        self.partitions = partitions
        # The events topic when the processor reads it directly, else None.
        self.events = events
        self.pending: Counter[str] = Counter()

    def home(self, subject_id: str) -> int:
        """Return the partition that owns a subject: where its id's key is produced."""
        return key_partition(subject_id.encode(), self.partitions)

    def forward(self, value: bytes, kind: SubjectKind, subject_id: str) -> Record:
        """Return an event's copy for one subject, bound for the subject's home partition."""
        key = subject_key(kind, subject_id).encode()
        return Record(self.subjects, key, value, self.home(subject_id))

    def encode(self, state: SubjectState) -> bytes:
        """Return the table value, capped further in the rare case it would not fit.

        The JSON is deflated (zlib level 1): a subject's JSON repeats its field names,
        rule and ids, and halves (a one-obligation child: 660 bytes to 320) for about
        10 microseconds, where the table's values are most of the worker's memory.
        """
        raw = state.to_json()
        if len(raw) > MAX_RECORD_BYTES:
            raw, capped = fit(state)
            self._report(state, capped)
        return zlib.compress(raw, 1)

    def decode(self, raw: bytes) -> SubjectState:
        """Return the state a table value holds (deflated JSON, or JSON as written before)."""
        if raw[:1] != b"{":
            raw = zlib.decompress(raw)
        return SubjectState.from_json(raw)

    def due(self, state: SubjectState) -> datetime | None:
        """Return the earliest deadline still watched."""
        return state.next_due()

    def apply(
        self, message: Message, state: Callable[[str], SubjectState | None]
    ) -> list[Change[SubjectState]]:
        """Apply an event (or a copy forwarded to this partition) to its subjects here."""
        now = self.clock.now()
        value = message.value or b""
        # Parsed once, whatever number of subjects it concerns.
        parsed = parse_event_json(value, now=now)
        if message.topic != self.events:
            kind, _, subject_id = (message.key or b"").decode().partition(":")
            return self._apply(parsed, cast("SubjectKind", kind), subject_id, state, now)
        changes: list[Change[SubjectState]] = []
        for kind, subject_id in rules.subjects(parsed):
            if self.home(subject_id) == message.partition:
                changes.extend(self._apply(parsed, kind, subject_id, state, now))
            else:
                record = self.forward(value, kind, subject_id)
                changes.append(Change(subject_key(kind, subject_id), None, [record], write=False))
        return changes

    def _apply(
        self,
        parsed: Event,
        kind: SubjectKind,
        subject_id: str,
        state: Callable[[str], SubjectState | None],
        now: datetime,
    ) -> list[Change[SubjectState]]:
        subject = state(subject_key(kind, subject_id))
        if subject is None:
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
            self._move_pending(_pending_in(before), _pending_by_rule(state))

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
        self._move_pending(_pending_by_rule(before), _pending_by_rule(after))

    def _move_pending(self, old: Counter[str], new: Counter[str]) -> None:
        for rule in old.keys() | new.keys():
            if new[rule] != old[rule]:
                self.pending[rule] += new[rule] - old[rule]
                self.metrics.open_obligations.labels(rule=rule).set(self.pending[rule])

    def forget(self) -> None:
        """Clear the gauge before a rebuild."""
        self.pending.clear()
        self.metrics.open_obligations.clear()


def _pending_in(snapshot: dict[str, outcomes.Seen]) -> Counter[str]:
    # An obligation's key is `rule|scope` (state.obligation_key).
    return Counter(
        key.partition("|")[0]
        for key, seen in snapshot.items()
        if not seen.fulfilled and not seen.raised
    )


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
        partitions = settings.stream.partitions
        # Read the events topic in the processor itself (no hop) only when it is
        # co-partitioned with the table; the broker is asked once, at start.
        direct = topic_partitions(settings.kafka, topics.events) == partitions
        log.info("events_input", direct=direct, partitions=partitions)
        self.logic = RiskLogic(
            policy,
            clock,
            self.metrics,
            raw_topic(self.app, topics.alerts),
            raw_topic(self.app, topics.outcomes),
            subjects=self.subjects_topic,
            partitions=partitions,
            events=topics.events if direct else None,
        )
        inputs = [self.subjects_topic.get_topic_name()]
        self.processor: KeyedStateProcessor[SubjectState] = KeyedStateProcessor(
            self.app,
            inputs=[topics.events, *inputs] if direct else inputs,
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
            batch_max=settings.stream.batch_max_messages,
            batch_within_seconds=settings.stream.batch_within_seconds,
            own_publisher=True,
            publish_max_batch_size=settings.stream.publish_max_batch_size,
        )
        if not direct:
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
            self.logic.forward(message.value or b"", kind, subject_id)
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
