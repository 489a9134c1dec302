"""The alert API: list and read alerts with their timeline; acknowledge and resolve them.

Acknowledging and resolving do not touch the table: they publish `alert.acknowledged` /
`alert.closed` on `safeguarding.notifications.v1`, keyed by alert id, and answer 202
once the broker has the event. The agent applies it in order with everything else about
the alert, on the worker that owns it, and it survives restarts.

Reads go through a narrow read model (`AlertReads`): the index of summaries for the
list, the table for one alert. A worker indexes the alerts of the partitions it owns;
the list asks the group's other workers for theirs and merges them (services/notify/
peers.py), saying which partitions the answer covers and whether every worker answered.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import faust
import structlog
from faust.web import Request, Response, View
from pydantic import BaseModel, ConfigDict, StringConstraints

from schemas.audit import AuditAction
from schemas.notifications import (
    AlertAcknowledged,
    AlertClosed,
    ResolutionReason,
    alert_acknowledged_event,
    alert_closed_event,
)
from services.common.audit import AuditUnavailable, is_identifier
from services.common.auth import Authenticator, Principal, Role
from services.common.bodies import BodyRefused, parse_body
from services.common.clock import Clock
from services.common.faust_web import authorise, error, out_of_scope, unavailable
from services.notify.index import MAX_PAGE, AlertFilter, AlertIndex, decode_cursor
from services.notify.ledger import AlertRecord, AlertStatus
from services.notify.peers import Peers, merge

log = structlog.get_logger(__name__)

MAX_BODY_BYTES = 16 * 1024


class ActionRequest(BaseModel):
    """Body of `POST .../ack` and `.../resolve`; every field optional.

    `reason` is for resolving only: why the alert is closed without a fulfilment.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    by: Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{1,128}$")] | None = None
    note: (
        Annotated[str, StringConstraints(pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]{1,1000}$")] | None
    ) = None
    reason: ResolutionReason | None = None


@dataclass(frozen=True)
class ActionResult:
    """What acknowledging or resolving came to: 202 with the event, or a refusal."""

    status: int
    error: str | None = None
    message: str = ""
    event_id: str | None = None
    current: AlertStatus | None = None


class AlertActions:
    """Acknowledge and resolve, checked, audited and published: the API and the console."""

    def __init__(self, reads: AlertReads, *, clock: Clock, publish: Publish, audit: Audit) -> None:
        self.reads = reads
        self.clock = clock
        self.publish = publish
        self.audit = audit

    async def act(  # noqa: PLR0911 - one refusal per check
        self, principal: Principal, alert_id: str, role: Role, body: ActionRequest
    ) -> ActionResult:
        """Check the caller may act on the alert in its state, record it, then publish."""
        if not principal.has(role):
            return ActionResult(403, "forbidden", f"token lacks the {role.value!r} role")
        if body.reason is not None and role is not Role.RESOLVE:
            return ActionResult(422, "invalid_body", "a reason is given when resolving only")
        record = self.reads.get(alert_id) if is_identifier(alert_id) else None
        if record is None:
            return ActionResult(404, "not_found", "no such alert")
        if not principal.may_see_area(record.alert.area):
            return ActionResult(
                403, "forbidden", f"token may not act on area {record.alert.area!r}"
            )
        allowed = (
            {AlertStatus.OPEN}
            if role is Role.ACKNOWLEDGE
            else {AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED}
        )
        if record.status not in allowed:
            return ActionResult(
                409, "conflict", f"the alert is {record.status.value}", current=record.status
            )
        value, event_id = _event(self.clock, alert_id, role, principal, body)
        action = (
            AuditAction.ALERT_ACKNOWLEDGED
            if role is Role.ACKNOWLEDGE
            else AuditAction.ALERT_RESOLVED
        )
        try:
            # Recorded before it is done: an alteration without its record must not happen.
            await self.audit(action, principal, alert_id)
            if body.note is not None:
                await self.audit(AuditAction.ALERT_NOTED, principal, alert_id)
        except AuditUnavailable:
            return ActionResult(503, "unavailable", "the audit record of this action")
        try:
            await self.publish(alert_id, value)
        except Exception:
            log.exception("action_not_published", alert_id=alert_id, role=role.value)
            return ActionResult(503, "unavailable", "the event")
        log.info(
            "alert_action_accepted", alert_id=alert_id, role=role.value, principal=principal.name
        )
        return ActionResult(202, event_id=event_id)


@dataclass(frozen=True)
class AlertReads:
    """What the pages may read: the list's index and one record by id."""

    index: AlertIndex
    get: Callable[[str], AlertRecord | None]
    partitions: Callable[[], set[int]]
    peers: Peers | None = None


Publish = Callable[[str, bytes], Awaitable[None]]
# Records an audited action (raises AuditUnavailable when the broker does not take it).
Audit = Callable[[AuditAction, Principal, str | None], Awaitable[None]]
DEFAULT_PAGE = 100


def _filters(query: Any, principal: Principal) -> AlertFilter:  # noqa: ANN401 - a MultiDict
    status = query.get("status")
    if status is not None and status not in set(AlertStatus):
        raise ValueError(f"status must be one of {sorted(AlertStatus)}")
    return AlertFilter(
        status=AlertStatus(status) if status is not None else None,
        rule=query.get("rule"),
        severity=query.get("severity"),
        area=query.get("area"),
        visible=principal.may_see_area,
    )


def _limit(query: Any) -> int:  # noqa: ANN401 - aiohttp's MultiDict
    raw = query.get("limit", str(DEFAULT_PAGE))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_PAGE}")
    return int(raw)


def add_alert_pages(  # noqa: C901, PLR0913 - one closure per page
    app: faust.App,
    reads: AlertReads,
    *,
    auth: Authenticator,
    clock: Clock,
    publish: Publish,
    audit: Audit,
) -> None:
    """Register the alert pages on a Faust app."""

    @app.page("/v1/alerts")
    async def list_alerts(self: View, request: Request) -> Response:
        principal, refusal = authorise(self, request, auth, Role.READ)
        if refusal is not None:
            return refusal
        assert principal is not None  # noqa: S101 - authorise returns one or the other
        try:
            matches = _filters(request.query, principal)
            limit = _limit(request.query)
            cursor = request.query.get("cursor")
            after = decode_cursor(cursor) if cursor else None
        except ValueError as exc:  # InvalidCursor included
            return error(self, 422, "invalid_query", str(exc))
        try:
            await audit(AuditAction.ALERTS_LISTED, principal, None)
        except AuditUnavailable:
            return unavailable(self, "the audit record of this read")
        found, next_cursor = reads.index.page(matches, limit, after)
        own = {
            "alerts": [s.public() for s in found],
            "next_cursor": next_cursor,
            "partitions": sorted(reads.partitions()),
        }
        if request.query.get("local") or reads.peers is None:
            return self.json(own)
        # The other workers' pages, each checked and audited by the worker that answers.
        query = {k: v for k, v in request.query.items() if k != "local"}
        pages, unanswered = await reads.peers.pages(query, request.headers["Authorization"])
        merged = merge(own, pages, limit, unanswered)
        return self.json(
            {
                "alerts": merged.alerts,
                "next_cursor": merged.next_cursor,
                "partitions": sorted(merged.partitions),
                "complete": not merged.unanswered,
            }
        )

    def find(
        view: View, principal: Principal, alert_id: str
    ) -> tuple[AlertRecord | None, Response | None]:
        """Return the alert if it exists and the caller's areas include it."""
        record = reads.get(alert_id) if is_identifier(alert_id) else None
        if record is None:
            return None, error(view, 404, "not_found", "no such alert")
        if not principal.may_see_area(record.alert.area):
            return None, out_of_scope(view, record.alert.area)
        return record, None

    @app.page("/v1/alerts/{alert_id}")
    async def get_alert(self: View, request: Request, alert_id: str) -> Response:
        principal, refusal = authorise(self, request, auth, Role.READ)
        if refusal is not None:
            return refusal
        assert principal is not None  # noqa: S101 - authorise returns one or the other
        record, refusal = find(self, principal, alert_id)
        if refusal is not None:
            return refusal
        try:
            await audit(AuditAction.ALERT_VIEWED, principal, alert_id)
        except AuditUnavailable:
            return unavailable(self, "the audit record of this read")
        assert record is not None  # noqa: S101 - find returns one or the other
        return self.json(record.public())

    actions = AlertActions(reads, clock=clock, publish=publish, audit=audit)

    async def act(view: View, request: Request, alert_id: str, role: Role) -> Response:
        principal, refusal = authorise(view, request, auth, role)
        if refusal is not None:
            return refusal
        assert principal is not None  # noqa: S101 - authorise returns one or the other
        body, problem = await _read_body(view, request)
        if problem is not None:
            return problem
        assert body is not None  # noqa: S101
        result = await actions.act(principal, alert_id, role, body)
        if result.status == 202:  # noqa: PLR2004 - accepted
            return view.json(
                {"alert_id": alert_id, "event_id": result.event_id, "status": "accepted"},
                status=202,
            )
        if result.status == 503:  # noqa: PLR2004 - not recorded or not published
            return unavailable(view, result.message)
        extra = {"current": result.current} if result.current is not None else {}
        return error(view, result.status, result.error or "error", result.message, **extra)

    @app.page("/v1/alerts/{alert_id}/ack")
    class Acknowledge(View):
        async def post(self, request: Request, alert_id: str) -> Response:
            return await act(self, request, alert_id, Role.ACKNOWLEDGE)

    @app.page("/v1/alerts/{alert_id}/resolve")
    class Resolve(View):
        async def post(self, request: Request, alert_id: str) -> Response:
            return await act(self, request, alert_id, Role.RESOLVE)


async def _read_body(view: View, request: Request) -> tuple[ActionRequest | None, Response | None]:
    # pydantic's own JSON parser: a 5,000-digit integer or deep nesting is a 400, not a 500.
    try:
        return parse_body(await request.read(), ActionRequest, max_bytes=MAX_BODY_BYTES), None
    except BodyRefused as exc:
        return None, view.json(exc.body(), status=exc.status)


def _event(
    clock: Clock, alert_id: str, role: Role, principal: Principal, body: ActionRequest
) -> tuple[bytes, str]:
    now = clock.now()
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
            alert_id=alert_id,
            by=by,
            principal=principal.name,
            note=body.note,
            reason=body.reason,
            closed_at=now,
        ),
        request_id=request_id,
    )
    return closed.to_json(), closed.id
