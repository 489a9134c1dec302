"""People sign in to the desk with OpenID Connect, through a real OpenID Provider process
(panva's oidc-provider on Node.js), the real broker and a real PostgreSQL; an in-process
desk. Between the desk and the provider sits a front that makes the provider hang, fail
or half-succeed per path. The browser's view of the same is tests/browser/test_desk_oidc.py.

- a person signs in (authorization code, PKCE, verified ID token), is called by their
  name, sees their areas only, is the actor of what they do (a forged `by` is ignored,
  for people and for tokens), and signs out;
- no mapped group, roles without an area, an area without a role: nothing;
- a callback is used once, and only by the browser that began it;
- the provider hanging (discovery, token), failing (token, keys), or half-succeeding (an
  ID token altered, none at all, one expired): a clear 503 or 401, never a session;
- failed sign-ins throttled per client address and per account (429, Retry-After),
  and audited as `request.refused` with the address or the account;
- a polling queue neither keeps a session alive nor writes a record per poll.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.broker import create_topics, free_port
from services.common.kafka import Topics
from tests.fixtures import loopback
from tests.fixtures.broker import produce, read_all
from tests.fixtures.desk import DeskServer, desk_settings
from tests.fixtures.fake_notify import FakeNotify
from tests.fixtures.oidc_provider import FrontMode, OpenIdProvider, ProviderFront, sign_in_over_http
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.stack import wait_until
from tests.fixtures.tokens import TokenSet
from tests.fixtures.views import alert_view, alert_view_record

pytestmark = pytest.mark.integration

TOKENS = TokenSet.matrix()
NOW = datetime.now(UTC).replace(microsecond=0)
H = timedelta(hours=1)
VIEWS = {
    v.alert.alert_id: v
    for v in (
        alert_view("al-sso-north", area="north", raised_at=NOW - H, due_at=NOW - 2 * H),
        alert_view("al-sso-north-2", area="north", raised_at=NOW - H, due_at=NOW - 3 * H),
        alert_view("al-sso-south", area="south", raised_at=NOW - H, due_at=NOW - 2 * H),
    )
}
FORGED = "Chief Constable (spoofed)"
_ADDRESSES = count(1)


@dataclass
class OffsetClock:
    """The wall clock, moved by the test: ID tokens are the provider's, in real time."""

    offset: timedelta = field(default_factory=timedelta)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class Sso:
    desk: DeskServer
    provider: OpenIdProvider
    front: ProviderFront
    clock: OffsetClock
    bootstrap: str
    topics: Topics
    audit_topic: str

    def client(self) -> httpx.Client:
        """A browser of its own, from an address of its own (the throttle counts per address)."""
        address = f"198.51.100.{next(_ADDRESSES)}"
        return loopback.Client(
            timeout=30, follow_redirects=False, headers={"X-Forwarded-For": address}
        )

    def records(self, where: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        found = [json.loads(r.value)["data"] for r in read_all(self.bootstrap, self.audit_topic)]
        return [r for r in found if where(r)]

    def commands(self) -> list[dict[str, Any]]:
        return [json.loads(r.value) for r in read_all(self.bootstrap, self.topics.commands)]


@pytest.fixture(scope="module")
def sso(
    kafka_bootstrap: str, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sso]:
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(**{k: f"o{suffix}.{v}" for k, v in Topics().model_dump().items()})
    audit_topic = f"o{suffix}.safeguarding.audit.v1"
    create_topics(kafka_bootstrap, [*topics.model_dump().values(), audit_topic])
    produce(kafka_bootstrap, topics.alert_views, [alert_view_record(v) for v in VIEWS.values()])
    folder: Path = tmp_path_factory.mktemp("oidc")
    desk_port, front_port = free_port(), free_port()
    redirect = f"http://127.0.0.1:{desk_port}/console/sign-in/callback"
    provider = OpenIdProvider.start(
        folder, redirect_uris=[redirect], issuer=f"http://127.0.0.1:{front_port}"
    )
    front = ProviderFront(target=f"http://127.0.0.1:{provider.port}", port=front_port).start()
    url = postgres.create()
    clock = OffsetClock()
    settings = desk_settings(
        database_url=url,
        bootstrap=kafka_bootstrap,
        topics=topics,
        audit_topic=audit_topic,
        group=f"oidc-{suffix}",
        port=desk_port,
        tokens_file=TOKENS.write(folder / "tokens.yaml"),
        oidc=provider.desk_settings(redirect, timeout_seconds=2, metadata_seconds=1),
        sign_in={"forwarded_for_hops": 1, "failures_per_client": 4, "failures_per_account": 3},
    )
    desk = DeskServer(settings, clock=clock).start()
    notify = FakeNotify(kafka_bootstrap, topics.commands, topics.alert_views, VIEWS).start()
    try:
        assert wait_until(
            lambda: (
                desk.metric("safeguard_desk_projector_records_total", topic="alert_views")
                >= len(VIEWS)
            ),
            timeout=60,
        )
        yield Sso(desk, provider, front, clock, kafka_bootstrap, topics, audit_topic)
    finally:
        notify.stop()
        desk.stop()
        front.stop()
        provider.stop()
        postgres.drop(url)


@pytest.fixture(autouse=True)
def _healed(sso: Sso) -> Iterator[None]:
    yield
    sso.front.heal()
    sso.clock.offset = timedelta()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html[-2000:]
    return found.group(1)


def signed_out(sso: Sso, client: httpx.Client) -> bool:
    """Nobody is signed in with this browser's cookies."""
    answer = client.get(f"{sso.desk.url}/console/queue")
    return answer.status_code == 303 and answer.headers["Location"] == "/console/sign-in"


def test_a_person_signs_in_sees_their_areas_and_is_the_actor_of_what_they_do(sso: Sso) -> None:
    browser = sso.client()
    landed = sign_in_over_http(browser, sso.desk.url, "alice")
    assert landed.status_code == 200, landed.text[-2000:]
    assert 'http-equiv="refresh" content="0; url=/console/queue"' in landed.text
    cookie = landed.headers["Set-Cookie"]
    assert "safeguard_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    queue = browser.get(f"{sso.desk.url}/console/queue")
    assert queue.status_code == 200
    assert "Signed in as <strong>Alice Okafor</strong>" in queue.text
    assert "areas: north" in queue.text
    assert "al-sso-north" in queue.text
    assert "al-sso-south" not in queue.text
    assert browser.get(f"{sso.desk.url}/console/alerts/al-sso-south").status_code == 404
    page = browser.get(f"{sso.desk.url}/console/alerts/al-sso-north")
    acted = browser.post(
        f"{sso.desk.url}/console/alerts/al-sso-north/acknowledge",
        data={"csrf": csrf_of(page.text), "note": "On it", "by": FORGED},
    )
    assert acted.status_code == 303
    shown = browser.get(f"{sso.desk.url}/console/alerts/al-sso-north")
    assert "by Alice Okafor" in shown.text
    assert FORGED not in shown.text
    # A system's token is the actor of what it does: a forged `by` is ignored there too.
    api = loopback.post(
        f"{sso.desk.url}/v1/alerts/al-sso-north-2/ack",
        headers=TOKENS.header("duty-north"),
        json={"by": FORGED, "note": "from the API"},
        timeout=30,
    )
    assert api.status_code == 202, api.text
    acks = {
        c["data"]["alert_id"]: c["data"]
        for c in sso.commands()
        if c["type"] == "alert.acknowledged"
    }
    assert acks["al-sso-north"]["by"] == "Alice Okafor"
    assert acks["al-sso-north"]["principal"] == "alice"
    assert acks["al-sso-north-2"]["by"] == "duty-north"
    assert acks["al-sso-north-2"]["principal"] == "duty-north"
    assert (
        wait_until(
            lambda: sso.records(
                lambda r: r["action"] == "alert.acknowledged" and r["alert_id"] == "al-sso-north"
            )
        )[0]["actor"]
        == "alice"
    )
    signed = browser.get(f"{sso.desk.url}/console/queue")
    out = browser.post(f"{sso.desk.url}/console/sign-out", data={"csrf": csrf_of(signed.text)})
    assert out.status_code == 303
    assert signed_out(sso, browser)


@pytest.mark.parametrize("login", ["eve", "frank", "mallory"])
def test_without_a_mapped_role_and_area_a_person_gets_nothing(sso: Sso, login: str) -> None:
    browser = sso.client()
    refused = sign_in_over_http(browser, sso.desk.url, login)
    assert refused.status_code == 403
    assert "safeguard_session" not in refused.headers.get("Set-Cookie", "")
    assert signed_out(sso, browser)


def test_a_reader_of_every_area_and_an_auditor_get_what_their_groups_give(sso: Sso) -> None:
    reader = sso.client()
    assert sign_in_over_http(reader, sso.desk.url, "carol").status_code == 200
    page = reader.get(f"{sso.desk.url}/console/alerts/al-sso-south")
    assert page.status_code == 200
    assert 'id="ack-form"' not in page.text
    auditor = sso.client()
    landed = sign_in_over_http(auditor, sso.desk.url, "dora")
    assert "url=/console/audit" in landed.text
    assert auditor.get(f"{sso.desk.url}/console/queue").status_code == 403


def test_a_callback_is_used_once_and_only_by_the_browser_that_began_it(sso: Sso) -> None:
    browser = sso.client()
    back = sign_in_over_http(browser, sso.desk.url, "alice", until_callback=True)
    callback = back.headers["Location"]
    thief = sso.client()
    stolen = thief.get(callback)
    assert stolen.status_code == 401
    assert signed_out(sso, thief)
    assert browser.get(callback).status_code == 401  # the state was spent by the thief's try
    assert signed_out(sso, browser)
    again = sign_in_over_http(browser, sso.desk.url, "alice", until_callback=True)
    mixed = again.headers["Location"].replace(
        f"iss={sso.front.url.replace(':', '%3A').replace('/', '%2F')}", "iss=https%3A%2F%2Fevil"
    )
    assert mixed != again.headers["Location"]
    assert browser.get(mixed).status_code == 401  # RFC 9207: another issuer answered
    third = sign_in_over_http(browser, sso.desk.url, "alice", until_callback=True)
    assert browser.get(third.headers["Location"]).status_code == 200
    assert browser.get(third.headers["Location"]).status_code == 401  # used once


def _begin_and_return(sso: Sso, browser: httpx.Client) -> str:
    back = sign_in_over_http(browser, sso.desk.url, "alice", until_callback=True)
    return back.headers["Location"]


@pytest.mark.parametrize(
    ("path", "mode", "status"),
    [
        ("/token", FrontMode.HANG, 503),
        ("/token", FrontMode.FAIL, 503),
        ("/jwks", FrontMode.FAIL, 503),
        ("/token", FrontMode.TAMPER, 401),
        ("/token", FrontMode.NO_ID_TOKEN, 401),
    ],
)
def test_a_provider_that_hangs_fails_or_half_succeeds_signs_nobody_in(
    sso: Sso, path: str, mode: FrontMode, status: int
) -> None:
    browser = sso.client()
    callback = _begin_and_return(sso, browser)
    time.sleep(1.1)  # past metadata_seconds: the keys are fetched again
    sso.front.set(path, mode)
    started = time.monotonic()
    answer = browser.get(callback)
    took = time.monotonic() - started
    assert answer.status_code == status, answer.text[-2000:]
    assert took < 10  # bounded by the provider timeout (2 s), not by the provider
    assert "safeguard_session" not in answer.headers.get("Set-Cookie", "")
    if status == 503:
        assert answer.headers["Retry-After"] == "5"
        assert "identity provider" in answer.text
    sso.front.heal()
    assert signed_out(sso, browser)


def test_discovery_that_hangs_is_a_clear_503_before_anyone_leaves(sso: Sso) -> None:
    time.sleep(1.1)  # past metadata_seconds: the discovery document is fetched again
    sso.front.set("/.well-known/openid-configuration", FrontMode.HANG)
    browser = sso.client()
    browser.get(f"{sso.desk.url}/console/sign-in")
    started = time.monotonic()
    answer = browser.post(
        f"{sso.desk.url}/console/sign-in/oidc", data={"csrf": browser.cookies["safeguard_signin"]}
    )
    assert answer.status_code == 503
    assert time.monotonic() - started < 10
    assert "The identity provider did not answer" in answer.text


def test_an_expired_id_token_signs_nobody_in(sso: Sso) -> None:
    browser = sso.client()
    callback = _begin_and_return(sso, browser)
    # The provider's ID tokens live 5 minutes, the leeway is 1 and a pending sign-in 10.
    sso.clock.offset = timedelta(minutes=8)
    answer = browser.get(callback)
    assert answer.status_code == 401
    assert "not valid for this sign-in" in answer.text
    sso.clock.offset = timedelta()
    assert signed_out(sso, browser)


def test_failed_sign_ins_are_throttled_per_account_and_per_client_and_audited(sso: Sso) -> None:
    # Per account: trudy's groups give no role; each try from a new address.
    statuses = [
        sign_in_over_http(sso.client(), sso.desk.url, "trudy").status_code for _ in range(4)
    ]
    assert statuses == [403, 403, 403, 429]
    # Per client: a wrong token, typed again and again from one address.
    browser = sso.client()
    address = browser.headers["X-Forwarded-For"]
    browser.get(f"{sso.desk.url}/console/sign-in")
    pre = browser.cookies["safeguard_signin"]
    tries = [
        browser.post(f"{sso.desk.url}/console/sign-in", data={"csrf": pre, "token": "wrong"})
        for _ in range(5)
    ]
    assert [t.status_code for t in tries] == [401, 401, 401, 401, 429]
    assert 0 < int(tries[-1].headers["Retry-After"]) <= 600
    # Another address is not held back by this one's failures.
    elsewhere = sso.client()
    assert sign_in_over_http(elsewhere, sso.desk.url, "bob").status_code == 200
    actor = f"client-{address}"
    refused = wait_until(
        lambda: (
            found
            if len(
                found := sso.records(
                    lambda r: r["action"] == "request.refused" and r["actor"] == actor
                )
            )
            >= 5
            else None
        )
    )
    assert {(r["refusal"]["status"], r["refusal"]["route"]) for r in refused} == {
        (401, "/console/sign-in"),
        (429, "/console/sign-in"),
    }
    by_account = sso.records(lambda r: r["action"] == "request.refused" and r["actor"] == "trudy")
    assert {r["refusal"]["status"] for r in by_account} == {403, 429}


def test_polling_keeps_no_session_alive_and_writes_one_record_per_distinct_list(
    sso: Sso,
) -> None:
    browser = loopback.Client(base_url=sso.desk.url, timeout=30, follow_redirects=False)
    browser.get("/console/sign-in")
    signed = browser.post(
        "/console/sign-in",
        data={"csrf": browser.cookies["safeguard_signin"], "token": TOKENS.secret("duty-south")},
    )
    assert signed.status_code == 303
    assert browser.get("/console/queue").status_code == 200
    for _ in range(6):
        assert browser.get("/console/queue/live").status_code == 200
    assert browser.get("/console/queue/live?severity=high").status_code == 200
    lists = wait_until(
        lambda: (
            found
            if len(
                found := sso.records(
                    lambda r: r["action"] == "alerts.listed" and r["actor"] == "duty-south"
                )
            )
            >= 2
            else None
        )
    )
    time.sleep(1)
    lists = sso.records(lambda r: r["action"] == "alerts.listed" and r["actor"] == "duty-south")
    assert len(lists) == 2  # the page and its polls once; the filtered list once
    assert lists[0]["listing"] == {
        "filters": {"view": "queue"},
        "alert_ids": ["al-sso-south"],
    }
    assert lists[1]["listing"]["filters"] == {"view": "queue", "severity": "high"}
    # Polls did not keep the session: idle time runs from the last page a person opened.
    sso.clock.offset = timedelta(minutes=29)
    assert browser.get("/console/queue/live").status_code == 200
    sso.clock.offset = timedelta(minutes=31)
    assert browser.get("/console/queue/live").status_code == 401
    assert browser.get("/console/queue").status_code == 303


def test_the_sign_in_page_lets_its_form_go_on_to_the_provider_only(sso: Sso) -> None:
    page = loopback.get(f"{sso.desk.url}/console/sign-in", timeout=30)
    csp = page.headers["Content-Security-Policy"]
    assert f"form-action 'self' {sso.front.url};" in csp
    assert "Sign in with Test Force account" in page.text
    assert page.headers["X-Frame-Options"] == "DENY"
