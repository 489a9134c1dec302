"""The assurance pack's console page in a real browser: a strategic lead signs in, sees
their area's pack, downloads the PDF and the figures; the page and the standalone
document pass axe-core (WCAG 2.2 AA); a lead of another area is refused.

The known set and its desk are tests/integration/test_assurance_pack.py's (its `env`
fixture, the desk's clock fixed on 2 October 2026).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from tests.browser.conftest import axe_violations
from tests.integration.test_assurance_pack import TOKENS, Env, env  # noqa: F401 - the fixture

pytestmark = pytest.mark.e2e


def sign_in(browser: Browser, desk_url: str, name: str) -> BrowserContext:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.goto(f"{desk_url}/console")
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    page.get_by_label("Access token").fill(TOKENS.secret(name))
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/console/reports/pack$"))
    expect(page.get_by_text(f"Signed in as {name}")).to_be_visible()
    page.close()
    return context


@pytest.fixture(scope="module")
def lead(browser: Browser, env: Env) -> Iterator[BrowserContext]:  # noqa: F811 - the fixture
    context = sign_in(browser, env.desk.url, "lead-north")
    yield context
    context.close()


def test_a_lead_sees_their_areas_pack_and_downloads_it(
    lead: BrowserContext,
    env: Env,  # noqa: F811 - the fixture
) -> None:
    page = lead.new_page()
    page.goto(f"{env.desk.url}/console/reports/pack")
    page.get_by_label("Period").fill("2026-Q3")
    page.get_by_role("button", name="Make the pack").click()
    heading = page.get_by_role("heading", level=1, name=re.compile("Area north: 2026-Q3"))
    expect(heading).to_be_visible()
    expect(page.get_by_role("heading", name="1. Timeliness per rule")).to_be_visible()
    expect(page.get_by_role("row", name=re.compile("social-care-referral worse"))).to_be_visible()
    assert axe_violations(page) == []
    sha = page.locator(".downloads code").inner_text()
    with page.expect_download() as pdf:
        page.get_by_role("link", name="PDF").click()
    assert pdf.value.suggested_filename == "safeguard-assurance-2026-Q3-north.pdf"
    href = page.get_by_role("link", name="figures (JSON)").get_attribute("href")
    figures = page.request.get(f"{env.desk.url}{href}")
    assert hashlib.sha256(figures.body()).hexdigest() == sha
    page.close()


def test_another_areas_pack_is_refused(
    lead: BrowserContext,
    env: Env,  # noqa: F811 - the fixture
) -> None:
    page = lead.new_page()
    answer = page.goto(f"{env.desk.url}/console/reports/pack?period=2026-Q3&area=south")
    assert answer is not None
    assert answer.status == 403
    page.close()


def test_the_standalone_document_is_accessible(
    browser: Browser,
    env: Env,  # noqa: F811 - the fixture
) -> None:
    html = env.pack("lead-all", format="html").text
    page = browser.new_page()
    page.set_content(html)
    assert axe_violations(page) == []
    # Every chart has a text alternative, every table its header cells.
    assert page.locator("svg:not([aria-label])").count() == 0
    assert page.locator("table:not(:has(th))").count() == 0
    page.close()
