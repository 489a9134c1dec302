"""The deadline rules of docs/contract.md section 3, each declared once, as a table.

A rule says which events open its obligations (and with what window, severity and
area), the match key of the facts that fulfil them, and which events record such
facts. Both sides build the key with the rule's own `match`, so an obligation and the
facts that meet it cannot disagree about it. Nothing here looks at state: the engine
matches facts to obligations whichever arrives first, which is what makes arrival
order irrelevant. `triggered` and `facts` read the table. Who may fulfil a rule is
policy (`fulfilment-sources`): an event from another source records a refusal instead
of a fact, and so fulfils nothing.
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
    ChildMissingRegradedEvent,
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
    OffenderRiskAssessedEvent,
    OffenderVisitedEvent,
    ReferralDecidedEvent,
    ReferralSharedEvent,
    ReleaseDestination,
    ReturnInterviewCompletedEvent,
    ReturnInterviewSharedEvent,
    SafeguardingAction,
    SafeguardingActionTakenEvent,
    VisitKind,
    VisitOutcome,
    WelfareOutcome,
)
from services.risk.calendar import add_working_days, next_local_time
from services.risk.keys import SubjectKey, SubjectKind
from services.risk.policy import RiskPolicy
from services.risk.state import Fact, Ref, Refusal

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
    requires: frozenset[str] | None = None
    # Opened again for the same scope, the earlier deadline wins (a re-graded episode).
    stricter: bool = False


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
    # Opened again for the same scope, the earlier deadline wins.
    stricter: ClassVar[bool] = False

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
        not_before: datetime | None = None,
        requires: frozenset[str] | None = None,
    ) -> NewObligation:
        """Return an obligation of this rule that `event` opens, in the event's area."""
        return NewObligation(
            rule=self.rule.value,
            scope=scope,
            match=self.match(per),
            due_at=due_at,
            severity=severity,
            summary=summary,
            trigger=ref(event),
            triggered_at=event.time,
            area=event.data.area,
            not_before=not_before,
            requires=requires,
            stricter=self.stricter,
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
                summary=f"No complete referral to children's social care within "
                f"{describe(window)} of a {_category(event)} incident",
                requires=policy.patterns.referral_incomplete.required(event.data.category),
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
        due = school.calendar.next_school_day_at(
            event.time, at=school.deadline_time, timezone=school.timezone, area=event.data.area
        )
        return [
            self.owed(
                event,
                scope=incident,
                per=incident,
                due_at=due,
                severity=school.severity,
                summary=f"School not told by the next school day of a {_category(event)} incident",
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
    opened_by = (ChildMissingEvent, ChildMissingRegradedEvent)
    fulfilled_by = (ReferralSharedEvent,)
    stricter = True

    @override
    def opens(self, event: Event, subject: SubjectKey, policy: RiskPolicy) -> list[NewObligation]:
        """Open one per episode whose grade has a window; a re-grading's window if stricter."""
        assert isinstance(event, ChildMissingEvent | ChildMissingRegradedEvent)  # noqa: S101
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
                summary=f"No complete referral to children's social care within "
                f"{describe(window)} of a {grade}-risk missing episode",
                requires=policy.patterns.referral_incomplete.required(None),
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
        """Open one per registration: a re-registration owes an initial visit again."""
        assert isinstance(event, OffenderRegisteredEvent)  # noqa: S101 - opened_by
        rule = policy.obligations.offender_initial_visit
        return [
            self.owed(
                event,
                scope=f"initial|{event.time.isoformat()}",
                per=None,
                due_at=event.time + rule.window,
                severity=rule.severity,
                summary=f"No initial visit within {describe(rule.window)} of a sex offender's "
                "registration",
                not_before=event.time,
            )
        ]

    @override
    def fulfils(self, event: Event) -> list[str]:
        """Match an initial visit that saw the offender."""
        assert isinstance(event, OffenderVisitedEvent)  # noqa: S101 - fulfilled_by
        data = event.data
        seen = data.outcome is VisitOutcome.COMPLETED
        return [self.match()] if seen and data.visit is VisitKind.INITIAL else []


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
        """Match any visit, initial or routine, that saw the offender."""
        assert isinstance(event, OffenderVisitedEvent)  # noqa: S101 - fulfilled_by
        return [self.match()] if event.data.outcome is VisitOutcome.COMPLETED else []


class OffenderRiskAssessment(DeadlineRule):
    """Every registration and ARMS assessment is followed by the next assessment in time.

    Derived from the offender's registrations and assessments like the visit cycles
    (`services.risk.offender.assessment_cycles`).
    """

    rule = Rule.OFFENDER_RISK_ASSESSMENT
    prefix = "assessed"
    fulfilled_by = (OffenderRiskAssessedEvent,)

    @override
    def fulfils(self, event: Event) -> list[str]:
        """Match any risk assessment."""
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
    """A charged child denied bail is transferred to local-authority accommodation.

    Two deadlines per detention: the window, and the first `overnight-at` after the
    detention (or the window's end if later): held overnight is critical. Only a transfer
    to local-authority accommodation meets them, not any release.
    """

    rule = Rule.CHILD_IN_CUSTODY
    prefix = "released"
    opened_by = (CustodyChildDetainedEvent,)
    fulfilled_by = (CustodyChildReleasedEvent,)

    @override
    def opens(self, event: Event, subject: SubjectKey, policy: RiskPolicy) -> list[NewObligation]:
        """Open two per detention of a charged child."""
        assert isinstance(event, CustodyChildDetainedEvent)  # noqa: S101 - opened_by
        if not event.data.charged:
            return []
        rule = policy.obligations.child_in_custody
        custody = event.data.custody_id
        window_end = event.time + rule.window
        overnight = max(
            window_end, next_local_time(event.time, rule.overnight_at, timezone=rule.timezone)
        )
        return [
            self.owed(
                event,
                scope=custody,
                per=custody,
                due_at=window_end,
                severity=rule.severity,
                summary="A charged child not transferred to local-authority accommodation "
                f"within {describe(rule.window)} of detention",
            ),
            self.owed(
                event,
                scope=f"{custody}|overnight",
                per=custody,
                due_at=overnight,
                severity=rule.severity_overnight,
                summary="A charged child held in police custody overnight",
            ),
        ]

    @override
    def fulfils(self, event: Event) -> list[str]:
        """Match the child's transfer to local-authority accommodation from the same custody."""
        assert isinstance(event, CustodyChildReleasedEvent)  # noqa: S101 - fulfilled_by
        data = event.data
        if data.destination is ReleaseDestination.LOCAL_AUTHORITY_ACCOMMODATION:
            return [self.match(data.custody_id)]
        return []


class StrategyDiscussion(DeadlineRule):
    """Reasonable cause to suspect significant harm is followed by a strategy discussion.

    Opened by a domestic-abuse incident with DASH `high` (per child) and a welfare check
    that found concerns (one per incident and child), and by a high exploitation concern
    (derived: a concern reaches `high` when raised so or through missing episodes,
    `services.risk.concerns`). Met by a `strategy_discussion` action for the child at or
    after the trigger, within working days.
    """

    rule = Rule.STRATEGY_DISCUSSION
    prefix = "strategy"
    opened_by = (IncidentReportedEvent, ChildWelfareCheckedEvent)
    fulfilled_by = (SafeguardingActionTakenEvent,)
    stricter = True

    def due(self, at: datetime, policy: RiskPolicy) -> datetime:
        """Return the deadline of a discussion owed from `at`."""
        days = policy.obligations.strategy_discussion.working_days
        return add_working_days(at, days, timezone=policy.working_days_timezone)

    def summary(self, why: str, policy: RiskPolicy) -> str:
        """Return the summary of an obligation opened for `why`."""
        days = policy.obligations.strategy_discussion.working_days
        unit = "working day" if days == 1 else "working days"
        return f"No strategy discussion within {days} {unit} of {why}"

    @override
    def opens(self, event: Event, subject: SubjectKey, policy: RiskPolicy) -> list[NewObligation]:
        """Open one per incident and child: DASH-high abuse, or a check that found concerns."""
        rule = policy.obligations.strategy_discussion
        if isinstance(event, IncidentReportedEvent):
            data = event.data
            if (
                _child(event, subject) is None
                or data.category is not IncidentCategory.DOMESTIC_ABUSE
                or data.dash_risk is not DashRisk.HIGH
            ):
                return []
            incident, why = data.incident_id, "a DASH-high domestic-abuse incident"
        else:
            assert isinstance(event, ChildWelfareCheckedEvent)  # noqa: S101 - opened_by
            if event.data.outcome is not WelfareOutcome.CONCERNS_IDENTIFIED:
                return []
            incident, why = event.data.incident_id, "a welfare check that found concerns"
        return [
            self.owed(
                event,
                scope=f"incident|{incident}",
                per=None,
                due_at=self.due(event.time, policy),
                severity=rule.severity,
                summary=self.summary(why, policy),
                not_before=event.time,
            )
        ]

    @override
    def fulfils(self, event: Event) -> list[str]:
        """Match a strategy discussion held for the child."""
        assert isinstance(event, SafeguardingActionTakenEvent)  # noqa: S101 - fulfilled_by
        return [self.match()] if event.data.action is SafeguardingAction.STRATEGY_DISCUSSION else []


class MaracReferral(DeadlineRule):
    """A DASH-high incident is referred to the MARAC."""

    rule = Rule.MARAC_REFERRAL
    prefix = "marac"
    opened_by = (IncidentReportedEvent,)
    fulfilled_by = (ReferralSharedEvent,)

    @override
    def opens(self, event: Event, subject: SubjectKey, policy: RiskPolicy) -> list[NewObligation]:
        """Open one per child of an incident with DASH `high`."""
        assert isinstance(event, IncidentReportedEvent)  # noqa: S101 - opened_by
        if _child(event, subject) is None or event.data.dash_risk is not DashRisk.HIGH:
            return []
        rule = policy.obligations.marac_referral
        incident = event.data.incident_id
        unit = "working day" if rule.working_days == 1 else "working days"
        return [
            self.owed(
                event,
                scope=incident,
                per=incident,
                due_at=add_working_days(
                    event.time, rule.working_days, timezone=policy.working_days_timezone
                ),
                severity=rule.severity,
                summary=f"No MARAC referral within {rule.working_days} {unit} of a DASH-high "
                f"{_category(event)} incident",
            )
        ]

    @override
    def fulfils(self, event: Event) -> list[str]:
        """Match a referral to the MARAC naming the incident."""
        assert isinstance(event, ReferralSharedEvent)  # noqa: S101 - fulfilled_by
        data = event.data
        if data.agency is Agency.MARAC and data.incident_id is not None:
            return [self.match(data.incident_id)]
        return []


class ReferralDecision(DeadlineRule):
    """Children's social care acknowledges and decides on a referral within working days."""

    rule = Rule.REFERRAL_DECISION
    prefix = "decision"
    opened_by = (ReferralSharedEvent,)
    fulfilled_by = (ReferralDecidedEvent,)

    @override
    def opens(self, event: Event, subject: SubjectKey, policy: RiskPolicy) -> list[NewObligation]:
        """Open one per referral to children's social care or the MASH."""
        assert isinstance(event, ReferralSharedEvent)  # noqa: S101 - opened_by
        if event.data.agency not in SOCIAL_CARE:
            return []
        rule = policy.obligations.referral_decision
        referral = event.data.referral_id
        unit = "working day" if rule.working_days == 1 else "working days"
        return [
            self.owed(
                event,
                scope=referral,
                per=referral,
                due_at=add_working_days(
                    event.time, rule.working_days, timezone=policy.working_days_timezone
                ),
                severity=rule.severity,
                summary=f"No decision by children's social care within {rule.working_days} "
                f"{unit} of a referral",
            )
        ]

    @override
    def fulfils(self, event: Event) -> list[str]:
        """Match the decision on the same referral."""
        assert isinstance(event, ReferralDecidedEvent)  # noqa: S101 - fulfilled_by
        return [self.match(event.data.referral_id)]


class ReturnInterviewShared(DeadlineRule):
    """A return interview's findings reach the police."""

    rule = Rule.RETURN_INTERVIEW_SHARED
    prefix = "return-shared"
    opened_by = (ReturnInterviewCompletedEvent,)
    fulfilled_by = (ReturnInterviewSharedEvent,)

    @override
    def opens(self, event: Event, subject: SubjectKey, policy: RiskPolicy) -> list[NewObligation]:
        """Open one per episode whose return interview took place."""
        assert isinstance(event, ReturnInterviewCompletedEvent)  # noqa: S101 - opened_by
        rule = policy.obligations.return_interview_shared
        episode = event.data.episode_id
        return [
            self.owed(
                event,
                scope=episode,
                per=episode,
                due_at=event.time + rule.window,
                severity=rule.severity,
                summary=f"Return interview findings not shared with the police within "
                f"{describe(rule.window)}",
            )
        ]

    @override
    def fulfils(self, event: Event) -> list[str]:
        """Match the findings shared for the same episode."""
        assert isinstance(event, ReturnInterviewSharedEvent)  # noqa: S101 - fulfilled_by
        return [self.match(event.data.episode_id)]


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
    StrategyDiscussion(),
    MaracReferral(),
    ReferralDecision(),
    ReturnInterviewShared(),
    OffenderRiskAssessment(),
)
ROUTINE_VISIT = next(r for r in RULES if isinstance(r, OffenderRoutineVisit))
RISK_ASSESSMENT = next(r for r in RULES if isinstance(r, OffenderRiskAssessment))
STRATEGY = next(r for r in RULES if isinstance(r, StrategyDiscussion))
BY_RULE: dict[str, DeadlineRule] = {r.rule.value: r for r in RULES}

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


def facts(
    event: Event, policy: RiskPolicy, now: datetime
) -> tuple[list[tuple[str, Fact]], list[Refusal]]:
    """Return the `(match key, fact)` pairs `event` records, and the rules it may not fulfil.

    A rule whose `fulfilment-sources` do not include the event's source gets a refusal
    instead of its facts: the event is kept, and fulfils nothing of that rule.
    """
    rules = _FULFILLING.get(type(event), ())
    if not rules:
        return [], []
    referral = event.data.referral_id if isinstance(event, ReferralSharedEvent) else None
    fact = Fact(at=event.time, ref=ref(event), recorded_at=now, referral=referral)
    found: list[tuple[str, Fact]] = []
    refused: list[Refusal] = []
    for rule in rules:
        keys = rule.fulfils(event)
        if not keys:
            continue
        if policy.accepts(rule.rule.value, event.source):
            found.extend((key, fact) for key in keys)
        else:
            refused.append(
                Refusal(
                    rule=rule.rule.value,
                    source=event.source,
                    at=event.time,
                    recorded_at=now,
                    area=event.data.area,
                )
            )
    return found, refused
