"""The risk service's part of the stream core: the engine's decisions as changes and records.

For an event (or a copy forwarded to this partition) and for a subject whose deadline
came, `RiskLogic` runs the pure engine on the subject's state and returns a `Change`:
the alerts, outcomes and child view to publish, the new state, its next deadline, and
what to count once it is written (`RiskEffects`). Nothing is counted, logged as done or
changed outside the change while deciding, so a batch decided again after a failed
publish counts once.

A subject's home is the partition Kafka's default partitioner gives its id, which is
where ingest (keyed by child) puts its events: an event read straight from the events
topic is applied to each subject homed on the partition it arrived on, and a copy for
any other subject (the second child of an incident, an event keyed by something else)
is forwarded to the `-subjects` topic on that subject's home partition.

A direct producer's topic (`services/risk/producers.py`) is read as the events topic is,
each event first checked against the producer's scopes: outside them it is refused
(`Forbidden`: a `forbidden` dead letter and a `request.refused` audit record), within
them its `event.accepted` record is published with what it changes.
"""

from __future__ import annotations

import functools
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from schemas.events import Event, parse_event_json
from schemas.outcomes import OutcomeKind
from services.common.audit import AUDIT_TOPIC
from services.common.stream.driver import Change, View
from services.common.stream.inputs import Forbidden, Input, Record
from services.common.streams import key_partition
from services.common.timeliness import classify
from services.risk import outcomes, rules
from services.risk.caps import MAX_RECORD_BYTES, Capped, cap, fit
from services.risk.child_view import child_view
from services.risk.engine import Outcome, check, evaluate
from services.risk.keys import SubjectKey
from services.risk.metrics import RiskMetrics
from services.risk.policy import RiskPolicy
from services.risk.producers import DirectProducer, accepted_record, out_of_scope, refused_record
from services.risk.records import Outcome as OutcomeRecord
from services.risk.records import Raised, outcome_event, raised_event, resolved_event
from services.risk.scoring import score
from services.risk.state import SubjectState

log = structlog.get_logger(__name__)

HOMES_CACHED = 65536
NO_AREA = "none"
# ("open" or "overdue", rule, area): a series of the open- and overdue-obligation gauges.
Watched = tuple[str, str, str]


@dataclass(frozen=True)
class RiskTopics:
    """Where risk publishes, and the events topic when read directly (co-partitioned)."""

    alerts: str
    outcomes: str
    subjects: str
    # None: no child views (the backtest, which has no desk to read them).
    child_views: str | None = None
    events: str | None = None
    # Direct producers by their topic, and those of their topics read co-partitioned.
    producers: Mapping[str, DirectProducer] = field(default_factory=dict)
    direct_producers: frozenset[str] = frozenset()
    audit: str = AUDIT_TOPIC


@dataclass
class RiskEffects:
    """What a written change makes risk count and log."""

    event_type: str | None = None
    duplicate: bool = False
    outcome: Outcome = field(default_factory=Outcome)
    closed: list[OutcomeRecord] = field(default_factory=list)
    capped: Capped | None = None
    kind: str = ""
    # Open and overdue obligations by (kind, rule, area) before and after, for the gauges.
    pending_before: Counter[Watched] = field(default_factory=Counter)
    pending_after: Counter[Watched] = field(default_factory=Counter)


class RiskLogic:
    """Codecs, decisions and effects of the risk service."""

    def __init__(
        self, policy: RiskPolicy, metrics: RiskMetrics, topics: RiskTopics, *, partitions: int
    ) -> None:
        self.policy = policy
        self.metrics = metrics
        self.topics = topics
        self.partitions = partitions
        self.pending: Counter[Watched] = Counter()
        # murmur2 in pure Python costs more than the rest of routing: remember recent ids.
        self.home = functools.lru_cache(maxsize=HOMES_CACHED)(self._home)

    def _home(self, subject_id: str) -> int:
        """Return the partition that owns a subject: where its id's key is produced."""
        return key_partition(subject_id.encode(), self.partitions)

    def forward(self, value: bytes, subject: SubjectKey) -> Record:
        """Return an event's copy for one subject, bound for the subject's home partition."""
        return Record(self.topics.subjects, subject.encode(), value, self.home(subject.id))

    # -- codecs -------------------------------------------------------------------------

    def encode(self, state: SubjectState) -> bytes:
        """Return the table value: deflated JSON, capped further if it would not fit.

        zlib level 1: a subject's JSON repeats its field names, rule and ids, and halves
        (a one-obligation child: 660 bytes to 320) for about 10 microseconds, where the
        table's values are most of the worker's memory.
        """
        raw = state.to_json()
        if len(raw) > MAX_RECORD_BYTES:
            # Beyond what the caps of `_change` keep: a guard, logged rather than counted,
            # since a batch may be encoded more than once.
            raw, capped = fit(state)
            log.warning("state_fitted", kind=state.kind, dropped=capped.dropped)
        return zlib.compress(raw, 1)

    def decode(self, raw: bytes) -> SubjectState:
        """Return the state a table value holds (deflated JSON, or JSON as once written)."""
        if raw[:1] != b"{":
            raw = zlib.decompress(raw)
        return SubjectState.from_json(raw)

    def due(self, state: SubjectState) -> datetime | None:
        """Return the earliest deadline still watched."""
        return state.next_due()

    # -- decisions ----------------------------------------------------------------------

    def apply(
        self, message: Input, view: View[SubjectState], now: datetime
    ) -> list[Change[SubjectState]]:
        """Apply an event to its subjects homed here; forward a copy to each other one."""
        value = message.value or b""
        parsed = parse_event_json(value, now=now)  # once, whatever number of subjects
        if message.topic == self.topics.subjects:
            return [self._apply(parsed, SubjectKey.parse(message.key or b""), view, now)]
        changes: list[Change[SubjectState]] = []
        producer = self.topics.producers.get(message.topic)
        if producer is not None:
            # Checked where the topic still names the producer: a copy forwarded to the
            # subjects topic no longer does.
            refused = out_of_scope(producer.principal, parsed)
            if refused:
                raise Forbidden(
                    refused, [refused_record(self.topics.audit, producer, message, now)]
                )
            # Published with the batch that applies the event, or the batch is retried:
            # never applied without its record.
            audit = accepted_record(self.topics.audit, producer, parsed, message, now)
            changes.append(Change(f"audit:{producer.name}", None, [audit], write=False))
        direct = (
            message.topic == self.topics.events or message.topic in self.topics.direct_producers
        )
        for subject in rules.subjects(parsed):
            if direct and self.home(subject.id) == message.partition:
                changes.append(self._apply(parsed, subject, view, now))
            else:
                # The same bytes travel on: re-serialising would only be undone by the
                # next parse.
                record = self.forward(value, subject)
                changes.append(Change(str(subject), None, [record], write=False))
        return changes

    def _apply(
        self, event: Event, subject_key: SubjectKey, view: View[SubjectState], now: datetime
    ) -> Change[SubjectState]:
        key = str(subject_key)
        subject = view.get(key) or SubjectState(kind=subject_key.kind, id=subject_key.id)
        before = outcomes.snapshot(subject)
        outcome = evaluate(subject, event, now, self.policy)
        if outcome.duplicate:
            effects = RiskEffects(event_type=event.type, duplicate=True)
            return Change(key, None, effects=[effects], write=False)
        return self._change(subject, outcome, before, now, event_type=event.type)

    def check(
        self,
        key: str,  # noqa: ARG002 - part of the Logic protocol
        state: SubjectState,
        view: View[SubjectState],  # noqa: ARG002 - part of the Logic protocol
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
        capped = cap(state)
        state.revision += 1
        records = []
        for effect in outcome.effects:
            value = raised_event(effect) if isinstance(effect, Raised) else resolved_event(effect)
            records.append(Record(self.topics.alerts, effect.alert_id.encode(), value))
        changed = outcomes.changes(before, state, now, self.policy)
        records.extend(
            Record(self.topics.outcomes, change.obligation_id.encode(), outcome_event(change))
            for change in changed
        )
        if state.kind == "child" and self.topics.child_views is not None:
            current = outcome.score or score(state, now, self.policy.scoring)
            view = child_view(state, current, now, self.policy)
            records.append(Record(self.topics.child_views, state.id.encode(), view))
        effects = RiskEffects(
            event_type=event_type,
            outcome=outcome,
            closed=[c for c in changed if c.outcome in (OutcomeKind.MET, OutcomeKind.BREACHED)],
            capped=capped,
            kind=state.kind,
            pending_before=_pending_in(before),
            pending_after=_pending_by_rule(state),
        )
        return Change(state.key, state, records, state.next_due(), effects=[effects])

    # -- effects ------------------------------------------------------------------------

    def applied(self, changes: Sequence[Change[SubjectState]]) -> None:
        """Count what the written changes did, and keep the open-obligations gauge."""
        for change in changes:
            for effects in change.effects:
                if isinstance(effects, RiskEffects):
                    self._count(effects)

    def _count(self, effects: RiskEffects) -> None:
        metrics = self.metrics
        if effects.duplicate:
            metrics.duplicates.inc()
            log.info("duplicate_dropped", type=effects.event_type)
            return
        if effects.event_type is not None:
            metrics.events.labels(type=effects.event_type).inc()
        if effects.capped is not None:
            _report_capped(metrics, effects.kind, effects.capped)
        for lag in effects.outcome.lags:
            metrics.deadline_lag.observe(lag)
        for closed in effects.closed:
            label = "breached"
            if closed.outcome is OutcomeKind.MET:
                label = classify(
                    closed.due_at,
                    closed.fulfilled_at,
                    closed.at,
                    recorded_late=closed.recorded_late_by_seconds is not None,
                ).value
            metrics.closed.labels(rule=closed.rule, outcome=label).inc()
            late = closed.late_by_seconds
            if late is not None and late > 0:
                metrics.lateness.labels(rule=closed.rule).observe(late)
        for effect in effects.outcome.effects:
            if isinstance(effect, Raised):
                metrics.breaches.labels(rule=effect.rule, severity=effect.severity.value).inc()
                kind = "raised"
            else:
                metrics.resolutions.labels(rule=effect.rule).inc()
                kind = "resolved"
            log.info("alert_published", kind=kind, alert_id=effect.alert_id, rule=effect.rule)
        self._move_pending(effects.pending_before, effects.pending_after)

    def rebuilt(
        self,
        key: str,  # noqa: ARG002 - part of the Logic protocol
        state: SubjectState,
    ) -> None:
        """Count a recovered subject's open obligations in the gauge."""
        self._move_pending(Counter(), _pending_by_rule(state))

    def _move_pending(self, old: Counter[Watched], new: Counter[Watched]) -> None:
        for key in old.keys() | new.keys():
            if new[key] != old[key]:
                self.pending[key] += new[key] - old[key]
                kind, rule, area = key
                gauge = self.metrics.open_obligations if kind == "open" else self.metrics.overdue
                gauge.labels(rule=rule, area=area).set(self.pending[key])

    def forget(self, now: datetime) -> None:  # noqa: ARG002 - part of the Logic protocol
        """Clear the gauges before a rebuild."""
        self.pending.clear()
        self.metrics.open_obligations.clear()
        self.metrics.overdue.clear()


def _report_capped(metrics: RiskMetrics, kind: str, capped: Capped) -> None:
    for collection, count in capped.dropped.items():
        metrics.capped.labels(collection=collection).inc(count)
        log.warning("state_capped", kind=kind, collection=collection, dropped=count)


def _pending_in(snapshot: dict[str, outcomes.Seen]) -> Counter[Watched]:
    return Counter(
        ("overdue" if seen.raised else "open", seen.rule, seen.area or NO_AREA)
        for seen in snapshot.values()
        if not seen.fulfilled
    )


def _pending_by_rule(state: SubjectState) -> Counter[Watched]:
    return Counter(
        ("overdue" if o.raised else "open", o.rule, o.area or NO_AREA)
        for o in state.obligations.values()
        if o.fulfilled_at is None
    )
