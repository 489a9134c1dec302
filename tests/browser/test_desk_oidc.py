"""Signing in to the desk's console with OpenID Connect, in a real browser: Debian's
chromium driven by Playwright, a real OpenID Provider process (panva's oidc-provider),
an in-process desk on the session's broker and PostgreSQL.

A person clicks "Sign in with ...", signs in on the provider's own page, comes back
signed in under their name, acknowledges an alert with a `by` field forged into the
page's form (ignored: the acknowledgement is theirs), and signs out. The HTTP-level
cases (failures of the provider, throttling, replays) are tests/integration/test_desk_oidc.py.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Browser, expect

from devtools.broker import create_topics, free_port
from services.common.kafka import Topics
from tests.browser.conftest import axe_violations
from tests.fixtures.broker import produce
from tests.fixtures.desk import DeskServer, desk_settings
from tests.fixtures.fake_notify import FakeNotify
from tests.fixtures.oidc_provider import OpenIdProvider
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.stack import wait_until
from tests.fixtures.tokens import TokenSet
from tests.fixtures.views import alert_view, alert_view_record

pytestmark = pytest.mark.e2e

NOW = datetime.now(UTC).replace(microsecond=0)
H = timedelta(hours=1)
VIEWS = {
    v.alert.alert_id: v
    for v in (
        alert_view("al-web-north", area="north", raised_at=NOW - H, due_at=NOW - 2 * H),
        alert_view("al-web-south", area="south", raised_at=NOW - H, due_at=NOW - 2 * H),
    )
}
FORGED = "Chief Constable (spoofed)"


@dataclass
class Stack:
    desk: DeskServer
    provider: OpenIdProvider


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(**{k: f"w{suffix}.{v}" for k, v in Topics().model_dump().items()})
    audit_topic = f"w{suffix}.safeguarding.audit.v1"
    create_topics(kafka_bootstrap, [*topics.model_dump().values(), audit_topic])
    produce(kafka_bootstrap, topics.alert_views, [alert_view_record(v) for v in VIEWS.values()])
    folder = tmp_path_factory.mktemp("desk-oidc")
    port = free_port()
    redirect = f"http://127.0.0.1:{port}/console/sign-in/callback"
    provider = OpenIdProvider.start(folder, redirect_uris=[redirect])
    url = postgres.create()
    settings = desk_settings(
        database_url=url,
        bootstrap=kafka_bootstrap,
        topics=topics,
        audit_topic=audit_topic,
        group=f"web-{suffix}",
        port=port,
        tokens_file=TokenSet.matrix().write(folder / "tokens.yaml"),
        oidc=provider.desk_settings(redirect),
        token_sign_in=False,  # as outside development: the organisation's sign-in only
    )
    desk = DeskServer(settings).start()
    notify = FakeNotify(kafka_bootstrap, topics.commands, topics.alert_views, VIEWS).start()
    try:
        assert wait_until(
            lambda: (
                desk.metric("safeguard_desk_projector_records_total", topic="alert_views")
                >= len(VIEWS)
            ),
            timeout=60,
        )
        yield Stack(desk, provider)
    finally:
        notify.stop()
        desk.stop()
        provider.stop()
        postgres.drop(url)


def test_sign_in_act_with_a_forged_by_and_sign_out(browser: Browser, stack: Stack) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{stack.desk.url}/console")
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    expect(page.get_by_label("Access token")).to_have_count(0)  # no token sign-in here
    assert axe_violations(page) == []
    page.get_by_role("button", name="Sign in with Test Force account").click()
    # The provider's own sign-in page (its origin, its form).
    expect(page).to_have_url(re.compile(rf"^{re.escape(stack.provider.issuer)}/interaction/"))
    page.locator("input[name=login]").fill("alice")
    page.locator("input[name=password]").fill("correct horse battery staple")
    page.locator("button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/console/queue$"))
    expect(page.get_by_text("Signed in as Alice Okafor")).to_be_visible()
    session = next(c for c in context.cookies() if c["name"] == "safeguard_session")
    assert session["httpOnly"]
    assert session["sameSite"] == "Strict"
    expect(page.locator("#queue-live tbody tr[data-alert-id='al-web-north']")).to_have_count(1)
    expect(page.locator("#queue-live tbody tr[data-alert-id='al-web-south']")).to_have_count(0)

    page.goto(f"{stack.desk.url}/console/alerts/al-web-north")
    # A hostile hand adds a `by` to the form: the desk must not believe it.
    page.evaluate(
        """forged => {
            const input = document.createElement('input');
            input.type = 'hidden'; input.name = 'by'; input.value = forged;
            document.querySelector('#ack-form').appendChild(input);
        }""",
        FORGED,
    )
    page.get_by_label("Note (optional)").fill("Calling the school now")
    page.get_by_role("button", name="Acknowledge").click()
    expect(page.locator("#ack-by")).to_contain_text("by Alice Okafor")
    expect(page.locator("#ack-by")).not_to_contain_text(FORGED)
    assert FORGED not in page.content()

    page.goto(f"{stack.desk.url}/console/alerts/al-web-south")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()

    page.goto(f"{stack.desk.url}/console/queue")
    page.locator("form[action='/console/sign-out'] button").click()
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    assert not [c for c in context.cookies() if c["name"] == "safeguard_session"]
    page.goto(f"{stack.desk.url}/console/queue")
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    context.close()
