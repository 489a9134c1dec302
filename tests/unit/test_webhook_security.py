"""Webhook and SMTP safety: Standard Webhooks signatures, no redirects, https, TLS for login.

Against a real HTTP receiver (tests/fixtures/webhook.py), which verifies signatures with
its own code; the README's verification snippet is run exactly as published.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from schemas.notifications import FailureReason
from services.common.clock import FakeClock
from services.common.environment import UnsafeConfiguration
from services.common.smtp import SmtpConfigError, SmtpSettings
from services.notify.channels import (
    Attempt,
    EmailChannel,
    WebhookChannel,
    require_https,
    require_strong_secrets,
    sign,
    signing_key,
    weak_secrets,
)
from tests.fixtures.webhook import WebhookReceiver

README = Path(__file__).resolve().parents[2] / "README.md"
KEY = b"receiver-key"
BODY = b'{"notification_id":"al-1:1:0:desk","level":1}'


def post(
    url: str, *, key: bytes = KEY, allow_http: bool = True, now: datetime | None = None
) -> Attempt:
    clock = FakeClock(now or datetime.now(UTC))
    channel = WebhookChannel(clock, allow_http=allow_http)

    async def once() -> Attempt:
        try:
            return await channel.attempt(
                url, secret=key, body=BODY, idempotency_key="al-1:1:0:desk", time_limit=5
            )
        finally:
            await channel.close()

    return asyncio.run(once())


@pytest.fixture
def receiver() -> Any:
    hook = WebhookReceiver(key=KEY)
    hook.start()
    yield hook
    hook.stop()


def test_the_test_receiver_verifies_the_signature(receiver: WebhookReceiver) -> None:
    assert post(receiver.url).ok
    assert receiver.verified == [True]
    headers = receiver.headers[0]
    assert headers["webhook-id"] == "al-1:1:0:desk"
    assert headers["webhook-signature"].startswith("v1,")


def test_a_delivery_signed_with_another_key_fails_verification(receiver: WebhookReceiver) -> None:
    assert post(receiver.url, key=b"not the receiver's key").ok  # the receiver answers 200
    assert receiver.verified == [False]


def test_redirects_are_not_followed_and_fail_for_good(receiver: WebhookReceiver) -> None:
    attempt = post(receiver.redirect_url)
    assert not attempt.ok
    # Final: a redirect would only redirect again; the ladder escalates instead.
    assert attempt.permanent
    assert attempt.reason is FailureReason.CLIENT_ERROR
    assert attempt.detail == "http_307_redirect_not_followed"
    assert receiver.redirects == 1
    assert receiver.received == []  # body and signature never re-posted to the target


def test_plain_http_is_refused_outside_development_mode(receiver: WebhookReceiver) -> None:
    attempt = post(receiver.url, allow_http=False)
    assert (attempt.ok, attempt.permanent, attempt.detail) == (False, True, "not_https")
    assert attempt.reason is FailureReason.MISCONFIGURED
    assert receiver.received == []


def test_start_up_refuses_http_receivers_outside_development_mode() -> None:
    urls = ["https://desk.example.org/hook", "http://old.example.org:8080/hook?token=abc"]
    with pytest.raises(UnsafeConfiguration) as caught:
        require_https(urls, development=False)
    message = str(caught.value)
    assert "http://old.example.org:8080" in message
    assert "SAFEGUARD_ENV=development" in message
    assert "token=abc" not in message  # a URL's path and query can hold credentials
    require_https(urls[:1], development=False)
    require_https(urls, development=True)


def test_whsec_secrets_are_base64_keys() -> None:
    key = b"\x00\x01binary key"
    assert signing_key("whsec_" + base64.b64encode(key).decode()) == key
    assert signing_key("plain text secret") == b"plain text secret"


def test_smtp_login_without_tls_is_a_configuration_error() -> None:
    settings = SmtpSettings(username="relay-user", password="pw", security="none")
    with pytest.raises(SmtpConfigError, match="NOTIFY_SMTP__SECURITY"):
        EmailChannel(settings)
    EmailChannel(SmtpSettings(username="relay-user", security="starttls"))
    EmailChannel(SmtpSettings(security="none"))  # no login: nothing to protect


# --- the README's snippet, as published ---------------------------------------------------


def readme_verify() -> Callable[[bytes, Mapping[str, str], bytes], bool]:
    """Return `verify` from the README's "Verifying webhooks" section."""
    text = README.read_text()
    section = text.split("### Verifying webhooks", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found, "README: no Python block under 'Verifying webhooks'"
    namespace: dict[str, Any] = {}
    exec(compile(found.group(1), "README.md", "exec"), namespace)  # noqa: S102 - our own README
    verify: Callable[[bytes, Mapping[str, str], bytes], bool] = namespace["verify"]
    return verify


def delivery(timestamp: int, *, key: bytes = KEY) -> dict[str, str]:
    return {
        "webhook-id": "al-1:1:0:desk",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, "al-1:1:0:desk", timestamp, BODY),
    }


def test_readme_snippet_accepts_a_fresh_signed_delivery() -> None:
    verify = readme_verify()
    assert verify(KEY, delivery(int(time.time())), BODY)
    # Several signatures (key rotation): any valid v1 entry is enough.
    headers = delivery(int(time.time()))
    headers["webhook-signature"] = "v1,bm90IGl0 " + headers["webhook-signature"]
    assert verify(KEY, headers, BODY)


def test_readme_snippet_rejects_a_stale_timestamp() -> None:
    verify = readme_verify()
    stale = int(time.time()) - 6 * 60  # older than the 5 minutes allowed
    assert not verify(KEY, delivery(stale), BODY)


def test_readme_snippet_rejects_forgeries() -> None:
    verify = readme_verify()
    now = int(time.time())
    assert not verify(KEY, delivery(now), BODY + b" ")  # body changed
    assert not verify(KEY, delivery(now, key=b"other"), BODY)  # wrong key
    moved = delivery(now) | {"webhook-timestamp": str(now - 1)}  # timestamp changed
    assert not verify(KEY, moved, BODY)
    assert not verify(KEY, {}, BODY)
    assert not verify(KEY, delivery(now) | {"webhook-timestamp": "soon"}, BODY)


def test_weak_webhook_secrets_are_refused_outside_development_mode() -> None:
    strong = "whsec_" + base64.b64encode(b"k" * 32).decode()
    secrets = {
        "desk": strong,
        "empty": "",
        "short": "whsec_" + base64.b64encode(b"k" * 8).decode(),
        "published": "safeguard-dev-webhook-secret",
        "not_base64": "whsec_!!!",
    }
    assert weak_secrets(secrets) == ["empty", "not_base64", "published", "short"]
    with pytest.raises(UnsafeConfiguration, match="NOTIFY_WEBHOOK_SECRETS__PUBLISHED"):
        require_strong_secrets(secrets, development=False)
    require_strong_secrets({"desk": strong}, development=False)
    require_strong_secrets(secrets, development=True)  # the development inbox's is fine there
