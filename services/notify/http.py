"""The alert API: list and read alerts with their timeline; acknowledge and resolve them.

Acknowledging and resolving do not touch the table: they publish `alert.acknowledged` /
`alert.closed` on `safeguarding.notifications.v1`, keyed by alert id, and answer 202
once the broker has the event. The agent applies it in order with everything else about
the alert, on the worker that owns it, and it survives restarts.

Reads come from this worker's copy of the table. With one worker (or standby replicas
enough that every worker holds every partition) that is every alert; with more workers
than that, a worker answers only for the partitions it holds, and a 404 from one worker
is not proof that no worker knows the alert. Faust's `table_route` would forward such
requests; it is not used yet because it needs each worker's canonical URL configured.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import TYPE_CHECKING, Annotated, Any

import structlog
from faust.web import Request, Response, View
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from schemas.errors import format_validation_error
from schemas.notifications import (
    AlertAcknowledged,
    AlertClosed,
    alert_acknowledged_event,
    alert_closed_event,
)
from services.common.auth import Principal, Role
from services.common.faust_web import authorise, error
from services.notify.ledger import AlertRecord, AlertStatus

if TYPE_CHECKING:
    from services.notify.app import NotifyService

log = structlog.get_logger(__name__)

PRODUCE_TIMEOUT_SECONDS = 10.0
MAX_BODY_BYTES = 16 * 1024


class ActionRequest(BaseModel):
    """Body of `POST .../ack` and `.../resolve`; both fields optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    by: Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{1,128}$")] | None = None
    note: (
        Annotated[str, StringConstraints(pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]{1,1000}$")] | None
    ) = None


def summary(record: AlertRecord) -> dict[str, Any]:
    """Return an alert's line in the list."""
    alert = record.alert
    return {
        "alert_id": alert.alert_id,
        "rule": alert.rule,
        "severity": alert.severity.value,
        "status": record.status.value,
        "level": record.level,
        "raised_at": alert.raised_at.isoformat(),
        "due_at": alert.due_at.isoformat() if alert.due_at else None,
        "summary": alert.summary,
        "subject_kind": alert.subject_kind.value,
        "subject_id": alert.subject_id,
        "area": alert.area,
    }


def add_alert_pages(service: NotifyService) -> None:  # noqa: C901 - one closure per page
    """Register the alert pages on the service's Faust app."""
    app = service.app

    @app.page("/v1/alerts")
    async def list_alerts(self: View, request: Request) -> Response:
        _, refusal = authorise(self, request, service.auth, Role.READ)
        if refusal is not None:
            return refusal
        wanted = request.query.get("status")
        if wanted is not None and wanted not in set(AlertStatus):
            return error(self, 422, "invalid_query", f"status must be one of {sorted(AlertStatus)}")
        records = [AlertRecord.model_validate(raw) for raw in service.table.values()]
        alerts = [
            summary(r)
            for r in sorted(records, key=lambda r: r.alert.raised_at, reverse=True)
            if wanted is None or r.status == wanted
        ]
        return self.json({"alerts": alerts})

    @app.page("/v1/alerts/{alert_id}")
    async def get_alert(self: View, request: Request, alert_id: str) -> Response:
        _, refusal = authorise(self, request, service.auth, Role.READ)
        if refusal is not None:
            return refusal
        record = service.load(alert_id)
        if record is None:
            return error(self, 404, "not_found", "no such alert")
        return self.json(record.public())

    async def act(view: View, request: Request, alert_id: str, role: Role) -> Response:
        principal, refusal = authorise(view, request, service.auth, role)
        if refusal is not None:
            return refusal
        assert principal is not None  # noqa: S101 - authorise returns one or the other
        body, problem = await _read_body(view, request)
        if problem is not None:
            return problem
        assert body is not None  # noqa: S101
        record = service.load(alert_id)
        if record is None:
            return error(view, 404, "not_found", "no such alert")
        allowed = (
            {AlertStatus.OPEN}
            if role is Role.ACKNOWLEDGE
            else {
                AlertStatus.OPEN,
                AlertStatus.ACKNOWLEDGED,
            }
        )
        if record.status not in allowed:
            return error(
                view, 409, "conflict", f"the alert is {record.status.value}", current=record.status
            )
        value, event_id = _event(service, alert_id, role, principal, body)
        try:
            future = await service.notifications_out.send(key=alert_id.encode(), value=value)
            await asyncio.wait_for(future, PRODUCE_TIMEOUT_SECONDS)
        except Exception:
            log.exception("action_not_published", alert_id=alert_id, role=role.value)
            return view.json(
                {"error": "unavailable", "message": "the broker did not take the event"},
                status=503,
                headers={"Retry-After": "5"},
            )
        log.info(
            "alert_action_accepted", alert_id=alert_id, role=role.value, principal=principal.name
        )
        return view.json(
            {"alert_id": alert_id, "event_id": event_id, "status": "accepted"}, status=202
        )

    @app.page("/v1/alerts/{alert_id}/ack")
    class Acknowledge(View):
        async def post(self, request: Request, alert_id: str) -> Response:
            return await act(self, request, alert_id, Role.ACKNOWLEDGE)

    @app.page("/v1/alerts/{alert_id}/resolve")
    class Resolve(View):
        async def post(self, request: Request, alert_id: str) -> Response:
            return await act(self, request, alert_id, Role.RESOLVE)


async def _read_body(view: View, request: Request) -> tuple[ActionRequest | None, Response | None]:
    raw = await request.read()
    if len(raw) > MAX_BODY_BYTES:
        return None, error(view, 413, "too_large", f"body over {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        return ActionRequest(), None
    try:
        parsed = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, error(view, 400, "invalid_json", "the body is not JSON")
    try:
        return ActionRequest.model_validate(parsed), None
    except ValidationError as exc:
        errors = [e.model_dump() for e in format_validation_error(exc)]
        return None, error(view, 422, "invalid_body", "the body is not valid", errors=errors)


def _event(
    service: NotifyService, alert_id: str, role: Role, principal: Principal, body: ActionRequest
) -> tuple[bytes, str]:
    now = service.clock.now()
    request_id = uuid.uuid4().hex[:16]
    by = body.by or principal.name
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
        )
        return ack.to_json(), ack.id
    closed = alert_closed_event(
        AlertClosed(
            alert_id=alert_id, by=by, principal=principal.name, note=body.note, closed_at=now
        ),
        request_id=request_id,
    )
    return closed.to_json(), closed.id
