"""The audit trail: one record on `safeguarding.audit.v1` per audited action (schemas.audit).

Ingest writes one record per accepted event with its kafka-python writer, in the same
wait as the events themselves: a 202 means the events and their audit records are both
on the broker. Risk writes the record of each event a direct producer sent on its own
topic (accepted, or refused as outside the producer's scopes) with the batch that
applies it, before the event's offset is committed. The Faust services call
`publish_audit` from their pages before they answer: a read whose record the broker did
not take is answered 503, not served, so no consultation goes unrecorded.

The topic name is a setting of each service (`<PREFIX>AUDIT_TOPIC`, default
`AUDIT_TOPIC`) until it joins `services.common.kafka.Topics`.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Literal

import structlog

from schemas.alerts import EventRef
from schemas.audit import (
    AuditAction,
    AuditEvent,
    AuditRecord,
    Listing,
    RecordRef,
    Refusal,
    audit_event,
)
from schemas.events import Event
from services.common.auth import Principal

if TYPE_CHECKING:
    from faust.types import TopicT

log = structlog.get_logger(__name__)

AUDIT_TOPIC = "safeguarding.audit.v1"
#: How long a page waits for the broker to take its audit record before answering 503.
AUDIT_TIMEOUT_SECONDS = 10.0

Service = Literal["ingest", "risk", "notify", "desk", "cli"]
Record = tuple[bytes, bytes]

# schemas.envelope.Identifier: what a child or alert id can be. A path segment that is
# not one names nothing Safeguard holds, so it is answered 404 without a record.
_IDENTIFIER = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class AuditUnavailable(RuntimeError):
    """The broker did not take an audit record; the audited action must not go ahead."""


def is_identifier(value: str) -> bool:
    """Tell whether `value` can be a child or alert id (and so appear in a record)."""
    return _IDENTIFIER.fullmatch(value) is not None


def audit_record(  # noqa: PLR0913 - one argument per record field
    service: Service,
    action: AuditAction,
    principal: Principal,
    at: datetime,
    *,
    event: EventRef | None = None,
    child_id: str | None = None,
    alert_id: str | None = None,
    record: RecordRef | None = None,
    searched_principal: str | None = None,
    listing: Listing | None = None,
    record_id: str | None = None,
) -> Record:
    """Return one audit record as Kafka `(key, value)`: key the thing acted on.

    `record_id` (default a random one) is the CloudEvent id: a stream processor passes one
    derived from the input, so the record of an input processed twice has one id.
    """
    audited = AuditRecord(
        action=action,
        actor=principal.name,
        at=at,
        event=event,
        child_id=child_id,
        alert_id=alert_id,
        record=record,
        principal=searched_principal,
        listing=listing,
    )
    wrapped: AuditEvent = audit_event(
        audited, record_id=record_id or uuid.uuid4().hex, service=service
    )
    return audited.target.encode(), wrapped.to_json()


def refused_request(  # noqa: PLR0913 - one argument per record field
    service: Service,
    actor: str,
    status: int,
    route: str,
    at: datetime,
    *,
    record_id: str | None = None,
) -> Record:
    """Return the audit record of a refused request: who (or from where), what status, where.

    `record_id` as for `audit_record`.
    """
    audited = AuditRecord(
        action=AuditAction.REQUEST_REFUSED,
        actor=actor,
        at=at,
        refusal=Refusal(status=status, route=route),
    )
    wrapped: AuditEvent = audit_event(
        audited, record_id=record_id or uuid.uuid4().hex, service=service
    )
    return audited.target.encode(), wrapped.to_json()


def client_actor(address: str | None) -> str:
    """Name an unauthenticated caller by its address, as an audit actor can be spelled."""
    return "client-" + re.sub(r"[^A-Za-z0-9.]", "-", address or "unknown")[:57]


def accepted_events(principal: Principal, events: Iterable[Event], at: datetime) -> list[Record]:
    """Return ingest's records for accepted events: one per event, naming who sent it."""
    return [
        audit_record(
            "ingest",
            AuditAction.EVENT_ACCEPTED,
            principal,
            at,
            event=EventRef(source=event.source, id=event.id),
        )
        for event in events
    ]


async def publish_audit(  # noqa: PLR0913 - one argument per record field
    topic: TopicT,
    service: Service,
    action: AuditAction,
    principal: Principal,
    at: datetime,
    *,
    child_id: str | None = None,
    alert_id: str | None = None,
) -> None:
    """Send one audit record with a Faust topic and wait until the broker has it.

    Raises AuditUnavailable when it could not be sent within AUDIT_TIMEOUT_SECONDS; the
    caller answers 503
    and does not perform (or serve) the action. Ids must satisfy `is_identifier`.
    """
    key, value = audit_record(service, action, principal, at, child_id=child_id, alert_id=alert_id)
    try:
        async with asyncio.timeout(AUDIT_TIMEOUT_SECONDS):
            sent = await topic.send(key=key, value=value)
            await sent
    except Exception as exc:
        # Type only: broker errors can quote configuration; the record itself is ids only.
        log.warning("audit_not_published", action=action.value, error=type(exc).__name__)
        raise AuditUnavailable(f"audit record not published ({type(exc).__name__})") from exc
