"""The risk engine: `evaluate(state, event, now)` and `check(state, now)`, pure and clock-driven.

Every effect is an alert (raised or resolved) with a deterministic id, so replaying the
same input after a crash produces the same ids and consumers drop the repeats. The ids
are keyed with the deployment's secret (`policy.alert_key`), so they are stable across
restarts but cannot be recomputed from a child id without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from schemas.alerts import Rule, Severity, SubjectKind, deterministic_alert_id
from schemas.events import (
    ChildMissingEvent,
    CustodyChildDetainedEvent,
    Event,
    ExploitationConcernRaisedEvent,
    IncidentCategory,
    IncidentReportedEvent,
    OffenderRegisteredEvent,
    OffenderRiskAssessedEvent,
    OffenderVisitedEvent,
    ReferralSharedEvent,
)
from services.risk import rules
from services.risk.keys import ObligationKey, SubjectKey
from services.risk.offender import routine_cycles
from services.risk.patterns import PatternHit, repeats
from services.risk.policy import RiskLevel, RiskPolicy
from services.risk.records import Raised, Resolved
from services.risk.scoring import Score, score
from services.risk.state import (
    Concern,
    Episode,
    Fact,
    Incident,
    LevelChange,
    Obligation,
    PatternAlert,
    RecentEvent,
    Ref,
    SubjectState,
    Visit,
)

Effect = Raised | Resolved
RECENT_EVENTS = 50
ELEVATED = frozenset({RiskLevel.HIGH, RiskLevel.CRITICAL})


@dataclass
class Outcome:
    """What processing one input did."""

    effects: list[Effect] = field(default_factory=list)
    duplicate: bool = False
    # Seconds each breach the clock raised fired after its check time (deadline lag).
    lags: list[float] = field(default_factory=list)
    # A child's score as the decision left it, when it was computed (the child view's).
    score: Score | None = None


def evaluate(state: SubjectState, event: Event, now: datetime, policy: RiskPolicy) -> Outcome:
    """Apply one event to a subject's state (in place) and return the alerts it causes."""
    key = f"{event.source}|{event.id}"
    if key in state.seen:
        return Outcome(duplicate=True)
    state.seen[key] = event.time
    _record(state, event)

    touched: set[str] = set()
    for match, fact in rules.facts(event):
        known = state.facts.setdefault(match, [])
        if fact not in known:
            known.append(fact)
        touched.add(match)
    for new in rules.triggered(event, SubjectKey(state.kind, state.id), policy):
        if str(ObligationKey(new.rule, new.scope)) not in state.obligations:
            _open(state, new, now, policy)
            touched.add(new.match)
    if state.kind == "offender":
        _sync_routine_cycles(state, now, policy)
        touched.add(rules.ROUTINE_VISIT.match())

    effects: list[Effect] = []
    for obligation in state.obligations.values():
        if obligation.match in touched and _refresh(state, obligation):
            obligation.resolved = True
            effects.append(_resolved(state, obligation, now, policy.alert_key))
    effects.extend(_raise_patterns(state, event, now, policy))
    outcome = _finish(state, now, policy, rules.ref(event))
    outcome.effects[:0] = effects
    _prune(state, now, policy)
    return outcome


def check(state: SubjectState, now: datetime, policy: RiskPolicy) -> Outcome:
    """Raise every breach the clock reveals; each at most once."""
    outcome = _finish(state, now, policy, None)
    if outcome.effects:
        _prune(state, now, policy)
    return outcome


def alert_id(state: SubjectState, rule: str, scope: str, key: bytes) -> str:
    """Return the deterministic id of an alert: same breach and key, same id."""
    return deterministic_alert_id(rule, state.kind, state.id, scope, key=key)


def obligation_alert_id(state: SubjectState, obligation: Obligation, key: bytes) -> str:
    """Return the id an obligation's alert has (or would have), computed once and kept."""
    if obligation.alert_id is None:
        obligation.alert_id = alert_id(state, obligation.rule, obligation.scope, key)
    return obligation.alert_id


def _record(state: SubjectState, event: Event) -> None:
    state.recent.append(RecentEvent(type=event.type, at=event.time))
    state.recent.sort(key=lambda r: r.at)
    del state.recent[:-RECENT_EVENTS]
    data = event.data
    age = getattr(data, "age", None)
    if isinstance(event, IncidentReportedEvent):
        child = next(c for c in event.data.children if c.child_id == state.id)
        age = child.age
        state.incidents[event.data.incident_id] = Incident(
            at=event.time, category=event.data.category, present=child.present
        )
    elif isinstance(event, ChildMissingEvent):
        state.episodes[event.data.episode_id] = Episode(at=event.time, grade=event.data.risk_grade)
    elif isinstance(event, ExploitationConcernRaisedEvent):
        state.concerns[event.data.concern_id] = Concern(at=event.time, level=event.data.level)
    elif isinstance(event, CustodyChildDetainedEvent):
        state.detentions[event.data.custody_id] = event.time
    elif isinstance(event, OffenderRegisteredEvent | OffenderRiskAssessedEvent):
        state.levels.append(
            LevelChange(
                at=event.time,
                level=event.data.risk_level,
                ref=rules.ref(event),
                assessed=isinstance(event, OffenderRiskAssessedEvent),
            )
        )
        state.levels.sort(key=lambda change: change.at)
    elif isinstance(event, OffenderVisitedEvent):
        state.visits.append(Visit(at=event.time, ref=rules.ref(event)))
        state.visits.sort(key=lambda visit: visit.at)
    if isinstance(age, int):
        state.age = age


def _open(
    state: SubjectState, new: rules.NewObligation, now: datetime, policy: RiskPolicy
) -> Obligation:
    # An obligation already overdue on arrival waits a moment for the events sent with
    # it (a backlog replayed in order), so a fulfilment right behind it is not an alarm.
    obligation = Obligation(
        check_at=max(new.due_at, now + policy.settle),
        rule=new.rule,
        scope=new.scope,
        match=new.match,
        trigger=new.trigger,
        triggered_at=new.triggered_at,
        due_at=new.due_at,
        severity=new.severity,
        area=new.area,
        summary=new.summary,
        not_before=new.not_before,
        strictly_after=new.strictly_after,
    )
    state.obligations[obligation.key] = obligation
    return obligation


def _sync_routine_cycles(state: SubjectState, now: datetime, policy: RiskPolicy) -> None:
    # Cycles are derived from the whole history, so a visit or assessment arriving out
    # of order re-shapes them; a cycle already breached keeps its alert.
    wanted = {str(ObligationKey(c.rule, c.scope)): c for c in routine_cycles(state, policy)}
    for key, obligation in list(state.obligations.items()):
        if (
            obligation.rule == Rule.OFFENDER_ROUTINE_VISIT
            and key not in wanted
            and not obligation.raised
        ):
            del state.obligations[key]
    for key, cycle in wanted.items():
        existing = state.obligations.get(key)
        if existing is None:
            _open(state, cycle, now, policy)
        elif not existing.raised:
            existing.due_at = cycle.due_at
            existing.check_at = max(cycle.due_at, now + policy.settle)


def _refresh(state: SubjectState, obligation: Obligation) -> bool:
    """Match facts to an obligation; True when this newly resolves a raised alert."""
    candidates = [f for f in state.facts.get(obligation.match, []) if obligation.accepts(f.at)]
    best: Fact | None = min(candidates, key=lambda f: f.at, default=None)
    if best is None:
        return False
    if obligation.fulfilled_at is None or best.at < obligation.fulfilled_at:
        obligation.fulfilled_at = best.at
        obligation.fulfilment = best.ref
    return obligation.raised and not obligation.resolved


def _finish(state: SubjectState, now: datetime, policy: RiskPolicy, trigger: Ref | None) -> Outcome:
    """Raise due breaches, then re-score a child and raise a rise to high or critical."""
    # Scored before the first breach is marked, and only if there is one: the clock's
    # checks mostly find nothing due.
    bump: bool | None = None
    effects: list[Effect] = []
    lags: list[float] = []
    for obligation in state.obligations.values():
        if obligation.raised:
            continue
        fulfilled_at = obligation.fulfilled_at
        if fulfilled_at is not None and fulfilled_at <= obligation.due_at:
            continue  # met in time
        if fulfilled_at is None:
            if now < obligation.check_at:
                continue  # still time
            lags.append((now - obligation.check_at).total_seconds())
        if bump is None:
            bump = state.kind == "child" and score(state, now, policy.scoring).level in ELEVATED
        obligation.raised = True
        severity = obligation.severity.bump() if bump else obligation.severity
        effects.append(_raised(state, obligation, severity, now, policy.alert_key))
        trigger = trigger or obligation.trigger
        if fulfilled_at is not None:
            # Met, but late: a breach all the same, raised and resolved together.
            obligation.resolved = True
            effects.append(_resolved(state, obligation, now, policy.alert_key))
    outcome = Outcome(effects=effects, lags=lags)
    if state.kind == "child" and trigger is not None:
        outcome.score = score(state, now, policy.scoring)
        effects.extend(_rescore(state, now, policy, trigger, outcome.score))
    return outcome


def _rescore(
    state: SubjectState, now: datetime, policy: RiskPolicy, trigger: Ref, current: Score
) -> list[Effect]:
    previous, state.level = state.level, current.level
    if current.level.rank <= previous.rank or current.level not in ELEVATED:
        return []
    severity = Severity.CRITICAL if current.level is RiskLevel.CRITICAL else Severity.HIGH
    scope = f"{current.level.value}|{trigger.source}|{trigger.id}"
    top = ", ".join(f.signal for f in current.factors[-3:])
    return [
        _alert(
            state,
            key=policy.alert_key,
            rule=Rule.RISK_LEVEL,
            scope=scope,
            severity=severity,
            summary=f"Risk level rose to {current.level.value} "
            f"({current.points} points; latest: {top})",
            trigger=trigger,
            due_at=None,
            area=None,
            now=now,
        )
    ]


def _raise_patterns(
    state: SubjectState, event: Event, now: datetime, policy: RiskPolicy
) -> list[Effect]:
    patterns = policy.patterns
    hits: list[PatternHit] = []
    if isinstance(event, ChildMissingEvent):
        hits = repeats(
            Rule.REPEAT_MISSING,
            [(e.at, episode) for episode, e in state.episodes.items()],
            patterns.repeat_missing,
            [p.at for p in state.patterns if p.rule == Rule.REPEAT_MISSING],
            "missing episodes",
        )
    elif (
        isinstance(event, IncidentReportedEvent)
        and event.data.category is IncidentCategory.DOMESTIC_ABUSE
    ):
        hits = repeats(
            Rule.REPEAT_DOMESTIC_ABUSE,
            [
                (i.at, incident)
                for incident, i in state.incidents.items()
                if i.category is IncidentCategory.DOMESTIC_ABUSE
            ],
            patterns.repeat_domestic_abuse,
            [p.at for p in state.patterns if p.rule == Rule.REPEAT_DOMESTIC_ABUSE],
            "domestic abuse incidents",
        )
    elif isinstance(event, ReferralSharedEvent) and event.data.agency in rules.SOCIAL_CARE:
        incomplete = patterns.referral_incomplete
        missing = [c.value for c in incomplete.required_contents if c not in event.data.contents]
        if missing:
            hits = [
                PatternHit(
                    rule=Rule.REFERRAL_INCOMPLETE,
                    scope=event.data.referral_id,
                    at=event.time,
                    severity=incomplete.severity,
                    summary="Referral to children's social care lacks "
                    + " and ".join(missing).replace("_", " "),
                    trigger=rules.ref(event),
                )
            ]
    effects: list[Effect] = []
    for hit in hits:
        if any(p.rule == hit.rule and p.scope == hit.scope for p in state.patterns):
            continue
        state.patterns.append(PatternAlert(rule=hit.rule, scope=hit.scope, at=hit.at))
        effects.append(
            _alert(
                state,
                key=policy.alert_key,
                rule=hit.rule,
                scope=hit.scope,
                severity=hit.severity,
                summary=hit.summary,
                trigger=hit.trigger or rules.ref(event),
                due_at=None,
                area=None,
                now=now,
            )
        )
    return effects


def _alert(  # noqa: PLR0913 - an alert has this many parts
    state: SubjectState,
    *,
    key: bytes,
    rule: str,
    scope: str,
    severity: Severity,
    summary: str,
    trigger: Ref,
    due_at: datetime | None,
    area: str | None,
    now: datetime,
    ident: str | None = None,
) -> Raised:
    return Raised(
        alert_id=ident or alert_id(state, rule, scope, key),
        rule=rule,
        severity=severity,
        subject_kind=SubjectKind(state.kind),
        area=area,
        trigger=trigger,
        due_at=due_at,
        raised_at=now,
        summary=summary,
        **{f"{state.kind}_id": state.id},
    )


def _raised(
    state: SubjectState, obligation: Obligation, severity: Severity, now: datetime, key: bytes
) -> Raised:
    return _alert(
        state,
        ident=obligation_alert_id(state, obligation, key),
        key=key,
        rule=obligation.rule,
        scope=obligation.scope,
        severity=severity,
        summary=obligation.summary,
        trigger=obligation.trigger,
        due_at=obligation.due_at,
        area=obligation.area,
        now=now,
    )


def _resolved(state: SubjectState, obligation: Obligation, now: datetime, key: bytes) -> Resolved:
    assert obligation.fulfilled_at is not None  # noqa: S101 - only called once fulfilled
    assert obligation.fulfilment is not None  # noqa: S101 - set with fulfilled_at
    late = max(0, int((obligation.fulfilled_at - obligation.due_at).total_seconds()))
    return Resolved(
        alert_id=obligation_alert_id(state, obligation, key),
        rule=obligation.rule,
        resolved_at=now,
        fulfilled_at=obligation.fulfilled_at,
        late_by_seconds=late,
        fulfilment=obligation.fulfilment,
    )


def _prune(state: SubjectState, now: datetime, policy: RiskPolicy) -> None:
    """Forget what is older than the retention, so a subject's state stays bounded."""
    horizon = now - policy.retention
    state.seen = {k: at for k, at in state.seen.items() if at >= horizon}
    state.obligations = {
        k: o
        for k, o in state.obligations.items()
        if o.due_at >= horizon or (o.raised and not o.resolved) or o.pending
    }
    for match in list(state.facts):
        kept = [f for f in state.facts[match] if f.at >= horizon]
        if kept:
            state.facts[match] = kept
        else:
            del state.facts[match]
    state.incidents = {k: i for k, i in state.incidents.items() if i.at >= horizon}
    state.episodes = {k: e for k, e in state.episodes.items() if e.at >= horizon}
    state.concerns = {k: c for k, c in state.concerns.items() if c.at >= horizon}
    state.detentions = {k: at for k, at in state.detentions.items() if at >= horizon}
    state.patterns = [p for p in state.patterns if p.at >= horizon]
