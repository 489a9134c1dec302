"""What the console's pages show, as plain values for the templates: pure, clock passed in.

Kept apart from the pages so the wording and arithmetic (how overdue, who was told at
which level, the child's chronology) are unit-tested without a browser. Alerts arrive as
their projected view (`schemas.views.AlertView`), children as theirs (`ChildView`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from schemas.notifications import ResolutionReason
from schemas.views import AlertStatus, AlertView, ChildView, TimelineEntry
from services.desk.queries import Summary

REASON_LABELS = {
    ResolutionReason.FULFILLED_ELSEWHERE: "Fulfilled, recorded in another system",
    ResolutionReason.DECIDED_NOT_TO_ACT: "Decision recorded not to act",
    ResolutionReason.DUPLICATE: "Duplicate of another alert",
    ResolutionReason.OTHER: "Other (see the note)",
}


def span(delta: timedelta) -> str:
    """Return a duration the way a duty manager says it: `25 d 3 h`, `4 h 10 min`, `40 s`."""
    seconds = int(max(delta, timedelta(0)).total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


def stamp(at: datetime | None) -> str:
    """Return a time as shown: UTC to the second, without the offset noise."""
    if at is None:
        return "-"
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class Row:
    """One line of the work queue."""

    alert_id: str
    severity: str
    rule: str
    summary: str
    subject_kind: str
    subject_id: str
    area: str | None
    status: str
    reopened: bool
    acknowledged_by: str | None
    level: int
    overdue_for: str
    overdue_since: str
    overdue_iso: str


def row(summary: Summary, now: datetime) -> Row:
    """Return an alert's line as the work queue shows it."""
    since = summary.overdue_since
    return Row(
        alert_id=summary.alert_id,
        severity=summary.severity,
        rule=summary.rule,
        summary=summary.summary,
        subject_kind=summary.subject_kind,
        subject_id=summary.subject_id,
        area=summary.area,
        status="re-opened" if summary.reopened else summary.status,
        reopened=summary.reopened,
        acknowledged_by=summary.acknowledged_by,
        level=summary.level,
        overdue_for=span(now - since),
        overdue_since=stamp(since),
        overdue_iso=since.isoformat(),
    )


@dataclass(frozen=True)
class Told:
    """One notification to one recipient, as the ladder shows it."""

    recipient: str
    channel: str
    at: str
    outcome: str
    attempts: int
    round: int
    purpose: str
    detail: str | None
    grouped: bool


@dataclass(frozen=True)
class Rung:
    """One level of the alert's ladder: who it reaches, when it was due, what happened."""

    level: int
    recipients: list[str]
    due: str
    state: str
    told: list[Told]


def ladder(view: AlertView) -> list[Rung]:
    """Return the alert's escalation ladder with who was told, when, how and the outcome."""
    start = view.reopened_at or view.alert.raised_at
    told: dict[int, list[Told]] = {}
    for entry in view.timeline:
        delivery = entry.delivery
        if entry.kind != "notification" or delivery is None:
            continue
        told.setdefault(delivery.level, []).append(
            Told(
                recipient=delivery.recipient,
                channel=delivery.channel.value,
                at=stamp(entry.at),
                outcome=delivery.outcome,
                attempts=delivery.attempts,
                round=delivery.round,
                purpose=delivery.purpose.value,
                detail=delivery.detail,
                grouped=delivery.grouped_into is not None,
            )
        )
    rungs = []
    for rung in view.ladder:
        if rung.level <= view.level:
            state = "reached"
        elif view.status is AlertStatus.OPEN:
            state = "not yet due"
        else:
            state = f"not needed ({view.status.value})"
        rungs.append(
            Rung(
                level=rung.level,
                recipients=[f"{r.name} ({r.channel.value})" for r in rung.recipients],
                due=stamp(start + timedelta(seconds=rung.after_seconds))
                if rung.level > 1
                else "at the raise",
                state=state,
                told=told.get(rung.level, []),
            )
        )
    return rungs


_KIND_LABELS = {
    "raised": "Raised",
    "notification": "Notification",
    "escalated": "Escalated",
    "acknowledged": "Acknowledged",
    "reopened": "Re-opened: acknowledged but the obligation is still unmet",
    "resolved": "Resolved",
    "compacted": "Repeats folded",
}


def timeline(view: AlertView) -> list[dict[str, Any]]:
    """Return the whole timeline, oldest first, each entry with a sentence."""
    return [
        {"at": stamp(e.at), "what": _KIND_LABELS[e.kind], "detail": _detail(e)}
        for e in view.timeline
    ]


def _detail(entry: TimelineEntry) -> str:  # noqa: PLR0911 - one sentence per kind
    if entry.kind == "notification" and entry.delivery is not None:
        d = entry.delivery
        grouped = " (in one message with the other alerts of its event)" if d.grouped_into else ""
        what = "resolution notice" if d.purpose.value == "resolution" else f"level {d.level}"
        repeat = f", repeat {d.round}" if d.round else ""
        why = f" ({d.detail})" if d.outcome == "failed" and d.detail else ""
        return (
            f"{what}{repeat} to {d.recipient} by {d.channel.value}: {d.outcome}{why} "
            f"after {d.attempts} attempt(s){grouped}"
        )
    if entry.kind == "escalated":
        reason = entry.reason.value.replace("_", " ") if entry.reason else ""
        return f"to level {entry.level} ({reason})"
    if entry.kind == "acknowledged":
        return f"by {entry.by}" + (f": {entry.note}" if entry.note else "")
    if entry.kind == "reopened":
        return f"level {entry.level} told again; acknowledged by {entry.by}"
    if entry.kind == "resolved":
        if entry.closed_because is not None:
            label = REASON_LABELS[entry.closed_because]
            return f"closed by hand by {entry.by}: {label}" + (
                f"; {entry.note}" if entry.note else ""
            )
        if entry.by:
            return f"by {entry.by}" + (f": {entry.note}" if entry.note else "")
        return ""
    if entry.kind == "compacted":
        return f"{entry.count} entries up to {stamp(entry.until)}"
    return ""


@dataclass(frozen=True)
class Outcome:
    """How an alert ended, with a fulfilment kept apart from a closure by hand."""

    fulfilled: str | None
    closed: str | None
    reason: str | None
    note: str | None


def outcome(view: AlertView) -> Outcome:
    """Return how the alert was resolved: a real fulfilment, a closure by hand, or both."""
    fulfilled = closed = reason = note = None
    if view.resolution is not None and view.resolution.fulfilment is not None:
        late = span(timedelta(seconds=view.resolution.late_by_seconds))
        fulfilled = (
            f"Fulfilled at {stamp(view.resolution.fulfilled_at)} "
            f"({late} late), by event {view.resolution.fulfilment.id}"
        )
    if view.closure is not None:
        closed = f"Closed by hand by {view.closure.by} at {stamp(view.closure.closed_at)}"
        reason = REASON_LABELS[view.closure.reason] if view.closure.reason else "no reason given"
        note = view.closure.note
    return Outcome(fulfilled=fulfilled, closed=closed, reason=reason, note=note)


def status_label(view: AlertView) -> str:
    """Return the status as the alert page says it (`re-opened` apart)."""
    if view.reopened_at is not None and view.status is AlertStatus.OPEN:
        return "re-opened"
    return view.status.value


def chronology(child: ChildView | None, alerts: list[AlertView]) -> list[dict[str, str]]:
    """Merge the child's view with the alerts about the child, newest first.

    The child's view gives the events (types and times), the obligations still open and
    those met; the alerts add the breaches: when raised, and whether met late, closed by
    hand (with the reason) or still open.
    """
    items: list[tuple[datetime, str, str, str | None]] = []
    if child is not None:
        items += [(event.at, "Event", event.type, None) for event in child.recent_events]
        for obligation in child.obligations:
            status = obligation.status.value
            if status in {"pending", "overdue"}:
                what = f"{obligation.rule} due ({obligation.severity.value}): {status}"
                items.append((obligation.due_at, "Due", what, None))
            elif status == "met_on_time" and obligation.fulfilled_at is not None:
                items.append(
                    (obligation.fulfilled_at, "Met", f"{obligation.rule}: met on time", None)
                )
    for view in alerts:
        alert = view.alert
        what = f"{alert.rule} breached ({alert.severity.value}); alert {view.status.value}"
        items.append((alert.raised_at, "Breach", what, alert.alert_id))
        result = outcome(view)
        if result.fulfilled and view.resolution is not None:
            at = view.resolution.fulfilled_at or view.resolution.resolved_at
            items.append((at, "Met late", f"{alert.rule}: {result.fulfilled}", alert.alert_id))
        if result.closed and view.closure is not None:
            what = f"{alert.rule}: {result.closed} ({result.reason})"
            items.append((view.closure.closed_at, "Closed", what, alert.alert_id))
    items.sort(key=lambda item: item[0], reverse=True)
    return [
        {
            "at": stamp(at),
            "iso": at.isoformat(),
            "kind": kind,
            "what": what,
            "alert_id": ident or "",
        }
        for at, kind, what, ident in items
    ]
