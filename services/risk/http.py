"""The risk service's HTTP page: `GET /v1/children/{id}`, the child view.

It reads through a narrow read model (a function from child id to state), so the page
does not depend on the app that wires it. Every view served is first recorded on the
audit topic (who looked at which child, when); a view that cannot be recorded is not
served. A token scoped to areas sees a child only when one of the child's obligations or
events is in its areas, or none has an area (state written before events carried one).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import faust
from faust.web import Request, Response, View

from services.common.audit import AuditUnavailable, is_identifier
from services.common.auth import Authenticator, Principal, Role
from services.common.clock import Clock
from services.common.faust_web import authorise, error, out_of_scope, unavailable
from services.risk.policy import RiskPolicy
from services.risk.scoring import score
from services.risk.state import SubjectState

ReadChild = Callable[[str], SubjectState | None]
# Records that `principal` viewed `child_id`; raises AuditUnavailable when it cannot.
AuditView = Callable[[Principal, str], Awaitable[None]]


def add_child_page(  # noqa: PLR0913 - the page's collaborators
    app: faust.App,
    *,
    read: ReadChild,
    auth: Authenticator,
    clock: Clock,
    policy: RiskPolicy,
    audit: AuditView,
) -> None:
    """Register the child view on a Faust app."""

    @app.page("/v1/children/{child_id}")
    async def child_view(self: View, request: Request, child_id: str) -> Response:
        principal, refusal = authorise(self, request, auth, Role.READ)
        if refusal is not None:
            return refusal
        assert principal is not None  # noqa: S101 - authorise returns one or the other
        state = read(child_id) if is_identifier(child_id) else None
        if state is None:
            return error(self, 404, "not_found", "no events about this child")
        areas = child_areas(state)
        if areas and not any(principal.may_see_area(area) for area in areas):
            return out_of_scope(self, min(areas))
        try:
            await audit(principal, child_id)
        except AuditUnavailable:
            return unavailable(self, "the audit record of this view")
        return self.json(child_summary(state, clock.now(), policy))


def child_areas(state: SubjectState) -> set[str]:
    """Return the areas of a child's obligations and of the events about the child."""
    areas = {o.area for o in state.obligations.values() if o.area is not None}
    areas.update(r.area for r in state.recent if r.area is not None)
    return areas


def child_summary(state: SubjectState, now: datetime, policy: RiskPolicy) -> dict[str, Any]:
    """Return what `GET /v1/children/{id}` shows: obligations, events, level and factors."""
    current = score(state, now, policy.scoring)
    return {
        "child_id": state.id,
        "level": current.level.value,
        "score": current.points,
        "factors": [
            {"signal": f.signal, "points": f.points, "at": f.at.isoformat()}
            for f in current.factors
        ],
        "open_obligations": [
            {
                "rule": o.rule,
                "area": o.area,
                "due_at": o.due_at.isoformat(),
                "severity": o.severity.value,
                "status": "overdue" if o.raised else "pending",
            }
            for o in sorted(state.obligations.values(), key=lambda o: o.due_at)
            if o.pending or (o.raised and not o.resolved)
        ],
        "recent_events": [
            {"type": r.type, "at": r.at.isoformat(), "area": r.area} for r in reversed(state.recent)
        ],
        "refused_fulfilments": [
            {"rule": r.rule, "source": r.source, "at": r.at.isoformat(), "area": r.area}
            for r in reversed(state.refused)
        ],
    }
