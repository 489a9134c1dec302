"""The obligation rules of docs/contract.md section 3, as pure functions of one event.

`triggered` says which obligations an event creates for a subject; `facts` says which
fulfilling facts it records. Neither looks at state: the engine matches facts to
obligations whichever arrives first, which is what makes arrival order irrelevant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas.alerts import EventRef, Severity
from schemas.events import (
    Agency,
    ChildFoundEvent,
    ChildMissingEvent,
    ChildWelfareCheckedEvent,
    ConcernLevel,
    CustodyChildDetainedEvent,
    CustodyChildReleasedEvent,
    DashRisk,
    Event,
    ExploitationConcernRaisedEvent,
    ForensicExaminationCompletedEvent,
    ForensicExaminationRequestedEvent,
    IncidentCategory,
    IncidentReportedEvent,
    OffenderRegisteredEvent,
    OffenderVisitedEvent,
    ReferralSharedEvent,
    ReturnInterviewCompletedEvent,
    SafeguardingActionTakenEvent,
    VisitKind,
)
from services.risk.calendar import next_school_day_at
from services.risk.keys import SubjectKey, SubjectKind
from services.risk.policy import RiskPolicy
from services.risk.state import Fact

SOCIAL_CARE = frozenset({Agency.CHILDRENS_SOCIAL_CARE, Agency.MASH})


@dataclass(frozen=True)
class NewObligation:
    """An obligation an event creates for one subject."""

    rule: str
    scope: str
    match: str
    due_at: datetime
    severity: Severity
    summary: str
    trigger: EventRef
    triggered_at: datetime
    area: str | None = None
    not_before: datetime | None = None
    strictly_after: bool = False


def ref(event: Event) -> EventRef:
    """Return the `(source, id)` of an event."""
    return EventRef(source=event.source, id=event.id)


def subjects(event: Event) -> list[SubjectKey]:
    """Return every subject an event concerns; the risk service routes a copy to each."""
    if isinstance(event, IncidentReportedEvent):
        return [SubjectKey(SubjectKind.CHILD, child.child_id) for child in event.data.children]
    data = event.data
    for attribute, kind in (
        ("child_id", SubjectKind.CHILD),
        ("offender_id", SubjectKind.OFFENDER),
        ("enquiry_id", SubjectKind.ENQUIRY),
    ):
        value = getattr(data, attribute, None)
        if isinstance(value, str):
            return [SubjectKey(kind, value)]
    return []


def describe(window: timedelta) -> str:
    """Render a window for a summary: `4h`, `14 days`."""
    hours = int(window.total_seconds() // 3600)
    if hours < 48:  # noqa: PLR2004
        return f"{hours}h" if hours else f"{int(window.total_seconds() // 60)}m"
    return f"{hours // 24} days"


def triggered(  # noqa: PLR0911 - one branch per event type reads best
    event: Event, kind: SubjectKind, subject_id: str, policy: RiskPolicy
) -> list[NewObligation]:
    """Return the obligations `event` creates for the subject `(kind, subject_id)`."""
    rules = policy.obligations
    trigger = ref(event)
    at = event.time
    if isinstance(event, IncidentReportedEvent) and kind == "child":
        return _incident(event, subject_id, policy)
    if isinstance(event, ExploitationConcernRaisedEvent):
        rule = rules.exploitation_action
        high = event.data.level is ConcernLevel.HIGH
        window = rule.window_when_level_high if high else rule.window
        return [
            NewObligation(
                rule="exploitation-action",
                scope=event.data.concern_id,
                match="action",
                due_at=at + window,
                severity=rule.severity_when_level_high if high else rule.severity,
                summary=f"No safeguarding action within {describe(window)} of a "
                f"{event.data.level.value}-level {event.data.kind.value} exploitation concern",
                trigger=trigger,
                triggered_at=at,
                not_before=at,
            )
        ]
    if isinstance(event, ChildMissingEvent):
        missing = rules.missing_referral
        grade_window = missing.windows.get(event.data.risk_grade)
        if grade_window is None:
            return []
        window = grade_window
        return [
            NewObligation(
                rule="missing-referral",
                scope=event.data.episode_id,
                match=f"episode-referral|{event.data.episode_id}",
                due_at=at + window,
                severity=missing.severity,
                summary=f"No referral to children's social care within {describe(window)} of a "
                f"{event.data.risk_grade.value.replace('_', ' ')}-risk missing episode",
                trigger=trigger,
                triggered_at=at,
            )
        ]
    if isinstance(event, ChildFoundEvent):
        window = rules.return_interview.window
        return [
            NewObligation(
                rule="return-interview",
                scope=event.data.episode_id,
                match=f"return-interview|{event.data.episode_id}",
                due_at=at + window,
                severity=rules.return_interview.severity,
                summary=f"No return interview within {describe(window)} of a child being found",
                trigger=trigger,
                triggered_at=at,
            )
        ]
    if isinstance(event, OffenderRegisteredEvent):
        window = rules.offender_initial_visit.window
        return [
            NewObligation(
                rule="offender-initial-visit",
                scope="initial",
                match="visit-initial",
                due_at=at + window,
                severity=rules.offender_initial_visit.severity,
                summary=f"No initial visit within {describe(window)} of a sex offender's "
                "registration",
                trigger=trigger,
                triggered_at=at,
                area=event.data.area,
            )
        ]
    if isinstance(event, ForensicExaminationRequestedEvent):
        forensic = rules.forensic_examination
        second_severity = (
            forensic.second.severity_when_contact_restricted
            if event.data.contact_restricted
            else forensic.second.severity
        )
        return [
            NewObligation(
                rule="forensic-examination",
                scope=f"{stage}",
                match="forensic-completed",
                due_at=at + window,
                severity=severity,
                summary=f"Forensic examination not completed within {describe(window)} "
                "of the request",
                trigger=trigger,
                triggered_at=at,
            )
            for stage, window, severity in (
                ("first", forensic.first.window, forensic.first.severity),
                ("second", forensic.second.window, second_severity),
            )
        ]
    if isinstance(event, CustodyChildDetainedEvent) and event.data.charged:
        window = rules.child_in_custody.window
        return [
            NewObligation(
                rule="child-in-custody",
                scope=event.data.custody_id,
                match=f"released|{event.data.custody_id}",
                due_at=at + window,
                severity=rules.child_in_custody.severity,
                summary=f"A charged child still in police custody {describe(window)} "
                "after detention",
                trigger=trigger,
                triggered_at=at,
            )
        ]
    return []


def _incident(
    event: IncidentReportedEvent, child_id: str, policy: RiskPolicy
) -> list[NewObligation]:
    rules = policy.obligations
    data = event.data
    child = next(c for c in data.children if c.child_id == child_id)
    trigger, at, incident = ref(event), event.time, data.incident_id
    category = data.category.value.replace("_", " ")
    found: list[NewObligation] = []
    domestic = data.category is IncidentCategory.DOMESTIC_ABUSE
    if domestic and child.present:
        window = rules.welfare_check.window
        found.append(
            NewObligation(
                rule="welfare-check",
                scope=incident,
                match=f"welfare|{incident}",
                due_at=at + window,
                severity=rules.welfare_check.severity,
                summary=f"A child present at a {category} incident not checked within "
                f"{describe(window)}",
                trigger=trigger,
                triggered_at=at,
                area=data.area,
            )
        )
    if data.category is not IncidentCategory.OTHER:
        social = rules.social_care_referral
        window = social.window_when_dash_high if data.dash_risk is DashRisk.HIGH else social.window
        found.append(
            NewObligation(
                rule="social-care-referral",
                scope=incident,
                match=f"social-care-referral|{incident}",
                due_at=at + window,
                severity=social.severity,
                summary=f"No referral to children's social care within {describe(window)} "
                f"of a {category} incident",
                trigger=trigger,
                triggered_at=at,
                area=data.area,
            )
        )
    school = rules.school_notification
    if domestic and (child.age is None or child.age >= school.min_age):
        found.append(
            NewObligation(
                rule="school-notification",
                scope=incident,
                match=f"school|{incident}",
                due_at=next_school_day_at(
                    at, at=school.deadline_time, timezone=school.timezone, holidays=school.holidays
                ),
                severity=school.severity,
                summary=f"School not told by the next school day of a {category} incident",
                trigger=trigger,
                triggered_at=at,
                area=data.area,
            )
        )
    return found


def facts(event: Event) -> list[tuple[str, Fact]]:  # noqa: C901, PLR0911 - a branch per type
    """Return the `(match key, fact)` pairs `event` records for its subject."""
    fact = Fact(at=event.time, ref=ref(event))
    if isinstance(event, ChildWelfareCheckedEvent):
        return [(f"welfare|{event.data.incident_id}", fact)]
    if isinstance(event, ReferralSharedEvent):
        data = event.data
        keys: list[str] = []
        if data.agency in SOCIAL_CARE:
            if data.incident_id is not None:
                keys.append(f"social-care-referral|{data.incident_id}")
            if data.episode_id is not None:
                keys.append(f"episode-referral|{data.episode_id}")
        if data.agency is Agency.SCHOOL and data.incident_id is not None:
            keys.append(f"school|{data.incident_id}")
        return [(key, fact) for key in keys]
    if isinstance(event, SafeguardingActionTakenEvent):
        return [("action", fact)]
    if isinstance(event, ReturnInterviewCompletedEvent):
        return [(f"return-interview|{event.data.episode_id}", fact)]
    if isinstance(event, OffenderVisitedEvent):
        found = [("visit", fact)]
        if event.data.visit is VisitKind.INITIAL:
            found.append(("visit-initial", fact))
        return found
    if isinstance(event, ForensicExaminationCompletedEvent):
        return [("forensic-completed", fact)]
    if isinstance(event, CustodyChildReleasedEvent):
        return [(f"released|{event.data.custody_id}", fact)]
    return []
