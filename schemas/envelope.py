"""The CloudEvents 1.0 envelope and the building blocks every contract model shares.

Everything Safeguard reads or publishes is a CloudEvent in structured JSON mode
(docs/contract.md section 1). This module holds the envelope attributes, the vocabulary
of event types, and the constrained field types (identifiers, timestamps, URIs) that
the data models in `schemas.events`, `schemas.alerts` and `schemas.deadletter` reuse.
"""

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "KNOWN_TYPES",
    "MAX_FUTURE_SKEW",
    "SCHEMA_VERSION",
    "AlertType",
    "AreaCode",
    "CloudEvent",
    "CloudEventId",
    "ContractModel",
    "Envelope",
    "EventEnvelopeBase",
    "EventType",
    "Identifier",
    "Subject",
    "Timestamp",
    "UriReference",
    "dataschema",
    "schema_version",
    "wrap",
]

#: How far an event's `time` may lie ahead of the receiver's clock (skew allowance).
MAX_FUTURE_SKEW = timedelta(minutes=5)


class ContractModel(BaseModel):
    """Base of every contract model: unknown fields rejected, instances immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
"""Opaque pseudonymous reference from a source system (child, offender, incident...)."""

AreaCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
"""Area code (a policing area): who may see and act on what concerns it, and its routing."""

# The RFC 3986 URI-reference character set (unreserved, reserved and '%'): anything
# else, whitespace and control characters included, cannot appear in a URI-reference.
UriReference = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]{1,256}$"),
]
"""RFC 3986 URI-reference, 1..256 characters."""

# An identifier, not free text: ids and subjects are logged, keyed on and copied into
# alerts and webhooks, so nothing that could spell a name and a date of birth with
# spaces or punctuation ("Jane Doe 01/02/2010") fits; pseudonymous references do.
_CLOUD_EVENT_ID = r"^[A-Za-z0-9._:/-]{1,128}$"

CloudEventId = Annotated[str, StringConstraints(pattern=_CLOUD_EVENT_ID)]
"""CloudEvents `id`: unique per `source`; `(source, id)` is the idempotency key."""

Subject = Annotated[str, StringConstraints(pattern=_CLOUD_EVENT_ID)]
"""CloudEvents `subject`: an identifier under the same pattern as `id`, never free text."""

# RFC 3339 `date-time` exactly: pydantic alone would also take unix timestamps,
# minute precision and offsets without a colon, none of which the contract allows.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})",
)


def _require_rfc3339(value: object) -> object:
    """Let datetimes through (built in code); demand an RFC 3339 string otherwise."""
    if isinstance(value, datetime) or (isinstance(value, str) and _RFC3339.fullmatch(value)):
        return value
    raise PydanticCustomError(
        "datetime_rfc3339",
        "Input should be an RFC 3339 timestamp with seconds and an offset, "
        "e.g. 2026-11-20T21:14:00Z",
    )


Timestamp = Annotated[AwareDatetime, BeforeValidator(_require_rfc3339)]
"""RFC 3339 timestamp with an offset; naive times are rejected."""


class EventType(StrEnum):
    """Types of the events control rooms send (docs/contract.md section 2)."""

    INCIDENT_REPORTED = "incident.reported"
    CHILD_WELFARE_CHECKED = "child.welfare_checked"
    REFERRAL_SHARED = "referral.shared"
    CHILD_MISSING = "child.missing"
    CHILD_FOUND = "child.found"
    RETURN_INTERVIEW_COMPLETED = "return_interview.completed"
    EXPLOITATION_CONCERN_RAISED = "exploitation.concern_raised"
    SAFEGUARDING_ACTION_TAKEN = "safeguarding.action_taken"
    OFFENDER_REGISTERED = "offender.registered"
    OFFENDER_VISITED = "offender.visited"
    OFFENDER_RISK_ASSESSED = "offender.risk_assessed"
    FORENSIC_EXAMINATION_REQUESTED = "forensic.examination_requested"
    FORENSIC_EXAMINATION_COMPLETED = "forensic.examination_completed"
    CUSTODY_CHILD_DETAINED = "custody.child_detained"
    CUSTODY_CHILD_RELEASED = "custody.child_released"
    REFERRAL_SUPPLEMENTED = "referral.supplemented"
    REFERRAL_DECIDED = "referral.decided"
    CHILD_MISSING_REGRADED = "child.missing_regraded"
    RETURN_INTERVIEW_SHARED = "return_interview.shared"
    CUSTODY_ACCOMMODATION_REQUESTED = "custody.accommodation_requested"
    CUSTODY_ACCOMMODATION_REFUSED = "custody.accommodation_refused"
    OFFENDER_MANAGER_ASSIGNED = "offender.manager_assigned"


class AlertType(StrEnum):
    """Types of the events the risk service publishes (docs/contract.md section 5)."""

    RAISED = "alert.raised"
    RESOLVED = "alert.resolved"


#: Every CloudEvents `type` this package defines; also the tags of its tagged unions.
KNOWN_TYPES: frozenset[str] = frozenset(EventType) | frozenset(AlertType)


class CloudEvent(ContractModel):
    """CloudEvents 1.0 context attributes shared by every Safeguard event.

    Subclasses add `type` and `data`. Extension attributes are not accepted.
    """

    specversion: Literal["1.0"]
    id: CloudEventId
    source: UriReference
    time: Timestamp
    datacontenttype: Literal["application/json"] | None = None
    subject: Subject | None = None
    dataschema: UriReference | None = None

    def to_json(self) -> bytes:
        """Serialise as structured-mode JSON, leaving out absent (None) attributes."""
        return self.model_dump_json(exclude_none=True).encode()


def _now_from(info: ValidationInfo) -> datetime:
    """Return the validation context's `now` (injected by tests), else the clock."""
    context = info.context
    now = context.get("now") if isinstance(context, Mapping) else None
    if now is None:
        return datetime.now(UTC)
    if not isinstance(now, datetime) or now.utcoffset() is None:
        # A programming error, not bad input: TypeError escapes pydantic unwrapped.
        msg = "validation context 'now' must be a timezone-aware datetime"
        raise TypeError(msg)
    return now


class EventEnvelopeBase(CloudEvent):
    """A CloudEvent reporting something that happened in the world.

    `time` may be in the past (late reports are normal) but not more than five
    minutes ahead of the receiver's clock, read from the validation context key
    `now` when given.
    """

    @field_validator("time")
    @classmethod
    def _not_in_future(cls, value: datetime, info: ValidationInfo) -> datetime:
        if value > _now_from(info) + MAX_FUTURE_SKEW:
            raise PydanticCustomError(
                "time_in_future",
                "time is more than 5 minutes in the future",
            )
        return value


class Envelope(EventEnvelopeBase):
    """Any Safeguard event, with `data` left as an unchecked JSON object."""

    type: EventType
    data: dict[str, Any]


E = TypeVar("E", bound="CloudEvent")

#: The version of the record schemas this release writes, in every record's `dataschema`
#: (`urn:safeguard:schema:<type>:<version>`, the `$id` of `schemas/json/<type>.json` plus
#: the version). A reader takes this version and the one before; a record without
#: `dataschema` was written before versions were recorded, and reads as version 1.
SCHEMA_VERSION = 1


def dataschema(type_: str, version: int = SCHEMA_VERSION) -> str:
    """Return the `dataschema` of a record of `type_` in this release's version."""
    return f"urn:safeguard:schema:{type_}:{version}"


def schema_version(value: str | None) -> int:
    """Return the version a record's `dataschema` names (1 when it has none)."""
    if value is None or not value.startswith("urn:safeguard:schema:"):
        return 1
    _, _, number = value.rpartition(":")
    return int(number) if number.isdigit() else 1


def wrap(  # noqa: PLR0913 - one argument per CloudEvent attribute
    envelope: type[E],
    data: BaseModel,
    *,
    event_id: str,
    type_: StrEnum,
    time: datetime,
    source: str,
) -> E:
    """Return `data` in its CloudEvent envelope (structured mode, JSON data)."""
    return envelope.model_validate(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": source,
            "type": type_,
            "time": time,
            "datacontenttype": "application/json",
            "dataschema": dataschema(str(type_)),
            "data": data,
        }
    )
