"""Policy backtest: replay recorded events through the pure risk engine on a simulated clock.

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
judged). Subjects, duplicates, validation (including "not in the future" against the
simulated clock) and keys are those of services/risk/app.py; each subject's state is a
`SubjectState` as in the service's table.

Nothing here reads a clock, a file or the network: the command line feeds lines in.
"""

from __future__ import annotations

import gc
import heapq
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.alerts import AlertRaised, AlertResolved
from schemas.errors import InvalidEvent, MalformedJSON
from schemas.events import Event, parse_event_json
from services.risk import rules
from services.risk.engine import Outcome, check, evaluate
from services.risk.keys import SubjectKey
from services.risk.policy import RiskPolicy
from services.risk.state import Obligation, SubjectState

ARRIVAL_FIELD = "recordedat"
"""The member `safeguard export` adds to each line: the broker's timestamp of the record."""

# Validation of a line without an arrival must not reject its `time` as "in the future"
# against any real clock: its arrival is its time.
_NO_FUTURE_CHECK = datetime(9000, 1, 1, tzinfo=UTC)
WEEK = timedelta(days=7)
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


class Replay:
    """The risk service's correlate step on a simulated clock, for one policy."""

    def __init__(self, policy: RiskPolicy) -> None:
        self.policy = policy
        self.result = Result()
        self.clock: datetime | None = None
        self.states: dict[str, SubjectState] = {}
        # (check_at, key), plus the latest check_at per key so stale entries are skipped:
        # a stale check could not raise anything the current one would not.
        self._heap: list[tuple[datetime, str]] = []
        self._scheduled: dict[str, datetime] = {}
        # Every obligation ever opened, by subject and obligation key. The engine drops
        # closed obligations after its retention; their outcome still counts here.
        self._ledger: dict[tuple[str, str], Obligation] = {}

    def feed(self, line: Line) -> None:
        """Process one recorded event at its arrival."""
        # A recorded arrival moves the clock even for an event the service would reject.
        now = _NO_FUTURE_CHECK if line.arrival is None else self._advance(line.arrival)
        try:
            event = parse_event_json(line.raw, now=now)
        except MalformedJSON:
            self._reject("invalid_json")
            return
        except InvalidEvent:
            self._reject("invalid_event")
            return
        if line.arrival is None:
            now = self._advance(event.time)
        self.result.events += 1
        subjects = rules.subjects(event)
        if not subjects:
            self.result.without_subject += 1
        for subject in subjects:
            self._apply(str(subject), event, now)

    def finish(self, until: datetime | None = None) -> Result:
        """Run the clock on to `until` (default: last arrival + settle) and total up."""
        if self.clock is None:
            return self.result
        end = max(self.clock, until or self.clock + self.policy.settle)
        self._run_due(end, inclusive=True)
        self.clock = end
        self.result.end = end
        for obligation in self._ledger.values():
            self._count_obligation(obligation, end)
        return self.result

    def _advance(self, arrival: datetime) -> datetime:
        now = arrival if self.clock is None else max(self.clock, arrival)
        if self.result.start is None:
            self.result.start = now
        # Deadlines due before the arrival are checked first; one due at the very instant
        # is raised by the event's own evaluation if the event does not meet it.
        self._run_due(now, inclusive=False)
        self.clock = now
        return now

    def _reject(self, reason: str) -> None:
        self.result.rejected[reason] = self.result.rejected.get(reason, 0) + 1

    def _state(self, key: str) -> SubjectState:
        state = self.states.get(key)
        if state is None:
            subject = SubjectKey.parse(key)
            state = SubjectState(kind=subject.kind, id=subject.id)
            self.states[key] = state
        return state

    def _apply(self, key: str, event: Event, now: datetime) -> None:
        state = self._state(key)
        before = dict(state.obligations)
        outcome = evaluate(state, event, now, self.policy)
        if outcome.duplicate:
            self.result.duplicates += 1
            return
        self._after(key, state, before, outcome, now)

    def _run_due(self, until: datetime, *, inclusive: bool) -> None:
        heap = self._heap
        while heap and (heap[0][0] <= until if inclusive else heap[0][0] < until):
            due, key = heapq.heappop(heap)
            if self._scheduled.get(key) != due:
                continue
            del self._scheduled[key]
            state = self.states[key]
            before = dict(state.obligations)
            self.result.checks += 1
            self._after(key, state, before, check(state, due, self.policy), due)

    def _after(
        self,
        key: str,
        state: SubjectState,
        before: dict[str, Obligation],
        outcome: Outcome,
        now: datetime,
    ) -> None:
        self._record(outcome)
        ledger = self._ledger
        for name, obligation in state.obligations.items():
            ledger[(key, name)] = obligation
        horizon = now - self.policy.retention
        for name, obligation in before.items():
            if name in state.obligations or _pruned(obligation, horizon):
                continue
            # Neither kept nor aged out: superseded (an offender's visit cycle re-shaped
            # by a later assessment), so it was never an obligation to count.
            ledger.pop((key, name), None)
        due = state.next_due()
        if due is not None and self._scheduled.get(key) != due:
            self._scheduled[key] = due
            heapq.heappush(self._heap, (due, key))

    def _record(self, outcome: Outcome) -> None:
        for effect in outcome.effects:
            figures = self.result.rules.setdefault(effect.rule, RuleFigures())
            if isinstance(effect, AlertRaised):
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
            elif isinstance(effect, AlertResolved):
                figures.resolved_late += 1
                raised = self.result.alerts.get(effect.alert_id)
                if raised is not None:
                    self.result.alerts[effect.alert_id] = replace(raised, resolved=True)

    def _count_obligation(self, obligation: Obligation, end: datetime) -> None:
        figures = self.result.rules.setdefault(obligation.rule, RuleFigures())
        # Met before a deadline after the end is on time already; only what is still
        # open with time left is left out of the figures.
        if obligation.fulfilled_at is None and obligation.due_at > end:
            figures.not_yet_due += 1
            return
        figures.due += 1
        if obligation.fulfilled_at is None:
            figures.overdue += 1
        elif obligation.fulfilled_at <= obligation.due_at:
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
    replay = Replay(policy)
    # Every subject's state stays here as live objects (the service keeps bytes in
    # RocksDB), and the cyclic collector's passes over them cost a fifth of a long
    # replay while freeing nothing (the replay makes no cycles; refcounting frees all).
    collecting = gc.isenabled()
    gc.disable()
    try:
        for line in read_lines(lines):
            replay.feed(line)
        return replay.finish(until)
    finally:
        if collecting:
            gc.enable()
