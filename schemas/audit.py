"""Records on `safeguarding.audit.v1`: who collected, consulted or altered what, and when.

The Data Protection Act 2018 Part 3 (section 62) requires logs of collection,
alteration, consultation and disclosure. Each record says what was done (`action`), by
which configured token (`actor`, the token's name, never the token), when, and to
which thing, by id only: an event's `(source, id)`, a child's id, an alert's id, a
dead letter's position on its topic. No payload, no note text, no names: the audit
topic is kept for years and must not become a second copy of the data it accounts for.

Every record is a CloudEvent of type `audit.recorded`; its `id` is unique per record
and its `source` names the service that wrote it.
"""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import Field, StrictInt, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from schemas.alerts import EventRef
from schemas.envelope import CloudEvent, ContractModel, Identifier, Timestamp, wrap

__all__ = [
    "AUDIT_SOURCES",
    "AUDIT_TYPE",
    "ActorName",
    "AuditAction",
    "AuditEvent",
    "AuditRecord",
    "Listing",
    "RecordRef",
    "Refusal",
    "audit_event",
]

AUDIT_TYPE = "audit.recorded"

#: CloudEvents `source` of audit records, per service.
AUDIT_SOURCES = {
    "ingest": "urn:safeguard:ingest",
    "risk": "urn:safeguard:risk",
    "notify": "urn:safeguard:notify",
    # The `safeguard` command line, for what an operator does straight on Kafka.
    "cli": "urn:safeguard:cli",
    "desk": "urn:safeguard:desk",
}

ActorName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
"""The `name` of a configured token (services.common.auth.TokenEntry.name), or the subject
identifier of a person signed in to the desk (services.desk.identity.person_name)."""


class AuditAction(StrEnum):
    """What was done; the field that names the thing is given per action."""

    EVENT_ACCEPTED = "event.accepted"  # `event` (collection)
    CHILD_VIEWED = "child.viewed"  # `child_id` (consultation)
    ALERTS_LISTED = "alerts.listed"  # `listing` (optional): its filters and the ids shown
    ALERT_VIEWED = "alert.viewed"  # `alert_id` (consultation)
    ALERT_ACKNOWLEDGED = "alert.acknowledged"  # `alert_id` (alteration)
    ALERT_RESOLVED = "alert.resolved"  # `alert_id` (alteration)
    ALERT_NOTED = "alert.noted"  # `alert_id`: a note was added (its text is not here)
    REPORT_VIEWED = "report.viewed"  # nothing more: aggregate figures, no one's record
    DEADLETTER_VIEWED = "deadletter.viewed"  # `record`: its key and payload shown (consultation)
    DEADLETTER_REPLAYED = "deadletter.replayed"  # `record`: sent again to its topic (collection)
    REQUEST_REFUSED = "request.refused"  # `refusal`: unauthenticated or forbidden (access)
    AUDIT_SEARCHED = "audit.searched"  # what was searched for: a child, an alert, a
    # principal (`principal`), or nothing more for a search of the report's readers
    PACK_GENERATED = "pack.generated"  # nothing more: an assurance pack's aggregate figures


_REQUIRED: dict[AuditAction, str | None] = {
    AuditAction.EVENT_ACCEPTED: "event",
    AuditAction.CHILD_VIEWED: "child_id",
    AuditAction.ALERTS_LISTED: None,
    AuditAction.ALERT_VIEWED: "alert_id",
    AuditAction.ALERT_ACKNOWLEDGED: "alert_id",
    AuditAction.ALERT_RESOLVED: "alert_id",
    AuditAction.ALERT_NOTED: "alert_id",
    AuditAction.REPORT_VIEWED: None,
    AuditAction.DEADLETTER_VIEWED: "record",
    AuditAction.DEADLETTER_REPLAYED: "record",
    AuditAction.REQUEST_REFUSED: "refusal",
    AuditAction.PACK_GENERATED: None,
}
# A search names what it looked for: one of these, or none (who viewed reports).
_SEARCHED = ("child_id", "alert_id", "principal")


class RecordRef(ContractModel):
    """Where a Kafka record is: its topic, partition and offset."""

    topic: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,249}$")]
    partition: Annotated[StrictInt, Field(ge=0)]
    offset: Annotated[StrictInt, Field(ge=0)]


class Refusal(ContractModel):
    """A request refused at the door: its status (401, 403) and the route it asked for."""

    status: Annotated[StrictInt, Field(ge=400, le=499)]
    route: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9/{}._-]{1,128}$")] = Field(
        description="the route template (`/v1/events`), never the path as typed"
    )


FilterName = Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,32}$")]
# A code, an area, a time or an event id (the alerts an event raised).
FilterValue = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:/-]{1,128}$")]


class Listing(ContractModel):
    """What a list of alerts showed: its filters (codes, never free text) and the ids."""

    filters: dict[FilterName, FilterValue] = Field(
        default_factory=dict, description="status, rule, severity, area as asked for"
    )
    alert_ids: list[Identifier] = Field(
        max_length=500, description="the alerts the answer returned, in its order"
    )


class AuditRecord(ContractModel):
    """One audited action: ids, the action, the token's name and the time; nothing else.

    Exactly the id field the action names is set (none for `alerts.listed`,
    `report.viewed` and `pack.generated`); an `alerts.listed` may carry `listing` (its
    filters and the ids it returned: records written before it existed have none); an
    `audit.searched` names at most one of
    `child_id`, `alert_id` and `principal` (the token name whose actions were searched).
    """

    action: AuditAction
    actor: ActorName
    at: Timestamp
    event: EventRef | None = None
    child_id: Identifier | None = None
    alert_id: Identifier | None = None
    record: RecordRef | None = None
    refusal: Refusal | None = None
    principal: ActorName | None = None
    listing: Listing | None = None

    @model_validator(mode="after")
    def _the_named_id(self) -> Self:
        present = [
            name
            for name, value in (
                ("event", self.event),
                ("child_id", self.child_id),
                ("alert_id", self.alert_id),
                ("record", self.record),
                ("refusal", self.refusal),
                ("principal", self.principal),
                ("listing", self.listing),
            )
            if value is not None
        ]
        if self.action is AuditAction.AUDIT_SEARCHED:
            allowed = len(present) <= 1 and set(present) <= set(_SEARCHED)
        elif self.action is AuditAction.ALERTS_LISTED:
            allowed = present in ([], ["listing"])
        else:
            wanted = _REQUIRED[self.action]
            allowed = present == ([] if wanted is None else [wanted])
        if not allowed:
            raise PydanticCustomError(
                "audit_target",
                "exactly the id field the action names must be set",
            )
        return self

    @property
    def target(self) -> str:
        """The id of the thing acted on (empty for a list): the Kafka key of the record."""
        if self.event is not None:
            return f"{self.event.source}|{self.event.id}"
        if self.record is not None:
            return f"{self.record.topic}:{self.record.partition}:{self.record.offset}"
        if self.refusal is not None:
            return f"refused|{self.actor}"
        if self.principal is not None:
            return f"principal:{self.principal}"
        return self.child_id or self.alert_id or ""


class AuditEvent(CloudEvent):
    """CloudEvent of type `audit.recorded` on `safeguarding.audit.v1`."""

    type: Literal["audit.recorded"]
    data: AuditRecord


class _AuditType(StrEnum):
    RECORDED = AUDIT_TYPE


def audit_event(record: AuditRecord, *, record_id: str, service: str) -> AuditEvent:
    """Wrap `record`; `id` is the caller's unique record id, `time` the action's time."""
    at: datetime = record.at
    return wrap(
        AuditEvent,
        record,
        event_id=record_id,
        type_=_AuditType.RECORDED,
        time=at,
        source=AUDIT_SOURCES[service],
    )
