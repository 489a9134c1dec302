"""The child view risk publishes for the desk's child page (schemas/views.py `child.view`).

A pure function of a child's state: the risk level with the factors behind it, every
obligation the state still holds (open ones with their due times, closed ones with how
they were met), and the recent event types and times. Ids, codes and times only. Built
as plain data and encoded as risk's other records are (services/risk/records.py); the
contract's `ChildViewEvent` reads it (tests/unit/test_risk_records.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from schemas.envelope import dataschema
from schemas.views import CHILD_VIEW_TYPE, RISK_SOURCE, ObligationStatus
from services.common.timeliness import classify
from services.risk.engine import obligation_alert_id, recorded_late
from services.risk.policy import RiskPolicy
from services.risk.records import encode
from services.risk.scoring import Score
from services.risk.state import Obligation, SubjectState


def status(obligation: Obligation, late: int | None = None) -> ObligationStatus:
    """Return where an obligation stands (`late`: recorded late by, when reported apart)."""
    fulfilled = obligation.fulfilled_at
    if fulfilled is None:
        return ObligationStatus.OVERDUE if obligation.raised else ObligationStatus.PENDING
    judged = classify(obligation.due_at, fulfilled, fulfilled, recorded_late=late is not None)
    return ObligationStatus(judged.value)


def _obligation(state: SubjectState, o: Obligation, policy: RiskPolicy) -> dict[str, Any]:
    late = recorded_late(o, policy)
    item: dict[str, Any] = {
        "obligation_id": obligation_alert_id(state, o, policy.alert_key),
        "rule": o.rule,
        "severity": o.severity,
        "triggered_at": o.triggered_at,
        "due_at": o.due_at,
        "status": status(o, late),
        "breached": o.raised,
    }
    if o.area is not None:
        item["area"] = o.area
    if o.fulfilled_at is not None:
        item["fulfilled_at"] = o.fulfilled_at
    if o.fulfilment is not None:
        item["fulfilment"] = o.fulfilment
    if o.fulfilment_recorded_at is not None:
        item["recorded_at"] = o.fulfilment_recorded_at
    if late is not None:
        item["recorded_late_by_seconds"] = late
    return item


def _area(item: dict[str, Any], area: str | None) -> dict[str, Any]:
    if area is not None:
        item["area"] = area
    return item


def child_view(state: SubjectState, current: Score, now: datetime, policy: RiskPolicy) -> bytes:
    """Return the `child.view` CloudEvent of a child, scored `current` at `now`."""
    data = {
        "child_id": state.id,
        "revision": state.revision,
        "as_of": now,
        "level": current.level,
        "score": current.points,
        "factors": [
            _area({"signal": f.signal, "points": f.points, "at": f.at}, f.area)
            for f in current.factors
        ],
        "obligations": [
            _obligation(state, o, policy)
            for o in sorted(state.obligations.values(), key=lambda o: o.due_at)
        ],
        "recent_events": [
            _area({"type": r.type, "at": r.at}, r.area) for r in reversed(state.recent)
        ],
        "refused_fulfilments": [
            _area(
                {"rule": r.rule, "source": r.source, "at": r.at, "recorded_at": r.recorded_at},
                r.area,
            )
            for r in reversed(state.refused)
        ],
    }
    return encode(
        {
            "specversion": "1.0",
            "id": f"{state.id}:{state.revision}",
            "source": RISK_SOURCE,
            "type": CHILD_VIEW_TYPE,
            "time": now,
            "datacontenttype": "application/json",
            "dataschema": dataschema(CHILD_VIEW_TYPE),
            "data": data,
        }
    )
