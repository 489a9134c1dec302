"""The alert view notify publishes for the desk (schemas/views.py `alert.view`).

A pure function of an alert's record: everything the alert API and the console show,
the ladder by receiver name and channel (never an address), and what happens next.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from schemas.notifications import Channel
from schemas.views import AlertView, LadderRung, NextStep, RungRecipient
from services.notify.escalation import upcoming
from services.notify.ledger import AlertRecord


def _seconds(delta: timedelta | None) -> int | None:
    return None if delta is None else max(1, int(delta.total_seconds()))


def alert_view(record: AlertRecord, now: datetime) -> AlertView:
    """Return the view of an alert as its record stands at `now`."""
    nxt = upcoming(record)
    chain = record.chain
    return AlertView.model_construct(
        alert=record.alert,
        revision=record.revision,
        status=record.status,
        level=record.level,
        round=record.round,
        ladder=[
            LadderRung.model_construct(
                level=rung.level,
                after_seconds=int(rung.after.total_seconds()),
                recipients=[
                    RungRecipient.model_construct(name=r.name, channel=Channel(r.channel))
                    for r in rung.recipients
                ],
            )
            for rung in chain.levels
        ],
        repeat_seconds=_seconds(chain.repeat),
        ack_timeout_seconds=_seconds(chain.ack_timeout),
        next_step=None
        if nxt is None
        else NextStep.model_construct(
            at=nxt.at, kind=nxt.kind, level=nxt.level, recipients=list(nxt.recipients)
        ),
        acknowledgement=record.acknowledgement,
        resolution=record.resolution,
        closure=record.closure,
        resolved_at=record.resolved_at,
        reopened_at=record.reopened_at,
        hold_until=record.hold_until,
        timeline=list(record.timeline),
        updated_at=now,
    )
