"""The webhook channel: POST an alert as JSON to a receiver."""

from __future__ import annotations

import aiohttp
import structlog

from schemas.alerts import AlertRaised
from services.notify.ledger import Delivery

log = structlog.get_logger(__name__)


class WebhookChannel:
    """Delivers notifications over HTTP with one shared client session."""

    def __init__(self, *, timeout_seconds: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def send(self, url: str, alert: AlertRaised, *, level: int) -> Delivery:
        """POST the alert; report the outcome instead of raising."""
        body = {"level": level, "alert": alert.model_dump(mode="json", exclude_none=True)}
        reason: str | None = None
        try:
            async with self._client().post(
                url, json=body, headers={"Idempotency-Key": f"{alert.alert_id}:{level}"}
            ) as response:
                if 200 <= response.status < 300:  # noqa: PLR2004
                    return Delivery(
                        channel="webhook", recipient=url, level=level, attempts=1, outcome="sent"
                    )
                reason = f"http_{response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = type(exc).__name__
        log.warning("webhook_failed", alert_id=alert.alert_id, level=level, reason=reason)
        return Delivery(
            channel="webhook",
            recipient=url,
            level=level,
            attempts=1,
            outcome="failed",
            reason=reason,
        )

    async def close(self) -> None:
        """Close the client session."""
        if self._session is not None:
            await self._session.close()
