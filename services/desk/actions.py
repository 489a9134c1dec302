"""Acknowledge and resolve: checked against the projection, audited, published as commands.

The desk does not change an alert: it publishes `alert.acknowledged` / `alert.closed`
(the data models of `schemas.notifications`) on `safeguarding.commands.v1`, keyed by
alert id, and notify's processor applies them in order with everything else about the
alert. The answer is 202 once the broker has the command; the projection shows the new
status a moment later. Checks, in order, each a typed refusal: the role (403), a reason
given when acknowledging (422), the alert exists and is in the caller's areas (404: an
alert outside them is answered exactly as an unknown one, so no status leaks in a 409),
its projected status allows it (409 with `current`), the audit record (503), the
command (503).

Who acted is the caller, never the body: a person signed in to the console (their
subject identifier as `principal`, what they are called as `by`), or a system's token
(its name as both). A `by` in an API body is accepted for older clients and ignored.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

import structlog
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from schemas.audit import AuditAction
from schemas.notifications import (
    AlertAcknowledged,
    AlertClosed,
    ResolutionReason,
    alert_acknowledged_event,
    alert_closed_event,
)
from services.common.audit import is_identifier
from services.common.auth import Principal, Role
from services.common.clock import Clock
from services.desk import queries
from services.desk.audit import Auditor
from services.desk.broker import Publisher
from services.desk.database import Database
from services.desk.errors import Conflict, Forbidden, InvalidBody, NotFound
from services.desk.metrics import DeskMetrics

log = structlog.get_logger(__name__)

MAX_BODY_BYTES = 16 * 1024
DESK_SOURCE = "urn:safeguard:desk"


class ActionRequest(BaseModel):
    """Body of `POST .../ack` and `.../resolve`; every field optional.

    `reason` is for resolving only: why the alert is closed without a fulfilment. `by` is
    ignored (the actor is the caller); it is still accepted so older clients keep working.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    by: Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{1,128}$")] | None = Field(
        default=None,
        deprecated=True,
        description="ignored: the actor is the caller (the token's name, the signed-in person)",
    )
    note: (
        Annotated[str, StringConstraints(pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]{1,1000}$")] | None
    ) = None
    reason: ResolutionReason | None = None


class Accepted(BaseModel):
    """The 202 answer: the command is on the broker."""

    alert_id: str
    event_id: str
    status: str = "accepted"


ALLOWED = {
    Role.ACKNOWLEDGE: frozenset({"open"}),
    Role.RESOLVE: frozenset({"open", "acknowledged"}),
}


@dataclass
class Actions:
    """Acknowledge and resolve, for the API and the console alike."""

    database: Database
    publisher: Publisher
    auditor: Auditor
    clock: Clock
    commands_topic: str
    metrics: DeskMetrics

    async def act(
        self, principal: Principal, alert_id: str, role: Role, body: ActionRequest
    ) -> Accepted:
        """Check, record and publish; raise the refusal otherwise."""
        if not principal.has(role):
            raise Forbidden(
                f"the token lacks the {role.value!r} role",
                errors=[{"loc": "(root)", "msg": f"this token may not {role.value} alerts"}],
            )
        if body.reason is not None and role is not Role.RESOLVE:
            raise InvalidBody(
                422,
                "invalid_body",
                "a reason is given when resolving only",
                [{"loc": "reason", "msg": "not allowed when acknowledging"}],
            )
        found = None
        if is_identifier(alert_id):
            async with self.database.read() as connection:
                found = await queries.alert(connection, alert_id)
        if found is None:
            raise NotFound("no such alert")
        if not principal.may_see_area(found.summary.area):
            raise NotFound("no such alert")
        if found.summary.status not in ALLOWED[role]:
            raise Conflict(f"the alert is {found.summary.status}", current=found.summary.status)
        value, event_id = command(self.clock, alert_id, role, principal, body)
        action = (
            AuditAction.ALERT_ACKNOWLEDGED
            if role is Role.ACKNOWLEDGE
            else AuditAction.ALERT_RESOLVED
        )
        # Recorded before it is done: an alteration without its record must not happen.
        await self.auditor.record(action, principal, alert_id=alert_id)
        if body.note is not None:
            await self.auditor.record(AuditAction.ALERT_NOTED, principal, alert_id=alert_id)
        await self.publisher.publish(
            self.commands_topic, alert_id.encode(), value, what="the command"
        )
        self.metrics.commands.labels(action=role.value).inc()
        log.info(
            "alert_command_published", alert_id=alert_id, role=role.value, principal=principal.name
        )
        return Accepted(alert_id=alert_id, event_id=event_id)


def command(
    clock: Clock, alert_id: str, role: Role, principal: Principal, body: ActionRequest
) -> tuple[bytes, str]:
    """Return the command's CloudEvent (JSON) and its id."""
    now = clock.now()
    request_id = uuid.uuid4().hex[:16]
    by = principal.shown_as  # never body.by: the actor is who is signed in
    if role is Role.ACKNOWLEDGE:
        ack = alert_acknowledged_event(
            AlertAcknowledged(
                alert_id=alert_id,
                by=by,
                principal=principal.name,
                note=body.note,
                acknowledged_at=now,
            ),
            request_id=request_id,
            source=DESK_SOURCE,
        )
        return ack.to_json(), ack.id
    closed = alert_closed_event(
        AlertClosed(
            alert_id=alert_id,
            by=by,
            principal=principal.name,
            note=body.note,
            reason=body.reason,
            closed_at=now,
        ),
        request_id=request_id,
        source=DESK_SOURCE,
    )
    return closed.to_json(), closed.id
