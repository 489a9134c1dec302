"""Policy backtest: replay recorded events through the risk service's logic on a simulated clock.

The input is JSON lines, one CloudEvent per line as it was on `safeguarding.events.v1`,
in topic order. A line may carry one more top-level member, `recordedat` (RFC 3339),
which `safeguard export` writes from the broker's timestamp: when the event reached the
topic. That is the event's *arrival*, the moment the risk service would have processed
it. A line without it is taken to have arrived at its own `time`, which makes every late
report look punctual: backtest an export, not a hand-written file, when lateness matters.

The simulated clock starts at the first arrival and only moves forward: an event whose
arrival lies before the clock (a backdated `time`, or a broker timestamp out of order)
is processed at the clock, as a late report would be. Before each event the clock stops
at every deadline that falls due on the way and checks that subject, as the risk
service's timer would; after the last event it runs on to `until` (default: the last
arrival plus the policy's settle time, so the last events' overdue obligations are
judged). The replay runs the service's own stream core and logic (`RiskLogic` on the
in-memory `StreamDriver`), so subjects, duplicates, validation (including "not in the
future" against the simulated clock), keys and states are the service's.

Nothing here reads a clock, a file or the network: the command line feeds lines in.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from schemas.deadletter import DeadLetter
from schemas.errors import InvalidEvent, MalformedJSON
from schemas.events import parse_event_json
from services.common.clock import FakeClock
from services.common.stream.driver import Change, View
from services.common.stream.inputs import Record
from services.common.stream.memory import MemoryBroker, MemoryRuntime
from services.common.timeliness import Timeliness, classify
from services.risk.engine import Outcome
from services.risk.logic import RiskEffects, RiskLogic, RiskTopics
from services.risk.metrics import RiskMetrics
from services.risk.policy import RiskPolicy
from services.risk.records import Raised, Resolved
from services.risk.state import Obligation, SubjectState

ARRIVAL_FIELD = "recordedat"
"""The member `safeguard export` adds to each line: the broker's timestamp of the record."""

# Validation of a line without an arrival must not reject its `time` as "in the future"
# against any real clock: its arrival is its time.
_NO_FUTURE_CHECK = datetime(9000, 1, 1, tzinfo=UTC)
WEEK = timedelta(days=7)
# The replay's topics: one partition, so every subject is homed where its events arrive.
EVENTS, SUBJECTS, ALERTS, OUTCOMES = "events", "risk-subjects", "alerts", "outcomes"
DEAD_LETTERS = "deadletter"
PARTITIONS = 1
MIN_SPAN = timedelta(days=1)


@dataclass(frozen=True)
class Alert:
    """An alert the replay raised, and whether the engine resolved it (met late)."""

    alert_id: str
    rule: str
    severity: str
    subject_kind: str
    subject_id: str
    area: str | None
    raised_at: datetime
    resolved: bool = False


@dataclass
class RuleFigures:
    """What one rule did under one policy.

    `breaches` are the alerts of deadline rules; `resolved_late` the breaches a fulfilment
    then resolved: met late, or met in time but reported after the alert went out.
    `due` counts the obligations judged by the end of the replay: due by then, or met
    already; of these, `on_time`, `late` (fulfilment after the due time) and `overdue`
    (none yet). `not_yet_due` are still open with time left.
    """

    alerts: int = 0
    breaches: int = 0
    resolved_late: int = 0
    due: int = 0
    on_time: int = 0
    late: int = 0
    overdue: int = 0
    not_yet_due: int = 0

    @property
    def on_time_percent(self) -> float | None:
        """Return the share of obligations due that were met on time, or None if none were due."""
        return 100.0 * self.on_time / self.due if self.due else None

    def add(self, other: RuleFigures) -> None:
        """Add another rule's figures to these (for totals)."""
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Result:
    """The outcome of replaying one event file under one policy."""

    start: datetime | None = None
    end: datetime | None = None
    events: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    without_subject: int = 0
    checks: int = 0
    rules: dict[str, RuleFigures] = field(default_factory=dict)
    alerts: dict[str, Alert] = field(default_factory=dict)

    @property
    def weeks(self) -> float | None:
        """Return the span from the first arrival to the end in weeks; None under a day."""
        # A rate over minutes (a hand-made file) would only mislead.
        if self.start is None or self.end is None or self.end - self.start < MIN_SPAN:
            return None
        return (self.end - self.start) / WEEK

    def per_week(self, count: int) -> float | None:
        """Return `count` spread over the span, or None when the span is empty."""
        weeks = self.weeks
        return count / weeks if weeks else None

    def total(self) -> RuleFigures:
        """Return every rule's figures added up."""
        total = RuleFigures()
        for figures in self.rules.values():
            total.add(figures)
        return total

    def to_json(self) -> dict[str, Any]:
        """Return the result as JSON-ready data."""

        def figures(f: RuleFigures) -> dict[str, Any]:
            return {
                "alerts": f.alerts,
                "breaches": f.breaches,
                "resolved_late": f.resolved_late,
                "alerts_per_week": _round(self.per_week(f.alerts)),
                "obligations_due": f.due,
                "met_on_time": f.on_time,
                "met_late": f.late,
                "open_overdue": f.overdue,
                "not_yet_due": f.not_yet_due,
                "on_time_percent": _round(f.on_time_percent),
            }

        return {
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "weeks": _round(self.weeks),
            "events": self.events,
            "duplicates": self.duplicates,
            "rejected": dict(sorted(self.rejected.items())),
            "without_subject": self.without_subject,
            "rules": {rule: figures(f) for rule, f in sorted(self.rules.items())},
            "total": figures(self.total()),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


@dataclass(frozen=True)
class Line:
    """One recorded event: its bytes as on the topic and, if recorded, its arrival."""

    raw: bytes
    arrival: datetime | None


def read_lines(lines: Iterable[str | bytes]) -> Iterator[Line]:
    """Split each line into the CloudEvent as on the topic and its recorded arrival.

    Blank lines are skipped. A line that is not a JSON object passes through untouched,
    so the replay rejects it as the risk service would have.
    """
    for text in lines:
        raw = text.encode() if isinstance(text, str) else text
        if not raw.strip():
            continue
        if _NAME not in raw:
            yield Line(raw=raw.strip(), arrival=None)
            continue
        fast = _split_last_member(raw.rstrip())
        if fast is not None:
            yield fast
            continue
        try:
            document = json.loads(raw)
        except ValueError:
            yield Line(raw=raw.strip(), arrival=None)
            continue
        if not isinstance(document, dict) or ARRIVAL_FIELD not in document:
            yield Line(raw=raw.strip(), arrival=None)
            continue
        arrival = _parse_arrival(document.pop(ARRIVAL_FIELD))
        yield Line(raw=json.dumps(document, separators=(",", ":")).encode(), arrival=arrival)


_NAME = f'"{ARRIVAL_FIELD}"'.encode()
_MEMBER = f',"{ARRIVAL_FIELD}":"'.encode()


def _split_last_member(raw: bytes) -> Line | None:
    """Cut `recordedat` off a line whose last member it is, as export writes it.

    A JSON round trip per line was an eighth of the replay's time. The member is the
    top-level object's own when the line ends right after its string and one brace.
    """
    at = raw.rfind(_MEMBER)
    if at < 0 or not raw.endswith(b'"}'):
        return None
    value = raw[at + len(_MEMBER) : -2]
    if b'"' in value or b"\\" in value:
        return None
    return Line(raw=raw[:at] + b"}", arrival=_parse_arrival(value.decode()))


class BadArrival(ValueError):
    """A line's `recordedat` is not an RFC 3339 timestamp with an offset."""


def _parse_arrival(value: object) -> datetime:
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.utcoffset() is None:
        raise BadArrival(f"{ARRIVAL_FIELD} must be an RFC 3339 timestamp with an offset")
    return parsed


class _ReplayLogic(RiskLogic):
    """Risk's own logic, telling the replay what each written change did."""

    def __init__(self, policy: RiskPolicy, replay: Replay) -> None:
        super().__init__(
            policy,
            RiskMetrics(CollectorRegistry()),
            RiskTopics(alerts=ALERTS, outcomes=OUTCOMES, subjects=SUBJECTS, events=EVENTS),
            partitions=PARTITIONS,
        )
        self.replay = replay

    def check(
        self, key: str, state: SubjectState, view: View[SubjectState], now: datetime
    ) -> Change[SubjectState] | None:
        """Count each deadline the clock stops at, then check it as the service would."""
        self.replay.result.checks += 1
        return super().check(key, state, view, now)

    def applied(self, changes: Sequence[Change[SubjectState]]) -> None:
        """Count as the service does, and keep the replay's ledger."""
        super().applied(changes)
        for change in changes:
            self.replay.after(change)


class Replay:
    """The risk service's stream core and logic on a simulated clock, for one policy."""

    def __init__(self, policy: RiskPolicy) -> None:
        self.policy = policy
        self.result = Result()
        self.clock: FakeClock | None = None
        self.broker = MemoryBroker(partitions=PARTITIONS)
        self.runtime: MemoryRuntime[SubjectState] | None = None
        # Every obligation ever opened, by subject and obligation key. The engine drops
        # closed obligations after its retention; their outcome still counts here.
        self._ledger: dict[tuple[str, str], Obligation] = {}
        # The obligations each subject held after its last change.
        self._names: dict[str, set[str]] = {}

    def _start(self, at: datetime) -> MemoryRuntime[SubjectState]:
        self.clock = FakeClock(at)
        self.result.start = at
        self.runtime = MemoryRuntime(
            self.broker,
            _ReplayLogic(self.policy, self),
            self.clock,
            name="risk",
            inputs=[EVENTS, SUBJECTS],
            dead_letters_topic=DEAD_LETTERS,
        )
        return self.runtime

    async def feed(self, line: Line) -> None:
        """Process one recorded event at its arrival."""
        arrival, key = line.arrival, _first_subject(line.raw)
        if arrival is None:
            # No recorded arrival: taken to have arrived at its own time, once valid.
            try:
                arrival = parse_event_json(line.raw, now=_NO_FUTURE_CHECK).time
            except MalformedJSON:
                self._reject("invalid_json")
                return
            except InvalidEvent:
                self._reject("invalid_event")
                return
        runtime = self.runtime or self._start(arrival)
        await self._advance(arrival, inclusive=False)
        self.result.events += 1
        await self.broker.publish([Record(EVENTS, key, line.raw, 0)])
        await runtime.poll()
        if not self._collect() and key is None:
            self.result.without_subject += 1

    async def finish(self, until: datetime | None = None) -> Result:
        """Run the clock on to `until` (default: last arrival + settle) and total up."""
        if self.clock is None:
            return self.result
        now = self.clock.now()
        end = max(now, until or now + self.policy.settle)
        await self._advance(end, inclusive=True)
        self.result.end = end
        for obligation in self._ledger.values():
            self._count_obligation(obligation, end)
        return self.result

    async def _advance(self, to: datetime, *, inclusive: bool) -> None:
        """Stop the clock at every deadline before `to` (or at it), then move it to `to`.

        Deadlines due before the arrival are checked first; one due at the very instant
        is raised by the event's own evaluation if the event does not meet it.
        """
        assert self.clock is not None  # noqa: S101 - started by the first arrival
        assert self.runtime is not None  # noqa: S101 - started with the clock
        while (due := self.runtime.next_due()) is not None and (
            due <= to if inclusive else due < to
        ):
            self.clock.set(max(due, self.clock.now()))
            await self.runtime.tick()
            await self.runtime.poll()
            self._collect()
        self.clock.set(max(to, self.clock.now()))

    def _collect(self) -> int:
        """Count what the service dead-lettered, and let the broker forget what was read."""
        dead = 0
        for message in self.broker.log:
            if message.topic == DEAD_LETTERS:
                letter = DeadLetter.model_validate_json(message.value or b"")
                self._reject(letter.reason.value)
                self.result.events -= 1
                dead += 1
        self.broker.log.clear()
        assert self.runtime is not None  # noqa: S101 - collecting after a poll
        self.runtime.position = 0
        return dead

    def _reject(self, reason: str) -> None:
        self.result.rejected[reason] = self.result.rejected.get(reason, 0) + 1

    def after(self, change: Change[SubjectState]) -> None:
        """Note what a written change did: alerts, duplicates, obligations opened or gone."""
        for effects in change.effects:
            if isinstance(effects, RiskEffects):
                if effects.duplicate:
                    self.result.duplicates += 1
                self._record(effects.outcome)
        state = change.state
        if state is None or not change.write:
            return
        key = change.key
        ledger = self._ledger
        assert self.clock is not None  # noqa: S101 - changes come after the first arrival
        horizon = self.clock.now() - self.policy.retention
        known = self._names.get(key, set())
        for name in known - state.obligations.keys():
            gone = ledger.get((key, name))
            if gone is not None and not _pruned(gone, horizon):
                # Neither kept nor aged out: superseded (an offender's visit cycle
                # re-shaped by a later assessment), so it was never an obligation to count.
                del ledger[(key, name)]
        for name, obligation in state.obligations.items():
            ledger[(key, name)] = obligation
        self._names[key] = set(state.obligations)

    def _record(self, outcome: Outcome) -> None:
        for effect in outcome.effects:
            figures = self.result.rules.setdefault(effect.rule, RuleFigures())
            if isinstance(effect, Raised):
                figures.alerts += 1
                if effect.due_at is not None:
                    figures.breaches += 1
                self.result.alerts[effect.alert_id] = Alert(
                    alert_id=effect.alert_id,
                    rule=effect.rule,
                    severity=effect.severity.value,
                    subject_kind=effect.subject_kind.value,
                    subject_id=effect.subject_id,
                    area=effect.area,
                    raised_at=effect.raised_at,
                )
            elif isinstance(effect, Resolved):
                figures.resolved_late += 1
                raised = self.result.alerts.get(effect.alert_id)
                if raised is not None:
                    self.result.alerts[effect.alert_id] = replace(raised, resolved=True)

    def _count_obligation(self, obligation: Obligation, end: datetime) -> None:
        figures = self.result.rules.setdefault(obligation.rule, RuleFigures())
        judged = classify(obligation.due_at, obligation.fulfilled_at, end)
        if judged is Timeliness.NOT_YET_DUE:
            figures.not_yet_due += 1
            return
        figures.due += 1
        if judged is Timeliness.OPEN_OVERDUE:
            figures.overdue += 1
        elif judged is Timeliness.MET_ON_TIME:
            figures.on_time += 1
        else:
            figures.late += 1


def _pruned(obligation: Obligation, horizon: datetime) -> bool:
    """Tell whether the engine's retention (engine._prune) is what removed `obligation`."""
    kept = (
        obligation.due_at >= horizon
        or (obligation.raised and not obligation.resolved)
        or obligation.pending
    )
    return not kept


def backtest(
    lines: Iterable[str | bytes], policy: RiskPolicy, *, until: datetime | None = None
) -> Result:
    """Replay recorded events under `policy` and return what it would have raised."""

    async def replay() -> Result:
        run = Replay(policy)
        for line in read_lines(lines):
            await run.feed(line)
        return await run.finish(until)

    # The cyclic collector's passes over a long replay's objects cost a fifth of its time
    # while freeing nothing (the replay makes no cycles; refcounting frees all).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return asyncio.run(replay())
    finally:
        if collecting:
            gc.enable()


def _first_subject(raw: bytes) -> bytes | None:
    """Return the key ingest would give an event (its first subject's id), if any."""
    try:
        data = json.loads(raw).get("data")
    except (ValueError, AttributeError):
        return None
    if not isinstance(data, dict):
        return None
    for name in ("child_id", "offender_id", "enquiry_id"):
        if isinstance(value := data.get(name), str):
            return value.encode()
    children = data.get("children")
    if isinstance(children, list) and children and isinstance(children[0], dict):
        child = children[0].get("child_id")
        return child.encode() if isinstance(child, str) else None
    return None
