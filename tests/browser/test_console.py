"""The duty-manager console in a real browser, on the real stack.

One stack for the module: ingest, risk and notify as processes on the session broker, a
real webhook receiver and SMTP server, scoped tokens (tests/fixtures/tokens.py), and a
policy whose level 2 comes 25 s after the raise so "acknowledging stops level 2" is
seen within the test. The tests run in order and share the alerts of one backdated
incident: the queue shows it without a reload, the alert page acknowledges it, resolves
it with a reason, the child page shows the chronology.

`UPDATE_SCREENSHOTS=1` writes the queue, alert and child pages to docs/screenshots/.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml
from playwright.sync_api import Browser, BrowserContext, Page, expect

from devtools.broker import create_topics, free_port
from devtools.stack import DEFAULT_POLICY, DevStack
from services.common.auth import Role
from tests.browser.conftest import axe_violations
from tests.fixtures.smtp import SmtpInbox
from tests.fixtures.stack import Client, wait_until
from tests.fixtures.tokens import DECIDER_SOURCE, REFERRER_SOURCE, SENDER_SOURCE, TokenSet
from tests.fixtures.webhook import WebhookReceiver

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"
LEVEL_2_AFTER = 25
ACK_TIMEOUT = 45
CHILD = f"C-CON-{uuid.uuid4().hex[:6]}"
DUTY_EMAIL = "duty-managers@example.org"


def policy_file(folder: Path) -> Path:
    """The default policy with short waits, and email beside the webhook at level 1."""
    policy = yaml.safe_load(DEFAULT_POLICY.read_text())
    for ladder in policy["escalation"].values():
        for number, level in enumerate(ladder["levels"][1:], start=1):
            level["after"] = f"{LEVEL_2_AFTER * number}s"
        ladder["repeat"] = "1h"
    policy["group_window"] = "2s"
    # An acknowledgement of a high alert holds 45 s here (4 h by default).
    policy["escalation"]["high"]["ack_timeout"] = f"{ACK_TIMEOUT}s"
    policy["routing"]["default"]["duty-manager"] = ["duty-desk", "duty-email"]
    policy["receivers"]["duty-email"] = {"channel": "email", "to": [DUTY_EMAIL]}
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


@pytest.fixture(scope="module")
def tokens() -> TokenSet:
    return TokenSet.matrix()


@pytest.fixture(scope="module")
def console(
    kafka_bootstrap: str,
    webhook: WebhookReceiver,
    smtp_inbox: SmtpInbox,
    tokens: TokenSet,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DevStack]:
    folder = tmp_path_factory.mktemp("console")
    token_file = tokens.write(folder / "tokens.yaml")
    suffix = uuid.uuid4().hex[:8]
    log_path = folder / "services.log"
    with log_path.open("wb") as log:
        stack = DevStack(
            bootstrap=kafka_bootstrap,
            data_dir=folder / "data",
            webhook_url=webhook.url,
            ingest_port=free_port(),
            risk_port=free_port(),
            notify_port=free_port(),
            topic_prefix=f"c{suffix}.",
            app_suffix=f"-{suffix}",
            policy_file=policy_file(folder),
            smtp_port=smtp_inbox.port,
            group_window_seconds=None,  # the policy's 2 s: alerts of one event grouped
            log_json=True,
            output=log,
            extra_env={
                **tokens.stack_env(token_file),
                "NOTIFY_CONSOLE__REFRESH_SECONDS": "1",
                "NOTIFY_SMTP__SENDER": "safeguard@example.org",
            },
        )
        create_topics(kafka_bootstrap, stack.topic_names())
        try:
            stack.start()
            yield stack
        except Exception:
            log.flush()
            print(log_path.read_text()[-20000:])  # noqa: T201 - shown only when start fails
            raise
        finally:
            stack.stop()


def sign_in(browser: Browser, stack: DevStack, tokens: TokenSet, name: str) -> BrowserContext:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{stack.url('notify')}/console")
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    page.get_by_label("Access token").fill(tokens.secret(name))
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/console/queue$"))
    expect(page.get_by_text(f"Signed in as {name}")).to_be_visible()
    page.close()
    return context


@pytest.fixture(scope="module")
def duty(browser: Browser, console: DevStack, tokens: TokenSet) -> Iterator[BrowserContext]:
    context = sign_in(browser, console, tokens, "duty-all")
    yield context
    context.close()


def no_serious_violations(page: Page) -> None:
    assert axe_violations(page) == []


def screenshot(page: Page, name: str) -> None:
    if os.environ.get("UPDATE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def ago(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def incident(days_ago: int, child: str = CHILD) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"storm-{child}",
        "source": SENDER_SOURCE,
        "type": "incident.reported",
        "time": ago(days_ago),
        "data": {
            "incident_id": f"INC-{child}",
            "category": "domestic_abuse",
            "area": "north",
            "children": [{"child_id": child, "present": True, "age": 8}],
        },
    }


def referral(days_ago: int, child: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"ref-{child}",
        "source": REFERRER_SOURCE,
        "type": "referral.shared",
        "time": ago(days_ago),
        "data": {
            "referral_id": f"R-{child}",
            "child_id": child,
            "area": "north",
            "agency": "childrens_social_care",
            "incident_id": f"INC-{child}",
            "contents": ["incident_details", "risk_assessment"],
        },
    }


def decision(days_ago: int, child: str) -> dict[str, Any]:
    """Children's social care's decision on `referral`'s referral, the same day."""
    return {
        "specversion": "1.0",
        "id": f"dec-{child}",
        "source": DECIDER_SOURCE,
        "type": "referral.decided",
        "time": ago(days_ago),
        "data": {
            "referral_id": f"R-{child}",
            "child_id": child,
            "area": "north",
            "decision": "early_help",
        },
    }


def api(stack: DevStack, tokens: TokenSet, path: str) -> Any:
    client = Client(tokens.secret("duty-all"))
    code, body, _ = client.request("GET", f"{stack.url('notify')}{path}")
    assert code == 200, body
    return body


def alert_of(stack: DevStack, tokens: TokenSet, rule: str) -> dict[str, Any]:
    listed = api(stack, tokens, "/v1/alerts")["alerts"]
    return next(a for a in listed if a["subject_id"] == CHILD and a["rule"] == rule)


def text_of(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    return str(body.get_content()) if body is not None else ""


# -- the flows, in order ---------------------------------------------------------------


def test_sign_in_refuses_a_bad_token_and_a_form_without_its_csrf_value(
    browser: Browser, console: DevStack
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{console.url('notify')}/console/sign-in")
    no_serious_violations(page)
    page.get_by_label("Access token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That token is not valid.")
    # A sign-in POST from elsewhere (no double-submit value) is refused.
    response = page.request.post(
        f"{console.url('notify')}/console/sign-in", form={"token": "secret-duty-all"}
    )
    assert response.status == 403
    context.close()


def tab_to(page: Page, selector: str, *, presses: int = 40) -> None:
    """Press Tab until the element is focused, as a keyboard-only person would."""
    target = page.locator(selector)
    for _ in range(presses):
        page.keyboard.press("Tab")
        if target.evaluate("element => element === document.activeElement"):
            return
    pytest.fail(f"Tab never reached {selector}")


def test_keyboard_only_sign_in_and_sign_out(
    browser: Browser, console: DevStack, tokens: TokenSet
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{console.url('notify')}/console/sign-in")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to main content"
    tab_to(page, "#token")
    page.keyboard.type(tokens.secret("duty-south"))
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/console/queue$"))
    expect(page.get_by_text("Signed in as duty-south")).to_be_visible()
    tab_to(page, "#f-severity")  # the filters are reachable too
    page.reload()
    tab_to(page, "form[action='/console/sign-out'] button")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    context.close()


def test_a_backdated_incident_appears_in_the_queue_without_reload(
    duty: BrowserContext, console: DevStack, tokens: TokenSet
) -> None:
    page = duty.new_page()
    page.goto(f"{console.url('notify')}/console/queue")
    cookie = next(c for c in duty.cookies() if c["name"] == "safeguard_session")
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    page.evaluate("window.__notReloaded = true")
    client = Client(tokens.secret("sender"))
    code, body, _ = client.request(
        "POST",
        f"{console.url('ingest')}/v1/events",
        incident(days_ago=25),
        headers={"Content-Type": "application/cloudevents+json"},
    )
    assert code == 202, body
    rows = page.locator("#queue-live tbody tr", has_text=CHILD)
    expect(rows).to_have_count(3, timeout=30_000)
    assert page.evaluate("window.__notReloaded") is True
    # Most severe first; each row says how long it has been overdue and at which level.
    severities = page.locator("#queue-live tbody tr td:first-child").all_inner_texts()
    ranks = {"critical": 0, "high": 1, "medium": 2}
    assert [ranks[s.strip()] for s in severities] == sorted(ranks[s.strip()] for s in severities)
    referral = page.locator("#queue-live tbody tr", has_text="social-care-referral")
    expect(referral.locator("time")).to_contain_text("d")  # 24 days and some hours
    counts = page.locator(".counts .count.total .n")
    expect(counts).not_to_have_text("0")
    no_serious_violations(page)
    page.close()


def test_filters_narrow_the_queue(duty: BrowserContext, console: DevStack) -> None:
    page = duty.new_page()
    page.goto(f"{console.url('notify')}/console/queue")
    page.get_by_label("Rule").select_option("social-care-referral")
    page.get_by_role("button", name="Apply filters").click()
    expect(page).to_have_url(re.compile(r"rule=social-care-referral"))
    rows = page.locator("#queue-live tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(CHILD)
    page.close()


def test_acknowledging_with_a_note_stops_level_two(
    duty: BrowserContext,
    console: DevStack,
    tokens: TokenSet,
    webhook: WebhookReceiver,
) -> None:
    referral = alert_of(console, tokens, "social-care-referral")
    alert_id = referral["alert_id"]
    # The duty desk is paged first (level 1, after the 2 s group window), then acts.
    assert webhook.wait_for(
        lambda b: (
            b["level"] == 1
            and alert_id in [b["alert"]["alert_id"], *(a["alert_id"] for a in b.get("alerts", []))]
        ),
        timeout=30,
    )
    page = duty.new_page()
    page.goto(f"{console.url('notify')}/console/queue")
    # Keyboard only: Tab to the alert's link and follow it with Enter.
    tab_to(page, f"#queue-live a[href='/console/alerts/{alert_id}']")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(f"/console/alerts/{alert_id}$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("social-care-referral")
    expect(page.locator(".facts")).to_contain_text("overdue for")
    expect(page.locator(".facts")).to_contain_text(CHILD)
    expect(page.locator(".facts")).to_contain_text(f"storm-{CHILD}")
    no_serious_violations(page)
    page.get_by_label("Note (optional)").fill("Called children's social care, referral going now")
    page.get_by_role("button", name="Acknowledge").click()
    expect(page.locator("#ack-by")).to_contain_text("by duty-all")
    expect(page.locator("#ack-by")).to_contain_text("referral going now")
    expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)
    # Level 2 is due 25 s after the raise: wait past it (and a margin), then look.
    raised_at = datetime.fromisoformat(referral["raised_at"])
    wait = (raised_at + timedelta(seconds=LEVEL_2_AFTER + 5) - datetime.now(UTC)).total_seconds()
    # The unacknowledged sibling of the same incident does climb: proof the clock ran.
    sibling = alert_of(console, tokens, "welfare-check")["alert_id"]
    assert webhook.wait_for(
        lambda b: b["alert"]["alert_id"] == sibling and b["level"] == 2,
        timeout=max(wait, 0) + 20,
    )
    assert [
        b
        for b in webhook.wait_for(lambda b: b["alert"]["alert_id"] == alert_id, timeout=0)
        if b["level"] >= 2
    ] == []
    detail = api(console, tokens, f"/v1/alerts/{alert_id}")
    assert detail["status"] == "acknowledged"
    assert "escalated" not in [e["kind"] for e in detail["timeline"]]
    page.reload()
    expect(page.locator("tr[data-level='2'] .state")).to_have_text("not needed (acknowledged)")
    screenshot(page, "alert")
    page.close()


def test_an_acknowledgement_without_the_work_done_reopens_the_alert(
    duty: BrowserContext, console: DevStack, tokens: TokenSet, webhook: WebhookReceiver
) -> None:
    alert_id = alert_of(console, tokens, "social-care-referral")["alert_id"]
    page = duty.new_page()
    page.goto(f"{console.url('notify')}/console/queue?rule=social-care-referral")
    row = page.locator("#queue-live tbody tr", has_text=CHILD)
    expect(row).to_contain_text("ack. by duty-all")
    # Still unmet ACK_TIMEOUT after the acknowledgement: open again, shown without reload.
    expect(row.locator(".badge.reopened")).to_have_text("re-opened", timeout=60_000)
    again = webhook.wait_for(
        lambda b: b["alert"]["alert_id"] == alert_id and b.get("reopened") is True, timeout=10
    )
    assert [(b["level"], b["round"]) for b in again] == [(1, 1)]
    assert again[0]["console_url"].endswith(f"/console/alerts/{alert_id}")
    detail = api(console, tokens, f"/v1/alerts/{alert_id}")
    assert detail["status"] == "open"
    assert "reopened" in [e["kind"] for e in detail["timeline"]]
    # The whole queue now: a re-opened alert, one climbing the ladder, one at level 1.
    page.goto(f"{console.url('notify')}/console/queue")
    expect(page.locator("#queue-live .badge.reopened")).to_have_count(1)
    no_serious_violations(page)
    screenshot(page, "queue")
    page.close()


def test_resolving_by_hand_needs_a_reason_and_keeps_it_apart_from_a_fulfilment(
    duty: BrowserContext, console: DevStack, tokens: TokenSet
) -> None:
    alert_id = alert_of(console, tokens, "social-care-referral")["alert_id"]
    page = duty.new_page()
    page.goto(f"{console.url('notify')}/console/alerts/{alert_id}")
    page.get_by_label("Decision recorded not to act").check()
    page.get_by_label("Note", exact=True).fill("Strategy meeting decided: no referral needed")
    page.get_by_role("button", name="Resolve").click()
    expect(page.locator("#closed")).to_contain_text("Closed by hand, not a fulfilment")
    expect(page.locator("#closed-reason")).to_have_text("Decision recorded not to act")
    expect(page.locator("#fulfilled")).to_have_count(0)
    detail = api(console, tokens, f"/v1/alerts/{alert_id}")
    assert detail["status"] == "resolved"
    assert detail["closure"]["reason"] == "decided_not_to_act"
    assert "resolution" not in detail  # no fulfilment was recorded
    no_serious_violations(page)
    page.close()


def test_the_api_takes_a_reason_code_when_resolving(console: DevStack, tokens: TokenSet) -> None:
    alert_id = alert_of(console, tokens, "school-notification")["alert_id"]
    client = Client(tokens.secret("duty-all"))
    url = f"{console.url('notify')}/v1/alerts/{alert_id}/resolve"
    code, body, _ = client.request("POST", url, {"reason": "postponed"})
    assert code == 422, body
    code, body, _ = client.request("POST", url, {"reason": "duplicate", "note": "see other"})
    assert code == 202, body
    done = wait_until(
        lambda: api(console, tokens, f"/v1/alerts/{alert_id}").get("closure"), timeout=20
    )
    assert done["reason"] == "duplicate"


def test_the_child_page_shows_the_chronology(duty: BrowserContext, console: DevStack) -> None:
    page = duty.new_page()
    page.goto(f"{console.url('notify')}/console/children/{CHILD}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(CHILD)
    expect(page.locator("#risk-level")).to_be_visible()
    chronology = page.locator("table.chronology tbody")
    expect(chronology).to_contain_text("incident.reported")
    expect(chronology).to_contain_text("social-care-referral breached")
    expect(chronology).to_contain_text("Decision recorded not to act")
    no_serious_violations(page)
    screenshot(page, "child")
    page.close()


def test_a_reader_sees_no_buttons_and_a_forged_post_is_refused(
    browser: Browser, console: DevStack, tokens: TokenSet
) -> None:
    assert tokens.expected("reader", Role.ACKNOWLEDGE) == 403
    alert_id = alert_of(console, tokens, "welfare-check")["alert_id"]
    context = sign_in(browser, console, tokens, "reader")
    page = context.new_page()
    page.goto(f"{console.url('notify')}/console/alerts/{alert_id}")
    expect(page.get_by_role("heading", level=1)).to_contain_text("welfare-check")
    expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)
    expect(page.get_by_role("button", name="Resolve")).to_have_count(0)
    # The session's own CSRF value (from the sign-out form): only the role is missing.
    csrf = page.locator("form[action='/console/sign-out'] input[name=csrf]").get_attribute("value")
    base = f"{console.url('notify')}/console/alerts/{alert_id}"
    ack = page.request.post(f"{base}/acknowledge", form={"csrf": csrf or "", "note": "forged"})
    assert ack.status == 403
    resolve = page.request.post(f"{base}/resolve", form={"csrf": csrf or "", "reason": "other"})
    assert resolve.status == 403
    assert api(console, tokens, f"/v1/alerts/{alert_id}")["status"] == "open"
    context.close()


def test_a_post_without_the_csrf_token_is_refused(
    duty: BrowserContext, console: DevStack, tokens: TokenSet
) -> None:
    alert_id = alert_of(console, tokens, "welfare-check")["alert_id"]
    page = duty.new_page()
    base = f"{console.url('notify')}/console/alerts/{alert_id}"
    assert page.request.post(f"{base}/acknowledge", form={"note": "no token"}).status == 403
    assert (
        page.request.post(f"{base}/acknowledge", form={"csrf": "guessed", "note": "x"}).status
        == 403
    )
    assert api(console, tokens, f"/v1/alerts/{alert_id}")["status"] == "open"
    page.close()


def test_one_event_is_one_message_and_a_breach_already_met_is_sent_once_as_resolved(
    duty: BrowserContext, console: DevStack, tokens: TokenSet, webhook: WebhookReceiver
) -> None:
    # A backlog: the incident 25 days late and the referral (made 1 day ago) together.
    child = f"{CHILD}-B"
    client = Client(tokens.secret("sender"))
    code, body, _ = client.request(
        "POST",
        f"{console.url('ingest')}/v1/events/batch",
        raw=json.dumps([incident(25, child), referral(1, child), decision(1, child)]).encode(),
        headers={"Content-Type": "application/cloudevents-batch+json"},
    )
    assert code == 202, body

    def about(b: dict[str, Any]) -> bool:
        return bool(b["alert"]["child_id"] == child)

    # The two open breaches of the incident reach the duty desk in one message.
    grouped = webhook.wait_for(lambda b: about(b) and len(b.get("alerts", [])) == 2, timeout=40)
    assert len(grouped) == 1
    listed = {a["rule"] for a in grouped[0]["alerts"]}
    assert listed == {"welfare-check", "school-notification"}
    # The referral was late but already made: one resolution notice, never a page.
    met = wait_until(
        lambda: [b for b in webhook.wait_for(about, timeout=0) if b.get("resolved_breach")],
        timeout=30,
    )
    assert len(met) == 1
    assert met[0]["alert"]["rule"] == "social-care-referral"
    assert met[0]["purpose"] == "resolution"
    assert met[0]["resolution"]["how"] == "fulfilled"
    # Its record says nobody was paged (level 0) and the one notice was delivered.
    alert_id = met[0]["alert"]["alert_id"]

    def notices(d: dict[str, Any]) -> list[tuple[str, str]]:
        return sorted(
            (e["delivery"]["recipient"], e["delivery"]["purpose"])
            for e in d["timeline"]
            if e["kind"] == "notification"
        )

    detail = wait_until(
        lambda: len(notices(d := api(console, tokens, f"/v1/alerts/{alert_id}"))) == 2 and d,
        timeout=20,
    )
    assert detail["level"] == 0
    # Once to each level-1 receiver (webhook and email), as a resolution.
    assert notices(detail) == [("duty-desk", "resolution"), ("duty-email", "resolution")]
    hooks = webhook.wait_for(about, timeout=0)
    assert [b for b in hooks if b["alert"]["rule"] == "social-care-referral"] == met
    # Recorded and shown all the same: the child page says it was met late.
    page = duty.new_page()
    page.goto(f"{console.url('notify')}/console/children/{child}")
    expect(page.locator("table.chronology tbody")).to_contain_text("Met late")
    page.close()


def test_the_email_and_webhook_carry_a_working_link(
    duty: BrowserContext,
    console: DevStack,
    tokens: TokenSet,
    webhook: WebhookReceiver,
    smtp_inbox: SmtpInbox,
) -> None:
    alert_id = alert_of(console, tokens, "welfare-check")["alert_id"]
    expected = f"{console.url('notify')}/console/alerts/{alert_id}"
    # The incident's alerts went out as one message per receiver: the webhook lists them
    # all, each with its link.
    hooks = webhook.wait_for(
        lambda b: any(a["alert_id"] == alert_id for a in b.get("alerts", [])), timeout=0
    ) or webhook.wait_for(lambda b: b["alert"]["alert_id"] == alert_id, timeout=0)
    assert hooks
    links = [hooks[0].get("console_url")] + [a["console_url"] for a in hooks[0].get("alerts", [])]
    assert expected in links
    mails = smtp_inbox.wait_for(lambda m: expected in text_of(m.message), timeout=30)
    assert mails
    assert DUTY_EMAIL in mails[0].to
    page = duty.new_page()
    page.goto(expected)
    expect(page.get_by_role("heading", level=1)).to_contain_text("welfare-check")
    expect(page.locator(".facts")).to_contain_text(alert_id)
    page.close()


def test_sign_out_ends_the_session(browser: Browser, console: DevStack, tokens: TokenSet) -> None:
    context = sign_in(browser, console, tokens, "duty-north")
    page = context.new_page()
    page.goto(f"{console.url('notify')}/console/queue")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    page.goto(f"{console.url('notify')}/console/queue")
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    context.close()
