"""The timeliness report's console page in a real browser: signed in, scoped, accessible.

Its own stack (the session broker, the three services as processes, the scoped tokens
of tests/fixtures/tokens.py); one backdated referral that was 30 days late, in `north`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from devtools.broker import create_topics, free_port
from devtools.stack import DevStack
from tests.browser.conftest import axe_violations
from tests.fixtures.stack import Client
from tests.fixtures.tokens import REFERRER_SOURCE, SENDER_SOURCE, TokenSet
from tests.fixtures.webhook import WebhookReceiver

pytestmark = pytest.mark.e2e

TOKENS = TokenSet.matrix()
NOW = datetime.now(UTC)
PERIOD = f"from={(NOW - timedelta(days=60)).date()}&to={(NOW + timedelta(days=2)).date()}"


def event(event_id: str, type_: str, ago: timedelta, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": REFERRER_SOURCE if type_ == "referral.shared" else SENDER_SOURCE,
        "type": type_,
        "time": (NOW - ago).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": data,
    }


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str, webhook: WebhookReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevStack]:
    folder = tmp_path_factory.mktemp("timeliness-browser")
    suffix = uuid.uuid4().hex[:8]
    with (folder / "services.log").open("wb") as log:
        dev = DevStack(
            bootstrap=kafka_bootstrap,
            data_dir=folder / "data",
            webhook_url=webhook.url,
            ingest_port=free_port(),
            risk_port=free_port(),
            notify_port=free_port(),
            topic_prefix=f"b{suffix}.",
            app_suffix=f"-{suffix}",
            output=log,
            extra_env=TOKENS.stack_env(TOKENS.write(folder / "tokens.yaml")),
        )
        create_topics(kafka_bootstrap, dev.topic_names())
        dev.start()
        try:
            client = Client(TOKENS.secret("sender"))
            for body in (
                event(
                    "tb-inc",
                    "incident.reported",
                    timedelta(days=30),
                    {
                        "incident_id": "INC-TB",
                        "category": "neglect",
                        "area": "north",
                        "children": [{"child_id": "C-TB", "present": True, "age": 9}],
                    },
                ),
                event(
                    "tb-ref",
                    "referral.shared",
                    timedelta(0),
                    {
                        "referral_id": "R-TB",
                        "child_id": "C-TB",
                        "area": "north",
                        "agency": "childrens_social_care",
                        "incident_id": "INC-TB",
                        "contents": ["incident_details", "risk_assessment"],
                    },
                ),
            ):
                code, answer, _ = client.request("POST", f"{dev.url('ingest')}/v1/events", body)
                assert code == 202, answer
            yield dev
        finally:
            dev.stop()


def open_report(browser: Browser, stack: DevStack, name: str) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{stack.url('notify')}/console/reports/timeliness?{PERIOD}")
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))  # signed out: sign in first
    page.get_by_label("Access token").fill(TOKENS.secret(name))
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/console/queue$"))
    page.goto(f"{stack.url('notify')}/console/reports/timeliness?{PERIOD}")
    return page


def test_the_report_page_shows_the_late_referral_and_is_accessible(
    browser: Browser, stack: DevStack
) -> None:
    page = open_report(browser, stack, "duty-north")
    for _ in range(60):  # the outcome reaches notify's table a moment after the referral
        if page.get_by_text("1 of 1 over 25 days").count():
            break
        page.wait_for_timeout(500)
        page.reload()
    expect(page.get_by_role("heading", name="Timeliness report")).to_be_visible()
    expect(page.get_by_text("1 of 1 over 25 days")).to_be_visible()
    chart = page.get_by_role("img", name="Percent met on time by month, social-care-referral")
    expect(chart).to_be_visible()
    assert axe_violations(page) == []

    page.get_by_label("Over").fill("40d")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_text("0 of 1 over 40 days")).to_be_visible()
    page.context.close()


def test_another_area_sees_none_of_it(browser: Browser, stack: DevStack) -> None:
    page = open_report(browser, stack, "duty-south")
    expect(page.get_by_text("No obligations were due in this period.")).to_be_visible()
    page.context.close()
