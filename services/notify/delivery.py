"""One notification from hand-over to outcome: content, attempts, retries within a budget.

The budget is the notification's `deadline` (the next escalation step, at most a few
minutes away): retrying past it would only tell someone late who is about to be
bypassed anyway. 5xx, 429 and connection errors are retried with backoff and jitter,
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

from schemas.alerts import AlertRaised
from schemas.notifications import Channel, FailureReason, NotificationPurpose
from services.common.clock import Clock
from services.notify.channels import Attempt, EmailChannel, WebhookChannel
from services.notify.ledger import AlertRecord, PendingDelivery
from services.notify.metrics import NotifyMetrics
from services.notify.retry import Backoff

log = structlog.get_logger(__name__)

MIN_ATTEMPT_SECONDS = 0.5


@dataclass(frozen=True)
class Content:
    """What a notification says: the alert, and how it was resolved for a resolution notice."""

    alert: AlertRaised
    resolution: dict[str, Any] | None

    @classmethod
    def of(cls, record: AlertRecord) -> Content:
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
        return cls(alert=record.alert, resolution=resolution)


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
    head = "Resolved" if resolved else f"Level {pending.level}"
    subject = f"[Safeguard] {head}: {alert.severity.value} alert, {alert.rule}"
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
    action = (
        "This alert is resolved; no action is needed."
        if resolved
        else "Acknowledge it in Safeguard by its alert id, or it escalates."
    )
    text = "\n".join([alert.summary, "", *(f"{name}: {value}" for name, value in rows), "", action])
    cells = "".join(
        f"<tr><th align='left'>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>"
        for name, value in rows
    )
    markup = (
        f"<html><body><p>{html.escape(alert.summary)}</p>"
        f"<table>{cells}</table><p>{html.escape(action)}</p></body></html>"
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
