"""The channels: one delivery attempt each, reported as a value instead of raised.

Webhook: JSON POST signed with HMAC-SHA256 over the exact body bytes, with an
`Idempotency-Key` so a receiver can drop a repeat. Email: SMTP through the standard
library in a worker thread (STARTTLS, implicit TLS and login are settings).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal

import aiohttp
from pydantic import BaseModel, Field, SecretStr

from schemas.notifications import FailureReason
from services.common.clock import Clock
from services.notify.retry import parse_retry_after

SIGNATURE_HEADER = "X-Safeguard-Signature"
HTTP_OK_MIN, HTTP_OK_MAX = 200, 299
HTTP_TOO_MANY = 429
HTTP_SERVER_ERROR = 500
SMTP_PERMANENT = 500


@dataclass(frozen=True)
class Attempt:
    """The result of one try: delivered, or why not and whether trying again may help."""

    ok: bool
    permanent: bool = False
    reason: FailureReason | None = None
    detail: str | None = None
    retry_after: float | None = None


def sign(secret: bytes, body: bytes) -> str:
    """Return the signature header value for `body`: `sha256=<hex HMAC>`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class WebhookChannel:
    """POSTs signed JSON with one shared client session."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Many alerts escalate together: allow many connections, but not unbounded.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
        return self._session

    async def attempt(
        self, url: str, *, secret: bytes, body: bytes, idempotency_key: str, time_limit: float
    ) -> Attempt:
        """POST once. 2xx delivers; 5xx, 429 and connection errors may be retried."""
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": idempotency_key,
            SIGNATURE_HEADER: sign(secret, body),
            "User-Agent": "safeguard-notify",
        }
        try:
            async with self._client().post(
                url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=time_limit)
            ) as response:
                status = response.status
                retry_after = parse_retry_after(
                    response.headers.get("Retry-After"), self._clock.now()
                )
        except TimeoutError:
            return Attempt(ok=False, reason=FailureReason.TIMEOUT, detail="timeout")
        except aiohttp.ClientError as exc:
            return Attempt(
                ok=False, reason=FailureReason.CONNECTION_ERROR, detail=type(exc).__name__
            )
        detail = f"http_{status}"
        if HTTP_OK_MIN <= status <= HTTP_OK_MAX:
            return Attempt(ok=True, detail=detail)
        if status == HTTP_TOO_MANY:
            return Attempt(
                ok=False, reason=FailureReason.RATE_LIMITED, detail=detail, retry_after=retry_after
            )
        if status >= HTTP_SERVER_ERROR:
            return Attempt(
                ok=False, reason=FailureReason.SERVER_ERROR, detail=detail, retry_after=retry_after
            )
        return Attempt(ok=False, permanent=True, reason=FailureReason.CLIENT_ERROR, detail=detail)

    async def close(self) -> None:
        """Close the client session."""
        if self._session is not None:
            await self._session.close()


class SmtpSettings(BaseModel):
    """How to reach the mail relay (`NOTIFY_SMTP__*`)."""

    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="`starttls` upgrades a plain connection; `tls` is implicit TLS (465)",
    )
    username: str | None = None
    password: SecretStr | None = None
    sender: str = "safeguard-alerts@localhost"
    cafile: str | None = None
    timeout_seconds: float = Field(default=10.0, gt=0)


class EmailChannel:
    """Hands one message to the SMTP relay per attempt (smtplib, in a thread)."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    async def attempt(self, message: EmailMessage, *, time_limit: float) -> Attempt:
        """Send once. 4xx replies and connection errors may be retried; 5xx are final."""
        return await asyncio.to_thread(self._send, message, time_limit)

    def _send(self, message: EmailMessage, time_limit: float) -> Attempt:  # noqa: PLR0911
        s = self.settings
        context = ssl.create_default_context(cafile=s.cafile)
        try:
            smtp: smtplib.SMTP
            if s.security == "tls":
                smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=time_limit, context=context)
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=time_limit)
            with smtp:
                if s.security == "starttls":
                    smtp.starttls(context=context)
                if s.username:
                    password = s.password.get_secret_value() if s.password else ""
                    smtp.login(s.username, password)
                refused = smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            return _smtp_reply(max(codes, default=SMTP_PERMANENT))
        except (smtplib.SMTPNotSupportedError, smtplib.SMTPAuthenticationError) as exc:
            return Attempt(
                ok=False,
                permanent=True,
                reason=FailureReason.MISCONFIGURED,
                detail=type(exc).__name__,
            )
        except smtplib.SMTPResponseException as exc:
            return _smtp_reply(exc.smtp_code)
        except (TimeoutError, smtplib.SMTPServerDisconnected) as exc:
            reason = (
                FailureReason.TIMEOUT
                if isinstance(exc, TimeoutError)
                else FailureReason.CONNECTION_ERROR
            )
            return Attempt(ok=False, reason=reason, detail=type(exc).__name__)
        except (OSError, smtplib.SMTPException) as exc:
            return Attempt(
                ok=False, reason=FailureReason.CONNECTION_ERROR, detail=type(exc).__name__
            )
        if refused:
            # Some addresses were refused: those people were not told, so it failed.
            return _smtp_reply(max(code for code, _ in refused.values()))
        return Attempt(ok=True, detail="smtp_250")


def _smtp_reply(code: int) -> Attempt:
    if code >= SMTP_PERMANENT:
        return Attempt(
            ok=False, permanent=True, reason=FailureReason.REJECTED, detail=f"smtp_{code}"
        )
    return Attempt(ok=False, reason=FailureReason.SERVER_ERROR, detail=f"smtp_{code}")
