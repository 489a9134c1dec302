"""The deadline rules of docs/contract.md section 3, each declared once, as a table.

A rule says which events open its obligations (and with what window, severity and
area), the match key of the facts that fulfil them, and which events record such
facts. Both sides build the key with the rule's own `match`, so an obligation and the
facts that meet it cannot disagree about it. Nothing here looks at state: the engine
matches facts to obligations whichever arrives first, which is what makes arrival
order irrelevant. `triggered` and `facts` read the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar

from typing_extensions import override

from schemas.alerts import Rule, Severity
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
from services.risk.state import Fact, Ref

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
    trigger: Ref
    triggered_at: datetime
    area: str | None = None
    not_before: datetime | None = None
    strictly_after: bool = False


def ref(event: Event) -> Ref:
    """Return the `(source, id)` of an event."""
    return Ref(source=event.source, id=event.id)


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


class DeadlineRule:
    """One deadline rule: what opens its obligations and what fulfils them."""

    rule: ClassVar[Rule]
    # The facts that fulfil it are kept under `prefix` or `prefix|<what it is per>`.
    prefix: ClassVar[str]
    opened_by: ClassVar[tuple[type[Event], ...]] = ()
    fulfilled_by: ClassVar[tuple[type[Event], ...]] = ()

    def match(self, per: str | None = None) -> str:
        """Return the key of the facts that fulfil an obligation (per incident, episode...)."""
        return self.prefix if per is None else f"{self.prefix}|{per}"

    def opens(
        self,
        event: Event,  # noqa: ARG002
        subject: SubjectKey,  # noqa: ARG002
        policy: RiskPolicy,  # noqa: ARG002
    ) -> list[NewObligation]:
        """Return the obligations `event` opens for `subject`."""
        return []

    def fulfils(self, event: Event) -> list[str]:  # noqa: ARG002 - overridden by every rule
        """Return the match keys of the facts `event` records."""
        return []

    def owed(  # noqa: PLR0913 - one argument per part of an obligation
        self,
        event: Event,
        *,
        scope: str,
        per: str | None,
        due_at: datetime,
        severity: Severity,
        summary: str,
        area: str | None = None,
        not_before: datetime | None = None,
    ) -> NewObligation:
        """Return an obligation of this rule that `event` opens."""
        return NewObligation(
            rule=self.rule.value,
            scope=scope,
            match=self.match(per),
            due_at=due_at,
            severity=severity,
            summary=summary,
            trigger=ref(event),
            triggered_at=event.time,
            area=area,
            not_before=not_before,
        )


def _child(event: IncidentReportedEvent, subject: SubjectKey) -> tuple[bool, int | None] | None:
    """Return (present, age) of the subject among an incident's children, if it is one."""
    if subject.kind != SubjectKind.CHILD:
        return None
    child = next((c for c in event.data.children if c.child_id == subject.id), None)
    return None if child is None else (child.present, child.age)


def _category(event: IncidentReportedEvent) -> str:
    return event.data.category.value.replace("_", " ")


class WelfareCheck(DeadlineRule):
    """A child present at a domestic-abuse incident is seen and checked."""

    rule = Rule.WELFARE_CHECK
    prefix = "welfare"
    opened_by = (IncidentReportedEvent,)
    fulfilled_by = (ChildWelfareCheckedEvent,)

    @override
    def opens(self, event: Event, subject: SubjectKey, policy: RiskPolicy) -> list[NewObligation]:
        """Open one per child present at a domestic-abuse incident."""
        assert isinstance(event, IncidentReportedEvent)  # noqa: S101 - opened_by
        child = _child(event, subject)
        if (
            child is None
            or not child[0]
            or event.data.category is not IncidentCategory.DOMESTIC_ABUSE
        ):
            return []
        window = policy.obligations.welfare_check.window
        incident = event.data.incident_id
        return [
            self.owed(
                event,
                scope=incident,
                per=incident,
                due_at=event.time + window,
                severity=policy.obligations.welfare_check.severity,
                summary=f"A child present at a {_category(event)} incident not checked within "
                f"{describe(window)}",
                area=event.data.area,
            )
        ]

    @override
    def fulfils(self, event: Event) -> list[str]:
        """Match a welfare check of the child at the same incident (any outcome)."""
        assert isinstance(event, ChildWelfareCheckedEvent)  # noqa: S101 - fulfilled_by
        return [self.match(event.data.incident_id)]


class SocialCareReferral(DeadlineRule):
    """Children's social care is told of an incident a child was involved in."""

    rule = Rule.SOCIAL_CARE_REFERRAL
    prefix = "social-care-referral"
    opened_by = (IncidentReportedEvent,)
    fulfilled_by = (ReferralSharedEvent,)

    @override
    def opens(self, event: Event, subject: SubjectKey, policy: RiskPolicy) -> list[NewObligation]:
        """Open one per child of an incident of any category but `other`."""
        assert isinstance(event, IncidentReportedEvent)  # noqa: S101 - opened_by
        if _child(event, subject) is None or event.data.category is IncidentCategory.OTHER:
            return []
        social = policy.obligations.social_care_referral
        high = event.data.dash_risk is DashRisk.HIGH
        window = social.window_when_dash_high if high else social.window
        incident = event.data.incident_id
        return [
            self.owed(
                event,
                scope=incident,
                per=incident,
                due_at=event.time + window,
                severity=social.severity,
                summary=f"No referral to children's social care within {describe(window)} "
                f"of a {_category(event)} incident",
                area=event.data.area,
            )
        ]

    @override
    def fulfils(self, event: Event) -> list[str]:
        """Match a referral to children's social care or the MASH naming the incident."""
        assert isinstance(event, ReferralSharedEvent)  # noqa: S101 - fulfilled_by
        data = event.data
        if data.agency in SOCIAL_CARE and data.incident_id is not None:
            return [self.match(data.incident_id)]
        return []


class SchoolNotification(DeadlineRule):
    """A school-age child's school is told of a domestic-abuse incident by the next school day."""

    rule = Rule.SCHOOL_NOTIFICATION
    prefix = "school"
    opened_by = (IncidentReportedEvent,)
    fulfilled_by = (ReferralSharedEvent,)

    @override
    def opens(self, event: Event, subject: SubjectKey, policy: RiskPolicy) -> list[NewObligation]:
        """Open one per child aged 4..17 (or of unknown age) at a domestic-abuse incident."""
        assert isinstance(event, IncidentReportedEvent)  # noqa: S101 - opened_by
        child = _child(event, subject)
        school = policy.obligations.school_notification
        if child is None or event.data.category is not IncidentCategory.DOMESTIC_ABUSE:
            return []
        age = child[1]
        if age is not None and age < school.min_age:
            return []
        incident = event.data.incident_id
        due = next_school_day_at(
            event.time, at=school.deadline_time, timezone=school.timezone, holidays=school.holidays
        )
        return [
            self.owed(
                event,
                scope=incident,
                per=incident,
                due_at=due,
                severity=school.severity,
                summary=f"School not told by the next school day of a {_category(event)} incident",
                area=event.data.area,
            )
        ]

    @override
    def fulfils(self, event: Event) -> list[str]:
        """Match a referral to the school naming the incident."""
        assert isinstance(event, ReferralSharedEvent)  # noqa: S101 - fulfilled_by
        data = event.data
        if data.agency is Agency.SCHOOL and data.incident_id is not None:
            return [self.match(data.incident_id)]
        return []


class ExploitationAction(DeadlineRule):
    """An exploitation concern is followed by safeguarding action for the child."""

    rule = Rule.EXPLOITATION_ACTION
    prefix = "action"
    opened_by = (ExploitationConcernRaisedEvent,)
    fulfilled_by = (SafeguardingActionTakenEvent,)

    @override
    def opens(self, event: Event, subject: SubjectKey, policy: RiskPolicy) -> list[NewObligation]:
        """Open one per concern; met by any action for the child at or after it."""
        assert isinstance(event, ExploitationConcernRaisedEvent)  # noqa: S101 - opened_by
        rule = policy.obligations.exploitation_action
        data = event.data
        high = data.level is ConcernLevel.HIGH
        window = rule.window_when_level_high if high else rule.window
        return [
            self.owed(
                event,
                scope=data.concern_id,
                per=None,
                due_at=event.time + window,
                severity=rule.severity_when_level_high if high else rule.severity,
                summary=f"No safeguarding action within {describe(window)} of a "
                f"{data.level.value}-level {data.kind.value} exploitation concern",
                not_before=event.time,
            )
        ]

    @override
    def fulfils(self, event: Event) -> list[str]:
        """Match any safeguarding action for the child (its concern need not match)."""
        return [self.match()]


class MissingReferral(DeadlineRule):
    """A missing episode is referred to children's social care within its grade's window."""

    rule = Rule.MISSING_REFERRAL
    prefix = "episode-referral"
    opened_by = (ChildMissingEvent,)
    fulfilled_by = (ReferralSharedEvent,)

    @override
    def opens(self, event: Event, subject: SubjectKey, policy: RiskPolicy) -> list[NewObligation]:
        """Open one per episode whose grade has a window."""
        assert isinstance(event, ChildMissingEvent)  # noqa: S101 - opened_by
        missing = policy.obligations.missing_referral
        data = event.data
        window = missing.windows.get(data.risk_grade)
        if window is None:
            return []
        grade = data.risk_grade.value.replace("_", " ")
        return [
            self.owed(
                event,
                scope=data.episode_id,
                per=data.episode_id,
                due_at=event.time + window,
                severity=missing.severity,
                summary=f"No referral to children's social care within {describe(window)} of a "
                f"{grade}-risk missing episode",
            )
        ]

    @override
    def fulfils(self, event: Event) -> list[str]:
        """Match a referral to children's social care or the MASH naming the episode."""
        assert isinstance(event, ReferralSharedEvent)  # noqa: S101 - fulfilled_by
        data = event.data
        if data.agency in SOCIAL_CARE and data.episode_id is not None:
            return [self.match(data.episode_id)]
        return []


class ReturnInterview(DeadlineRule):
    """A child found after going missing gets a return interview."""

    rule = Rule.RETURN_INTERVIEW
    prefix = "return-interview"
    opened_by = (ChildFoundEvent,)
    fulfilled_by = (ReturnInterviewCompletedEvent,)

    @override
    def opens(self, event: Event, subject: SubjectKey, policy: RiskPolicy) -> list[NewObligation]:
        """Open one per episode the child is found from."""
        assert isinstance(event, ChildFoundEvent)  # noqa: S101 - opened_by
        rule = policy.obligations.return_interview
        episode = event.data.episode_id
        return [
            self.owed(
                event,
                scope=episode,
                per=episode,
                due_at=event.time + rule.window,
                severity=rule.severity,
                summary=f"No return interview within {describe(rule.window)} of a child "
                "being found",
            )
        ]

    @override
    def fulfils(self, event: Event) -> list[str]:
        """Match a return interview for the same episode."""
        assert isinstance(event, ReturnInterviewCompletedEvent)  # noqa: S101 - fulfilled_by
        return [self.match(event.data.episode_id)]


class OffenderInitialVisit(DeadlineRule):
    """A newly registered sex offender gets an initial visit."""

    rule = Rule.OFFENDER_INITIAL_VISIT
    prefix = "visit-initial"
    opened_by = (OffenderRegisteredEvent,)
    fulfilled_by = (OffenderVisitedEvent,)

    @override
    def opens(self, event: Event, subject: SubjectKey, policy: RiskPolicy) -> list[NewObligation]:
        """Open one per offender at its registration."""
        assert isinstance(event, OffenderRegisteredEvent)  # noqa: S101 - opened_by
        rule = policy.obligations.offender_initial_visit
        return [
            self.owed(
                event,
                scope="initial",
                per=None,
                due_at=event.time + rule.window,
                severity=rule.severity,
                summary=f"No initial visit within {describe(rule.window)} of a sex offender's "
                "registration",
                area=event.data.area,
            )
        ]

    @override
    def fulfils(self, event: Event) -> list[str]:
        """Match an initial visit."""
        assert isinstance(event, OffenderVisitedEvent)  # noqa: S101 - fulfilled_by
        return [self.match()] if event.data.visit is VisitKind.INITIAL else []


class OffenderRoutineVisit(DeadlineRule):
    """Every visit cycle of a registered offender ends with a visit.

    Its obligations are derived from the offender's whole visit and assessment history
    (`services.risk.offender.routine_cycles`), not opened by single events.
    """

    rule = Rule.OFFENDER_ROUTINE_VISIT
    prefix = "visit"
    fulfilled_by = (OffenderVisitedEvent,)

    @override
    def fulfils(self, event: Event) -> list[str]:
        """Match any visit, initial or routine."""
        return [self.match()]


class ForensicExamination(DeadlineRule):
    """A forensic examination is completed, with a first and a second deadline."""

    rule = Rule.FORENSIC_EXAMINATION
    prefix = "forensic-completed"
    opened_by = (ForensicExaminationRequestedEvent,)
    fulfilled_by = (ForensicExaminationCompletedEvent,)

    @override
    def opens(self, event: Event, subject: SubjectKey, policy: RiskPolicy) -> list[NewObligation]:
        """Open two per enquiry; the completion meets both."""
        assert isinstance(event, ForensicExaminationRequestedEvent)  # noqa: S101 - opened_by
        forensic = policy.obligations.forensic_examination
        second = (
            forensic.second.severity_when_contact_restricted
            if event.data.contact_restricted
            else forensic.second.severity
        )
        return [
            self.owed(
                event,
                scope=stage,
                per=None,
                due_at=event.time + window,
                severity=severity,
                summary=f"Forensic examination not completed within {describe(window)} "
                "of the request",
            )
            for stage, window, severity in (
                ("first", forensic.first.window, forensic.first.severity),
                ("second", forensic.second.window, second),
            )
        ]

    @override
    def fulfils(self, event: Event) -> list[str]:
        """Match the examination's completion."""
        return [self.match()]


class ChildInCustody(DeadlineRule):
    """A charged child is not held in police custody past the window."""

    rule = Rule.CHILD_IN_CUSTODY
    prefix = "released"
    opened_by = (CustodyChildDetainedEvent,)
    fulfilled_by = (CustodyChildReleasedEvent,)

    @override
    def opens(self, event: Event, subject: SubjectKey, policy: RiskPolicy) -> list[NewObligation]:
        """Open one per detention of a charged child."""
        assert isinstance(event, CustodyChildDetainedEvent)  # noqa: S101 - opened_by
        if not event.data.charged:
            return []
        rule = policy.obligations.child_in_custody
        custody = event.data.custody_id
        return [
            self.owed(
                event,
                scope=custody,
                per=custody,
                due_at=event.time + rule.window,
                severity=rule.severity,
                summary=f"A charged child still in police custody {describe(rule.window)} "
                "after detention",
            )
        ]

    @override
    def fulfils(self, event: Event) -> list[str]:
        """Match the child's release from the same custody."""
        assert isinstance(event, CustodyChildReleasedEvent)  # noqa: S101 - fulfilled_by
        return [self.match(event.data.custody_id)]


RULES: tuple[DeadlineRule, ...] = (
    WelfareCheck(),
    SocialCareReferral(),
    SchoolNotification(),
    ExploitationAction(),
    MissingReferral(),
    ReturnInterview(),
    OffenderInitialVisit(),
    OffenderRoutineVisit(),
    ForensicExamination(),
    ChildInCustody(),
)
ROUTINE_VISIT = next(r for r in RULES if isinstance(r, OffenderRoutineVisit))

_OPENING: dict[type[Event], tuple[DeadlineRule, ...]] = {}
_FULFILLING: dict[type[Event], tuple[DeadlineRule, ...]] = {}
for _rule in RULES:
    for _kind in _rule.opened_by:
        _OPENING[_kind] = (*_OPENING.get(_kind, ()), _rule)
    for _kind in _rule.fulfilled_by:
        _FULFILLING[_kind] = (*_FULFILLING.get(_kind, ()), _rule)


def triggered(event: Event, subject: SubjectKey, policy: RiskPolicy) -> list[NewObligation]:
    """Return the obligations `event` opens for `subject`, by every rule it opens."""
    return [o for rule in _OPENING.get(type(event), ()) for o in rule.opens(event, subject, policy)]


def facts(event: Event) -> list[tuple[str, Fact]]:
    """Return the `(match key, fact)` pairs `event` records for its subject."""
    rules = _FULFILLING.get(type(event), ())
    if not rules:
        return []
    fact = Fact(at=event.time, ref=ref(event))
    return [(key, fact) for rule in rules for key in rule.fulfils(event)]
