"""The risk service's HTTP page: `GET /v1/children/{id}`, the child view.

It reads through a narrow read model (a function from child id to state), so the page
does not depend on the app that wires it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import faust
from faust.web import Request, Response, View

from services.common.auth import Authenticator, Role
from services.common.clock import Clock
from services.common.faust_web import authorise, error
from services.risk.policy import RiskPolicy
from services.risk.scoring import score
from services.risk.state import SubjectState

ReadChild = Callable[[str], SubjectState | None]


def add_child_page(
    app: faust.App, *, read: ReadChild, auth: Authenticator, clock: Clock, policy: RiskPolicy
) -> None:
    """Register the child view on a Faust app."""

    @app.page("/v1/children/{child_id}")
    async def child_view(self: View, request: Request, child_id: str) -> Response:
        _, refusal = authorise(self, request, auth, Role.READ)
        if refusal is not None:
            return refusal
        state = read(child_id)
        if state is None:
            return error(self, 404, "not_found", "no events about this child")
        return self.json(child_summary(state, clock.now(), policy))


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
                "due_at": o.due_at.isoformat(),
                "severity": o.severity.value,
                "status": "overdue" if o.raised else "pending",
            }
            for o in sorted(state.obligations.values(), key=lambda o: o.due_at)
            if o.pending or (o.raised and not o.resolved)
        ],
        "recent_events": [{"type": r.type, "at": r.at.isoformat()} for r in reversed(state.recent)],
    }
