"""The obligation rules of CONTRACT.md section 3, as pure functions of one event.

`triggered` says which obligations an event creates for a subject; `fulfils` says which
obligations (by key) an event meets. Neither looks at state: the engine combines them,
which is what makes arrival order irrelevant.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas.alerts import EventRef, Severity
from schemas.events import Event, IncidentReportedEvent, ReferralSharedEvent
from services.risk.policy import RiskPolicy
from services.risk.state import SubjectKind, obligation_key

SOCIAL_CARE_AGENCIES = frozenset({"childrens_social_care", "mash"})


@dataclass(frozen=True)
class NewObligation:
    """An obligation an event creates for one subject."""

    kind: SubjectKind
    subject_id: str
    rule: str
    scope: str
    due_at: datetime
    severity: Severity
    area: str | None
    summary: str
    trigger: EventRef


def subjects(event: Event) -> list[tuple[SubjectKind, str]]:
    """Return every subject an event concerns; the risk service routes a copy to each."""
    if isinstance(event, IncidentReportedEvent):
        return [("child", child.child_id) for child in event.data.children]
    data = event.data
    for attribute, kind in (
        ("child_id", "child"),
        ("offender_id", "offender"),
        ("enquiry_id", "enquiry"),
    ):
        value = getattr(data, attribute, None)
        if isinstance(value, str):
            return [(kind, value)]  # type: ignore[list-item]
    return []


def _window(policy_window: timedelta) -> str:
    hours = int(policy_window.total_seconds() // 3600)
    return f"{hours}h" if hours < 48 else f"{hours // 24}d"  # noqa: PLR2004


def triggered(
    event: Event, kind: SubjectKind, subject_id: str, policy: RiskPolicy
) -> Iterator[NewObligation]:
    """Yield the obligations `event` creates for the subject `(kind, subject_id)`."""
    ref = EventRef(source=event.source, id=event.id)
    if isinstance(event, IncidentReportedEvent) and kind == "child":
        data = event.data
        if data.category != "other":
            rule = policy.obligations.social_care_referral
            window = rule.window_when_dash_high if data.dash_risk == "high" else rule.window
            yield NewObligation(
                kind=kind,
                subject_id=subject_id,
                rule="social-care-referral",
                scope=data.incident_id,
                due_at=event.time + window,
                severity=rule.severity,
                area=data.area,
                summary=(
                    f"No referral to children's social care within {_window(window)} "
                    f"of a {data.category.replace('_', ' ')} incident"
                ),
                trigger=ref,
            )


def fulfils(event: Event) -> Iterator[str]:
    """Yield the keys of the obligations `event` meets for its subject."""
    if isinstance(event, ReferralSharedEvent):
        data = event.data
        if data.agency in SOCIAL_CARE_AGENCIES and data.incident_id is not None:
            yield obligation_key("social-care-referral", data.incident_id)
