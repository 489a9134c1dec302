"""The risk service's Faust app: Kafka plumbing around the pure engine.

Flow: `safeguarding.events.v1` -> `route` (validate, dead-letter what is invalid, copy the
event to each subject it concerns) -> `<app id>-subjects`, keyed by subject -> `correlate`
(read the subject's state from the table, call the engine, publish alerts, write back).

Deadlines are data in the table. The timer only looks at an in-memory index and sends a
per-partition "check" message; the check runs inside `correlate`, the one place that
writes the table, so each breach is raised once, by the partition's active owner.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import faust
import structlog
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry

from schemas.alerts import AlertRaised, alert_raised_event, alert_resolved_event
from schemas.deadletter import DeadLetterReason
from schemas.errors import FieldError, InvalidEvent, MalformedJSON
from schemas.events import parse_event_json
from services.common.auth import Authenticator, Role
from services.common.clock import Clock
from services.common.deadletter import DeadLetters
from services.common.faust_web import add_probe_pages, authorise, error
from services.common.schedule import DeadlineSchedule, send_due_checks
from services.common.streams import faust_options, raw_topic
from services.risk import rules
from services.risk.engine import Effect, Outcome, check, evaluate
from services.risk.metrics import RiskMetrics
from services.risk.policy import RiskPolicy
from services.risk.scoring import score
from services.risk.settings import RiskSettings
from services.risk.state import SubjectState, subject_key

log = structlog.get_logger(__name__)

CHECK_RETRY = timedelta(minutes=1)


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
            value_serializer="raw",
        )
        self.table = self.app.Table(
            "subjects",
            default=None,
            partitions=settings.stream.partitions,
            # Compact JSON bytes: a deserialised dict per subject would cost several times
            # the memory. Declared as types (not a Schema): recovery decodes by them.
            key_type=bytes,
            value_type=bytes,
        )
        self.app.agent(self.events_topic, name="route")(self._route)
        self.app.agent(self.subjects_topic, name="correlate")(self._correlate)
        self.app.timer(settings.check_interval_seconds, name="send_checks")(self._send_checks)
        self.table.on_recover(self._rebuild_schedule)
        self.pending: Counter[str] = Counter()
        add_probe_pages(self.app, registry, ready=lambda: self.recovered)
        self._add_pages()

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
            # The bytes just validated travel on as they are: re-serialising would only
            # be undone by the next parse.
            for kind, subject_id in rules.subjects(parsed):
                await self.subjects_topic.send(
                    key=subject_key(kind, subject_id).encode(), value=message.value
                )

    async def _correlate(self, stream: Any) -> None:  # noqa: ANN401 - faust streams are untyped
        async for event in stream.events():
            started = time.perf_counter()
            message = event.message
            try:
                if message.key is None:  # the timer's checks go to a partition, unkeyed
                    await self._check(json.loads(message.value)["check"], message.partition)
                else:
                    await self._apply(message)
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
            return SubjectState.from_json(raw)
        kind, _, subject_id = key.partition(":")
        return SubjectState(kind=kind, id=subject_id)

    async def _apply(self, message: Any) -> None:  # noqa: ANN401 - faust messages are untyped
        parsed = parse_event_json(message.value, now=self.clock.now())
        state = self._load(message.key.decode())
        before = _pending_by_rule(state)
        outcome = evaluate(state, parsed, self.clock.now(), self.policy)
        if outcome.duplicate:
            self.metrics.duplicates.inc()
            log.info("duplicate_dropped", event_id=parsed.id, type=parsed.type)
            return
        self.metrics.events.labels(type=parsed.type).inc()
        await self._commit([(state, outcome, before)], message.partition)

    async def _check(self, keys: list[str], partition: int) -> None:
        """Check a batch of subjects the schedule found due, publishing their alerts together."""
        now = self.clock.now()
        changed: list[tuple[SubjectState, Outcome, Counter[str]]] = []
        for key in keys:
            try:
                state = self._load(key)
                before = _pending_by_rule(state)
                outcome = check(state, now, self.policy)
            except Exception:
                # Keep the deadline watched rather than dead-letter the whole batch.
                log.exception("check_failed", partition=partition)
                self.schedule.push(now + CHECK_RETRY, partition, key)
                continue
            if outcome.effects:
                changed.append((state, outcome, before))
            elif (due := state.next_due()) is not None:
                self.schedule.push(due, partition, key)
        await self._commit(changed, partition)

    async def _commit(
        self, changes: list[tuple[SubjectState, Outcome, Counter[str]]], partition: int
    ) -> None:
        # Alerts reach the broker before the state is written: a crash in between makes
        # the input run again and re-send the alert under the same id (dropped
        # downstream), whereas state written first could lose the alert.
        await self._publish([effect for _, outcome, _ in changes for effect in outcome.effects])
        for state, outcome, before in changes:
            for lag in outcome.lags:
                self.metrics.deadline_lag.observe(lag)
            state.partition = partition
            self.table[state.key.encode()] = state.to_json()
            if (due := state.next_due()) is not None:
                self.schedule.push(due, partition, state.key)
            self._account(before, _pending_by_rule(state))

    async def _publish(self, effects: list[Effect]) -> None:
        pending = []
        for effect in effects:
            if isinstance(effect, AlertRaised):
                value = alert_raised_event(effect).to_json()
                kind = "raised"
                self.metrics.breaches.labels(rule=effect.rule, severity=effect.severity.value).inc()
            else:
                value = alert_resolved_event(effect).to_json()
                kind = "resolved"
                self.metrics.resolutions.labels(rule=effect.rule).inc()
            pending.append(await self.alerts_topic.send(key=effect.alert_id.encode(), value=value))
            log.info("alert_published", kind=kind, alert_id=effect.alert_id, rule=effect.rule)
        for future in pending:
            await future

    async def _send_checks(self) -> None:
        async def send(partition: int, keys: list[str]) -> object:
            body = json.dumps({"check": keys}).encode()
            return await self.subjects_topic.send(value=body, partition=partition)

        await send_due_checks(self.schedule, self.clock.now(), send)

    async def _rebuild_schedule(self) -> None:
        topic = self.subjects_topic.get_topic_name()
        active = {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic}
        self.schedule.clear()
        self.pending.clear()
        for raw in self.table.values():
            state = SubjectState.from_json(raw)
            if state.partition not in active:
                continue
            self.pending.update(_pending_by_rule(state))
            if (due := state.next_due()) is not None:
                self.schedule.push(due, state.partition, state.key)
        self.metrics.open_obligations.clear()
        for rule, count in self.pending.items():
            self.metrics.open_obligations.labels(rule=rule).set(count)
        self.recovered = True
        log.info("schedule_rebuilt", deadlines=len(self.schedule), partitions=len(active))

    def _account(self, before: Counter[str], after: Counter[str]) -> None:
        for rule in before.keys() | after.keys():
            self.pending[rule] += after[rule] - before[rule]
            self.metrics.open_obligations.labels(rule=rule).set(self.pending[rule])

    def _add_pages(self) -> None:
        service = self

        @self.app.page("/v1/children/{child_id}")
        async def child_view(self: View, request: Request, child_id: str) -> Response:
            _, refusal = authorise(self, request, service.auth, Role.READ)
            if refusal is not None:
                return refusal
            raw = service.table.get(subject_key("child", child_id).encode())
            if raw is None:
                return error(self, 404, "not_found", "no events about this child")
            return self.json(
                child_summary(SubjectState.from_json(raw), service.clock.now(), service.policy)
            )


def _pending_by_rule(state: SubjectState) -> Counter[str]:
    return Counter(o.rule for o in state.obligations.values() if o.pending)


def child_summary(state: SubjectState, now: datetime, policy: RiskPolicy) -> dict[str, Any]:
    """Return what `GET /v1/children/{id}` shows: obligations, events, level and factors."""
    current = score(state, now, policy.scoring)
    return {
        "child_id": state.id,
        "level": current.level.value,
        "score": current.points,
        "factors": [
            {"signal": f.signal, "points": f.points, "at": f.at.isoformat()}
            for f in current.factors
        ],
        "open_obligations": [
            {
                "rule": o.rule,
                "due_at": o.due_at.isoformat(),
                "severity": o.severity.value,
                "status": "overdue" if o.raised else "pending",
            }
            for o in sorted(state.obligations.values(), key=lambda o: o.due_at)
            if o.pending or (o.raised and not o.resolved)
        ],
        "recent_events": [{"type": r.type, "at": r.at.isoformat()} for r in reversed(state.recent)],
    }


def create_app(
    settings: RiskSettings,
    policy: RiskPolicy,
    clock: Clock,
    registry: CollectorRegistry,
    auth: Authenticator,
) -> RiskService:
    """Wire the risk service."""
    return RiskService(settings, policy, clock, registry, auth)
