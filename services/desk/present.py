"""What the console's pages show, as plain values for the templates: pure, clock passed in.

Kept apart from the pages so the wording and arithmetic (how overdue, what happens next
and when, who was told at which level, the child's chronology, the handover) are
unit-tested without a browser. Alerts arrive as their projected view
(`schemas.views.AlertView`) or their list line (`queries.Summary`), children as theirs.

Times are shown in the deployment's zone (the policy's `timezone`) with the zone's
abbreviation, worded as messages word them (services.notify.wording), and carry UTC
for machines and for the hover (`When`). The JSON API keeps UTC (`stamp`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from schemas.notifications import ResolutionReason
from schemas.views import AlertStatus, AlertView, ChildView, NextStep, TimelineEntry
from services.desk.policy import AreaOnDuty
from services.desk.queries import Summary
from services.desk.urgency import Tier
from services.notify.wording import local_time
from services.notify.wording import span as _span

# The resolve form's choices.
REASON_LABELS = {
    ResolutionReason.FULFILLED_ELSEWHERE: "Fulfilled, recorded in another system",
    ResolutionReason.DECIDED_NOT_TO_ACT: "Decision recorded not to act",
    ResolutionReason.DUPLICATE: "Duplicate of another alert",
    ResolutionReason.OTHER: "Other (see the note)",
}
# The same reasons as the end of a sentence that begins "Closed by hand, not a fulfilment:".
REASON_SENTENCES = {
    ResolutionReason.FULFILLED_ELSEWHERE: "recorded in another system",
    ResolutionReason.DECIDED_NOT_TO_ACT: "a decision not to act was recorded",
    ResolutionReason.DUPLICATE: "a duplicate of another alert",
    ResolutionReason.OTHER: "for another reason, given in the note",
}
NO_REASON = "no reason was given"
SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2}
LEVELS = ("low", "medium", "high", "critical")
# The least risk level a child with an open breach of this severity is shown at.
LEVEL_FLOOR = {"critical": "high"}


def span(delta: timedelta) -> str:
    """Return a duration as messages say it: `25 d 3 h`, `4 h 10 min`, `under 1 min`."""
    return _span(delta)


def stamp(at: datetime | None) -> str:
    """Return a time as the JSON API shows it in text: UTC to the second."""
    if at is None:
        return "-"
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class When:
    """A moment as a page shows it: local with the zone, UTC for the hover and machines."""

    iso: str
    local: str
    utc: str

    def __str__(self) -> str:
        return self.local


def when(at: datetime, zone: ZoneInfo) -> When:
    """Return `at` for a page: `Fri 4 Dec 2026 03:12 GMT`, and in UTC."""
    utc = at.astimezone(UTC)
    return When(
        iso=utc.isoformat(timespec="seconds").replace("+00:00", "Z"),
        local=local_time(at, zone),
        utc=utc.strftime("%Y-%m-%d %H:%M UTC"),
    )


def countdown(at: datetime, now: datetime) -> str:
    """Return `in 12 min`, or `now` when the moment has come (the projection may lag)."""
    return "now" if at <= now else f"in {span(at - now)}"


# -- what happens next -------------------------------------------------------------------


@dataclass(frozen=True)
class Next:
    """What the ladder does next if nobody acts: when, whom, as a sentence and shortly."""

    kind: str
    level: int
    recipients: tuple[str, ...]
    at: When
    countdown: str
    phrase: str
    """What happens: `Escalates to level 2 (duty-desk, senior-managers)`."""
    unless: str
    """What stops it: `acknowledged`, or `resolved` for a re-opening."""
    lead: str
    """The short form's words before the countdown: `Level 2 (duty-desk) `."""

    @property
    def sentence(self) -> str:
        """Return the sentence: `Escalates to level 2 (...) in 12 min, at ..., unless ...`."""
        timing = self.countdown if self.countdown == "now" else f"{self.countdown}, at {self.at}"
        return f"{self.phrase} {timing}, unless {self.unless}."

    @property
    def short(self) -> str:
        """Return the short form: `Level 2 (duty-desk) in 12 min`."""
        return self.lead + self.countdown


def next_step(step: NextStep | dict[str, Any] | None, now: datetime, zone: ZoneInfo) -> Next | None:
    """Return the view's next step as the pages say it, or None at the top of the ladder."""
    if step is None:
        return None
    if isinstance(step, dict):
        step = NextStep.model_validate(step)
    who = ", ".join(step.recipients) or "nobody"
    rung = f"level {step.level} ({who})"
    if step.kind == "level":
        phrase, unless, lead = (
            f"Escalates to {rung}",
            "acknowledged",
            f"Level {step.level} ({who}) ",
        )
    elif step.kind == "repeat":
        phrase, unless = f"Sent again to {rung}", "acknowledged"
        lead = f"Level {step.level} again ({who}) "
    else:
        phrase, unless, lead = f"Re-opens to {rung}", "resolved", "Re-opens "
    return Next(
        kind=step.kind,
        level=step.level,
        recipients=tuple(step.recipients),
        at=when(step.at, zone),
        countdown=countdown(step.at, now),
        phrase=phrase,
        unless=unless,
        lead=lead,
    )


# -- how overdue -------------------------------------------------------------------------


@dataclass(frozen=True)
class Lateness:
    """How late an alert is (or was when it was resolved), as a phrase and its moment."""

    phrase: str
    since: When
    pattern: bool


def lateness(
    due_at: datetime | None,
    raised_at: datetime,
    resolved_at: datetime | None,
    now: datetime,
    zone: ZoneInfo,
) -> Lateness:
    """Return `overdue 6 h 5 min`, or for a pattern alert (no deadline) its age.

    A resolved alert stops counting at its resolution: `was overdue 2 h when resolved`.
    """
    end = resolved_at or now
    if due_at is None:
        age = span(end - raised_at)
        phrase = f"no deadline (a pattern), raised {age} ago"
        if resolved_at is not None:
            phrase = f"no deadline (a pattern), resolved {age} after its raise"
        return Lateness(phrase, when(raised_at, zone), pattern=True)
    late = span(end - due_at)
    phrase = f"overdue {late}" if resolved_at is None else f"was overdue {late} when resolved"
    return Lateness(phrase, when(due_at, zone), pattern=False)


# -- the queue ---------------------------------------------------------------------------


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
    raised: When
    late: Lateness
    next: Next | None
    why: str
    """Why the row is where it is in the queue, within its severity."""
    trigger_source: str
    trigger_id: str


WHY = {
    Tier.ESCALATING: "the ladder still climbs: ordered by the next escalation",
    Tier.TOP_OF_LADDER: "everyone on the ladder has been told: ordered by how long overdue",
    Tier.ACKNOWLEDGED: "acknowledged: ordered by when it re-opens",
    Tier.RESOLVED: "resolved",
}


def row(summary: Summary, now: datetime, zone: ZoneInfo) -> Row:
    """Return an alert's line as the work queue shows it."""
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
        raised=when(summary.raised_at, zone),
        late=lateness(
            summary.due_at,
            summary.raised_at,
            summary.resolved_at if summary.status == "resolved" else None,
            now,
            zone,
        ),
        next=next_step(summary.next_step, now, zone) if summary.status != "resolved" else None,
        why=WHY[Tier(summary.urgency_tier)],
        trigger_source=summary.trigger_source,
        trigger_id=summary.trigger_id,
    )


GroupBy = Literal["child", "incident"]


@dataclass(frozen=True)
class Group:
    """The alerts about one subject, or raised by one event, in urgency order."""

    by: GroupBy
    key: str
    label: str
    rows: list[Row]
    worst: str
    open_ids: list[str]
    counts: dict[str, int]
    subjects: list[str] = field(default_factory=list)

    @property
    def next(self) -> Next | None:
        """Return the soonest next step among the group's alerts."""
        steps = [r.next for r in self.rows if r.next is not None]
        return min(steps, key=lambda n: n.at.iso, default=None)


def group_key(r: Row, by: GroupBy) -> str:
    """Return the key of the group a row belongs to (also what the group form posts)."""
    if by == "child":
        return f"{r.subject_kind}:{r.subject_id}"
    return f"{r.trigger_source}|{r.trigger_id}"


def groups(rows: Sequence[Row], by: GroupBy) -> list[Group]:
    """Gather rows (in urgency order) into groups, each placed where its most urgent is."""
    gathered: dict[str, list[Row]] = {}
    for r in rows:
        gathered.setdefault(group_key(r, by), []).append(r)
    found = []
    for key, members in gathered.items():
        first = members[0]
        if by == "child":
            label = f"{first.subject_kind} {first.subject_id}"
        else:
            label = f"event {first.trigger_id} from {first.trigger_source}"
        counts = {"open": 0, "acknowledged": 0}
        for r in members:
            counts["acknowledged" if r.status == "acknowledged" else "open"] += 1
        found.append(
            Group(
                by=by,
                key=key,
                label=label,
                rows=members,
                worst=min((r.severity for r in members), key=SEVERITY_ORDER.__getitem__),
                open_ids=[r.alert_id for r in members if r.status != "acknowledged"],
                counts=counts,
                subjects=list(dict.fromkeys(f"{r.subject_kind} {r.subject_id}" for r in members)),
            )
        )
    return found


# -- the alert page ------------------------------------------------------------------------


@dataclass(frozen=True)
class Told:
    """One notification to one recipient, as the ladder shows it."""

    recipient: str
    channel: str
    at: When
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
    due: When | None
    """None for level 1: told at the raise."""
    state: str
    told: list[Told]


def ladder(view: AlertView, zone: ZoneInfo) -> list[Rung]:
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
                at=when(entry.at, zone),
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
                due=when(start + timedelta(seconds=rung.after_seconds), zone)
                if rung.level > 1
                else None,
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


@dataclass(frozen=True)
class Entry:
    """One line of the timeline."""

    at: When
    what: str
    detail: str


def timeline(view: AlertView, zone: ZoneInfo) -> list[Entry]:
    """Return the whole timeline, oldest first, each entry with a sentence."""
    return [
        Entry(at=when(e.at, zone), what=_KIND_LABELS[e.kind], detail=_detail(e, zone))
        for e in view.timeline
    ]


def reason_sentence(reason: ResolutionReason | None) -> str:
    """Return why an alert was closed by hand, as the end of a sentence."""
    return REASON_SENTENCES[reason] if reason is not None else NO_REASON


def _detail(entry: TimelineEntry, zone: ZoneInfo) -> str:  # noqa: PLR0911 - one sentence per kind
    if entry.kind == "notification" and entry.delivery is not None:
        d = entry.delivery
        grouped = " (in one message with the other alerts of its event)" if d.grouped_into else ""
        what = "resolution notice" if d.purpose.value == "resolution" else f"level {d.level}"
        repeat = f", repeat {d.round}" if d.round else ""
        why = f" ({d.detail})" if d.outcome == "failed" and d.detail else ""
        attempts = "1 attempt" if d.attempts == 1 else f"{d.attempts} attempts"
        return (
            f"{what}{repeat} to {d.recipient} by {d.channel.value}: {d.outcome}{why} "
            f"after {attempts}{grouped}"
        )
    if entry.kind == "escalated":
        reason = entry.reason.value.replace("_", " ") if entry.reason else ""
        return f"to level {entry.level} ({reason})"
    if entry.kind == "acknowledged":
        return f"by {entry.by}" + (f": {entry.note}" if entry.note else "")
    if entry.kind == "reopened":
        return f"level {entry.level} told again; acknowledged by {entry.by}"
    if entry.kind == "resolved":
        note = f". Note: {entry.note}" if entry.note else ""
        if entry.closed_because is not None:
            reason = reason_sentence(entry.closed_because)
            return f"closed by hand by {entry.by}, not a fulfilment: {reason}{note}"
        # A fulfilment names nobody; the outcome above says how each ended.
        return f"by {entry.by}{note}" if entry.by else ""
    if entry.kind == "compacted" and entry.until is not None:
        return f"{entry.count} entries up to {local_time(entry.until, zone)}"
    return ""


@dataclass(frozen=True)
class Outcome:
    """How an alert ended, with a fulfilment kept apart from a closure by hand."""

    fulfilled: str | None
    closed: str | None
    """The sentence's reason: `Closed by hand, not a fulfilment: <closed>.`"""
    closed_by: str | None
    note: str | None


def outcome(view: AlertView, zone: ZoneInfo) -> Outcome:
    """Return how the alert was resolved: a real fulfilment, a closure by hand, or both."""
    fulfilled = closed = closed_by = note = None
    resolution = view.resolution
    if resolution is not None and resolution.fulfilment is not None:
        moment = local_time(resolution.fulfilled_at or resolution.resolved_at, zone)
        late = span(timedelta(seconds=resolution.late_by_seconds))
        timing = f"{late} late" if resolution.late_by_seconds else "on time"
        fulfilled = f"Fulfilled {moment} ({timing}), by event {resolution.fulfilment.id}."
    if view.closure is not None:
        closed = reason_sentence(view.closure.reason)
        closed_by = f"By {view.closure.by}, {local_time(view.closure.closed_at, zone)}."
        note = view.closure.note
    return Outcome(fulfilled=fulfilled, closed=closed, closed_by=closed_by, note=note)


def status_label(view: AlertView) -> str:
    """Return the status as the alert page says it (`re-opened` apart)."""
    if view.reopened_at is not None and view.status is AlertStatus.OPEN:
        return "re-opened"
    return view.status.value


# -- the child page ------------------------------------------------------------------------


@dataclass(frozen=True)
class RiskShown:
    """The child's risk level as the page shows it, never below what an open breach means."""

    level: str
    score: int
    scored: str
    why: str | None


def risk_shown(level: str, score: int, open_breaches: Iterable[tuple[str, str]]) -> RiskShown:
    """Return the level to show: risk's score, raised to the floor of any open breach.

    `open_breaches` are (rule, severity) of the child's open or acknowledged alerts and
    overdue obligations. A child with an open critical breach is at least at high risk,
    whatever the score says, and the page says why.
    """
    shown = level
    causes: list[str] = []
    for rule, severity in open_breaches:
        floor = LEVEL_FLOOR.get(severity)
        if floor is None:
            continue
        if LEVELS.index(floor) > LEVELS.index(shown):
            shown = floor
        if LEVELS.index(floor) > LEVELS.index(level):
            causes.append(f"{rule} ({severity})")
    if shown == level:
        return RiskShown(level=level, score=score, scored=level, why=None)
    named = list(dict.fromkeys(causes))
    which = (
        f"an open breach of {named[0]} is"
        if len(named) == 1
        else f"open breaches of {', '.join(named)} are"
    )
    why = (
        f"At least {shown} while {which} unmet; the risk score alone says {level} (score {score})."
    )
    return RiskShown(level=shown, score=score, scored=level, why=why)


def chronology(child: ChildView | None, alerts: list[AlertView]) -> list[dict[str, str]]:
    """Merge the child's view with the alerts about the child, newest first (UTC, for the API).

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
        resolution = view.resolution
        if resolution is not None and resolution.fulfilment is not None:
            at = resolution.fulfilled_at or resolution.resolved_at
            late = span(timedelta(seconds=resolution.late_by_seconds))
            what = f"{alert.rule}: fulfilled {late} late, by event {resolution.fulfilment.id}"
            items.append((at, "Met late", what, alert.alert_id))
        if view.closure is not None:
            what = (
                f"{alert.rule}: closed by hand by {view.closure.by}, not a fulfilment: "
                f"{reason_sentence(view.closure.reason)}"
            )
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


# -- the handover ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HandedAck:
    """An acknowledgement given in the shift."""

    row: Row
    at: When
    by: str
    note: str | None


@dataclass(frozen=True)
class HandedResolved:
    """A resolution in the shift: a fulfilment, or a closure by hand and why."""

    row: Row
    at: When
    how: str
    note: str | None


@dataclass(frozen=True)
class HandedOpen:
    """An alert open at the end of the shift, and where it stands now."""

    row: Row
    late_at_end: str
    now: str


@dataclass(frozen=True)
class Handover:
    """What a shift handed over: raised, acknowledged, resolved, and still open."""

    start: When
    end: When
    raised: list[Row]
    acknowledged: list[HandedAck]
    resolved: list[HandedResolved]
    still_open: list[HandedOpen]


def _inside(at: datetime | None, start: datetime, end: datetime) -> bool:
    return at is not None and start <= at < end


def handover(
    found: Sequence[tuple[Summary, AlertView]],
    start: datetime,
    end: datetime,
    now: datetime,
    zone: ZoneInfo,
) -> Handover:
    """Sort a shift's alerts into what was raised, acknowledged, resolved and left open."""
    raised: list[Row] = []
    acked: list[HandedAck] = []
    resolved: list[HandedResolved] = []
    still_open: list[HandedOpen] = []
    for summary, view in found:
        line = row(summary, now, zone)
        alert = view.alert
        if _inside(alert.raised_at, start, end):
            raised.append(line)
        acked.extend(
            HandedAck(row=line, at=when(e.at, zone), by=e.by or "", note=e.note)
            for e in view.timeline
            if e.kind == "acknowledged" and _inside(e.at, start, end)
        )
        if _inside(view.resolved_at, start, end) and view.resolved_at is not None:
            ended = outcome(view, zone)
            if ended.closed is not None:
                how = f"Closed by hand, not a fulfilment: {ended.closed}. {ended.closed_by}"
            else:
                how = ended.fulfilled or "Resolved."
            resolved.append(
                HandedResolved(row=line, at=when(view.resolved_at, zone), how=how, note=ended.note)
            )
        if view.resolved_at is None or view.resolved_at >= end:
            due = alert.due_at
            late_at_end = (
                f"overdue {span(end - due)}"
                if due is not None
                else f"no deadline (a pattern), raised {span(end - alert.raised_at)} before"
            )
            current = status_label(view)
            still_open.append(
                HandedOpen(
                    row=line,
                    late_at_end=late_at_end,
                    now="resolved since" if current == "resolved" else f"{current} now",
                )
            )
    acked.sort(key=lambda a: a.at.iso)
    resolved.sort(key=lambda r: r.at.iso)
    still_open.sort(key=lambda o: (SEVERITY_ORDER[o.row.severity], o.row.late.since.iso))
    return Handover(
        start=when(start, zone),
        end=when(end, zone),
        raised=raised,
        acknowledged=acked,
        resolved=resolved,
        still_open=still_open,
    )


# -- who is on duty --------------------------------------------------------------------------


@dataclass(frozen=True)
class DutyRoute:
    """Who one route reaches now, where that comes from, and until when."""

    route: str
    receivers: tuple[str, ...]
    source: str
    until: When | None
    calendar: bool


@dataclass(frozen=True)
class DutyArea:
    """Who is on duty in one area (None: the areas without their own routing)."""

    area: str | None
    routes: list[DutyRoute]


def on_duty(areas: Sequence[AreaOnDuty], zone: ZoneInfo) -> list[DutyArea]:
    """Return who is on duty per area, with local times."""
    return [
        DutyArea(
            area=a.area,
            routes=[
                DutyRoute(
                    route=r.route,
                    receivers=r.receivers,
                    source=r.source,
                    until=when(r.until, zone) if r.until is not None else None,
                    calendar=r.calendar,
                )
                for r in a.routes
            ],
        )
        for a in areas
    ]
