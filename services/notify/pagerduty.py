"""PagerDuty: alert events to the Events API v2, mirrored through the alert's life.

An alert notification is a `trigger`, an acknowledgement in Safeguard an `acknowledge`,
a resolution (a fulfilment or a closure by hand) a `resolve`; the `dedup_key` is always
the alert id, so PagerDuty keeps one alert per Safeguard alert and the three correlate.
A grouped message sends one event per listed alert (each its own `dedup_key`), all of
them per attempt: a repeated trigger for an open PagerDuty alert only adds to its log.

The routing key (the integration key of the PagerDuty service) is the credential: it is
set as `NOTIFY_PAGERDUTY_KEYS__<NAME>`, named by the receiver's `secret` in the policy,
and never logged. The events go to `NOTIFY_PAGERDUTY__EVENTS_URL` (PagerDuty's, or the
EU service region's).

PagerDuty is a processor outside the force: events carry the alert id, rule, severity,
area, times, the summary (no personal data) and the guidance, never the subject id;
the link opens the alert in the desk's console after sign-in.

PagerDuty answers 202 when it accepted an event, 400 when it is invalid (final), 429
when rate-limited and 5xx when it could not take it (both retried within the budget).
Known limit: PagerDuty does not notify again about an alert it holds acknowledged, so
Safeguard re-opening an acknowledged alert (its `ack_timeout`) triggers an alert that
PagerDuty keeps silent; the service's own acknowledgement timeout there does that job.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import AnyHttpUrl, BaseModel, Field

from schemas.notifications import FailureReason, NotificationPurpose
from services.common.clock import Clock
from services.notify.channels import Attempt, HttpClient
from services.notify.content import Content, iso, member_step
from services.notify.ledger import PendingDelivery
from services.notify.wording import span

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY_MAX = 1024
# Safeguard's severities on PagerDuty's scale (critical, error, warning, info).
SEVERITY = {"critical": "critical", "high": "error", "medium": "warning"}
ACTION = {
    NotificationPurpose.ALERT: "trigger",
    NotificationPurpose.ACKNOWLEDGEMENT: "acknowledge",
    NotificationPurpose.RESOLUTION: "resolve",
}


class PagerDutySettings(BaseModel):
    """Where PagerDuty events go (`NOTIFY_PAGERDUTY__*`)."""

    events_url: AnyHttpUrl = Field(
        default=AnyHttpUrl(EVENTS_URL),
        description="the Events API v2 enqueue URL (https://events.eu.pagerduty.com/v2/enqueue "
        "for the EU service region)",
    )
    source: str = Field(
        default="safeguard", description="`payload.source` of every event: this deployment"
    )


def _trigger(content: Content, pending: PendingDelivery, alert_id: str) -> dict[str, Any]:
    """Return the `payload`, links and client of a trigger for one alert."""
    members = {m.alert_id: m for m in content.members}
    headline = content.headline
    if alert_id in members and alert_id != headline.alert_id:
        member = members[alert_id]
        rule, severity, area, summary = member.rule, member.severity, member.area, member.summary
        due_at, raised_at = member.due_at, member.raised_at or headline.raised_at
    else:
        rule, severity, area = headline.rule, headline.severity.value, headline.area
        summary, due_at, raised_at = headline.summary, headline.due_at, headline.raised_at
    late = content.overdue(due_at)
    overdue = f", overdue {span(late)}" if late is not None else ""
    details: dict[str, Any] = {
        "alert_id": alert_id,
        "rule": rule,
        "severity": severity,
        "area": area or "not recorded",
        "level": pending.level,
        "raised_at": iso(raised_at),
        "raised_at_local": content.local(raised_at),
    }
    if due_at is not None:
        details["due_at"] = iso(due_at)
        details["due_at_local"] = content.local(due_at)
    if late is not None:
        details["overdue_for"] = span(late)
    own = content.next_step if alert_id == content.alert.alert_id else None
    if alert_id in members and alert_id != content.alert.alert_id:
        own = member_step(members[alert_id])
    if own is not None:
        details["next_step"] = content.next_step_sentence(own)
    guidance = content.guidance(rule)
    if guidance is not None:
        details["what_to_do"] = guidance.action
        details["call"] = "; ".join(guidance.call)
        details["basis"] = guidance.basis
    event: dict[str, Any] = {
        "payload": {
            "summary": f"{severity} {rule}{overdue}: {summary}"[:SUMMARY_MAX],
            "source": "",  # set by the channel from its settings
            "severity": SEVERITY.get(severity, "error"),
            "timestamp": iso(raised_at),
            "component": rule,
            "group": area or "none",
            "class": "safeguarding alert",
            "custom_details": details,
        }
    }
    link = content.acknowledge_link(alert_id)
    if link is not None:
        event["client"] = "Safeguard"
        event["client_url"] = link
        event["links"] = [{"href": link, "text": "Acknowledge in Safeguard"}]
    return event


def pagerduty_events(
    content: Content, pending: PendingDelivery, *, routing_key: str, source: str
) -> list[dict[str, Any]]:
    """Return the events one notification sends: one per alert it stands for."""
    action = ACTION[pending.purpose]
    alert_ids = [m.alert_id for m in content.listed] or [content.alert.alert_id]
    events = []
    for alert_id in alert_ids:
        event: dict[str, Any] = {
            "routing_key": routing_key,
            "event_action": action,
            "dedup_key": alert_id,
        }
        if pending.purpose is NotificationPurpose.ALERT:
            event |= _trigger(content, pending, alert_id)
            event["payload"]["source"] = source
        events.append(event)
    return events


class PagerDutyChannel:
    """Sends events to the Events API v2 with the receiver's routing key."""

    def __init__(
        self,
        clock: Clock,
        keys: Mapping[str, str],
        settings: PagerDutySettings | None = None,
        *,
        allow_http: bool | None = None,
    ) -> None:
        self._keys = dict(keys)
        self.settings = settings or PagerDutySettings()
        self._http = HttpClient(clock, allow_http=allow_http)

    async def attempt(
        self, content: Content, pending: PendingDelivery, *, time_limit: float
    ) -> Attempt:
        """Send every event of the notification once; delivered when PagerDuty took all."""
        key = self._keys.get(pending.recipient.secret or "")
        if key is None:
            return Attempt(
                ok=False, permanent=True, reason=FailureReason.MISCONFIGURED, detail="no_key"
            )
        events = pagerduty_events(content, pending, routing_key=key, source=self.settings.source)
        result = Attempt(ok=True, detail="http_202")
        for event in events:
            result = await self._http.post(
                str(self.settings.events_url),
                body=json.dumps(event, separators=(",", ":")).encode(),
                headers={"User-Agent": "safeguard-notify"},
                time_limit=time_limit,
            )
            if not result.ok:
                return result
        return result

    async def close(self) -> None:
        """Close the client session."""
        await self._http.close()
