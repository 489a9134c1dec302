"""The channels: one delivery attempt each, reported as a value instead of raised.

Webhook: JSON POST signed per the Standard Webhooks scheme (standardwebhooks.com):
`webhook-id` (the notification id, also sent as `Idempotency-Key`, so a receiver can drop
a repeat), `webhook-timestamp` (Unix seconds) and `webhook-signature`
(`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`). The timestamp is signed, so
a receiver that rejects old timestamps cannot be fed a captured delivery again later.
Redirects are not followed: a 3xx would re-post the body and signature to an address
nobody configured, so it is a failed attempt, final at once (it would redirect again).
Only `https://` receivers outside development mode (services.common.environment).

Email: SMTP through the standard library in a worker thread (services.common.smtp, which
the desk's digests share: STARTTLS, implicit TLS and login are settings). A login
without TLS is refused when the settings are read.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import urlsplit

import aiohttp

from schemas.notifications import FailureReason
from services.common import smtp
from services.common.clock import Clock
from services.common.environment import is_development, refuse_outside_development
from services.common.smtp import SmtpSettings
from services.notify.retry import parse_retry_after

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SIGNATURE_VERSION = "v1"
# Standard Webhooks secrets may be given as `whsec_<base64 key>`; other text is the key.
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
HTTP_OK_MIN, HTTP_OK_MAX = 200, 299
HTTP_REDIRECT_MIN, HTTP_REDIRECT_MAX = 300, 399
HTTP_TOO_MANY = 429
HTTP_SERVER_ERROR = 500


@dataclass(frozen=True)
class Attempt:
    """The result of one try: delivered, or why not and whether trying again may help."""

    ok: bool
    permanent: bool = False
    reason: FailureReason | None = None
    detail: str | None = None
    retry_after: float | None = None


def signing_key(secret: str) -> bytes:
    """Return the HMAC key of a configured secret: `whsec_<base64>` decoded, else its bytes."""
    if secret.startswith(SECRET_PREFIX):
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    return secret.encode()


# Below 128 bits a signing key can be guessed offline from one captured delivery.
MIN_KEY_BYTES = 16
# SHA-256 of keys published in this repository (the development inbox's, compose's):
# anyone can sign with them.
PUBLISHED_KEYS = frozenset({"2aa0aa29ee45f6111c846853f329d7932bc7f647edd1dabd082fb2efbf1bfcc9"})


def weak_secrets(secrets: Mapping[str, str]) -> list[str]:
    """Return the names of signing secrets that are empty, shorter than 128 bits or published."""
    weak = []
    for name, secret in secrets.items():
        try:
            key = signing_key(secret)
        except ValueError:
            key = b""
        if len(key) < MIN_KEY_BYTES or hashlib.sha256(key).hexdigest() in PUBLISHED_KEYS:
            weak.append(name)
    return sorted(weak)


def require_strong_secrets(secrets: Mapping[str, str], *, development: bool | None = None) -> None:
    """Refuse (at start-up) weak webhook signing secrets, unless in development mode."""
    if is_development() if development is None else development:
        return
    weak = weak_secrets(secrets)
    if weak:
        names = ", ".join(f"NOTIFY_WEBHOOK_SECRETS__{name.upper()}" for name in weak)
        raise refuse_outside_development(
            f"webhook signing secrets empty, shorter than 128 bits or published: {names}"
        )


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """Return the `webhook-signature` value: `v1,<base64 HMAC-SHA256>` of `id.timestamp.body`."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def require_https(urls: Iterable[str], *, development: bool | None = None) -> None:
    """Refuse (at start-up) receivers that are not `https://`, unless in development mode."""
    if is_development() if development is None else development:
        return
    plain = sorted({_origin(url) for url in urls if urlsplit(url).scheme.lower() != "https"})
    if plain:
        raise refuse_outside_development(
            f"webhook receivers must be https://, not {', '.join(plain)}"
        )


def _origin(url: str) -> str:
    # Scheme, host and port only: a path or query could carry a receiver's token.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")


class HttpClient:
    """One shared aiohttp session for a channel, and one POST per attempt.

    Redirects are never followed (the body would go to an address nobody configured);
    2xx delivers; 429 and 5xx may be retried (`Retry-After` read); other statuses are
    final. Only `https://` outside development mode.
    """

    def __init__(self, clock: Clock, *, allow_http: bool | None = None) -> None:
        self._clock = clock
        self._allow_http = is_development() if allow_http is None else allow_http
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Many alerts escalate together: allow many connections, but not unbounded.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
        return self._session

    async def post(
        self, url: str, *, body: bytes, headers: Mapping[str, str], time_limit: float
    ) -> Attempt:
        """POST `body` once and classify the answer."""
        if not self._allow_http and urlsplit(url).scheme.lower() != "https":
            # Checked at start-up too; this guards any URL that got past that.
            return Attempt(
                ok=False, permanent=True, reason=FailureReason.MISCONFIGURED, detail="not_https"
            )
        try:
            async with self._client().post(
                url,
                data=body,
                headers={"Content-Type": "application/json", **headers},
                timeout=aiohttp.ClientTimeout(total=time_limit),
                allow_redirects=False,
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
        return classify_status(status, retry_after)

    async def close(self) -> None:
        """Close the client session."""
        if self._session is not None:
            await self._session.close()


def classify_status(status: int, retry_after: float | None = None) -> Attempt:
    """Return what an HTTP status means for a delivery attempt."""
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
    if HTTP_REDIRECT_MIN <= status <= HTTP_REDIRECT_MAX:
        # Not followed (see HttpClient); the detail says why it failed.
        detail = f"http_{status}_redirect_not_followed"
    return Attempt(ok=False, permanent=True, reason=FailureReason.CLIENT_ERROR, detail=detail)


class WebhookChannel:
    """POSTs signed JSON with one shared client session."""

    def __init__(self, clock: Clock, *, allow_http: bool | None = None) -> None:
        self._clock = clock
        self._http = HttpClient(clock, allow_http=allow_http)

    async def attempt(
        self, url: str, *, secret: bytes, body: bytes, idempotency_key: str, time_limit: float
    ) -> Attempt:
        """POST once. 2xx delivers; 5xx, 429 and connection errors may be retried.

        3xx is not followed and is final, like other 4xx: the receiver's address is wrong.
        """
        # Signed afresh per attempt: a retry is a new delivery attempt with its own time,
        # under the same id, so the receiver's replay window applies to each.
        timestamp = int(self._clock.now().timestamp())
        headers = {
            "Idempotency-Key": idempotency_key,
            ID_HEADER: idempotency_key,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, idempotency_key, timestamp, body),
            "User-Agent": "safeguard-notify",
        }
        return await self._http.post(url, body=body, headers=headers, time_limit=time_limit)

    async def close(self) -> None:
        """Close the client session."""
        await self._http.close()


class EmailChannel:
    """Hands one message to the SMTP relay per attempt (smtplib, in a thread)."""

    def __init__(self, settings: SmtpSettings) -> None:
        settings.check()
        self.settings = settings

    async def attempt(self, message: EmailMessage, *, time_limit: float) -> Attempt:
        """Send once. 4xx replies and connection errors may be retried; 5xx are final."""
        return await asyncio.to_thread(self._send, message, time_limit)

    def _send(self, message: EmailMessage, time_limit: float) -> Attempt:
        sent = smtp.send(self.settings, message, time_limit)
        if sent.ok:
            return Attempt(ok=True, detail=sent.detail)
        return Attempt(
            ok=False,
            permanent=sent.permanent,
            reason=FailureReason(sent.failure) if sent.failure else FailureReason.CONNECTION_ERROR,
            detail=sent.detail,
        )
