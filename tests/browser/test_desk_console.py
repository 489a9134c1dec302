"""The desk's console in a real browser: Debian's chromium driven by Playwright, axe-core
for WCAG 2.2 AA, against an in-process desk on the session's broker and PostgreSQL.

The flows of notify's console (tests/browser/test_console.py) that the desk serves:
sign-in with the keyboard, the queue updating without a reload, filters, acknowledging
and resolving (a stand-in for notify applies the commands and publishes the alert's
next view, as notify will), the child page, a reader without buttons, the report page
and the audit search. The tests run in order and share one module's alerts.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from devtools.broker import create_topics
from services.common.auth import Role
from services.common.kafka import Topics
from tests.browser.conftest import axe_violations
from tests.fixtures.broker import produce
from tests.fixtures.desk import DeskServer, desk_settings
from tests.fixtures.fake_notify import FakeNotify
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.stack import wait_until
from tests.fixtures.tokens import TokenSet
from tests.fixtures.views import alert_view, alert_view_record, child_view_record, outcome_record

pytestmark = pytest.mark.e2e

NOW = datetime.now(UTC).replace(microsecond=0)
H = timedelta(hours=1)
D = timedelta(days=1)
CHILD = f"C-DB-{uuid.uuid4().hex[:6]}"
TOKENS = TokenSet.matrix().add("dpo", roles=[Role.AUDIT])
VIEWS = {
    v.alert.alert_id: v
    for v in (
        alert_view(
            "al-br-referral",
            rule="social-care-referral",
            severity="high",
            child_id=CHILD,
            area="north",
            raised_at=NOW - H,
            due_at=NOW - 24 * D,
        ),
        alert_view(
            "al-br-welfare",
            rule="welfare-check",
            severity="critical",
            child_id=CHILD,
            area="north",
            raised_at=NOW - H,
            due_at=NOW - 25 * D,
        ),
        alert_view(
            "al-br-school",
            rule="school-notification",
            severity="medium",
            child_id=CHILD,
            area="north",
            raised_at=NOW - H,
            due_at=NOW - 24 * D,
        ),
    )
}
LATE = alert_view(
    "al-br-late",
    rule="exploitation-action",
    severity="critical",
    child_id=f"{CHILD}-B",
    area="north",
    raised_at=NOW,
    due_at=NOW - 2 * H,
)


@dataclass
class Stack:
    desk: DeskServer
    topics: Topics
    bootstrap: str


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(**{k: f"b{suffix}.{v}" for k, v in Topics().model_dump().items()})
    audit_topic = f"b{suffix}.safeguarding.audit.v1"
    create_topics(kafka_bootstrap, [*topics.model_dump().values(), audit_topic])
    produce(kafka_bootstrap, topics.alert_views, [alert_view_record(v) for v in VIEWS.values()])
    produce(
        kafka_bootstrap,
        topics.child_views,
        [child_view_record(CHILD, events=[("incident.reported", NOW - 25 * D)])],
    )
    produce(
        kafka_bootstrap,
        topics.outcomes,
        [
            outcome_record(
                "al-br-done",
                "met",
                rule="social-care-referral",
                due_at=NOW - 30 * D,
                triggered_at=NOW - 31 * D,
                fulfilled_at=NOW - D,
            )
        ],
    )
    url = postgres.create()
    folder = tmp_path_factory.mktemp("desk-browser")
    settings = desk_settings(
        database_url=url,
        bootstrap=kafka_bootstrap,
        topics=topics,
        audit_topic=audit_topic,
        group=f"browser-{suffix}",
        tokens_file=TOKENS.write(folder / "tokens.yaml"),
        console={"refresh_seconds": 1},
    )
    desk = DeskServer(settings).start()
    notify = FakeNotify(
        kafka_bootstrap, topics.commands, topics.alert_views, {**VIEWS, LATE.alert.alert_id: LATE}
    ).start()
    try:
        assert wait_until(
            lambda: (
                desk.metric("safeguard_desk_projector_records_total", topic="alert_views")
                >= len(VIEWS)
            ),
            timeout=60,
        )
        yield Stack(desk, topics, kafka_bootstrap)
    finally:
        notify.stop()
        desk.stop()
        postgres.drop(url)


def sign_in(browser: Browser, stack: Stack, name: str) -> BrowserContext:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{stack.desk.url}/console")
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    page.get_by_label("Access token").fill(TOKENS.secret(name))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text(f"Signed in as {name}")).to_be_visible()
    page.close()
    return context


@pytest.fixture(scope="module")
def duty(browser: Browser, stack: Stack) -> Iterator[BrowserContext]:
    context = sign_in(browser, stack, "duty-all")
    yield context
    context.close()


def no_serious_violations(page: Page) -> None:
    assert axe_violations(page) == []


def tab_to(page: Page, selector: str, *, presses: int = 40) -> None:
    target = page.locator(selector)
    for _ in range(presses):
        page.keyboard.press("Tab")
        if target.evaluate("element => element === document.activeElement"):
            return
    pytest.fail(f"Tab never reached {selector}")


def test_sign_in_refuses_a_bad_token_and_a_forged_form(browser: Browser, stack: Stack) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{stack.desk.url}/console/sign-in")
    no_serious_violations(page)
    page.get_by_label("Access token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That token is not valid.")
    forged = page.request.post(
        f"{stack.desk.url}/console/sign-in", form={"token": TOKENS.secret("duty-all")}
    )
    assert forged.status == 403
    context.close()


def test_keyboard_only_sign_in_and_sign_out(browser: Browser, stack: Stack) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{stack.desk.url}/console/sign-in")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to main content"
    tab_to(page, "#token")
    page.keyboard.type(TOKENS.secret("duty-south"))
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/console/queue$"))
    expect(page.get_by_text("Signed in as duty-south")).to_be_visible()
    tab_to(page, "#f-severity")
    page.reload()
    tab_to(page, "form[action='/console/sign-out'] button")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    context.close()


def test_a_new_alert_appears_in_the_queue_without_a_reload(
    duty: BrowserContext, stack: Stack
) -> None:
    page = duty.new_page()
    page.goto(f"{stack.desk.url}/console/queue")
    cookie = next(c for c in duty.cookies() if c["name"] == "safeguard_session")
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    expect(page.locator("#queue-live tbody tr", has_text=CHILD)).to_have_count(3)
    page.evaluate("window.__notReloaded = true")
    produce(stack.bootstrap, stack.topics.alert_views, [alert_view_record(LATE)])
    expect(page.locator("#queue-live tbody tr[data-alert-id='al-br-late']")).to_have_count(
        1, timeout=30_000
    )
    assert page.evaluate("window.__notReloaded") is True
    severities = page.locator("#queue-live tbody tr td:first-child").all_inner_texts()
    ranks = {"critical": 0, "high": 1, "medium": 2}
    assert [ranks[s.strip()] for s in severities] == sorted(ranks[s.strip()] for s in severities)
    no_serious_violations(page)
    page.close()


def test_filters_narrow_the_queue(duty: BrowserContext, stack: Stack) -> None:
    page = duty.new_page()
    page.goto(f"{stack.desk.url}/console/queue")
    page.get_by_label("Rule").select_option("social-care-referral")
    page.get_by_role("button", name="Apply filters").click()
    expect(page).to_have_url(re.compile(r"rule=social-care-referral"))
    rows = page.locator("#queue-live tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(CHILD)
    page.close()


def test_acknowledging_with_a_note_by_keyboard_shows_once_applied(
    duty: BrowserContext, stack: Stack
) -> None:
    page = duty.new_page()
    page.goto(f"{stack.desk.url}/console/queue")
    tab_to(page, "#queue-live a[href='/console/alerts/al-br-referral']")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/console/alerts/al-br-referral$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("social-care-referral")
    expect(page.locator(".facts")).to_contain_text("overdue for")
    no_serious_violations(page)
    page.get_by_label("Note (optional)").fill("Called children's social care, referral going now")
    page.get_by_role("button", name="Acknowledge").click()
    expect(page.locator("#ack-by")).to_contain_text("by duty-all")
    expect(page.locator("#ack-by")).to_contain_text("referral going now")
    expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)
    expect(page.locator("tr[data-level='2'] .state")).to_have_text("not needed (acknowledged)")
    page.close()


def test_resolving_by_hand_needs_a_reason_and_stays_apart_from_a_fulfilment(
    duty: BrowserContext, stack: Stack
) -> None:
    page = duty.new_page()
    page.goto(f"{stack.desk.url}/console/alerts/al-br-referral")
    page.get_by_label("Decision recorded not to act").check()
    page.get_by_label("Note", exact=True).fill("Strategy meeting decided: no referral needed")
    page.get_by_role("button", name="Resolve").click()
    expect(page.locator("#closed")).to_contain_text("Closed by hand, not a fulfilment")
    expect(page.locator("#closed-reason")).to_have_text("Decision recorded not to act")
    expect(page.locator("#fulfilled")).to_have_count(0)
    no_serious_violations(page)
    page.close()


def test_the_child_page_shows_the_chronology(duty: BrowserContext, stack: Stack) -> None:
    page = duty.new_page()
    page.goto(f"{stack.desk.url}/console/children/{CHILD}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(CHILD)
    expect(page.locator("#risk-level")).to_be_visible()
    chronology = page.locator("table.chronology tbody")
    expect(chronology).to_contain_text("incident.reported")
    expect(chronology).to_contain_text("social-care-referral breached")
    expect(chronology).to_contain_text("Decision recorded not to act")
    no_serious_violations(page)
    page.close()


def test_a_reader_sees_no_buttons_and_a_forged_post_is_refused(
    browser: Browser, stack: Stack
) -> None:
    context = sign_in(browser, stack, "reader")
    page = context.new_page()
    page.goto(f"{stack.desk.url}/console/alerts/al-br-welfare")
    expect(page.get_by_role("heading", level=1)).to_contain_text("welfare-check")
    expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)
    csrf = page.locator("form[action='/console/sign-out'] input[name=csrf]").get_attribute("value")
    base = f"{stack.desk.url}/console/alerts/al-br-welfare"
    assert (
        page.request.post(f"{base}/acknowledge", form={"csrf": csrf or "", "note": "forged"}).status
        == 403
    )
    assert page.request.post(f"{base}/acknowledge", form={"note": "no token"}).status == 403
    context.close()


def test_the_report_page_shows_the_late_referral_and_is_accessible(
    browser: Browser, stack: Stack
) -> None:
    context = sign_in(browser, stack, "duty-north")
    page = context.new_page()
    period = f"from={(NOW - 60 * D).date()}&to={(NOW + 2 * D).date()}"
    page.goto(f"{stack.desk.url}/console/reports/timeliness?{period}")
    expect(page.get_by_role("heading", name="Timeliness report")).to_be_visible()
    expect(page.get_by_text("1 of 1 over 25 days")).to_be_visible()
    expect(
        page.get_by_role("img", name="Percent met on time by month, social-care-referral")
    ).to_be_visible()
    no_serious_violations(page)
    page.get_by_label("Over").fill("40d")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_text("0 of 1 over 40 days")).to_be_visible()
    context.close()


def test_the_audit_search_page_finds_who_looked_at_the_child(
    browser: Browser, stack: Stack
) -> None:
    context = sign_in(browser, stack, "dpo")
    page = context.new_page()
    page.goto(f"{stack.desk.url}/console")
    expect(page).to_have_url(re.compile(r"/console/audit$"))  # audit only: no queue
    no_serious_violations(page)
    page.get_by_label("Search for").select_option("child_id")
    page.get_by_label("Id or token name").fill(CHILD)
    page.get_by_label("From").fill((NOW - 2 * D).date().isoformat())
    for _ in range(30):  # the desk's own records come back through the projector
        page.get_by_role("button", name="Search").click()
        if page.locator("#audit-results tbody tr", has_text="duty-all").count():
            break
        page.wait_for_timeout(500)
    results = page.locator("#audit-results tbody")
    expect(results).to_contain_text("duty-all")
    expect(results).to_contain_text("child.viewed")
    expect(results).to_contain_text("alert.acknowledged")
    no_serious_violations(page)
    context.close()
