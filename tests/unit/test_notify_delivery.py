"""Delivery: retries, backoff, Retry-After, permanent failures, signatures and email
content, against a real HTTP server and a real SMTP server on loopback ports.

Only waiting is faked: the backoff's sleep moves a fake clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from devtools.broker import free_port
from schemas.alerts import AlertRaised, EventRef, Severity, SubjectKind
from schemas.notifications import Channel, FailureReason, NotificationPurpose
from services.common.clock import FakeClock
from services.common.policy_file import PolicyError
from services.common.smtp import SmtpSettings
from services.notify.channels import EmailChannel, WebhookChannel, sign
from services.notify.delivery import Content, Deliverer, Result
from services.notify.ledger import PendingDelivery
from services.notify.metrics import NotifyMetrics
from services.notify.policy import Recipient, chain_for, load_policy
from services.notify.retry import Backoff, parse_retry_after
from tests.fixtures.smtp import SmtpInbox
from tests.fixtures.webhook import signature_valid

T0 = datetime(2026, 11, 20, 21, 0, tzinfo=UTC)
SECRET = b"k3y"
ALERT = AlertRaised(
    alert_id="al-7",
    rule="missing-referral",
    severity=Severity.HIGH,
    subject_kind=SubjectKind.CHILD,
    child_id="C-SECRET-1",
    area="south",
    trigger=EventRef(source="urn:x", id="e-7"),
    due_at=T0 - timedelta(hours=1),
    raised_at=T0,
    summary="No referral was shared within 1 h of a high-risk missing episode.",
)


class Scripted:
    """An HTTP receiver answering from a script of (status, headers) in turn."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
        self.script = script
        self.requests: list[tuple[bytes, dict[str, str]]] = []
        self.port = free_port()

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((await request.read(), dict(request.headers)))
        status, headers = self.script.pop(0) if self.script else (200, {})
        return web.Response(status=status, headers=headers)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


def run_with_server(
    script: list[tuple[int, dict[str, str]]],
    body: Callable[[Scripted], Awaitable[Any]],
) -> tuple[Scripted, Any]:
    server = Scripted(script)

    async def main() -> Any:
        app = web.Application()
        app.router.add_post("/hook", server.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", server.port).start()
        try:
            return await body(server)
        finally:
            await runner.cleanup()

    return server, asyncio.run(main())


def deliverer(clock: FakeClock, *, smtp_port: int = 1) -> tuple[Deliverer, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(timedelta(seconds=seconds))

    return (
        Deliverer(
            webhook=WebhookChannel(clock),
            email=EmailChannel(
                SmtpSettings(
                    host="127.0.0.1", port=smtp_port, security="none", sender="sg@example.org"
                )
            ),
            secrets={"desk": SECRET},
            backoff=Backoff(initial_seconds=1, max_seconds=8),
            clock=clock,
            metrics=NotifyMetrics(CollectorRegistry()),
            attempt_timeout=2,
            sleep=sleep,
            draw=lambda: 1.0,  # the top of the jitter range, so delays are exact
        ),
        slept,
    )


def pending(recipient: Recipient, *, budget: float = 60) -> PendingDelivery:
    return PendingDelivery(
        notification_id="al-7:1:0:" + recipient.name,
        purpose=NotificationPurpose.ALERT,
        recipient=recipient,
        level=1,
        round=0,
        dispatched_at=T0,
        deadline=T0 + timedelta(seconds=budget),
    )


def hook(url: str, secret: str = "desk") -> Recipient:  # noqa: S107 - a secret name
    return Recipient(name="desk", channel=Channel.WEBHOOK, url=url, secret=secret)


def deliver_to_server(
    script: list[tuple[int, dict[str, str]]], *, budget: float = 60
) -> tuple[Scripted, Result, list[float]]:
    clock = FakeClock(T0)
    sender, slept = deliverer(clock)

    async def body(server: Scripted) -> Result:
        try:
            content = Content(alert=ALERT, resolution=None)
            return await sender.deliver(content, pending(hook(server.url), budget=budget))
        finally:
            await sender.webhook.close()

    server, result = run_with_server(script, body)
    return server, result, slept


def test_webhook_is_signed_per_standard_webhooks_with_an_idempotency_key() -> None:
    server, result, slept = deliver_to_server([(204, {})])
    assert (result.outcome, result.attempts, slept) == ("sent", 1, [])
    raw, headers = server.requests[0]
    assert headers["Idempotency-Key"] == headers["webhook-id"] == "al-7:1:0:desk"
    assert headers["webhook-timestamp"] == str(int(T0.timestamp()))
    assert headers["webhook-signature"] == sign(SECRET, "al-7:1:0:desk", int(T0.timestamp()), raw)
    # The receiver's own check (tests/fixtures/webhook.py) agrees, at the sending time...
    assert signature_valid(SECRET, headers, raw, now=T0.timestamp())
    # ...and refuses the same delivery replayed later, or with another body.
    assert not signature_valid(SECRET, headers, raw, now=T0.timestamp() + 301)
    assert not signature_valid(SECRET, headers, raw + b" ", now=T0.timestamp())
    body = json.loads(raw)
    assert (body["level"], body["purpose"], body["alert"]["alert_id"]) == (1, "alert", "al-7")


def test_server_errors_are_retried_with_backoff_then_delivered() -> None:
    server, result, slept = deliver_to_server([(503, {}), (502, {}), (200, {})])
    assert (result.outcome, result.attempts) == ("sent", 3)
    assert slept == [1.0, 2.0]  # exponential
    # Every retry carries the same idempotency key and the same signed body.
    assert len({r[1]["Idempotency-Key"] for r in server.requests}) == 1
    assert len({r[0] for r in server.requests}) == 1


def test_retry_after_is_honoured_as_a_floor() -> None:
    _, result, slept = deliver_to_server([(429, {"Retry-After": "7"}), (200, {})])
    assert (result.outcome, slept) == ("sent", [7.0])


def test_client_errors_are_final_at_once() -> None:
    server, result, slept = deliver_to_server([(400, {}), (200, {})])
    assert (result.outcome, result.reason, result.detail) == (
        "failed",
        FailureReason.CLIENT_ERROR,
        "http_400",
    )
    assert (result.attempts, slept, len(server.requests)) == (1, [], 1)


def test_retries_stop_at_the_budget() -> None:
    _, result, slept = deliver_to_server([(500, {})] * 20, budget=10)
    assert (result.outcome, result.reason) == ("failed", FailureReason.SERVER_ERROR)
    assert slept == [1.0, 2.0, 4.0]  # the next wait (8 s) would pass the 10 s budget
    assert result.attempts == 4


def test_retry_after_beyond_the_budget_fails_now() -> None:
    _, result, slept = deliver_to_server([(503, {"Retry-After": "3600"})], budget=30)
    assert (result.outcome, result.attempts, slept) == ("failed", 1, [])


def test_connection_refused_is_retried_and_reported() -> None:
    clock = FakeClock(T0)
    sender, slept = deliverer(clock)

    async def body() -> Result:
        try:
            unused = f"http://127.0.0.1:{free_port()}/hook"
            content = Content(alert=ALERT, resolution=None)
            return await sender.deliver(content, pending(hook(unused), budget=5))
        finally:
            await sender.webhook.close()

    result = asyncio.run(body())
    assert (result.outcome, result.reason) == ("failed", FailureReason.CONNECTION_ERROR)
    assert slept == [1.0, 2.0]


def test_missing_secret_is_a_permanent_misconfiguration() -> None:
    clock = FakeClock(T0)
    sender, _ = deliverer(clock)
    content = Content(alert=ALERT, resolution=None)
    target = pending(hook("http://127.0.0.1:1/hook", secret="other"))
    result = asyncio.run(sender.deliver(content, target))
    assert (result.outcome, result.reason, result.attempts) == (
        "failed",
        FailureReason.MISCONFIGURED,
        1,
    )


def test_email_carries_the_summary_and_subject_id_in_text_and_html(
    smtp_inbox: SmtpInbox,
) -> None:
    clock = FakeClock(T0)
    sender, _ = deliverer(clock, smtp_port=smtp_inbox.port)
    to = Recipient(name="seniors", channel=Channel.EMAIL, to=("seniors@example.org",))
    result = asyncio.run(sender.deliver(Content(alert=ALERT, resolution=None), pending(to)))
    assert result.outcome == "sent"
    (mail,) = smtp_inbox.wait_for(lambda m: m.message["X-Safeguard-Notification-Id"] is not None)
    message = mail.message
    assert mail.to == ["seniors@example.org"]
    assert message["Subject"] == "[Safeguard] Level 1: high missing-referral, overdue 1 h"
    assert message["Message-ID"] == "<al-7.1.0.seniors@safeguard>"
    plain = message.get_body(preferencelist=("plain",))
    markup = message.get_body(preferencelist=("html",))
    assert plain is not None
    assert markup is not None
    for text in (plain.get_content(), markup.get_content()):
        assert "al-7" in text
        assert "missing-referral" in text
        assert "high-risk missing episode" in text
        # Issue 21: the pseudonymous subject id, local times to the minute, how late.
        assert "child C-SECRET-1" in text
        assert "Fri 20 Nov 2026 20:00 GMT" in text  # due, local (GMT in November)
        assert "Overdue for" in text
        assert "1 h (at Fri 20 Nov 2026 21:00 GMT)" in text
        assert "+00:00" not in text  # no ISO times with offsets or microseconds


def test_refused_mailbox_is_a_final_failure(smtp_inbox: SmtpInbox) -> None:
    clock = FakeClock(T0)
    sender, slept = deliverer(clock, smtp_port=smtp_inbox.port)
    to = Recipient(name="gone", channel=Channel.EMAIL, to=("reject-me@example.org",))
    result = asyncio.run(sender.deliver(Content(alert=ALERT, resolution=None), pending(to)))
    assert (result.outcome, result.reason, result.detail, slept) == (
        "failed",
        FailureReason.REJECTED,
        "smtp_550",
        [],
    )


def test_backoff_grows_caps_and_jitters_in_the_upper_half() -> None:
    backoff = Backoff(initial_seconds=1, max_seconds=8)
    assert [backoff.delay(n, retry_after=None, draw=1.0) for n in range(1, 6)] == [
        1.0,
        2.0,
        4.0,
        8.0,
        8.0,
    ]
    assert backoff.delay(3, retry_after=None, draw=0.0) == 2.0
    assert backoff.delay(1, retry_after=30, draw=0.5) == 30.0


def test_retry_after_parses_seconds_and_http_dates() -> None:
    assert parse_retry_after("120", T0) == 120.0
    assert parse_retry_after("Fri, 20 Nov 2026 21:00:30 GMT", T0) == 30.0
    assert parse_retry_after("Fri, 20 Nov 2026 20:00:00 GMT", T0) == 0.0
    assert parse_retry_after("soon", T0) is None
    assert parse_retry_after(None, T0) is None


def test_default_policy_gives_the_design_ladders() -> None:
    policy = load_policy(Path(__file__).parents[2] / "policy" / "default.yaml")
    chain = chain_for(policy, Severity.CRITICAL, "north", default_url="http://gw/hook")
    assert [level.after for level in chain.levels] == [
        timedelta(0),
        timedelta(minutes=15),
        timedelta(minutes=60),
    ]
    assert chain.repeat == timedelta(minutes=30)
    assert chain.levels[0].recipients[0].url == "http://gw/hook"
    high = chain_for(policy, Severity.HIGH, None, default_url=None)
    assert [level.after for level in high.levels] == [
        timedelta(0),
        timedelta(hours=1),
        timedelta(hours=4),
    ]
    medium = chain_for(policy, Severity.MEDIUM, None, default_url=None)
    assert len(medium.levels) == 2
    assert medium.repeat == timedelta(hours=24)


def test_routing_by_area_overrides_only_the_routes_it_names(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    ladder = "{levels: [{route: duty}, {route: senior, after: 1h}]}"
    path.write_text(
        f"""
escalation: {{critical: {ladder}, high: {ladder}, medium: {ladder}}}
routing:
  default: {{duty: [desk], senior: [desk, seniors]}}
  areas: {{south: {{duty: [south-desk, south-desk]}}}}
receivers:
  desk: {{channel: webhook, secret: desk, url: "http://desk/hook"}}
  south-desk: {{channel: webhook, secret: south, url: "http://south/hook"}}
  seniors: {{channel: email, to: [s@example.org]}}
"""
    )
    policy = load_policy(path)
    south = chain_for(policy, Severity.HIGH, "south", default_url=None)
    assert [r.name for r in south.levels[0].recipients] == ["south-desk"]  # told once
    assert [r.name for r in south.levels[1].recipients] == ["desk", "seniors"]
    north = chain_for(policy, Severity.HIGH, "north", default_url=None)
    assert [r.name for r in north.levels[0].recipients] == ["desk"]
    assert policy.secret_names() == {"desk", "south"}


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ("{levels: [{route: duty, after: 5m}]}", "level 1 goes out when the alert is raised"),
        (
            "{levels: [{route: duty}, {route: senior, after: 2h}, {route: senior, after: 1h}]}",
            "later than the one before",
        ),
        ("{levels: [{route: nowhere}]}", "is not in routing.default"),
    ],
)
def test_invalid_policies_are_refused_with_the_reason(
    tmp_path: Path, broken: str, message: str
) -> None:
    ok = "{levels: [{route: duty}]}"
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"""
escalation: {{critical: {broken}, high: {ok}, medium: {ok}}}
routing: {{default: {{duty: [desk], senior: [desk]}}}}
receivers: {{desk: {{channel: webhook, secret: desk}}}}
"""
    )
    with pytest.raises(PolicyError, match=message):
        load_policy(path)
