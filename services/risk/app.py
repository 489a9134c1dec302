"""The risk service's Faust app: Kafka plumbing around the pure engine.

Flow: `safeguarding.events.v1` -> `route` (validate, dead-letter what is invalid, copy the
event to each subject it concerns) -> `<app id>-subjects`, keyed by subject -> `correlate`
(read the subject's state from the table, call the engine, publish alerts, write back).

Deadlines are data in the table. The timer only looks at an in-memory index and sends a
per-partition "check" message; the check runs inside `correlate`, the one place that
writes the table, so each breach is raised once, by the partition's active owner.
"""

from __future__ import annotations

import time
from typing import Any

import faust
import structlog
from prometheus_client import CollectorRegistry

from schemas.alerts import AlertRaised, alert_raised_event, alert_resolved_event
from schemas.deadletter import DeadLetterReason
from schemas.errors import FieldError, InvalidEvent, MalformedJSON
from schemas.events import parse_event, parse_event_json
from services.common.auth import Authenticator
from services.common.clock import Clock
from services.common.deadletter import DeadLetters
from services.common.faust_web import add_probe_pages
from services.common.streams import faust_options, raw_topic
from services.risk import rules
from services.risk.engine import Effect, Outcome, check, evaluate
from services.risk.metrics import RiskMetrics
from services.risk.policy import RiskPolicy
from services.risk.schedule import DeadlineSchedule
from services.risk.settings import RiskSettings
from services.risk.state import SubjectState, subject_key

log = structlog.get_logger(__name__)

CHECK_BATCH = 500  # subject keys per check message, well under the broker's size limit


class RiskService:
    """The risk service's topics, table, schedule and handlers."""

    def __init__(
        self,
        settings: RiskSettings,
        policy: RiskPolicy,
        clock: Clock,
        registry: CollectorRegistry,
        auth: Authenticator,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.clock = clock
        self.auth = auth
        self.metrics = RiskMetrics(registry)
        self.schedule = DeadlineSchedule()
        self.recovered = False
        self.app = faust.App(
            settings.app_id,
            **faust_options(
                settings.kafka, settings.stream, web_host=settings.host, web_port=settings.port
            ),
        )
        topics = settings.kafka.topics
        self.events_topic = raw_topic(self.app, topics.events)
        self.dead_letters = DeadLetters(
            raw_topic(self.app, topics.deadletter), clock, self.metrics.deadlettered
        )
        self.alerts_topic = raw_topic(self.app, topics.alerts)
        self.subjects_topic = self.app.topic(
            f"{settings.app_id}-subjects",
            internal=True,
            partitions=settings.stream.partitions,
            key_serializer="raw",
            value_serializer="json",
        )
        self.table = self.app.Table(
            "subjects",
            default=None,
            partitions=settings.stream.partitions,
            schema=faust.Schema(key_serializer="raw", value_serializer="json"),
        )
        self.app.agent(self.events_topic, name="route")(self._route)
        self.app.agent(self.subjects_topic, name="correlate")(self._correlate)
        self.app.timer(settings.check_interval_seconds, name="send_checks")(self._send_checks)
        self.table.on_recover(self._rebuild_schedule)
        add_probe_pages(self.app, registry, ready=lambda: self.recovered)

    async def _route(self, stream: Any) -> None:  # noqa: ANN401 - faust streams are untyped
        async for event in stream.events():
            message = event.message
            try:
                parsed = parse_event_json(message.value or b"", now=self.clock.now())
            except MalformedJSON as exc:
                await self.dead_letters.send(message, DeadLetterReason.INVALID_JSON, exc.errors)
                continue
            except InvalidEvent as exc:
                await self.dead_letters.send(message, DeadLetterReason.INVALID_EVENT, exc.errors)
                continue
            canonical = parsed.model_dump(mode="json", exclude_none=True)
            for kind, subject_id in rules.subjects(parsed):
                await self.subjects_topic.send(
                    key=subject_key(kind, subject_id).encode(), value={"event": canonical}
                )

    async def _correlate(self, stream: Any) -> None:  # noqa: ANN401 - faust streams are untyped
        async for event in stream.events():
            started = time.perf_counter()
            message = event.message
            try:
                if "check" in event.value:
                    for key in event.value["check"]:
                        await self._check(key, message.partition)
                else:
                    await self._apply(message, event.value["event"])
            except Exception as exc:
                log.exception(
                    "processing_failed", partition=message.partition, offset=message.offset
                )
                await self.dead_letters.send(
                    message,
                    DeadLetterReason.PROCESSING_ERROR,
                    [FieldError(loc="(root)", msg=type(exc).__name__)],
                )
            self.metrics.processing.observe(time.perf_counter() - started)

    def _load(self, key: str) -> SubjectState:
        raw = self.table.get(key.encode())
        if raw is not None:
            return SubjectState.model_validate(raw)
        kind, _, subject_id = key.partition(":")
        return SubjectState(kind=kind, id=subject_id)

    async def _apply(self, message: Any, body: dict[str, Any]) -> None:  # noqa: ANN401
        parsed = parse_event(body)
        state = self._load(message.key.decode())
        outcome = evaluate(state, parsed, self.clock.now(), self.policy)
        if outcome.duplicate:
            self.metrics.duplicates.inc()
            log.info("duplicate_dropped", event_id=parsed.id, type=parsed.type)
            return
        self.metrics.events.labels(type=parsed.type).inc()
        await self._commit(state, outcome, message.partition)

    async def _check(self, key: str, partition: int) -> None:
        state = self._load(key)
        outcome = check(state, self.clock.now())
        if outcome.effects:
            await self._commit(state, outcome, partition, clock_driven=True)
        elif (due := state.next_due()) is not None:
            self.schedule.push(due, partition, key)

    async def _commit(
        self, state: SubjectState, outcome: Outcome, partition: int, *, clock_driven: bool = False
    ) -> None:
        # Alerts reach the broker before the state is written: a crash in between makes
        # the input run again and re-send the alert under the same id (dropped
        # downstream), whereas state written first could lose the alert.
        await self._publish(outcome.effects, clock_driven=clock_driven)
        state.partition = partition
        self.table[state.key.encode()] = state.model_dump(mode="json")
        if (due := state.next_due()) is not None:
            self.schedule.push(due, partition, state.key)

    async def _publish(self, effects: list[Effect], *, clock_driven: bool) -> None:
        # Deadline lag measures how late the clock fires; a backdated trigger that is
        # already overdue on arrival says nothing about that, so it is not observed.
        pending = []
        for effect in effects:
            if isinstance(effect, AlertRaised):
                value = alert_raised_event(effect).model_dump_json().encode()
                kind, severity = "raised", effect.severity.value
                if clock_driven and effect.due_at is not None:
                    lag = (effect.raised_at - effect.due_at).total_seconds()
                    self.metrics.deadline_lag.observe(max(0.0, lag))
            else:
                value = alert_resolved_event(effect).model_dump_json().encode()
                kind, severity = "resolved", "none"
            pending.append(await self.alerts_topic.send(key=effect.alert_id.encode(), value=value))
            self.metrics.alerts.labels(kind=kind, rule=effect.rule, severity=severity).inc()
            log.info("alert_published", kind=kind, alert_id=effect.alert_id, rule=effect.rule)
        for future in pending:
            await future

    async def _send_checks(self) -> None:
        for partition, keys in self.schedule.pop_due(self.clock.now()).items():
            for start in range(0, len(keys), CHECK_BATCH):
                await self.subjects_topic.send(
                    value={"check": keys[start : start + CHECK_BATCH]}, partition=partition
                )

    async def _rebuild_schedule(self) -> None:
        topic = self.subjects_topic.get_topic_name()
        active = {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic}
        self.schedule.clear()
        for raw in self.table.values():
            state = SubjectState.model_validate(raw)
            if state.partition in active and (due := state.next_due()) is not None:
                self.schedule.push(due, state.partition, state.key)
        self.recovered = True
        log.info("schedule_rebuilt", deadlines=len(self.schedule), partitions=len(active))


def create_app(
    settings: RiskSettings,
    policy: RiskPolicy,
    clock: Clock,
    registry: CollectorRegistry,
    auth: Authenticator,
) -> RiskService:
    """Wire the risk service."""
    return RiskService(settings, policy, clock, registry, auth)
