"""One notification from hand-over to outcome: content, attempts, retries within a budget.

The budget is the notification's `deadline` (the next escalation step, at most a few
minutes away): retrying past it would only tell someone late who is about to be
bypassed anyway.

Every message carries the console link of its alert (`NOTIFY_PUBLIC_URL` +
`/console/alerts/<id>`), and a grouped level-1 message lists every alert it stands for,
each with its link. 5xx, 429 and connection errors are retried with backoff and jitter,
honouring `Retry-After`; other 4xx (and SMTP 5xx) are final at once.
"""

from __future__ import annotations

import asyncio
import html
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any, Literal

import structlog

from schemas.alerts import AlertRaised, Severity
from schemas.notifications import Channel, FailureReason, NotificationPurpose
from services.common.clock import Clock
from services.notify.channels import Attempt, EmailChannel, WebhookChannel
from services.notify.ledger import AlertRecord, AlertStatus, GroupMember, PendingDelivery
from services.notify.metrics import NotifyMetrics
from services.notify.retry import Backoff

log = structlog.get_logger(__name__)

MIN_ATTEMPT_SECONDS = 0.5


@dataclass(frozen=True)
class Content:
    """What a notification says: the alert, and how it was resolved for a resolution notice."""

    alert: AlertRaised
    resolution: dict[str, Any] | None
    public_url: str | None = None
    members: tuple[GroupMember, ...] = ()
    reopened: bool = False
    resolved_breach: bool = False
    """Fulfilled before anyone was paged: the one message says it was late and is resolved."""

    def link(self, alert_id: str) -> str | None:
        """Return the console page of an alert, when the public URL is configured."""
        if self.public_url is None:
            return None
        return f"{self.public_url.rstrip('/')}/console/alerts/{alert_id}"

    @classmethod
    def of(
        cls,
        record: AlertRecord,
        pending: PendingDelivery | None = None,
        public_url: str | None = None,
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
        members = tuple(pending.members) if pending is not None and len(pending.members) > 1 else ()
        return cls(
            alert=record.alert,
            resolution=resolution,
            public_url=public_url,
            members=members,
            reopened=record.reopened_at is not None and record.status is AlertStatus.OPEN,
            resolved_breach=record.level == 0 and resolution is not None,
        )


@dataclass(frozen=True)
class Result:
    """A notification's final outcome."""

    outcome: Literal["sent", "failed"]
    attempts: int
    first_attempt_at: datetime
    finished_at: datetime
    reason: FailureReason | None = None
    detail: str | None = None


def webhook_body(content: Content, pending: PendingDelivery) -> bytes:
    """Return the exact JSON bytes POSTed (and signed)."""
    body: dict[str, Any] = {
        "notification_id": pending.notification_id,
        "purpose": pending.purpose.value,
        "level": pending.level,
        "round": pending.round,
        "alert": content.alert.model_dump(mode="json", exclude_none=True),
    }
    link = content.link(content.alert.alert_id)
    if link is not None:
        body["console_url"] = link
    if content.reopened:
        body["reopened"] = True
    if content.resolved_breach:
        body["resolved_breach"] = True
    if content.members:
        body["alerts"] = [
            {
                **m.model_dump(mode="json", exclude_none=True),
                "console_url": content.link(m.alert_id),
            }
            for m in content.members
        ]
    if pending.purpose is NotificationPurpose.RESOLUTION:
        body["resolution"] = content.resolution
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def email_message(content: Content, pending: PendingDelivery, *, sender: str) -> EmailMessage:
    """Return the email: plain text and HTML with the alert's summary only.

    No subject ids (child, offender, enquiry): email leaves the force's systems and
    lands in inboxes and phones. The alert id is enough to find it in Safeguard.
    """
    alert = content.alert
    resolved = pending.purpose is NotificationPurpose.RESOLUTION
    # Told for the first time about an alert already resolved: a late fulfilment that
    # was known when the breach was raised. One message says both.
    breach = resolved and content.resolved_breach
    head = "Resolved" if resolved else f"Level {pending.level}"
    if breach:
        head = "Resolved breach"
    elif content.reopened:
        head = f"Re-opened, level {pending.level}"
    subject = f"[Safeguard] {head}: {alert.severity.value} alert, {alert.rule}"
    if content.members:
        subject = (
            f"[Safeguard] {head}: {len(content.members)} alerts from one event, "
            f"highest {max(Severity(m.severity) for m in content.members).value}"
        )
    rows = [
        ("Alert", alert.alert_id),
        ("Rule", alert.rule),
        ("Severity", alert.severity.value),
        ("Level", str(pending.level) + (f" (repeat {pending.round})" if pending.round else "")),
        ("Raised", alert.raised_at.isoformat()),
        ("Due", alert.due_at.isoformat() if alert.due_at else "-"),
        ("Area", alert.area or "-"),
    ]
    if resolved and content.resolution is not None:
        rows.append(("Resolved", str(content.resolution.get("resolved_at"))))
    link = content.link(alert.alert_id)
    if link is not None:
        rows.append(("Open", link))
    if breach:
        action = "The obligation was met late; this breach is recorded and needs no action."
    elif resolved:
        action = "This alert is resolved; no action is needed."
    elif content.reopened:
        action = (
            "It was acknowledged but the obligation is still unmet: act, or resolve it "
            "with a reason, at the link above."
        )
    else:
        action = "Acknowledge it at the link above, or it escalates."
    listed = [
        (m.alert_id, f"{m.severity} {m.rule}: {m.summary}", content.link(m.alert_id))
        for m in content.members
    ]
    text_lines = [alert.summary, "", *(f"{name}: {value}" for name, value in rows)]
    if listed:
        text_lines += ["", f"This event raised {len(listed)} alerts:"]
        text_lines += [f"- {line} {url or ident}" for ident, line, url in listed]
    text = "\n".join([*text_lines, "", action])
    cells = "".join(
        f"<tr><th align='left'>{html.escape(name)}</th><td>{_cell(value)}</td></tr>"
        for name, value in rows
    )
    items = "".join(
        f"<li>{html.escape(line)} {_anchor(url) if url else html.escape(ident)}</li>"
        for ident, line, url in listed
    )
    markup = (
        f"<html><body><p>{html.escape(alert.summary)}</p>"
        f"<table>{cells}</table>"
        + (f"<p>This event raised {len(listed)} alerts:</p><ul>{items}</ul>" if items else "")
        + f"<p>{html.escape(action)}</p></body></html>"
    )
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = ", ".join(pending.recipient.to)
    # A stable Message-ID per notification lets mail systems drop a re-sent copy.
    message["Message-ID"] = f"<{pending.notification_id.replace(':', '.')}@safeguard>"
    message["X-Safeguard-Notification-Id"] = pending.notification_id
    message.set_content(text)
    message.add_alternative(markup, subtype="html")
    return message


def _anchor(url: str) -> str:
    return f"<a href='{html.escape(url, quote=True)}'>{html.escape(url)}</a>"


def _cell(value: str) -> str:
    return _anchor(value) if value.startswith(("https://", "http://")) else html.escape(value)


class Deliverer:
    """Runs a notification's attempts until it is delivered, final, or out of budget."""

    def __init__(  # noqa: PLR0913 - collaborators, each injectable for tests
        self,
        *,
        webhook: WebhookChannel,
        email: EmailChannel,
        secrets: Mapping[str, bytes],
        backoff: Backoff,
        clock: Clock,
        metrics: NotifyMetrics,
        attempt_timeout: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.webhook = webhook
        self.email = email
        self._secrets = secrets
        self._backoff = backoff
        self._clock = clock
        self._metrics = metrics
        self._attempt_timeout = attempt_timeout
        self._sleep = sleep
        self._draw = draw

    async def deliver(self, content: Content, pending: PendingDelivery) -> Result:
        """Deliver one notification; the outcome is returned, never raised."""
        channel = pending.recipient.channel
        first = self._clock.now()
        if _first_attempt_at_level_1(pending):
            delay = (first - content.alert.raised_at).total_seconds()
            self._metrics.first_attempt_delay.labels(channel=channel.value).observe(max(0.0, delay))
        attempts = 0
        while True:
            attempts += 1
            remaining = (pending.deadline - self._clock.now()).total_seconds()
            timeout = max(MIN_ATTEMPT_SECONDS, min(self._attempt_timeout, remaining))
            started = time.perf_counter()
            result = await self._attempt(content, pending, timeout)
            self._metrics.requests.labels(channel=channel.value).inc()
            self._metrics.latency.labels(channel=channel.value).observe(
                time.perf_counter() - started
            )
            if result.ok or result.permanent:
                break
            delay = self._backoff.delay(attempts, retry_after=result.retry_after, draw=self._draw())
            remaining = (pending.deadline - self._clock.now()).total_seconds()
            if delay >= remaining:
                break
            await self._sleep(delay)
        finished = self._clock.now()
        if result.ok:
            self._metrics.notifications.labels(channel=channel.value).inc()
            return Result("sent", attempts, first, finished, detail=None)
        reason = result.reason or FailureReason.CONNECTION_ERROR
        self._metrics.notifications_failed.labels(channel=channel.value, reason=reason.value).inc()
        log.warning(
            "notification_failed",
            notification_id=pending.notification_id,
            channel=channel.value,
            reason=reason.value,
            detail=result.detail,
            attempts=attempts,
        )
        return Result("failed", attempts, first, finished, reason=reason, detail=result.detail)

    async def _attempt(
        self, content: Content, pending: PendingDelivery, time_limit: float
    ) -> Attempt:
        recipient = pending.recipient
        if recipient.channel is Channel.WEBHOOK:
            secret = self._secrets.get(recipient.secret or "")
            if secret is None or not recipient.url:
                return Attempt(
                    ok=False,
                    permanent=True,
                    reason=FailureReason.MISCONFIGURED,
                    detail="no_secret" if secret is None else "no_url",
                )
            return await self.webhook.attempt(
                recipient.url,
                secret=secret,
                body=webhook_body(content, pending),
                idempotency_key=pending.notification_id,
                time_limit=time_limit,
            )
        message = email_message(content, pending, sender=self.email.settings.sender)
        return await self.email.attempt(message, time_limit=time_limit)


def _first_attempt_at_level_1(pending: PendingDelivery) -> bool:
    """Tell whether this starts the first attempt to tell level 1 about an alert.

    A hand-over again after a lost worker (`dispatches` > 1), a repeat or a re-opening
    (`round` > 0) and a resolution notice are not: the service level is about how soon
    the duty manager is first tried.
    """
    return (
        pending.purpose is NotificationPurpose.ALERT
        and pending.level == 1
        and pending.round == 0
        and pending.dispatches == 1
    )
