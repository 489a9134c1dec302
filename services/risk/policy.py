"""The risk policy: obligation windows, pattern thresholds and risk weights, from one YAML file.

Operators change these without code. Every field is validated; an error names the field.
"""

from __future__ import annotations

from datetime import date, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from schemas.alerts import Severity
from schemas.events import (
    ConcernLevel,
    IncidentCategory,
    MissingRiskGrade,
    OffenderRiskLevel,
    ReferralContent,
)
from services.common.durations import Duration
from services.common.policy_file import load_policy_file


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


class SchoolNotification(_Strict):
    """`school-notification`: by a time of day on the next school day."""

    severity: Severity = Severity.MEDIUM
    deadline_time: time = time(9, 0)
    timezone: str = "Europe/London"
    min_age: int = 4
    holidays: list[date] = Field(default_factory=list)


class ExploitationAction(Window):
    """`exploitation-action`."""

    window_when_level_high: Duration
    severity_when_level_high: Severity


class MissingReferral(_Strict):
    """`missing-referral`: a window per grade; a grade without one creates no obligation."""

    windows: dict[MissingRiskGrade, Duration]
    severity: Severity


class OffenderRoutineVisit(_Strict):
    """`offender-routine-visit`: a window per offender risk level."""

    windows: dict[OffenderRiskLevel, Duration]
    severity: Severity

    @model_validator(mode="after")
    def _every_level(self) -> OffenderRoutineVisit:
        missing = set(OffenderRiskLevel) - set(self.windows)
        if missing:
            raise ValueError(f"windows lacks levels {sorted(missing)}")
        return self


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
    child_in_custody: Window


class RepeatPattern(_Strict):
    """A pattern completed by the `count`-th occurrence within `within`."""

    count: Annotated[int, Field(ge=2)]
    within: Duration
    severity: Severity


class ReferralIncomplete(_Strict):
    """`referral-incomplete`."""

    required_contents: list[ReferralContent]
    severity: Severity


class Patterns(_Strict):
    """The pattern rules."""

    repeat_missing: RepeatPattern
    repeat_domestic_abuse: RepeatPattern
    referral_incomplete: ReferralIncomplete


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


class RiskPolicy(BaseModel):
    """Everything the risk service takes from the policy file."""

    # The file also holds the notify service's sections, which that service validates.
    model_config = ConfigDict(extra="ignore", frozen=True)

    obligations: Obligations
    patterns: Patterns
    scoring: Scoring
    settle: Duration = Field(
        default=timedelta(seconds=5),
        description="how long an obligation already overdue on arrival waits for the "
        "fulfilments sent with it before its alert is raised",
    )
    retention: Duration = Field(
        default=timedelta(days=400),
        description="how long closed obligations and seen event ids are kept per subject",
    )
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
