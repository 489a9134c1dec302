"""The work queue's urgency order: pure, from an alert's view alone, so it can be indexed.

Most severe first. Within a severity, in this order:

1. **Escalating**: open alerts whose ladder still climbs (a more senior level is still to
   be told), the next escalation soonest first. Acting on these now keeps the next
   person from being paged; a breach hours old in custody ranks here, above a backlog
   whose ladder ran out weeks ago.
2. **At the top of the ladder**: open alerts everyone on the ladder has been told of,
   breached longest first (due time; a pattern alert, which has no deadline, by its
   raise: its own age).
3. **Acknowledged**: someone has taken them on; those that re-open soonest first.
4. **Resolved**: out of the queue; by when resolved.

The key is (severity, tier, time, alert id); nothing in it depends on the clock, so the
projector stores it with the row and the queue pages by keyset on an index. The view
changes whenever notify takes a step, and the key with it.

Notify's view carries the next step (`next_step`: a climb, a repeat or a re-opening),
not the next climb itself: when a repeat comes first, the climb is taken from the
ladder's own times, counted from the raise (or from the re-opening, which restarts the
ladder at the current level).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum

from schemas.views import AlertStatus, AlertView


class Tier(IntEnum):
    """Where an alert stands within its severity, most urgent first."""

    ESCALATING = 0
    TOP_OF_LADDER = 1
    ACKNOWLEDGED = 2
    RESOLVED = 3


@dataclass(frozen=True)
class Urgency:
    """An alert's place in the queue within its severity: the tier, then the time."""

    tier: Tier
    at: datetime


def next_escalation(view: AlertView) -> datetime | None:
    """Return when the ladder next climbs if nobody acts, or None (at the top, or not open)."""
    if view.status is not AlertStatus.OPEN:
        return None
    rungs = {rung.level: rung for rung in view.ladder}
    following = rungs.get(view.level + 1)
    if following is None:
        return None
    step = view.next_step
    if step is not None and step.kind == "level":
        return step.at
    start = view.alert.raised_at
    current = rungs.get(view.level)
    if view.reopened_at is not None and current is not None:
        start = view.reopened_at - timedelta(seconds=current.after_seconds)
    climb = start + timedelta(seconds=following.after_seconds)
    # A repeat that comes first is taken before the climb, never after it.
    return climb if step is None else max(climb, step.at)


def urgency(view: AlertView) -> Urgency:
    """Return the alert's tier and the time it is ordered by within the tier."""
    alert = view.alert
    breach = alert.due_at or alert.raised_at
    if view.status is AlertStatus.RESOLVED:
        return Urgency(Tier.RESOLVED, view.resolved_at or view.updated_at)
    if view.status is AlertStatus.ACKNOWLEDGED:
        step = view.next_step
        return Urgency(Tier.ACKNOWLEDGED, step.at if step is not None else breach)
    climb = next_escalation(view)
    if climb is not None:
        return Urgency(Tier.ESCALATING, climb)
    return Urgency(Tier.TOP_OF_LADDER, breach)


REASONS = {
    Tier.ESCALATING: "escalates next",
    Tier.TOP_OF_LADDER: "everyone on the ladder has been told",
    Tier.ACKNOWLEDGED: "acknowledged",
    Tier.RESOLVED: "resolved",
}
