"""What a notification says, taken from the alert's record when it is handed over.

Every channel renders the same `Content`: the alert (for a grouped message, its most
severe alert leads and every listed one follows, most severe first), who it is about
(the pseudonymous subject id), how long it has been overdue, what happens next and
when (from `escalation.upcoming`), the policy's guidance for its rule, and the links
that open it in the desk's console with acknowledge focused (`?act=acknowledge`).

Times are as of the hand-over (`PendingDelivery.dispatched_at`), so every attempt and
every receiver of one step reads the same figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from schemas.alerts import AlertRaised, Severity
from schemas.notifications import NotificationPurpose
from services.notify.escalation import upcoming
from services.notify.guidance import Guidance
from services.notify.ledger import AlertRecord, AlertStatus, GroupMember, PendingDelivery
from services.notify.policy import NotifyPolicy
from services.notify.wording import countdown, local_time

DEFAULT_ZONE = ZoneInfo("Europe/London")
ACKNOWLEDGE_QUERY = "?act=acknowledge"


@dataclass(frozen=True)
class Presentation:
    """How messages are worded for this deployment: its time zone and the rules' guidance."""

    zone: ZoneInfo = DEFAULT_ZONE
    guidance: Mapping[str, Guidance] = field(default_factory=dict)

    @classmethod
    def of(cls, policy: NotifyPolicy) -> Presentation:
        """Take the time zone and guidance from the policy."""
        return cls(zone=policy.zone, guidance=dict(policy.guidance))


@dataclass(frozen=True)
class NextStep:
    """What the ladder does next if nobody acts: when, and whom it reaches."""

    at: datetime
    kind: Literal["level", "repeat", "reopen"]
    level: int
    route: str | None
    recipients: tuple[str, ...]


def iso(at: datetime) -> str:
    """Return `at` in UTC, ISO 8601 to the second: `2026-12-04T03:12:00Z`."""
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Content:
    """What a notification says: the alert, how it was resolved, what happens next."""

    alert: AlertRaised
    resolution: dict[str, Any] | None
    public_url: str | None = None
    members: tuple[GroupMember, ...] = ()
    reopened: bool = False
    resolved_breach: bool = False
    """Fulfilled before anyone was paged: the one message says it was late and is resolved."""
    as_of: datetime | None = None
    """The hand-over time the figures are computed at; None: the raise."""
    next_step: NextStep | None = None
    presentation: Presentation = field(default_factory=Presentation)
    acknowledgement: dict[str, Any] | None = None
    """For an acknowledgement notice: who took the alert on, and when."""

    # -- links -------------------------------------------------------------------------

    def link(self, alert_id: str) -> str | None:
        """Return the console page of an alert, when the public URL is configured."""
        if self.public_url is None:
            return None
        return f"{self.public_url.rstrip('/')}/console/alerts/{alert_id}"

    def acknowledge_link(self, alert_id: str) -> str | None:
        """Return the console page that opens with acknowledge focused (after sign-in)."""
        page = self.link(alert_id)
        return None if page is None else page + ACKNOWLEDGE_QUERY

    # -- times -------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        """Return the time the message's figures are as of."""
        return self.as_of or self.alert.raised_at

    def local(self, at: datetime) -> str:
        """Return `at` as local time in the deployment's zone."""
        return local_time(at, self.presentation.zone)

    def overdue(self, due_at: datetime | None) -> timedelta | None:
        """Return how long past `due_at` the message's time is; None when not yet due."""
        if due_at is None or due_at >= self.now:
            return None
        return self.now - due_at

    # -- the alert the message leads with -------------------------------------------------

    @property
    def headline(self) -> AlertRaised:
        """Return the alert the message leads with: for a group, its most severe alert."""
        if not self.members:
            return self.alert
        first = ordered(self.members)[0]
        if first.alert_id == self.alert.alert_id:
            return self.alert
        return _as_alert(first, self.alert)

    @property
    def headline_step(self) -> NextStep | None:
        """Return the next step of the alert the message leads with (its own ladder)."""
        headline = self.headline
        if headline.alert_id == self.alert.alert_id:
            return self.next_step
        member = next(m for m in self.members if m.alert_id == headline.alert_id)
        return member_step(member)

    @property
    def listed(self) -> tuple[GroupMember, ...]:
        """Return the alerts a grouped message lists, most severe first."""
        return ordered(self.members)

    def guidance(self, rule: str) -> Guidance | None:
        """Return the policy's guidance for `rule`, if any."""
        return self.presentation.guidance.get(rule)

    def next_step_sentence(self, step: NextStep | None = None) -> str | None:
        """Return what happens next as a sentence (the headline's), or None when nothing will."""
        step = step or self.headline_step
        if step is None:
            return None
        who = ", ".join(step.recipients) or "nobody"
        rung = f"level {step.level}" + (f" ({step.route}: {who})" if step.route else f" ({who})")
        when = f"at {self.local(step.at)}, {countdown(step.at, self.now)}"
        if step.kind == "level":
            return f"Escalates to {rung} {when}, unless acknowledged."
        if step.kind == "repeat":
            return f"Sent again to {rung} {when}, unless acknowledged."
        return f"Re-opens to {rung} {when}, unless resolved."

    @classmethod
    def of(
        cls,
        record: AlertRecord,
        pending: PendingDelivery | None = None,
        public_url: str | None = None,
        presentation: Presentation | None = None,
    ) -> Content:
        """Take what a notification needs from the record, at hand-over time."""
        resolution: dict[str, Any] | None = None
        if record.resolution is not None and record.closure is None:
            resolution = {
                "how": "fulfilled",
                "resolved_at": record.resolution.resolved_at.isoformat(),
                "late_by_seconds": record.resolution.late_by_seconds,
            }
        elif record.closure is not None:
            resolution = {
                "how": "by_hand",
                "resolved_at": record.closure.closed_at.isoformat(),
                "by": record.closure.by,
            }
            if record.closure.reason is not None:
                resolution["reason"] = record.closure.reason.value
        acknowledgement = None
        if record.acknowledgement is not None and record.status is AlertStatus.ACKNOWLEDGED:
            acknowledgement = {
                "by": record.acknowledgement.by,
                "acknowledged_at": iso(record.acknowledgement.acknowledged_at),
            }
        members = tuple(pending.members) if pending is not None and len(pending.members) > 1 else ()
        return cls(
            alert=record.alert,
            resolution=resolution,
            public_url=public_url,
            members=members,
            reopened=record.reopened_at is not None and record.status is AlertStatus.OPEN,
            resolved_breach=record.level == 0 and resolution is not None,
            as_of=pending.dispatched_at if pending is not None else None,
            next_step=_next_step(record),
            presentation=presentation or Presentation(),
            acknowledgement=acknowledgement,
        )

    def wants_acknowledgement(self, purpose: NotificationPurpose) -> bool:
        """Tell whether the message asks its reader to acknowledge (an open alert)."""
        return purpose is NotificationPurpose.ALERT


def _next_step(record: AlertRecord) -> NextStep | None:
    step = upcoming(record)
    if step is None:
        return None
    rung = record.chain.at(step.level)
    return NextStep(
        at=step.at,
        kind=step.kind,
        level=step.level,
        route=rung.route if rung is not None else None,
        recipients=step.recipients,
    )


def member_step(member: GroupMember) -> NextStep | None:
    """Return a listed alert's own next step, as noted when the group was formed."""
    note = member.next_step
    if note is None:
        return None
    return NextStep(
        at=note.at,
        kind=note.kind,
        level=note.level,
        route=note.route,
        recipients=tuple(note.recipients),
    )


def ordered(members: tuple[GroupMember, ...]) -> tuple[GroupMember, ...]:
    """Return alerts most severe first, then the longest overdue, then by id."""
    far = datetime.max.replace(tzinfo=UTC)
    return tuple(
        sorted(
            members,
            key=lambda m: (-Severity(m.severity).rank, m.due_at or far, m.alert_id),
        )
    )


def _as_alert(member: GroupMember, leader: AlertRaised) -> AlertRaised:
    """Return a listed alert as `alert.raised` data: siblings share the leader's trigger."""
    return AlertRaised.model_validate(
        {
            "alert_id": member.alert_id,
            "rule": member.rule,
            "severity": member.severity,
            "subject_kind": member.subject_kind,
            f"{member.subject_kind}_id": member.subject_id,
            "area": member.area,
            "trigger": leader.trigger,
            "due_at": member.due_at,
            "raised_at": member.raised_at or leader.raised_at,
            "summary": member.summary,
        }
    )
