"""One notification from hand-over to outcome: attempts and retries within a budget.

The budget is the notification's `deadline` (the next escalation step, at most a few
minutes away): retrying past it would only tell someone late who is about to be
bypassed anyway.

What a message says is `services/notify/content.py` (rendered per channel by
`messages.py`, `teams.py` and `pagerduty.py`). Each channel has its own backoff: 5xx,
429 and connection errors are retried with backoff and jitter, honouring
`Retry-After`; other 4xx (and SMTP 5xx) are final at once.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import structlog

from schemas.notifications import Channel, FailureReason, NotificationPurpose
from services.common.clock import Clock
from services.notify.channels import Attempt, EmailChannel, WebhookChannel
from services.notify.content import Content, Presentation
from services.notify.ledger import PendingDelivery
from services.notify.messages import email_message, webhook_body
from services.notify.metrics import NotifyMetrics
from services.notify.pagerduty import PagerDutyChannel
from services.notify.retry import Backoff
from services.notify.teams import TeamsChannel

__all__ = ["Content", "Deliverer", "Presentation", "Result", "email_message", "webhook_body"]

log = structlog.get_logger(__name__)

MIN_ATTEMPT_SECONDS = 0.5


@dataclass(frozen=True)
class Result:
    """A notification's final outcome."""

    outcome: Literal["sent", "failed"]
    attempts: int
    first_attempt_at: datetime
    finished_at: datetime
    reason: FailureReason | None = None
    detail: str | None = None


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
        teams: TeamsChannel | None = None,
        pagerduty: PagerDutyChannel | None = None,
        backoffs: Mapping[Channel, Backoff] | None = None,
        presentation: Presentation | None = None,
    ) -> None:
        self.webhook = webhook
        self.email = email
        self.teams = teams or TeamsChannel(clock, {})
        self.pagerduty = pagerduty or PagerDutyChannel(clock, {})
        self.presentation = presentation or Presentation()
        self._secrets = secrets
        self._backoff = backoff
        # Each channel's own pace: PagerDuty and Teams throttle differently from a gateway.
        self._backoffs = dict(backoffs or {})
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
            backoff = self._backoffs.get(channel, self._backoff)
            delay = backoff.delay(attempts, retry_after=result.retry_after, draw=self._draw())
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
        if recipient.channel is Channel.TEAMS:
            return await self.teams.attempt(content, pending, time_limit=time_limit)
        if recipient.channel is Channel.PAGERDUTY:
            return await self.pagerduty.attempt(content, pending, time_limit=time_limit)
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

    async def close(self) -> None:
        """Close every channel's client session."""
        await self.webhook.close()
        await self.teams.close()
        await self.pagerduty.close()


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
