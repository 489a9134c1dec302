"""The events control rooms send: one data model and one typed envelope per type.

`parse_event` / `parse_event_json` are the door every service uses: they return the
typed envelope for the event's `type` or raise `InvalidEvent` listing every problem.
"""

from collections.abc import Hashable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal, TypeAlias, TypeVar, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    StrictBool,
    StrictInt,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from schemas.envelope import (
    AreaCode,
    ContractModel,
    EventEnvelopeBase,
    EventType,
    Identifier,
)
from schemas.errors import invalid_event_from

__all__ = [
    "ENVELOPE_TYPES",
    "EVENT_TYPES",
    "AccommodationRefusal",
    "Age",
    "Agency",
    "ChildFound",
    "ChildFoundEvent",
    "ChildInvolved",
    "ChildMissing",
    "ChildMissingEvent",
    "ChildMissingRegraded",
    "ChildMissingRegradedEvent",
    "ChildWelfareChecked",
    "ChildWelfareCheckedEvent",
    "ConcernLevel",
    "CustodyAccommodationRefused",
    "CustodyAccommodationRefusedEvent",
    "CustodyAccommodationRequested",
    "CustodyAccommodationRequestedEvent",
    "CustodyChildDetained",
    "CustodyChildDetainedEvent",
    "CustodyChildReleased",
    "CustodyChildReleasedEvent",
    "DashRisk",
    "Event",
    "ExploitationConcernRaised",
    "ExploitationConcernRaisedEvent",
    "ExploitationKind",
    "ForensicExaminationCompleted",
    "ForensicExaminationCompletedEvent",
    "ForensicExaminationRequested",
    "ForensicExaminationRequestedEvent",
    "IncidentCategory",
    "IncidentReported",
    "IncidentReportedEvent",
    "MissingRiskGrade",
    "OffenderManagement",
    "OffenderManagerAssigned",
    "OffenderManagerAssignedEvent",
    "OffenderRegistered",
    "OffenderRegisteredEvent",
    "OffenderRiskAssessed",
    "OffenderRiskAssessedEvent",
    "OffenderRiskLevel",
    "OffenderVisited",
    "OffenderVisitedEvent",
    "ReferralContent",
    "ReferralDecided",
    "ReferralDecidedEvent",
    "ReferralDecision",
    "ReferralShared",
    "ReferralSharedEvent",
    "ReferralSupplemented",
    "ReferralSupplementedEvent",
    "ReleaseDestination",
    "ReturnInterviewCompleted",
    "ReturnInterviewCompletedEvent",
    "ReturnInterviewShared",
    "ReturnInterviewSharedEvent",
    "SafeguardingAction",
    "SafeguardingActionTaken",
    "SafeguardingActionTakenEvent",
    "VisitKind",
    "VisitOutcome",
    "WelfareOutcome",
    "parse_event",
    "parse_event_json",
]

_H = TypeVar("_H", bound=Hashable)


def _unique(items: list[_H]) -> list[_H]:
    if len(set(items)) != len(items):
        raise PydanticCustomError("list_not_unique", "List items must be unique")
    return items


Age = Annotated[StrictInt, Field(ge=0, le=17)]
"""A child's age in whole years."""


# --- value sets ---------------------------------------------------------------------


class IncidentCategory(StrEnum):
    """Category of a reported incident."""

    DOMESTIC_ABUSE = "domestic_abuse"
    CHILD_SEXUAL_EXPLOITATION = "child_sexual_exploitation"
    ONLINE_CHILD_ABUSE = "online_child_abuse"
    NEGLECT = "neglect"
    OTHER = "other"


class DashRisk(StrEnum):
    """DASH (domestic abuse, stalking and harassment) risk assessment grade."""

    STANDARD = "standard"
    MEDIUM = "medium"
    HIGH = "high"


class WelfareOutcome(StrEnum):
    """What an officer found when checking a child."""

    SAFE = "safe"
    CONCERNS_IDENTIFIED = "concerns_identified"


class Agency(StrEnum):
    """Partner agency that information was shared with."""

    CHILDRENS_SOCIAL_CARE = "childrens_social_care"
    MASH = "mash"
    SCHOOL = "school"
    HEALTH = "health"
    MARAC = "marac"


class ReferralContent(StrEnum):
    """Kinds of information a referral carried."""

    INCIDENT_DETAILS = "incident_details"
    RISK_ASSESSMENT = "risk_assessment"
    PREVIOUS_INCIDENTS = "previous_incidents"
    CHILD_DETAILS = "child_details"
    OFFICER_OBSERVATIONS = "officer_observations"
    VOICE_OF_CHILD = "voice_of_child"


class MissingRiskGrade(StrEnum):
    """Risk grade given to a missing-child episode."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    NO_APPARENT_RISK = "no_apparent_risk"


class ExploitationKind(StrEnum):
    """Kind of exploitation a concern is about."""

    SEXUAL = "sexual"
    CRIMINAL = "criminal"


class ConcernLevel(StrEnum):
    """Level of an exploitation concern."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class SafeguardingAction(StrEnum):
    """Safeguarding action taken for a child."""

    STRATEGY_DISCUSSION = "strategy_discussion"
    SECTION_47_ENQUIRY = "section_47_enquiry"
    PROTECTION_PLAN = "protection_plan"
    HOME_VISIT = "home_visit"
    DISRUPTION = "disruption"
    OTHER = "other"


class OffenderRiskLevel(StrEnum):
    """Risk level of a registered sex offender; sets the visit cadence."""

    VERY_HIGH = "very_high"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class VisitKind(StrEnum):
    """Kind of offender-management visit."""

    INITIAL = "initial"
    ROUTINE = "routine"


class VisitOutcome(StrEnum):
    """Whether an offender-management visit saw the offender."""

    COMPLETED = "completed"
    NO_ACCESS = "no_access"


class OffenderManagement(StrEnum):
    """How an offender is managed: `reactive` offenders owe no routine visit cadence."""

    ACTIVE = "active"
    REACTIVE = "reactive"


class ReferralDecision(StrEnum):
    """Children's social care's decision on a referral."""

    NO_FURTHER_ACTION = "no_further_action"
    EARLY_HELP = "early_help"
    CHILD_AND_FAMILY_ASSESSMENT = "child_and_family_assessment"
    STRATEGY_DISCUSSION = "strategy_discussion"
    SECTION_47_ENQUIRY = "section_47_enquiry"


class AccommodationRefusal(StrEnum):
    """Why a local authority refused accommodation to a child charged and denied bail."""

    NO_PLACEMENT_AVAILABLE = "no_placement_available"
    SECURE_ONLY_REQUESTED = "secure_only_requested"
    OTHER = "other"


class ReleaseDestination(StrEnum):
    """Where a child went on release from custody."""

    LOCAL_AUTHORITY_ACCOMMODATION = "local_authority_accommodation"
    HOME = "home"
    OTHER = "other"


# --- data models ----------------------------------------------------------------------


class ChildInvolved(ContractModel):
    """A child involved in an incident."""

    child_id: Identifier
    present: StrictBool
    age: Age | None = None


def _distinct_children(children: list[ChildInvolved]) -> list[ChildInvolved]:
    # One obligation is opened per child: a child listed twice would open two.
    if len({child.child_id for child in children}) != len(children):
        raise PydanticCustomError("list_not_unique", "duplicate child_id")
    return children


class IncidentReported(ContractModel):
    """An incident was reported; it may involve several children."""

    area: AreaCode
    incident_id: Identifier
    category: IncidentCategory
    dash_risk: DashRisk | None = None
    children: Annotated[
        list[ChildInvolved],
        Field(min_length=1, max_length=50),
        AfterValidator(_distinct_children),
    ]


class ChildWelfareChecked(ContractModel):
    """An officer saw and checked a child after an incident."""

    area: AreaCode
    incident_id: Identifier
    child_id: Identifier
    outcome: WelfareOutcome


class ReferralShared(ContractModel):
    """Information about a child was passed to a partner agency."""

    area: AreaCode
    referral_id: Identifier
    child_id: Identifier
    agency: Agency
    incident_id: Identifier | None = None
    episode_id: Identifier | None = None
    concern_id: Identifier | None = None
    contents: Annotated[
        list[ReferralContent],
        Field(json_schema_extra={"uniqueItems": True}),
        AfterValidator(_unique),
    ]


class ChildMissing(ContractModel):
    """A child was reported missing (one episode)."""

    area: AreaCode
    episode_id: Identifier
    child_id: Identifier
    risk_grade: MissingRiskGrade


class ChildFound(ContractModel):
    """A missing child was found, closing the episode."""

    area: AreaCode
    episode_id: Identifier
    child_id: Identifier


class ReturnInterviewCompleted(ContractModel):
    """The return interview after a missing episode took place."""

    area: AreaCode
    episode_id: Identifier
    child_id: Identifier


class ExploitationConcernRaised(ContractModel):
    """A concern that a child is being exploited."""

    area: AreaCode
    concern_id: Identifier
    child_id: Identifier
    kind: ExploitationKind
    level: ConcernLevel
    age: Age | None = None


class SafeguardingActionTaken(ContractModel):
    """A safeguarding action was taken for a child."""

    area: AreaCode
    action_id: Identifier
    child_id: Identifier
    action: SafeguardingAction
    concern_id: Identifier | None = None


class OffenderRegistered(ContractModel):
    """A registered sex offender (RSO) came under management."""

    area: AreaCode
    offender_id: Identifier
    risk_level: OffenderRiskLevel
    management: OffenderManagement = OffenderManagement.ACTIVE


class OffenderVisited(ContractModel):
    """An offender-management visit took place."""

    area: AreaCode
    offender_id: Identifier
    visit: VisitKind
    outcome: VisitOutcome = VisitOutcome.COMPLETED


class OffenderRiskAssessed(ContractModel):
    """An offender's risk level was (re)assessed; changes the visit cadence."""

    area: AreaCode
    offender_id: Identifier
    risk_level: OffenderRiskLevel
    management: OffenderManagement = OffenderManagement.ACTIVE


class OffenderManagerAssigned(ContractModel):
    """An offender was put in the care of an offender manager (a pseudonymous staff id).

    The latest assignment by event time is the offender's manager: caseloads per manager
    are counted from it (docs/contract.md section 2); no name, only the staff id the
    sending system uses.
    """

    area: AreaCode
    offender_id: Identifier
    manager_id: Identifier


class ForensicExaminationRequested(ContractModel):
    """A forensic examination was requested for an indecent-imagery enquiry."""

    area: AreaCode
    enquiry_id: Identifier
    child_ids: Annotated[
        list[Identifier],
        Field(max_length=50, json_schema_extra={"uniqueItems": True}),
        AfterValidator(_unique),
    ]
    contact_restricted: StrictBool


class ForensicExaminationCompleted(ContractModel):
    """The forensic examination for an enquiry was completed."""

    area: AreaCode
    enquiry_id: Identifier


class CustodyChildDetained(ContractModel):
    """A child was detained in police custody."""

    area: AreaCode
    custody_id: Identifier
    child_id: Identifier
    age: Age
    charged: StrictBool


class CustodyChildReleased(ContractModel):
    """A child left police custody."""

    area: AreaCode
    custody_id: Identifier
    child_id: Identifier
    destination: ReleaseDestination


class ReferralSupplemented(ContractModel):
    """More information was added to a referral already shared (named by its id)."""

    area: AreaCode
    referral_id: Identifier
    child_id: Identifier
    contents: Annotated[
        list[ReferralContent],
        Field(min_length=1, json_schema_extra={"uniqueItems": True}),
        AfterValidator(_unique),
    ]


class ReferralDecided(ContractModel):
    """Children's social care acknowledged a referral and decided what to do."""

    area: AreaCode
    referral_id: Identifier
    child_id: Identifier
    decision: ReferralDecision


class ChildMissingRegraded(ContractModel):
    """A missing episode's risk grade was changed."""

    area: AreaCode
    episode_id: Identifier
    child_id: Identifier
    risk_grade: MissingRiskGrade


class ReturnInterviewShared(ContractModel):
    """The findings of a return interview reached the police."""

    area: AreaCode
    episode_id: Identifier
    child_id: Identifier


class CustodyAccommodationRequested(ContractModel):
    """Local-authority accommodation was requested for a child charged and denied bail."""

    area: AreaCode
    custody_id: Identifier
    child_id: Identifier


class CustodyAccommodationRefused(ContractModel):
    """The local authority refused the accommodation requested for a child in custody."""

    area: AreaCode
    custody_id: Identifier
    child_id: Identifier
    reason: AccommodationRefusal


# --- typed envelopes ------------------------------------------------------------------


class IncidentReportedEvent(EventEnvelopeBase):
    """CloudEvent of type `incident.reported`."""

    type: Literal[EventType.INCIDENT_REPORTED]
    data: IncidentReported


class ChildWelfareCheckedEvent(EventEnvelopeBase):
    """CloudEvent of type `child.welfare_checked`."""

    type: Literal[EventType.CHILD_WELFARE_CHECKED]
    data: ChildWelfareChecked


class ReferralSharedEvent(EventEnvelopeBase):
    """CloudEvent of type `referral.shared`."""

    type: Literal[EventType.REFERRAL_SHARED]
    data: ReferralShared


class ChildMissingEvent(EventEnvelopeBase):
    """CloudEvent of type `child.missing`."""

    type: Literal[EventType.CHILD_MISSING]
    data: ChildMissing


class ChildFoundEvent(EventEnvelopeBase):
    """CloudEvent of type `child.found`."""

    type: Literal[EventType.CHILD_FOUND]
    data: ChildFound


class ReturnInterviewCompletedEvent(EventEnvelopeBase):
    """CloudEvent of type `return_interview.completed`."""

    type: Literal[EventType.RETURN_INTERVIEW_COMPLETED]
    data: ReturnInterviewCompleted


class ExploitationConcernRaisedEvent(EventEnvelopeBase):
    """CloudEvent of type `exploitation.concern_raised`."""

    type: Literal[EventType.EXPLOITATION_CONCERN_RAISED]
    data: ExploitationConcernRaised


class SafeguardingActionTakenEvent(EventEnvelopeBase):
    """CloudEvent of type `safeguarding.action_taken`."""

    type: Literal[EventType.SAFEGUARDING_ACTION_TAKEN]
    data: SafeguardingActionTaken


class OffenderRegisteredEvent(EventEnvelopeBase):
    """CloudEvent of type `offender.registered`."""

    type: Literal[EventType.OFFENDER_REGISTERED]
    data: OffenderRegistered


class OffenderVisitedEvent(EventEnvelopeBase):
    """CloudEvent of type `offender.visited`."""

    type: Literal[EventType.OFFENDER_VISITED]
    data: OffenderVisited


class OffenderRiskAssessedEvent(EventEnvelopeBase):
    """CloudEvent of type `offender.risk_assessed`."""

    type: Literal[EventType.OFFENDER_RISK_ASSESSED]
    data: OffenderRiskAssessed


class ForensicExaminationRequestedEvent(EventEnvelopeBase):
    """CloudEvent of type `forensic.examination_requested`."""

    type: Literal[EventType.FORENSIC_EXAMINATION_REQUESTED]
    data: ForensicExaminationRequested


class ForensicExaminationCompletedEvent(EventEnvelopeBase):
    """CloudEvent of type `forensic.examination_completed`."""

    type: Literal[EventType.FORENSIC_EXAMINATION_COMPLETED]
    data: ForensicExaminationCompleted


class CustodyChildDetainedEvent(EventEnvelopeBase):
    """CloudEvent of type `custody.child_detained`."""

    type: Literal[EventType.CUSTODY_CHILD_DETAINED]
    data: CustodyChildDetained


class CustodyChildReleasedEvent(EventEnvelopeBase):
    """CloudEvent of type `custody.child_released`."""

    type: Literal[EventType.CUSTODY_CHILD_RELEASED]
    data: CustodyChildReleased


class ReferralSupplementedEvent(EventEnvelopeBase):
    """CloudEvent of type `referral.supplemented`."""

    type: Literal[EventType.REFERRAL_SUPPLEMENTED]
    data: ReferralSupplemented


class ReferralDecidedEvent(EventEnvelopeBase):
    """CloudEvent of type `referral.decided`."""

    type: Literal[EventType.REFERRAL_DECIDED]
    data: ReferralDecided


class ChildMissingRegradedEvent(EventEnvelopeBase):
    """CloudEvent of type `child.missing_regraded`."""

    type: Literal[EventType.CHILD_MISSING_REGRADED]
    data: ChildMissingRegraded


class ReturnInterviewSharedEvent(EventEnvelopeBase):
    """CloudEvent of type `return_interview.shared`."""

    type: Literal[EventType.RETURN_INTERVIEW_SHARED]
    data: ReturnInterviewShared


class CustodyAccommodationRequestedEvent(EventEnvelopeBase):
    """CloudEvent of type `custody.accommodation_requested`."""

    type: Literal[EventType.CUSTODY_ACCOMMODATION_REQUESTED]
    data: CustodyAccommodationRequested


class CustodyAccommodationRefusedEvent(EventEnvelopeBase):
    """CloudEvent of type `custody.accommodation_refused`."""

    type: Literal[EventType.CUSTODY_ACCOMMODATION_REFUSED]
    data: CustodyAccommodationRefused


class OffenderManagerAssignedEvent(EventEnvelopeBase):
    """CloudEvent of type `offender.manager_assigned`."""

    type: Literal[EventType.OFFENDER_MANAGER_ASSIGNED]
    data: OffenderManagerAssigned


_AnyEvent: TypeAlias = (
    IncidentReportedEvent
    | ChildWelfareCheckedEvent
    | ReferralSharedEvent
    | ChildMissingEvent
    | ChildFoundEvent
    | ReturnInterviewCompletedEvent
    | ExploitationConcernRaisedEvent
    | SafeguardingActionTakenEvent
    | OffenderRegisteredEvent
    | OffenderVisitedEvent
    | OffenderRiskAssessedEvent
    | ForensicExaminationRequestedEvent
    | ForensicExaminationCompletedEvent
    | CustodyChildDetainedEvent
    | CustodyChildReleasedEvent
    | ReferralSupplementedEvent
    | ReferralDecidedEvent
    | ChildMissingRegradedEvent
    | ReturnInterviewSharedEvent
    | CustodyAccommodationRequestedEvent
    | CustodyAccommodationRefusedEvent
    | OffenderManagerAssignedEvent
)

Event: TypeAlias = Annotated[_AnyEvent, Field(discriminator="type")]
"""Any event a control room may send, discriminated by `type`."""


def _data_model(envelope: type[EventEnvelopeBase]) -> type[BaseModel]:
    model = envelope.model_fields["data"].annotation
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        msg = f"{envelope.__name__}.data is not a model"
        raise TypeError(msg)
    return model


#: Event type name -> typed envelope class, in contract order.
ENVELOPE_TYPES: dict[str, type[EventEnvelopeBase]] = {
    get_args(cls.model_fields["type"].annotation)[0]: cls for cls in get_args(_AnyEvent)
}

#: Event type name -> model of its `data`, in contract order.
EVENT_TYPES: dict[str, type[BaseModel]] = {
    name: _data_model(cls) for name, cls in ENVELOPE_TYPES.items()
}

_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def _context(now: datetime | None) -> dict[str, datetime] | None:
    return None if now is None else {"now": now}


def parse_event(raw: object, *, now: datetime | None = None) -> Event:
    """Validate a decoded JSON value (e.g. from `json.loads`) as an event.

    `now` (timezone-aware) stands in for the clock in the "not in the future" check.
    Raises `InvalidEvent` listing every problem found.
    """
    try:
        return _EVENT_ADAPTER.validate_python(raw, context=_context(now))
    except ValidationError as exc:
        # `from None`: pydantic's own error text quotes the input (personal data),
        # and a chained traceback would carry it into the logs.
        raise invalid_event_from(exc) from None


def parse_event_json(raw: bytes | str, *, now: datetime | None = None) -> Event:
    """Validate a JSON document as an event.

    Raises `MalformedJSON` when `raw` is not JSON, `InvalidEvent` when it is JSON
    but not a valid event.
    """
    try:
        return _EVENT_ADAPTER.validate_json(raw, context=_context(now))
    except ValidationError as exc:
        raise invalid_event_from(exc) from None
