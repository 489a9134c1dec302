"""What the risk service publishes on `safeguarding.alerts.v1` (docs/contract.md section 5).

An alert is raised when an obligation is breached or a pattern completes, and resolved
when the fulfilment arrives (or someone resolves it by hand). Alert ids are
deterministic, so every consumer can drop a duplicate, and keyed with a deployment
secret, so an alert id cannot be linked back to the child, offender or enquiry by
anyone who does not hold the secret.
"""

import hashlib
import hmac
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Literal, Self, TypeAlias

from pydantic import (
    Field,
    StrictInt,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from schemas.envelope import (
    AlertType,
    AreaCode,
    CloudEvent,
    CloudEventId,
    ContractModel,
    Identifier,
    Timestamp,
    UriReference,
    wrap,
)
from schemas.errors import invalid_event_from

__all__ = [
    "RISK_SOURCE",
    "AlertMessage",
    "AlertRaised",
    "AlertRaisedEvent",
    "AlertResolved",
    "AlertResolvedEvent",
    "EventRef",
    "Rule",
    "RuleId",
    "Severity",
    "SubjectKind",
    "alert_raised_event",
    "alert_resolved_event",
    "deterministic_alert_id",
    "parse_alert",
]

#: Default CloudEvents `source` of alert events.
RISK_SOURCE = "urn:safeguard:risk"

RuleId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
"""Rule identifier such as `welfare-check` (docs/contract.md section 3)."""


class Rule(StrEnum):
    """Every rule of docs/contract.md section 3: deadlines, then patterns."""

    WELFARE_CHECK = "welfare-check"
    SOCIAL_CARE_REFERRAL = "social-care-referral"
    SCHOOL_NOTIFICATION = "school-notification"
    EXPLOITATION_ACTION = "exploitation-action"
    MISSING_REFERRAL = "missing-referral"
    RETURN_INTERVIEW = "return-interview"
    OFFENDER_INITIAL_VISIT = "offender-initial-visit"
    OFFENDER_ROUTINE_VISIT = "offender-routine-visit"
    FORENSIC_EXAMINATION = "forensic-examination"
    CHILD_IN_CUSTODY = "child-in-custody"
    STRATEGY_DISCUSSION = "strategy-discussion"
    MARAC_REFERRAL = "marac-referral"
    REFERRAL_DECISION = "referral-decision"
    RETURN_INTERVIEW_SHARED = "return-interview-shared"
    OFFENDER_RISK_ASSESSMENT = "offender-risk-assessment"
    REPEAT_MISSING = "repeat-missing"
    REPEAT_DOMESTIC_ABUSE = "repeat-domestic-abuse"
    REFERRAL_INCOMPLETE = "referral-incomplete"
    RISK_LEVEL = "risk-level"
    CUSTODY_ACCOMMODATION_REFUSED = "custody-accommodation-refused"


class Severity(StrEnum):
    """Alert severity; ordered medium < high < critical."""

    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Position in the order, 0 for medium."""
        return list(Severity).index(self)

    def bump(self) -> "Severity":
        """Return the next severity up, capped at critical."""
        order = list(Severity)
        return order[min(self.rank + 1, len(order) - 1)]

    # str comparison would order these alphabetically; compare by rank instead.
    def __lt__(self, other: object) -> bool:
        """Order by rank."""
        if isinstance(other, Severity):
            return self.rank < other.rank
        return NotImplemented

    def __le__(self, other: object) -> bool:
        """Order by rank."""
        if isinstance(other, Severity):
            return self.rank <= other.rank
        return NotImplemented

    def __gt__(self, other: object) -> bool:
        """Order by rank."""
        if isinstance(other, Severity):
            return self.rank > other.rank
        return NotImplemented

    def __ge__(self, other: object) -> bool:
        """Order by rank."""
        if isinstance(other, Severity):
            return self.rank >= other.rank
        return NotImplemented


class SubjectKind(StrEnum):
    """What an alert is about; names which id field is set."""

    CHILD = "child"
    OFFENDER = "offender"
    ENQUIRY = "enquiry"


class EventRef(ContractModel):
    """A reference to an event by its idempotency key `(source, id)`."""

    source: UriReference
    id: CloudEventId


class AlertRaised(ContractModel):
    """An obligation was breached or a pattern completed.

    Exactly one of `child_id`, `offender_id`, `enquiry_id` is set: the one that
    `subject_kind` names. `due_at` is absent for pattern rules. `summary` is built by
    the service and carries no personal data.
    """

    alert_id: Identifier
    rule: RuleId
    severity: Severity
    subject_kind: SubjectKind
    child_id: Identifier | None = None
    offender_id: Identifier | None = None
    enquiry_id: Identifier | None = None
    area: AreaCode | None = None
    trigger: EventRef
    due_at: Timestamp | None = None
    raised_at: Timestamp
    summary: Annotated[str, StringConstraints(min_length=1, max_length=1000)]
    start_level: Annotated[StrictInt, Field(ge=2)] | None = Field(
        default=None,
        description="the escalation ladder starts at this level: every level up to it is "
        "told at the raise (absent: level 1)",
    )

    @model_validator(mode="after")
    def _one_subject(self) -> Self:
        ids = {
            SubjectKind.CHILD: self.child_id,
            SubjectKind.OFFENDER: self.offender_id,
            SubjectKind.ENQUIRY: self.enquiry_id,
        }
        if [kind for kind, value in ids.items() if value is not None] != [self.subject_kind]:
            raise PydanticCustomError(
                "alert_subject",
                "exactly one of child_id, offender_id, enquiry_id must be set: "
                "the one subject_kind names",
            )
        return self

    @property
    def subject_id(self) -> str:
        """The id of the child, offender or enquiry the alert is about."""
        # The validator guarantees exactly one is set.
        return self.child_id or self.offender_id or self.enquiry_id or ""


class AlertResolved(ContractModel):
    """An alert was closed: its fulfilment arrived, or someone resolved it by hand.

    A fulfilment carries `fulfilment` and `fulfilled_at`; a manual resolution carries
    `resolved_by` instead. `late_by_seconds` is how long after the deadline the
    fulfilment happened. `recorded_at` is when the fulfilment reached Safeguard;
    `recorded_late_by_seconds` is set when it claims a time in time but was recorded more
    than the policy's tolerance after that time and after the deadline ("on time as
    claimed, recorded N late").
    """

    alert_id: Identifier
    rule: RuleId
    resolved_at: Timestamp
    fulfilled_at: Timestamp | None = None
    late_by_seconds: Annotated[StrictInt, Field(ge=0)]
    fulfilment: EventRef | None = None
    recorded_at: Timestamp | None = None
    recorded_late_by_seconds: Annotated[StrictInt, Field(ge=1)] | None = None
    resolved_by: Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{1,128}$")] | None = (
        None
    )

    @model_validator(mode="after")
    def _one_cause(self) -> Self:
        if (self.fulfilment is None) == (self.resolved_by is None):
            raise PydanticCustomError(
                "alert_resolution",
                "exactly one of fulfilment, resolved_by must be set",
            )
        if (self.fulfilment is None) != (self.fulfilled_at is None):
            raise PydanticCustomError(
                "alert_resolution",
                "fulfilled_at must be set exactly when fulfilment is",
            )
        return self


class AlertRaisedEvent(CloudEvent):
    """CloudEvent of type `alert.raised`; `id` is the alert id."""

    type: Literal[AlertType.RAISED]
    data: AlertRaised


class AlertResolvedEvent(CloudEvent):
    """CloudEvent of type `alert.resolved`; `id` is `<alert_id>:resolved`."""

    type: Literal[AlertType.RESOLVED]
    data: AlertResolved


AlertMessage: TypeAlias = Annotated[
    AlertRaisedEvent | AlertResolvedEvent, Field(discriminator="type")
]
"""Any message on `safeguarding.alerts.v1`, discriminated by `type`."""

_ALERT_ADAPTER: TypeAdapter[AlertMessage] = TypeAdapter(AlertMessage)


def deterministic_alert_id(rule: str, *parts: str, key: bytes) -> str:
    """Return the alert id for a breach: the same key, rule and parts give the same id.

    HMAC-SHA256 with the deployment's secret `key`: an unkeyed hash of a child id could
    be recomputed from the id by anyone, linking alerts back to children.
    """
    if not key:
        msg = "an alert id needs a non-empty key"
        raise ValueError(msg)
    message = "\x1f".join([rule, *parts]).encode()
    digest = hmac.new(key, message, hashlib.sha256).hexdigest()
    return f"al-{digest[:32]}"


def alert_raised_event(
    data: AlertRaised,
    *,
    source: str = RISK_SOURCE,
) -> AlertRaisedEvent:
    """Wrap `data` in its CloudEvent; `id` is the alert id, `time` the raise time."""
    return wrap(
        AlertRaisedEvent,
        data,
        event_id=data.alert_id,
        type_=AlertType.RAISED,
        time=data.raised_at,
        source=source,
    )


def alert_resolved_event(
    data: AlertResolved,
    *,
    source: str = RISK_SOURCE,
) -> AlertResolvedEvent:
    """Wrap `data` in its CloudEvent; `id` is `<alert_id>:resolved`."""
    return wrap(
        AlertResolvedEvent,
        data,
        event_id=f"{data.alert_id}:resolved",
        type_=AlertType.RESOLVED,
        time=data.resolved_at,
        source=source,
    )


def parse_alert(raw: bytes | str | Mapping[str, object]) -> AlertMessage:
    """Validate an alert event, from JSON text or a decoded object.

    Raises `MalformedJSON` for text that is not JSON, `InvalidEvent` otherwise.
    Unlike world events, an alert's `time` is not checked against the clock: it is
    the publishing service's clock, and test clocks may run ahead.
    """
    try:
        if isinstance(raw, bytes | str):
            return _ALERT_ADAPTER.validate_json(raw)
        return _ALERT_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        # `from None`: keep pydantic's input-quoting text out of tracebacks.
        raise invalid_event_from(exc) from None
