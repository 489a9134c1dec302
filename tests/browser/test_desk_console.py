"""The desk's console in a real browser: Debian's chromium driven by Playwright, axe-core
for WCAG 2.2 AA, against an in-process desk on the session's broker and PostgreSQL, its
clock fixed at 3 a.m. (tests/fixtures/night.py: a data set with a known urgency order).

The night shift: the queue in urgency order with countdowns and local times (UTC on
hover), grouped by child and by incident with one acknowledgement for a group, a
message's `?act=acknowledge` link through sign-in and from another site, guidance and
who is on duty, the handover for a chosen window (and on paper), the child page's risk
level beside an open critical breach, and every page at 390 px without sideways
scrolling and without an axe violation, light and dark. Also the earlier flows: sign-in
with the keyboard, a reader without buttons, resolving with a reason, the report and the
audit search. The tests run in order and share one module's alerts.

`UPDATE_SCREENSHOTS=1` redraws docs/screenshots/desk-*.png (desktop and phone, light
and dark).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from devtools.broker import create_topics
from schemas.views import AlertStatus
from services.common.auth import Role
from services.common.clock import FakeClock
from services.common.kafka import Topics
from tests.browser.conftest import axe_violations
from tests.fixtures.broker import produce
from tests.fixtures.desk import DeskServer, desk_settings
from tests.fixtures.fake_notify import FakeNotify
from tests.fixtures.night import (
    BY_ID,
    CHILD_A,
    CHILD_B,
    MIN,
    NOW,
    ORDER,
    VIEWS,
    D,
    H,
    night_policy,
)
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.stack import wait_until
from tests.fixtures.tokens import TokenSet
from tests.fixtures.views import alert_view_record, child_view_record, outcome_record

pytestmark = pytest.mark.e2e

TOKENS = TokenSet.matrix().add("dpo", roles=[Role.AUDIT])
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
Scheme = Literal["light", "dark"]


@dataclass
class Stack:
    desk: DeskServer
    clock: FakeClock
    topics: Topics
    bootstrap: str
    notify: FakeNotify


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(**{k: f"b{suffix}.{v}" for k, v in Topics().model_dump().items()})
    audit_topic = f"b{suffix}.safeguarding.audit.v1"
    create_topics(kafka_bootstrap, [*topics.model_dump().values(), audit_topic])
    produce(kafka_bootstrap, topics.alert_views, [alert_view_record(v) for v in VIEWS])
    produce(
        kafka_bootstrap,
        topics.child_views,
        [
            child_view_record(
                CHILD_A,
                level="low",
                score=20,
                events=[("custody.child_detained", NOW - 5 * H)],
                obligations=[
                    {
                        "rule": "child-in-custody",
                        "severity": "critical",
                        "status": "overdue",
                        "due_at": NOW - 10 * MIN,
                        "breached": True,
                    }
                ],
            )
        ],
    )
    produce(
        kafka_bootstrap,
        topics.outcomes,
        [
            outcome_record(
                "al-n-done",
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
    clock = FakeClock(NOW)
    settings = desk_settings(
        database_url=url,
        bootstrap=kafka_bootstrap,
        topics=topics,
        audit_topic=audit_topic,
        group=f"browser-{suffix}",
        tokens_file=TOKENS.write(folder / "tokens.yaml"),
        policy_file=night_policy(folder / "policy.yaml"),
        console={"refresh_seconds": 1},
    )
    desk = DeskServer(settings, clock=clock).start()
    notify = FakeNotify(kafka_bootstrap, topics.commands, topics.alert_views, BY_ID).start()
    try:
        assert wait_until(
            lambda: (
                desk.metric("safeguard_desk_projector_records_total", topic="alert_views")
                >= len(VIEWS)
            ),
            timeout=60,
        )
        yield Stack(desk, clock, topics, kafka_bootstrap, notify)
    finally:
        notify.stop()
        desk.stop()
        postgres.drop(url)


def sign_in(browser: Browser, stack: Stack, name: str, **options: object) -> BrowserContext:
    options.setdefault("viewport", DESKTOP)
    context = browser.new_context(**options)  # type: ignore[arg-type]
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


def tab_to(page: Page, selector: str, *, presses: int = 60) -> None:
    target = page.locator(selector)
    for _ in range(presses):
        page.keyboard.press("Tab")
        if target.evaluate("element => element === document.activeElement"):
            return
    pytest.fail(f"Tab never reached {selector}")


def queue_ids(page: Page) -> list[str]:
    rows = page.locator("#queue-table tbody tr[data-alert-id]")
    return [rows.nth(i).get_attribute("data-alert-id") or "" for i in range(rows.count())]


def screenshot(page: Page, name: str) -> None:
    if os.environ.get("UPDATE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"desk-{name}.png"), full_page=name.endswith("full"))


# -- signing in ----------------------------------------------------------------------------


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


# -- the queue ---------------------------------------------------------------------------


def test_the_queue_is_in_urgency_order_with_countdowns_and_local_times(
    duty: BrowserContext, stack: Stack
) -> None:
    page = duty.new_page()
    page.goto(f"{stack.desk.url}/console/queue")
    expect(page.locator("#queue-table tbody tr[data-alert-id]")).to_have_count(len(ORDER))
    assert queue_ids(page) == ORDER
    custody = page.locator("tr[data-alert-id='al-n-custody']")
    # The countdown to the next escalation, whom it reaches, local time with UTC on hover.
    next_cell = custody.locator("td.next time")
    expect(next_cell).to_have_text("Level 2 (duty-desk, senior-managers) in 5 min")
    assert next_cell.get_attribute("datetime") == "2026-07-03T02:05:00Z"
    assert next_cell.get_attribute("title") == "Fri 3 Jul 2026 03:05 BST (2026-07-03 02:05 UTC)"
    late = custody.locator("td.late time")
    expect(late).to_have_text("overdue 10 min")
    assert late.get_attribute("title") == "due Fri 3 Jul 2026 02:50 BST (2026-07-03 01:50 UTC)"
    # A pattern alert has no deadline: it says its age, not "overdue".
    expect(page.locator("tr[data-alert-id='al-n-missing'] td.late")).to_have_text(
        "no deadline (a pattern), raised 5 min ago"
    )
    expect(page.locator("tr[data-alert-id='al-n-forensic'] td.next")).to_contain_text(
        "Level 3 again (duty-desk, strategic-lead) in 40 min"
    )
    # The status line says when the list was last fetched, in local time.
    expect(page.locator("#queue-status")).to_contain_text(
        re.compile(r"Updated (Fri 3 Jul 2026 03:00 BST|03:0\d:\d\d BST)")
    )
    # Who is on duty now in north: the night shift, and a calendar the desk cannot read.
    duty_table = page.locator("#on-duty table.duty", has_text="north")
    expect(duty_table.locator("tr", has_text="duty-manager")).to_contain_text(
        "north-night-inspector"
    )
    expect(duty_table.locator("tr", has_text="duty-manager")).to_contain_text(
        "until Fri 3 Jul 2026 07:00 BST"
    )
    expect(duty_table.locator("tr", has_text="senior-manager")).to_contain_text(
        "whoever the rota calendar names now"
    )
    no_serious_violations(page)
    page.close()


@pytest.mark.skipif(
    not os.environ.get("UPDATE_SCREENSHOTS"), reason="redraws the README's pictures"
)
def test_redraw_the_screenshots(browser: Browser, stack: Stack) -> None:
    for scheme in ("light", "dark"):
        for form, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            context = sign_in(browser, stack, "duty-all", viewport=viewport, color_scheme=scheme)
            page = context.new_page()
            pages = (
                ("queue", "/console/queue"),
                ("queue-by-incident", "/console/queue?group=incident"),
                ("alert", "/console/alerts/al-n-custody"),
                ("handover", "/console/handover"),
                ("child", f"/console/children/{CHILD_A}"),
            )
            for name, path in pages:
                page.goto(f"{stack.desk.url}{path}")
                for group in page.locator("details.group").all()[:1]:
                    group.evaluate("element => { element.open = true; }")
                screenshot(page, f"{name}-{form}-{scheme}")
            context.close()


def test_a_new_alert_appears_in_its_place_without_a_reload(
    duty: BrowserContext, stack: Stack
) -> None:
    page = duty.new_page()
    page.goto(f"{stack.desk.url}/console/queue?severity=critical")
    page.evaluate("window.__notReloaded = true")
    late = BY_ID["al-n-custody"].model_copy(
        deep=True,
        update={"alert": BY_ID["al-n-custody"].alert.model_copy(update={"alert_id": "al-n-new"})},
    )
    produce(stack.bootstrap, stack.topics.alert_views, [alert_view_record(late)])
    expect(page.locator("#queue-table tr[data-alert-id='al-n-new']")).to_have_count(
        1, timeout=30_000
    )
    assert page.evaluate("window.__notReloaded") is True
    # The same urgency as al-n-custody: ties go by id.
    assert queue_ids(page)[:2] == ["al-n-custody", "al-n-new"]
    closed = late.model_copy(
        update={"status": AlertStatus.RESOLVED, "revision": 2, "resolved_at": NOW}
    )
    produce(stack.bootstrap, stack.topics.alert_views, [alert_view_record(closed)])
    expect(page.locator("#queue-table tr[data-alert-id='al-n-new']")).to_have_count(
        0, timeout=30_000
    )
    page.close()


def test_filters_narrow_the_queue_and_a_bad_one_is_named(
    duty: BrowserContext, stack: Stack
) -> None:
    page = duty.new_page()
    page.goto(f"{stack.desk.url}/console/queue")
    page.get_by_label("Rule").select_option("social-care-referral")
    page.get_by_role("button", name="Apply filters").click()
    expect(page).to_have_url(re.compile(r"rule=social-care-referral"))
    rows = page.locator("#queue-live tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(CHILD_A)
    answer = page.goto(f"{stack.desk.url}/console/queue?status=resolved")
    assert answer is not None
    assert answer.status == 422
    expect(page.get_by_role("alert")).to_contain_text("Unknown status")
    page.close()


# -- messages' links ---------------------------------------------------------------------


def test_a_message_link_opens_the_alert_with_acknowledge_focused_after_sign_in(
    browser: Browser, stack: Stack
) -> None:
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.goto(f"{stack.desk.url}/console/alerts/al-n-missing?act=acknowledge")
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    page.get_by_label("Access token").fill(TOKENS.secret("duty-north"))
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/console/alerts/al-n-missing\?act=acknowledge$"))
    expect(page.get_by_role("button", name="Acknowledge")).to_be_focused()
    # Visible without scrolling on a phone: what it is, what happens next, and the button.
    expect(page.locator("#next-step")).to_be_in_viewport()
    expect(page.get_by_role("button", name="Acknowledge")).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page.locator("#ack-by")).to_contain_text("by duty-north")
    context.close()


def test_a_link_followed_from_another_site_keeps_the_session(
    duty: BrowserContext, stack: Stack
) -> None:
    page = duty.new_page()
    # about:blank of a new page is another site: the session cookie (SameSite=Strict) is
    # not sent on the navigation itself, so the desk reloads the page from its own site.
    link = f"{stack.desk.url}/console/alerts/al-n-school?act=acknowledge"
    page.set_content(f'<a id="from-mail" href="{link}">Acknowledge</a>')
    page.click("#from-mail")
    expect(page).to_have_url(link)
    expect(page.get_by_role("button", name="Acknowledge")).to_be_focused()
    expect(page.get_by_text("Signed in as duty-all")).to_be_visible()
    page.close()


# -- the alert page ----------------------------------------------------------------------


def test_the_alert_page_says_what_happens_next_and_what_to_do(
    duty: BrowserContext, stack: Stack
) -> None:
    page = duty.new_page()
    page.goto(f"{stack.desk.url}/console/alerts/al-n-custody")
    expect(page.get_by_role("heading", level=1)).to_contain_text("child-in-custody")
    expect(page.locator("#next-step")).to_have_text(
        "If nobody acts: Escalates to level 2 (duty-desk, senior-managers) "
        "in 5 min, at Fri 3 Jul 2026 03:05 BST, unless acknowledged."
    )
    expect(page.locator("#overdue")).to_have_text("due Fri 3 Jul 2026 02:50 BST; overdue 10 min")
    expect(page.locator("#guidance-action")).to_contain_text("Review the child's detention now")
    expect(page.locator("#guidance-call")).to_contain_text("Custody inspector")
    expect(page.locator("#guidance-basis")).to_contain_text("PACE 1984 s.38(6)")
    # Countdowns count down between refreshes, against the server's clock.
    page.clock.install()
    page.reload()
    page.clock.fast_forward("02:00")
    page.clock.run_for(16_000)
    expect(page.locator("#next-step .countdown")).to_have_text("in 2 min")
    no_serious_violations(page)
    page.close()


def test_a_closure_by_hand_reads_as_a_sentence(duty: BrowserContext, stack: Stack) -> None:
    page = duty.new_page()
    page.goto(f"{stack.desk.url}/console/alerts/al-n-closed")
    expect(page.locator("#closed")).to_have_text(
        "Closed by hand, not a fulfilment: recorded in another system. "
        "By duty-day, Fri 3 Jul 2026 02:00 BST. "
        "Note: “Done by the local authority's service”"
    )
    expect(page.locator("#fulfilled")).to_have_count(0)
    expect(page.locator("#overdue")).to_contain_text("was overdue 5 h when resolved")
    expect(page.locator("#next-step")).to_have_count(0)
    page.close()


def test_resolving_by_hand_needs_a_reason_and_stays_apart_from_a_fulfilment(
    duty: BrowserContext, stack: Stack
) -> None:
    page = duty.new_page()
    page.goto(f"{stack.desk.url}/console/alerts/al-n-forensic")
    page.get_by_text("Resolve by hand").click()
    page.get_by_label("Decision recorded not to act").check()
    page.get_by_label("Note", exact=True).fill("Strategy meeting decided: no examination")
    page.get_by_role("button", name="Resolve").click()
    expect(page.locator("#closed")).to_contain_text("Closed by hand, not a fulfilment")
    expect(page.locator("#closed-reason")).to_have_text("a decision not to act was recorded")
    expect(page.locator("#fulfilled")).to_have_count(0)
    no_serious_violations(page)
    page.close()


def test_a_reader_sees_no_buttons_and_a_forged_post_is_refused(
    browser: Browser, stack: Stack
) -> None:
    context = sign_in(browser, stack, "reader")
    page = context.new_page()
    page.goto(f"{stack.desk.url}/console/alerts/al-n-welfare?act=acknowledge")
    expect(page.get_by_role("heading", level=1)).to_contain_text("welfare-check")
    expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)
    expect(page.locator("#ack-not-needed")).to_contain_text("may not acknowledge")
    csrf = page.locator("form[action='/console/sign-out'] input[name=csrf]").get_attribute("value")
    base = f"{stack.desk.url}/console/alerts/al-n-welfare"
    assert (
        page.request.post(f"{base}/acknowledge", form={"csrf": csrf or "", "note": "forged"}).status
        == 403
    )
    assert page.request.post(f"{base}/acknowledge", form={"note": "no token"}).status == 403
    group = page.request.post(
        f"{stack.desk.url}/console/queue/acknowledge",
        form={
            "csrf": csrf or "",
            "group": "child",
            "key": f"child:{CHILD_B}",
            "alert_id": "al-n-welfare",
        },
    )
    assert group.status == 403
    context.close()


# -- groups ------------------------------------------------------------------------------


def test_grouped_by_incident_one_event_s_alerts_are_together(
    duty: BrowserContext, stack: Stack
) -> None:
    page = duty.new_page()
    page.goto(f"{stack.desk.url}/console/queue")
    page.get_by_label("Show").select_option("incident")
    page.get_by_role("button", name="Apply filters").click()
    incident = page.locator("details.group", has_text="event ev-inc-a")
    summary = incident.locator("summary")
    expect(summary).to_contain_text("critical")
    expect(summary).to_contain_text("4 alerts: 4 open, 0 acknowledged")
    expect(summary).to_contain_text("next: Level 2 (duty-desk, senior-managers) in 5 min")
    summary.click()
    expect(incident.locator("tr[data-alert-id]")).to_have_count(4)
    expect(incident).to_contain_text(f"About child {CHILD_A}, child {CHILD_B}.")
    # The first group holds the most urgent alert of the queue.
    expect(page.locator("details.group").first).to_have_attribute(
        "data-group", re.compile("ev-inc-a")
    )
    no_serious_violations(page)
    page.close()


def test_a_group_is_acknowledged_with_one_note_and_stays_open_while_it_refreshes(
    duty: BrowserContext, stack: Stack
) -> None:
    page = duty.new_page()
    page.goto(f"{stack.desk.url}/console/queue?group=child")
    group = page.locator("details.group", has_text=f"child {CHILD_A}")
    summary = group.locator("summary")
    expect(summary).to_contain_text("4 alerts: 4 open")
    expect(summary.locator(".badge")).to_have_text("critical")
    summary.click()
    # Once the person looks elsewhere the rows refresh, and the group stays open.
    page.locator("h1").click()
    group.evaluate("element => { element.__before = true; }")
    page.wait_for_function(
        f"() => !document.querySelector('details[data-group=\"child:{CHILD_A}\"]').__before"
    )
    expect(group).to_have_attribute("open", "")
    group.get_by_label("One note for all 4 (optional)").fill("Custody inspector called")
    group.get_by_role("button", name="Acknowledge all 4 open").click()
    expect(page.locator("#flash")).to_have_text("Acknowledged 4 alerts.")
    expect(page).to_have_url(re.compile(r"group=child"))
    for alert_id in ("al-n-custody", "al-n-refused", "al-n-referral", "al-n-school"):
        assert stack.notify.views[alert_id].status.value == "acknowledged"
        assert stack.notify.views[alert_id].acknowledgement.note == "Custody inspector called"  # type: ignore[union-attr]
    expect(
        page.locator("details.group", has_text=f"child {CHILD_A}").locator("summary")
    ).to_contain_text("0 open, 4 acknowledged")
    page.close()


# -- the handover ----------------------------------------------------------------------------


def test_the_handover_shows_a_chosen_window_and_prints(duty: BrowserContext, stack: Stack) -> None:
    stack.clock.advance(MIN)  # the acknowledgements above were at 03:00 BST
    page = duty.new_page()
    page.goto(f"{stack.desk.url}/console/queue")
    page.get_by_role("link", name="Handover").click()
    expect(page).to_have_url(re.compile(r"/console/handover$"))
    expect(page.locator("h1")).to_have_text("Handover")
    expect(page.locator(".lede")).to_contain_text(
        "from Thu 2 Jul 2026 15:01 BST to Fri 3 Jul 2026 03:01 BST"
    )
    raised = page.locator("#raised tbody tr[data-alert-id]")
    expect(raised).to_have_count(9)  # all but the forensic backlog, with al-n-new
    acked = page.locator("#acknowledged tbody")
    expect(acked.locator("tr", has_text="Custody inspector called")).to_have_count(4)
    expect(acked).to_contain_text("Team on the way")
    resolved = page.locator("#resolved tbody")
    expect(resolved).to_contain_text(
        "Closed by hand, not a fulfilment: recorded in another system."
    )
    expect(resolved).to_contain_text("a decision not to act was recorded")
    still_open = page.locator("#still-open tbody")
    expect(still_open.locator("tr[data-alert-id='al-n-welfare']")).to_contain_text(
        "overdue 3 h 1 min"
    )
    expect(still_open.locator("tr[data-alert-id='al-n-closed']")).to_have_count(0)
    no_serious_violations(page)
    # A window that holds only the school notification's raise (01:00 BST).
    page.get_by_label("From (Europe/London)").fill("2026-07-03T00:55")
    page.get_by_label("To, not included").fill("2026-07-03T01:05")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"from=2026-07-03T00%3A55&to=2026-07-03T01%3A05"))
    expect(page.locator("#raised tbody tr[data-alert-id]")).to_have_count(1)
    expect(page.locator("#raised tbody")).to_contain_text("school-notification")
    expect(page.locator("#acknowledged")).to_contain_text("None.")
    expect(page.locator("#handover-counts")).to_contain_text("1 raised")
    # On paper: the shift without the console's controls.
    page.emulate_media(media="print")
    expect(page.locator("header.top")).to_be_hidden()
    expect(page.locator("form.filters")).to_be_hidden()
    expect(page.locator("#raised")).to_be_visible()
    page.emulate_media(media="screen")
    bad = page.goto(f"{stack.desk.url}/console/handover?from=2026-07-01T00:00&to=2026-07-09T00:00")
    assert bad is not None
    assert bad.status == 422
    expect(page.get_by_role("alert")).to_contain_text("at most 7 days")
    page.close()


# -- the child page --------------------------------------------------------------------------


def test_the_child_page_s_risk_level_is_consistent_with_an_open_critical_breach(
    duty: BrowserContext, stack: Stack
) -> None:
    page = duty.new_page()
    page.goto(f"{stack.desk.url}/console/children/{CHILD_A}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(CHILD_A)
    expect(page.locator("#risk-level .badge")).to_have_text("high")
    expect(page.locator("#risk-why")).to_have_text(
        "At least high while open breaches of child-in-custody (critical), "
        "custody-accommodation-refused (critical) are unmet; "
        "the risk score alone says low (score 20)."
    )
    chronology = page.locator("table.chronology tbody")
    expect(chronology).to_contain_text("custody.child_detained")
    expect(chronology).to_contain_text("child-in-custody breached")
    no_serious_violations(page)
    page = duty.new_page()
    page.goto(f"{stack.desk.url}/console/children/{CHILD_B}")
    expect(page.locator("table.chronology tbody")).to_contain_text(
        "return-interview: closed by hand by duty-day, not a fulfilment: recorded in another system"
    )
    page.close()


# -- the report and the audit search -----------------------------------------------------------


def test_the_report_page_is_in_the_navigation_and_accessible(
    browser: Browser, stack: Stack
) -> None:
    context = sign_in(browser, stack, "duty-north")
    page = context.new_page()
    page.goto(f"{stack.desk.url}/console/queue")
    page.get_by_role("link", name="Timeliness report").click()
    period = f"from={(NOW - 60 * D).date()}&to={(NOW + 2 * D).date()}"
    page.goto(f"{stack.desk.url}/console/reports/timeliness?{period}")
    expect(page.get_by_role("heading", name="Timeliness report")).to_be_visible()
    expect(page.get_by_text("1 of 1 over 25 days")).to_be_visible()
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
    page.get_by_label("Id or token name").fill(CHILD_A)
    page.get_by_label("From").fill((NOW - 2 * D).date().isoformat())
    for _ in range(30):  # the desk's own records come back through the projector
        page.get_by_role("button", name="Search").click()
        if page.locator("#audit-results tbody tr", has_text="duty-all").count():
            break
        page.wait_for_timeout(500)
    results = page.locator("#audit-results tbody")
    expect(results).to_contain_text("duty-all")
    expect(results).to_contain_text("child.viewed")
    no_serious_violations(page)
    context.close()


# -- phones and night ------------------------------------------------------------------------


PAGES = {
    "queue": "/console/queue",
    "queue-by-child": "/console/queue?group=child",
    "alert": "/console/alerts/al-n-welfare",
    "alert-resolved": "/console/alerts/al-n-closed",
    "child": f"/console/children/{CHILD_A}",
    "handover": "/console/handover",
    "report": f"/console/reports/timeliness?from={(NOW - 200 * D).date()}&to={(NOW + D).date()}",
    "audit": "/console/audit?kind=child_id&value=C-NA",
    "not-found": "/console/alerts/al-no-such-alert",
}


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_fits_a_phone_and_passes_axe_in_both_schemes(
    browser: Browser, stack: Stack, scheme: Scheme
) -> None:
    context = sign_in(browser, stack, "duty-all", viewport=PHONE, color_scheme=scheme)
    auditor = sign_in(browser, stack, "dpo", viewport=PHONE, color_scheme=scheme)
    measured = {}
    for name, path in PAGES.items():
        page = (auditor if name == "audit" else context).new_page()
        page.goto(f"{stack.desk.url}{path}")
        for group in page.locator("details.group").all():
            group.evaluate("element => { element.open = true; }")
        width = page.evaluate("document.documentElement.scrollWidth")
        measured[name] = width
        assert page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches") is (
            scheme == "dark"
        )
        assert axe_violations(page) == [], name
        # Touch targets: every button, field and standalone link at least 44 px high.
        small = page.evaluate(
            """() => [...document.querySelectorAll(
                 'main button, main select, main input:not([type=hidden]):not([type=radio]),'
                 + ' main textarea, header a, header button, main summary, td a, .paging a')]
               .filter(e => e.offsetParent !== null && e.getBoundingClientRect().height < 44)
               .map(e => e.outerHTML.slice(0, 80))"""
        )
        assert small == [], (name, small)
        page.close()
    assert {n: w for n, w in measured.items() if w > PHONE["width"]} == {}
    context.close()
    auditor.close()
