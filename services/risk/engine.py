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
    ChildMissingRegradedEvent,
    CustodyAccommodationRefusedEvent,
    CustodyAccommodationRequestedEvent,
    CustodyChildDetainedEvent,
    Event,
    ExploitationConcernRaisedEvent,
    IncidentCategory,
    IncidentReportedEvent,
    MissingRiskGrade,
    OffenderManagerAssignedEvent,
    OffenderRegisteredEvent,
    OffenderRiskAssessedEvent,
    OffenderVisitedEvent,
    ReferralSharedEvent,
    ReferralSupplementedEvent,
    VisitOutcome,
)
from services.common.timeliness import recorded_late_by
from services.risk import rules
from services.risk.concerns import strategy_discussions
from services.risk.keys import ObligationKey, SubjectKey
from services.risk.offender import assessment_cycles, routine_cycles
from services.risk.patterns import Occurrence, PatternHit, repeats
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
    Referral,
    SubjectState,
    Supplement,
    Transfer,
    Visit,
)

Effect = Raised | Resolved
RECENT_EVENTS = 50
REFUSALS = 50
ELEVATED = frozenset({RiskLevel.HIGH, RiskLevel.CRITICAL})
GRADE_ORDER = (
    MissingRiskGrade.NO_APPARENT_RISK,
    MissingRiskGrade.LOW,
    MissingRiskGrade.MEDIUM,
    MissingRiskGrade.HIGH,
)
# Events after which a child's exploitation concerns are looked at again.
CONCERN_EVENTS = (ExploitationConcernRaisedEvent, ChildMissingEvent, ChildMissingRegradedEvent)
CUSTODY = rules.BY_RULE[Rule.CHILD_IN_CUSTODY.value]


@dataclass
class Outcome:
    """What processing one input did."""

    effects: list[Effect] = field(default_factory=list)
    duplicate: bool = False
    # Seconds each breach the clock raised fired after its check time (deadline lag).
    lags: list[float] = field(default_factory=list)
    # A child's score as the decision left it, when it was computed (the child view's).
    score: Score | None = None


def evaluate(  # noqa: C901 - one pass over what an event records, opens and meets
    state: SubjectState, event: Event, now: datetime, policy: RiskPolicy
) -> Outcome:
    """Apply one event to a subject's state (in place) and return the alerts it causes."""
    key = f"{event.source}|{event.id}"
    if key in state.seen:
        return Outcome(duplicate=True)
    state.seen[key] = event.time
    _record(state, event, now)

    touched: set[str] = set()
    found, refused = rules.facts(event, policy, now)
    if refused:
        state.refused.extend(refused)
        state.refused.sort(key=lambda r: r.at)
        del state.refused[:-REFUSALS]
    for match, fact in found:
        known = state.facts.setdefault(match, [])
        if fact not in known:
            known.append(fact)
        touched.add(match)
    for new in rules.triggered(event, SubjectKey(state.kind, state.id), policy):
        _open_or_tighten(state, new, now, policy, touched)
    if state.kind == "offender":
        _sync_cycles(state, now, policy, touched)
    elif isinstance(event, CONCERN_EVENTS):
        for new in strategy_discussions(state, policy):
            _open_or_tighten(state, new, now, policy, touched)
    if isinstance(event, ReferralSupplementedEvent | ReferralSharedEvent):
        # A part of a referral can complete it for whichever rule it was shared for.
        touched.update(o.match for o in state.obligations.values() if o.requires is not None)
    _attach_transfers(state)

    effects: list[Effect] = []
    for obligation in state.obligations.values():
        if obligation.match in touched and _refresh(state, obligation):
            obligation.resolved = True
            effects.append(_resolved(state, obligation, now, policy))
    effects.extend(_raise_patterns(state, event, now, policy))
    outcome = _finish(state, now, policy, rules.ref(event), event.data.area)
    outcome.effects[:0] = effects
    _prune(state, now, policy)
    return outcome


def check(state: SubjectState, now: datetime, policy: RiskPolicy) -> Outcome:
    """Raise every breach the clock reveals; each at most once."""
    outcome = _finish(state, now, policy, None, None)
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


def _record(state: SubjectState, event: Event, now: datetime) -> None:
    area = event.data.area
    state.recent.append(RecentEvent(type=event.type, at=event.time, area=area))
    state.recent.sort(key=lambda r: r.at)
    del state.recent[:-RECENT_EVENTS]
    data = event.data
    age = getattr(data, "age", None)
    ref = rules.ref(event)
    if isinstance(event, IncidentReportedEvent):
        child = next(c for c in event.data.children if c.child_id == state.id)
        age = child.age
        state.incidents[event.data.incident_id] = Incident(
            at=event.time, category=event.data.category, present=child.present, area=area
        )
    elif isinstance(event, ChildMissingEvent | ChildMissingRegradedEvent):
        _record_episode(state, event, ref)
    elif isinstance(event, ExploitationConcernRaisedEvent):
        state.concerns[event.data.concern_id] = Concern(
            at=event.time, level=event.data.level, area=area, ref=ref
        )
    elif isinstance(event, CustodyChildDetainedEvent):
        state.detentions[event.data.custody_id] = event.time
        state.detention_areas[event.data.custody_id] = area
    elif isinstance(event, CustodyAccommodationRequestedEvent | CustodyAccommodationRefusedEvent):
        transfer = state.transfers.setdefault(event.data.custody_id, Transfer())
        if isinstance(event, CustodyAccommodationRequestedEvent):
            transfer.requested_at = _earliest(transfer.requested_at, event.time)
        else:
            transfer.refused_at = _earliest(transfer.refused_at, event.time)
    elif isinstance(event, ReferralSharedEvent | ReferralSupplementedEvent):
        _record_referral(state, event, now)
    elif isinstance(
        event,
        OffenderRegisteredEvent
        | OffenderRiskAssessedEvent
        | OffenderVisitedEvent
        | OffenderManagerAssignedEvent,
    ):
        _record_offender(state, event, ref)
    if isinstance(age, int):
        state.age = age


def _record_offender(
    state: SubjectState,
    event: OffenderRegisteredEvent
    | OffenderRiskAssessedEvent
    | OffenderVisitedEvent
    | OffenderManagerAssignedEvent,
    ref: Ref,
) -> None:
    area = event.data.area
    if isinstance(event, OffenderRegisteredEvent | OffenderRiskAssessedEvent):
        state.levels.append(
            LevelChange(
                at=event.time,
                level=event.data.risk_level,
                ref=ref,
                assessed=isinstance(event, OffenderRiskAssessedEvent),
                management=event.data.management,
                area=area,
            )
        )
        state.levels.sort(key=lambda change: change.at)
    elif isinstance(event, OffenderManagerAssignedEvent):
        # The latest assignment by event time wins, whatever order they arrive in.
        if state.manager_since is None or event.time >= state.manager_since:
            state.manager, state.manager_since = event.data.manager_id, event.time
    elif event.data.outcome is VisitOutcome.COMPLETED:
        # A no-access visit is kept in the chronology (`recent`) and counts as no visit.
        state.visits.append(Visit(at=event.time, ref=ref, area=area))
        state.visits.sort(key=lambda visit: visit.at)


def _earliest(known: datetime | None, at: datetime) -> datetime:
    return at if known is None else min(known, at)


def _record_episode(
    state: SubjectState, event: ChildMissingEvent | ChildMissingRegradedEvent, ref: Ref
) -> None:
    data = event.data
    known = state.episodes.get(data.episode_id)
    grade = data.risk_grade
    if known is None:
        state.episodes[data.episode_id] = Episode(
            at=event.time, grade=grade, area=data.area, ref=ref
        )
        return
    if GRADE_ORDER.index(grade) > GRADE_ORDER.index(known.grade):
        known.grade = grade
    if isinstance(event, ChildMissingEvent) and event.time < known.at:
        # The episode began when the child went missing, whatever arrived first.
        known.at, known.ref = event.time, ref


def _record_referral(
    state: SubjectState, event: ReferralSharedEvent | ReferralSupplementedEvent, now: datetime
) -> None:
    if isinstance(event, ReferralSharedEvent) and event.data.agency not in rules.SOCIAL_CARE:
        return
    data = event.data
    referral = state.referrals.setdefault(data.referral_id, Referral())
    part = Supplement(at=event.time, contents=[c.value for c in data.contents], recorded_at=now)
    referral.parts.append(part)
    referral.parts.sort(key=lambda p: p.at)
    if isinstance(event, ReferralSharedEvent):
        referral.at = event.time
        referral.sent = part.contents
        referral.incident = event.data.incident_id
        referral.area = data.area
        referral.ref = rules.ref(event)


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
        requires=sorted(new.requires) if new.requires is not None else None,
    )
    state.obligations[obligation.key] = obligation
    return obligation


def _open_or_tighten(
    state: SubjectState,
    new: rules.NewObligation,
    now: datetime,
    policy: RiskPolicy,
    touched: set[str],
) -> None:
    existing = state.obligations.get(str(ObligationKey(new.rule, new.scope)))
    if existing is None:
        _open(state, new, now, policy)
        touched.add(new.match)
    elif (
        new.stricter
        and new.due_at < existing.due_at
        and not existing.raised
        and existing.fulfilled_at is None
    ):
        # Opened again with an earlier deadline (a re-graded episode): the earlier wins.
        existing.due_at = new.due_at
        existing.check_at = max(new.due_at, now + policy.settle)
        existing.summary = new.summary


def _sync_cycles(state: SubjectState, now: datetime, policy: RiskPolicy, touched: set[str]) -> None:
    # Cycles are derived from the whole history, so a visit or assessment arriving out
    # of order re-shapes them; a cycle already breached keeps its alert.
    for rule, cycles in (
        (rules.ROUTINE_VISIT, routine_cycles(state, policy)),
        (rules.RISK_ASSESSMENT, assessment_cycles(state, policy)),
    ):
        wanted = {str(ObligationKey(c.rule, c.scope)): c for c in cycles}
        for key, obligation in list(state.obligations.items()):
            if obligation.rule == rule.rule and key not in wanted and not obligation.raised:
                del state.obligations[key]
        for key, cycle in wanted.items():
            existing = state.obligations.get(key)
            if existing is None:
                _open(state, cycle, now, policy)
            elif not existing.raised:
                existing.due_at = cycle.due_at
                existing.check_at = max(cycle.due_at, now + policy.settle)
        touched.add(rule.match())


def _attach_transfers(state: SubjectState) -> None:
    """Copy each custody's accommodation requests and refusals onto its obligations."""
    if not state.transfers:
        return
    for obligation in state.obligations.values():
        if obligation.rule != CUSTODY.rule:
            continue
        transfer = state.transfers.get(obligation.scope.split("|", 1)[0])
        if transfer is not None:
            obligation.transfer_requested_at = transfer.requested_at
            obligation.transfer_refused_at = transfer.refused_at


def _completed(
    state: SubjectState, fact: Fact, requires: list[str] | None
) -> tuple[datetime, datetime | None] | None:
    """Return when a fact fulfils an obligation needing `requires`, and when that was recorded.

    A referral fulfils once it, with its supplements, holds everything required: at the
    time of the part that completed it. None while it lacks something.
    """
    if requires is None or fact.referral is None:
        return fact.at, fact.recorded_at
    referral = state.referrals.get(fact.referral)
    if referral is None:
        return fact.at, fact.recorded_at  # kept before referrals were: judged complete
    held: set[str] = set()
    recorded = fact.recorded_at
    needed = set(requires)
    for part in referral.parts:
        held.update(part.contents)
        if part.recorded_at is not None:
            recorded = part.recorded_at if recorded is None else max(recorded, part.recorded_at)
        if needed <= held:
            return max(fact.at, part.at), recorded
    return None


def _refresh(state: SubjectState, obligation: Obligation) -> bool:
    """Match facts to an obligation; True when this newly resolves a raised alert."""
    best: tuple[datetime, datetime | None, Ref] | None = None
    for fact in state.facts.get(obligation.match, []):
        if not obligation.accepts(fact.at):
            continue
        completed = _completed(state, fact, obligation.requires)
        if completed is not None and (best is None or completed[0] < best[0]):
            best = (completed[0], completed[1], fact.ref)
    if best is None:
        return False
    if obligation.fulfilled_at is None or best[0] < obligation.fulfilled_at:
        obligation.fulfilled_at, obligation.fulfilment_recorded_at, obligation.fulfilment = best
    return obligation.raised and not obligation.resolved


def _finish(
    state: SubjectState, now: datetime, policy: RiskPolicy, trigger: Ref | None, area: str | None
) -> Outcome:
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
        if trigger is None:
            trigger, area = obligation.trigger, obligation.area
        if fulfilled_at is not None:
            # Met, but late: a breach all the same, raised and resolved together.
            obligation.resolved = True
            effects.append(_resolved(state, obligation, now, policy))
    outcome = Outcome(effects=effects, lags=lags)
    if state.kind == "child" and trigger is not None:
        outcome.score = score(state, now, policy.scoring)
        effects.extend(_rescore(state, now, policy, trigger, area, outcome.score))
    return outcome


def _rescore(  # noqa: PLR0913, PLR0917 - the decision and what it is about
    state: SubjectState,
    now: datetime,
    policy: RiskPolicy,
    trigger: Ref,
    area: str | None,
    current: Score,
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
            area=area,
            now=now,
        )
    ]


def _raise_patterns(
    state: SubjectState, event: Event, now: datetime, policy: RiskPolicy
) -> list[Effect]:
    patterns = policy.patterns
    hits: list[PatternHit] = []
    if isinstance(event, ChildMissingEvent | ChildMissingRegradedEvent):
        hits = repeats(
            Rule.REPEAT_MISSING,
            [Occurrence(e.at, episode, e.area) for episode, e in state.episodes.items()],
            patterns.repeat_missing,
            [p.at for p in state.patterns if p.rule == Rule.REPEAT_MISSING],
            "missing episodes",
        )
    elif isinstance(event, IncidentReportedEvent):
        if event.data.category is IncidentCategory.DOMESTIC_ABUSE:
            hits = repeats(
                Rule.REPEAT_DOMESTIC_ABUSE,
                [
                    Occurrence(i.at, incident, i.area)
                    for incident, i in state.incidents.items()
                    if i.category is IncidentCategory.DOMESTIC_ABUSE
                ],
                patterns.repeat_domestic_abuse,
                [p.at for p in state.patterns if p.rule == Rule.REPEAT_DOMESTIC_ABUSE],
                "domestic abuse incidents",
            )
        hits.extend(_incomplete_referrals(state, policy))
    elif isinstance(event, ReferralSharedEvent):
        hits = _incomplete_referrals(state, policy)
    elif isinstance(event, CustodyAccommodationRefusedEvent):
        refused = patterns.custody_accommodation_refused
        hits = [
            PatternHit(
                rule=Rule.CUSTODY_ACCOMMODATION_REFUSED,
                scope=event.data.custody_id,
                at=event.time,
                severity=refused.severity,
                summary="The local authority refused accommodation to a child charged and "
                "denied bail (" + event.data.reason.value.replace("_", " ") + ")",
                trigger=rules.ref(event),
                area=event.data.area,
                start_level=refused.start_level if refused.start_level > 1 else None,
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
                area=hit.area or event.data.area,
                now=now,
                start_level=hit.start_level,
            )
        )
    return effects


def _incomplete_referrals(state: SubjectState, policy: RiskPolicy) -> list[PatternHit]:
    """Return a hit for each referral whose own contents lack what its category requires.

    Judged on the referral as it was sent (supplements complete it for the referral rules
    but do not undo the alert), with the requirements of its incident's category once
    that is known, the default's before.
    """
    incomplete = policy.patterns.referral_incomplete
    hits = []
    for referral_id, referral in state.referrals.items():
        if referral.at is None or referral.ref is None or referral.alerted:
            continue
        incident = state.incidents.get(referral.incident or "")
        required = incomplete.required(incident.category if incident else None)
        held = set(referral.sent or [])
        missing = sorted(c.value for c in required if c.value not in held)
        if not missing:
            continue
        referral.alerted = True
        hits.append(
            PatternHit(
                rule=Rule.REFERRAL_INCOMPLETE,
                scope=referral_id,
                at=referral.at,
                severity=incomplete.severity,
                summary="Referral to children's social care lacks "
                + " and ".join(missing).replace("_", " "),
                trigger=referral.ref,
                area=referral.area,
            )
        )
    return hits


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
    start_level: int | None = None,
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
        start_level=start_level,
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


def recorded_late(obligation: Obligation, policy: RiskPolicy) -> int | None:
    """Return how long after its deadline an on-time fulfilment was recorded, if reported apart."""
    fulfilled, recorded = obligation.fulfilled_at, obligation.fulfilment_recorded_at
    if fulfilled is None or recorded is None:
        return None
    return recorded_late_by(obligation.due_at, fulfilled, recorded, policy.backdating_tolerance)


def _resolved(
    state: SubjectState, obligation: Obligation, now: datetime, policy: RiskPolicy
) -> Resolved:
    assert obligation.fulfilled_at is not None  # noqa: S101 - only called once fulfilled
    assert obligation.fulfilment is not None  # noqa: S101 - set with fulfilled_at
    late = max(0, int((obligation.fulfilled_at - obligation.due_at).total_seconds()))
    return Resolved(
        alert_id=obligation_alert_id(state, obligation, policy.alert_key),
        rule=obligation.rule,
        resolved_at=now,
        fulfilled_at=obligation.fulfilled_at,
        late_by_seconds=late,
        fulfilment=obligation.fulfilment,
        recorded_at=obligation.fulfilment_recorded_at,
        recorded_late_by_seconds=recorded_late(obligation, policy),
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
    state.detention_areas = {
        k: a for k, a in state.detention_areas.items() if k in state.detentions
    }
    state.patterns = [p for p in state.patterns if p.at >= horizon]
    state.referrals = {
        k: r for k, r in state.referrals.items() if r.parts and r.parts[-1].at >= horizon
    }
    state.transfers = {
        k: t
        for k, t in state.transfers.items()
        if max(t.requested_at or horizon, t.refused_at or horizon) > horizon
    }
    state.refused = [r for r in state.refused if r.at >= horizon]
