"""The alert view notify publishes for the desk (schemas/views.py `alert.view`).

A pure function of an alert's record: everything the alert API and the console show,
the ladder by receiver name and channel (never an address), and what happens next.
Built as plain data around the record's own models and serialised in one pass: every
write of an alert publishes one, so it must cost little (the contract's `AlertViewEvent`
reads it, tests/unit/test_notify_stream.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pydantic_core

from schemas.envelope import dataschema
from schemas.views import ALERT_VIEW_TYPE, NOTIFY_SOURCE
from services.notify.escalation import upcoming
from services.notify.ledger import AlertRecord


def _seconds(delta: timedelta | None) -> int | None:
    return None if delta is None else max(1, int(delta.total_seconds()))


def alert_view(record: AlertRecord, now: datetime) -> bytes:
    """Return the `alert.view` CloudEvent of an alert as its record stands at `now`."""
    chain = record.chain
    nxt = upcoming(record)
    data: dict[str, Any] = {
        "alert": record.alert,
        "revision": record.revision,
        "status": record.status,
        "level": record.level,
        "round": record.round,
        "ladder": [
            {
                "level": rung.level,
                "after_seconds": int(rung.after.total_seconds()),
                "recipients": [{"name": r.name, "channel": r.channel} for r in rung.recipients],
            }
            for rung in chain.levels
        ],
        "repeat_seconds": _seconds(chain.repeat),
        "ack_timeout_seconds": _seconds(chain.ack_timeout),
        "next_step": None
        if nxt is None
        else {"at": nxt.at, "kind": nxt.kind, "level": nxt.level, "recipients": nxt.recipients},
        "acknowledgement": record.acknowledgement,
        "resolution": record.resolution,
        "closure": record.closure,
        "resolved_at": record.resolved_at,
        "reopened_at": record.reopened_at,
        "hold_until": record.hold_until,
        "timeline": record.timeline,
        "updated_at": now,
    }
    event = {
        "specversion": "1.0",
        "id": f"{record.alert.alert_id}:{record.revision}",
        "source": NOTIFY_SOURCE,
        "time": now,
        "datacontenttype": "application/json",
        "dataschema": dataschema(ALERT_VIEW_TYPE),
        "type": ALERT_VIEW_TYPE,
        "data": data,
    }
    return pydantic_core.to_json(event, exclude_none=True)
