"""The risk policy: obligation windows, pattern thresholds and risk weights, from one YAML file.

Operators change these without code. Every field is validated; an error names the field.
"""

from __future__ import annotations

from datetime import date, time, timedelta
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from schemas.alerts import Rule, Severity
from schemas.events import (
    ConcernLevel,
    IncidentCategory,
    MissingRiskGrade,
    OffenderManagement,
    OffenderRiskLevel,
    ReferralContent,
)
from services.common.durations import Duration
from services.common.policy_file import load_policy_file
from services.risk.calendar import SchoolCalendar


class RiskLevel(StrEnum):
    """A child's risk level (docs/contract.md section 4), ordered low < medium < high < critical."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Position in the order, 0 for low."""
        return _LEVEL_RANK[self]


_LEVEL_RANK = {level: rank for rank, level in enumerate(RiskLevel)}

#: Alert-id secret of development mode only; services.risk.settings refuses it elsewhere.
DEVELOPMENT_ALERT_KEY = b"safeguard-development-alert-id-secret"


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=_kebab)


class Window(_Strict):
    """A fixed window and the severity of its breach."""

    window: Duration
    severity: Severity


class SocialCareReferral(Window):
    """`social-care-referral`."""

    window_when_dash_high: Duration


class WorkingDays(_Strict):
    """A window counted in working days (Monday to Friday, less bank holidays)."""

    working_days: Annotated[int, Field(ge=1, le=30)]
    severity: Severity


class Term(_Strict):
    """A school term, first and last day included."""

    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> Term:
        if self.end < self.start:
            raise ValueError("a term ends on or after its start")
        return self


class SchoolNotification(_Strict):
    """`school-notification`: by a time of day on the next school day.

    `terms` per area (`default` for areas without their own): a school day is a weekday
    inside a term that is not a bank holiday nor listed in `holidays`. Past the last term
    an area's calendar lists, every weekday but a bank holiday counts (docs/contract.md).
    """

    severity: Severity = Severity.MEDIUM
    deadline_time: time = time(9, 0)
    timezone: str = "Europe/London"
    min_age: int = 4
    holidays: list[date] = Field(default_factory=list)
    terms: dict[str, list[Term]] = Field(default_factory=dict)

    @cached_property
    def calendar(self) -> SchoolCalendar:
        """The school calendar these terms and closures make (built once)."""
        return SchoolCalendar(
            {area: [(t.start, t.end) for t in terms] for area, terms in self.terms.items()},
            self.holidays,
        )


class ExploitationAction(Window):
    """`exploitation-action`."""

    window_when_level_high: Duration
    severity_when_level_high: Severity


class MissingReferral(_Strict):
    """`missing-referral`: a window per grade; a grade without one creates no obligation."""

    windows: dict[MissingRiskGrade, Duration]
    severity: Severity


class OffenderRoutineVisit(_Strict):
    """`offender-routine-visit`: a window per offender risk level.

    `owed_by`: the management categories that owe a routine cadence; an offender under
    any other (reactive management) owes none.
    """

    windows: dict[OffenderRiskLevel, Duration]
    severity: Severity
    owed_by: list[OffenderManagement] = Field(default_factory=lambda: [OffenderManagement.ACTIVE])

    @model_validator(mode="after")
    def _every_level(self) -> OffenderRoutineVisit:
        missing = set(OffenderRiskLevel) - set(self.windows)
        if missing:
            raise ValueError(f"windows lacks levels {sorted(missing)}")
        return self


class OffenderRiskAssessment(_Strict):
    """`offender-risk-assessment` (ARMS): the next assessment is due by the level in force."""

    windows: dict[OffenderRiskLevel, Duration]
    severity: Severity

    @model_validator(mode="after")
    def _every_level(self) -> OffenderRiskAssessment:
        missing = set(OffenderRiskLevel) - set(self.windows)
        if missing:
            raise ValueError(f"windows lacks levels {sorted(missing)}")
        return self


class ChildInCustody(Window):
    """`child-in-custody`: the window, and a second alert if the child is held overnight.

    The overnight deadline is the first `overnight_at` (local time) after the detention,
    or the end of the window if that is later.
    """

    overnight_at: time = time(0, 0)
    timezone: str = "Europe/London"
    severity_overnight: Severity = Severity.CRITICAL


class ForensicSecond(Window):
    """The second forensic alert."""

    severity_when_contact_restricted: Severity


class ForensicExamination(_Strict):
    """`forensic-examination`: two alerts."""

    first: Window
    second: ForensicSecond


class Obligations(_Strict):
    """Windows of the deadline rules (docs/contract.md section 3)."""

    welfare_check: Window
    social_care_referral: SocialCareReferral
    school_notification: SchoolNotification
    exploitation_action: ExploitationAction
    missing_referral: MissingReferral
    return_interview: Window
    offender_initial_visit: Window
    offender_routine_visit: OffenderRoutineVisit
    forensic_examination: ForensicExamination
    child_in_custody: ChildInCustody
    strategy_discussion: WorkingDays
    marac_referral: WorkingDays
    referral_decision: WorkingDays
    return_interview_shared: Window
    offender_risk_assessment: OffenderRiskAssessment


class RepeatPattern(_Strict):
    """A pattern completed by the `count`-th occurrence within `within`."""

    count: Annotated[int, Field(ge=2)]
    within: Duration
    severity: Severity


class ReferralIncomplete(_Strict):
    """`referral-incomplete`, and what a referral must hold to fulfil a referral rule.

    `required_contents`: a list (every referral), or per incident category with a
    `default` for the rest (referrals about missing episodes and concerns, and those whose
    incident is not known yet). Each category's list must include the default's, so a
    referral judged before its incident arrived is never judged complete wrongly.
    """

    required_contents: dict[str, list[ReferralContent]]
    severity: Severity

    @model_validator(mode="before")
    @classmethod
    def _list_is_default(cls, data: object) -> object:
        if isinstance(data, dict):
            key = "required-contents"
            if isinstance(data.get(key), list):
                data = {**data, key: {"default": data[key]}}
        return data

    @model_validator(mode="after")
    def _categories_extend_default(self) -> ReferralIncomplete:
        known = {"default", *IncidentCategory}
        unknown = sorted(set(self.required_contents) - known)
        if unknown:
            raise ValueError(f"required-contents: unknown categories {unknown}")
        base = set(self.required_contents.get("default", []))
        for category, contents in self.required_contents.items():
            if not base <= set(contents):
                raise ValueError(f"required-contents.{category} must include the default's")
        return self

    def required(self, category: IncidentCategory | None) -> frozenset[ReferralContent]:
        """Return what a referral must hold for an incident of `category` (None: unknown)."""
        default = self.required_contents.get("default", [])
        if category is None:
            return frozenset(default)
        return frozenset(self.required_contents.get(category.value, default))


class CustodyAccommodationRefused(_Strict):
    """`custody-accommodation-refused`: raised at once, told from `start_level` up."""

    severity: Severity = Severity.CRITICAL
    start_level: Annotated[int, Field(ge=1, le=10)] = 3


class Patterns(_Strict):
    """The pattern rules."""

    repeat_missing: RepeatPattern
    repeat_domestic_abuse: RepeatPattern
    referral_incomplete: ReferralIncomplete
    custody_accommodation_refused: CustodyAccommodationRefused = Field(
        default_factory=CustodyAccommodationRefused
    )


class IncidentWeight(_Strict):
    """Points for an incident, by whether the child was present."""

    present: int = Field(ge=0)
    absent: int = Field(ge=0)


class Weights(_Strict):
    """Points each signal adds to a child's score."""

    incident: dict[IncidentCategory, IncidentWeight]
    missing: dict[MissingRiskGrade, Annotated[int, Field(ge=0)]]
    exploitation: dict[ConcernLevel, Annotated[int, Field(ge=0)]]
    custody: int = Field(ge=0)
    breach: int = Field(ge=0)


class Thresholds(_Strict):
    """Lowest score of each level above `low`."""

    medium: int
    high: int
    critical: int

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if not 0 < self.medium < self.high < self.critical:
            raise ValueError("thresholds must rise: 0 < medium < high < critical")
        return self


class Scoring(_Strict):
    """The risk score (docs/contract.md section 4)."""

    lookback: Duration
    thresholds: Thresholds
    weights: Weights
    under_13_exploitation_floor: RiskLevel = RiskLevel.MEDIUM
    concern_open_for: Duration = Field(
        default=timedelta(days=90),
        description="a missing episode within this long after an exploitation concern "
        "raises the concern's level one step (low, medium, high)",
    )


class RiskPolicy(BaseModel):
    """Everything the risk service takes from the policy file."""

    # The file also holds the notify service's sections, which that service validates.
    model_config = ConfigDict(extra="ignore", frozen=True)

    obligations: Obligations
    patterns: Patterns
    scoring: Scoring
    fulfilment_sources: dict[str, list[str]] = Field(
        default_factory=dict,
        alias="fulfilment-sources",
        description="per rule, the sources whose events count as its fulfilment (`*`: any); "
        "a rule not listed accepts any source",
    )
    backdating_tolerance: Duration = Field(
        default=timedelta(hours=1),
        alias="backdating-tolerance",
        description="a fulfilment recorded after the deadline and more than this after the "
        "time it claims is reported apart (on time as claimed, recorded late)",
    )
    working_days_timezone: str = Field(default="Europe/London", alias="working-days-timezone")
    settle: Duration = Field(
        default=timedelta(seconds=5),
        description="how long an obligation already overdue on arrival waits for the "
        "fulfilments sent with it before its alert is raised",
    )
    retention: Duration = Field(
        default=timedelta(days=400),
        description="how long closed obligations and seen event ids are kept per subject",
    )

    @model_validator(mode="after")
    def _known_rules(self) -> RiskPolicy:
        unknown = sorted(set(self.fulfilment_sources) - set(Rule))
        if unknown:
            raise ValueError(f"fulfilment-sources names unknown rules {unknown}")
        return self

    # The deployment's alert-id secret (RISK_ALERT_ID_SECRET), never from the file: a
    # private attribute cannot be set by validation. The engine takes it from here
    # because the policy is what every engine call already receives.
    _alert_key: bytes = PrivateAttr(default=DEVELOPMENT_ALERT_KEY)

    @property
    def alert_key(self) -> bytes:
        """The secret alert ids are keyed with (HMAC-SHA256)."""
        # Read from pydantic's store of private attributes directly: `self._alert_key`
        # goes through `__getattr__`, which cost 10 microseconds on every deadline.
        private = self.__pydantic_private__
        assert private is not None  # noqa: S101 - the model declares a private attribute
        key: bytes = private["_alert_key"]
        return key

    def accepts(self, rule: str, source: str) -> bool:
        """Tell whether an event from `source` may fulfil `rule`."""
        allowed = self.fulfilment_sources.get(rule)
        return allowed is None or "*" in allowed or source in allowed

    def with_alert_key(self, key: bytes) -> RiskPolicy:
        """Return this policy with the deployment's alert-id secret."""
        if not key:
            msg = "the alert-id secret must not be empty"
            raise ValueError(msg)
        keyed = self.model_copy()
        keyed._alert_key = key  # noqa: SLF001 - the copy is this class's own
        return keyed


def load_policy(path: Path, *, alert_key: bytes | None = None) -> RiskPolicy:
    """Read and validate the policy file, naming the offending field on error."""
    policy = load_policy_file(path, RiskPolicy)
    return policy if alert_key is None else policy.with_alert_key(alert_key)
