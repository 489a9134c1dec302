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
from services.risk.engine import obligation_alert_id
from services.risk.policy import RiskPolicy
from services.risk.records import encode
from services.risk.scoring import Score
from services.risk.state import Obligation, SubjectState


def status(obligation: Obligation) -> ObligationStatus:
    """Return where an obligation stands."""
    fulfilled = obligation.fulfilled_at
    if fulfilled is None:
        return ObligationStatus.OVERDUE if obligation.raised else ObligationStatus.PENDING
    return ObligationStatus(classify(obligation.due_at, fulfilled, fulfilled).value)


def _obligation(state: SubjectState, o: Obligation, key: bytes) -> dict[str, Any]:
    item: dict[str, Any] = {
        "obligation_id": obligation_alert_id(state, o, key),
        "rule": o.rule,
        "severity": o.severity,
        "triggered_at": o.triggered_at,
        "due_at": o.due_at,
        "status": status(o),
        "breached": o.raised,
    }
    if o.area is not None:
        item["area"] = o.area
    if o.fulfilled_at is not None:
        item["fulfilled_at"] = o.fulfilled_at
    if o.fulfilment is not None:
        item["fulfilment"] = o.fulfilment
    return item


def child_view(state: SubjectState, current: Score, now: datetime, policy: RiskPolicy) -> bytes:
    """Return the `child.view` CloudEvent of a child, scored `current` at `now`."""
    data = {
        "child_id": state.id,
        "revision": state.revision,
        "as_of": now,
        "level": current.level,
        "score": current.points,
        "factors": [{"signal": f.signal, "points": f.points, "at": f.at} for f in current.factors],
        "obligations": [
            _obligation(state, o, policy.alert_key)
            for o in sorted(state.obligations.values(), key=lambda o: o.due_at)
        ],
        "recent_events": [{"type": r.type, "at": r.at} for r in reversed(state.recent)],
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
