"""The night shift over HTTP and from the command line (an in-process desk, the real broker
and PostgreSQL, the clock fixed at 3 a.m.: tests/fixtures/night.py's known urgency order).

The API's urgency order, its group filters and what it audits; refusals of a group
acknowledgement (each named, nothing published) and what a good one publishes and
records per alert; the handover window's refusals; a message's link kept through
sign-in, never to another site; `safeguard alerts ls`, `show`, `ack --group` and
`resolve --reason` against the desk. The pages in a real browser are
tests/browser/test_desk_console.py.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from devtools.broker import create_topics
from services.cli.main import app
from services.common.auth import Role
from services.common.clock import FakeClock
from services.common.kafka import Topics
from tests.fixtures import loopback
from tests.fixtures.broker import produce, read_all
from tests.fixtures.desk import DeskServer, desk_settings
from tests.fixtures.fake_notify import FakeNotify
from tests.fixtures.night import BY_ID, CHILD_A, CHILD_B, INCIDENT, NOW, ORDER, VIEWS, night_policy
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.stack import wait_until
from tests.fixtures.tokens import TokenSet
from tests.fixtures.views import alert_view_record

pytestmark = pytest.mark.integration

TOKENS = TokenSet.matrix().add("dpo", roles=[Role.AUDIT])
runner = CliRunner()


@dataclass
class Night:
    desk: DeskServer
    clock: FakeClock
    notify: FakeNotify
    topics: Topics
    audit_topic: str
    bootstrap: str

    def api(self, path: str, name: str = "duty-all", **params: str) -> httpx.Response:
        return loopback.get(
            f"{self.desk.url}{path}", params=params, headers=TOKENS.header(name), timeout=30
        )

    def browser(self, name: str | None = None) -> httpx.Client:
        client = loopback.Client(base_url=self.desk.url, follow_redirects=False, timeout=30)
        if name is not None:
            client.get("/console/sign-in")
            answer = client.post(
                "/console/sign-in",
                data={"csrf": client.cookies["safeguard_signin"], "token": TOKENS.secret(name)},
            )
            assert answer.status_code == 303, answer.text
        return client

    def cli(self, *args: str, name: str = "duty-all") -> object:
        env = {
            "SAFEGUARD_TOKEN": TOKENS.secret(name),
            "SAFEGUARD_TIMEZONE": "Europe/London",
            "COLUMNS": "200",
            "TERMINAL_WIDTH": "200",
        }
        return runner.invoke(app, [*args, "--url", self.desk.url], env=env)

    def commands(self) -> list[dict[str, object]]:
        return _read_all(self.bootstrap, self.topics.commands)

    def audit(self) -> list[dict[str, object]]:
        return [r["data"] for r in _read_all(self.bootstrap, self.audit_topic)]  # type: ignore[misc]


def _read_all(bootstrap: str, topic: str) -> list[dict[str, object]]:
    return [json.loads(r.value) for r in read_all(bootstrap, topic)]


@pytest.fixture(scope="module")
def night(
    kafka_bootstrap: str, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Night]:
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(**{k: f"n{suffix}.{v}" for k, v in Topics().model_dump().items()})
    audit_topic = f"n{suffix}.safeguarding.audit.v1"
    create_topics(kafka_bootstrap, [*topics.model_dump().values(), audit_topic])
    produce(kafka_bootstrap, topics.alert_views, [alert_view_record(v) for v in VIEWS])
    url = postgres.create()
    folder: Path = tmp_path_factory.mktemp("night")
    clock = FakeClock(NOW)
    settings = desk_settings(
        database_url=url,
        bootstrap=kafka_bootstrap,
        topics=topics,
        audit_topic=audit_topic,
        group=f"night-{suffix}",
        tokens_file=TOKENS.write(folder / "tokens.yaml"),
        policy_file=night_policy(folder / "policy.yaml"),
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
        yield Night(desk, clock, notify, topics, audit_topic, kafka_bootstrap)
    finally:
        notify.stop()
        desk.stop()
        postgres.drop(url)


def ids(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [a["alert_id"] for a in answer.json()["alerts"]]


# -- the API -----------------------------------------------------------------------------


def test_the_api_lists_the_queue_in_urgency_order_by_pages(night: Night) -> None:
    assert ids(night.api("/v1/alerts", order="urgency")) == ORDER
    paged: list[str] = []
    cursor: str | None = None
    while True:
        params = {"order": "urgency", "limit": "3"} | ({"cursor": cursor} if cursor else {})
        body = night.api("/v1/alerts", **params).json()
        paged += [a["alert_id"] for a in body["alerts"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert paged == ORDER
    first = night.api("/v1/alerts", order="urgency", limit="1").json()
    assert first["as_of"] == NOW.isoformat()
    assert first["alerts"][0]["next_step"] == {
        "at": "2026-07-03T02:05:00Z",
        "kind": "level",
        "level": 2,
        "recipients": ["duty-desk", "senior-managers"],
    }
    # Newest raise first stays the default, resolved alerts included.
    assert ids(night.api("/v1/alerts"))[0] == "al-n-missing"
    assert "al-n-closed" in ids(night.api("/v1/alerts"))
    assert ids(night.api("/v1/alerts", order="urgency", status="acknowledged")) == ["al-n-exploit"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"order": "soonest"}, "order"),
        ({"order": "urgency", "status": "resolved"}, "order"),
        ({"subject_kind": "pet"}, "subject_kind"),
        ({"subject_id": "Jane Doe"}, "subject_id"),
        ({"trigger_id": "ev inc"}, "trigger_id"),
        ({"order": "urgency", "cursor": "bm90LWEtY3Vyc29y"}, None),
    ],
)
def test_a_bad_list_query_is_a_422_naming_what_is_wrong(
    night: Night, params: dict[str, str], named: str | None
) -> None:
    answer = night.api("/v1/alerts", **params)
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "invalid_query"
    if named is not None:
        assert body["errors"][0]["loc"] == named
    assert "Jane" not in answer.text


def test_the_alerts_of_a_child_or_an_incident_and_who_looked(night: Night) -> None:
    by_child = ids(night.api("/v1/alerts", subject_kind="child", subject_id=CHILD_B))
    assert sorted(by_child) == ["al-n-closed", "al-n-welfare"]
    by_event = ids(night.api("/v1/alerts", trigger_id=INCIDENT, order="urgency"))
    assert by_event == ["al-n-custody", "al-n-welfare", "al-n-referral", "al-n-school"]
    assert ids(night.api("/v1/alerts", subject_id=CHILD_B, name="duty-south")) == []
    # Listing one child's alerts is looking at the child: the audit search finds it.
    assert wait_until(
        lambda: any(
            r["action"] == "child.viewed" and r.get("child_id") == CHILD_B for r in night.audit()
        ),
        timeout=20,
    )


# -- a group's acknowledgement -----------------------------------------------------------


def _group_form(page: str, key: str) -> dict[str, list[str]]:
    form = re.search(
        r'<form method="post" action="/console/queue/acknowledge".*?</form>', page, re.DOTALL
    )
    assert form is not None
    fields: dict[str, list[str]] = {}
    for name, value in re.findall(r'name="([^"]+)" value="([^"]*)"', form.group(0)):
        fields.setdefault(name, []).append(value)
    assert fields["key"] == [key]
    return fields


def test_a_group_acknowledgement_is_refused_whole_when_any_part_is_wrong(night: Night) -> None:
    north = night.browser("duty-north")
    page = north.get("/console/queue?group=incident").text
    form = _group_form(page, f"urn:safeguard:source:control-room|{INCIDENT}")
    assert form["alert_id"] == ["al-n-custody", "al-n-welfare", "al-n-referral", "al-n-school"]
    before = len(night.commands())
    post = "/console/queue/acknowledge"
    refusals = {
        "no csrf": ({**form, "csrf": []}, 403),
        "another's csrf": ({**form, "csrf": ["x"]}, 403),
        "no group": ({**form, "group": ["pets"]}, 422),
        "not in the group": ({**form, "alert_id": [*form["alert_id"], "al-n-missing"]}, 422),
        "unknown alert": ({**form, "alert_id": ["al-n-nobody"]}, 404),
        "not an id": ({**form, "alert_id": ["Jane Doe"]}, 422),
        "twice": ({**form, "alert_id": ["al-n-custody", "al-n-custody"]}, 422),
        "too many": ({**form, "alert_id": [f"al-{n}" for n in range(101)]}, 422),
        "none": ({**form, "alert_id": []}, 422),
        "a bad note": ({**form, "note": ["\x00"]}, 422),
        "a bad queue to return to": ({**form, "q_severity": ["lowest"]}, 422),
    }
    for why, (data, status) in refusals.items():
        answer = north.post(post, data=data)  # type: ignore[arg-type]
        assert answer.status_code == status, why
        assert "Jane" not in answer.text
    south = night.browser("duty-south")
    south_csrf = re.search(r'name="csrf" value="([^"]+)"', south.get("/console/queue").text)
    assert south_csrf is not None
    other_area = south.post(post, data={**form, "csrf": [south_csrf.group(1)]})  # type: ignore[arg-type]
    assert other_area.status_code == 403
    assert "north" in other_area.text
    reader = night.browser("reader")
    reader_csrf = re.search(r'name="csrf" value="([^"]+)"', reader.get("/console/queue").text)
    assert reader_csrf is not None
    assert reader.post(post, data={**form, "csrf": [reader_csrf.group(1)]}).status_code == 403  # type: ignore[arg-type]
    assert len(night.commands()) == before, "a refused form published something"


def test_a_group_acknowledgement_is_one_command_and_one_record_per_alert(night: Night) -> None:
    north = night.browser("duty-north")
    page = north.get("/console/queue?group=child&severity=critical").text
    form = _group_form(page, f"child:{CHILD_A}")
    assert form["alert_id"] == ["al-n-custody", "al-n-refused"]
    assert form["q_severity"] == ["critical"]
    done = north.post("/console/queue/acknowledge", data={**form, "note": ["Inspector on the way"]})  # type: ignore[arg-type]
    assert done.status_code == 303
    assert done.headers["Location"] == "/console/queue?severity=critical&group=child&acked=2"
    assert "Acknowledged 2 alerts." in north.get(done.headers["Location"]).text
    commands = [c for c in night.commands() if c["type"] == "alert.acknowledged"]
    acked = {c["data"]["alert_id"]: c["data"] for c in commands}  # type: ignore[index]
    assert set(acked) == {"al-n-custody", "al-n-refused"}
    assert {a["note"] for a in acked.values()} == {"Inspector on the way"}
    assert {a["principal"] for a in acked.values()} == {"duty-north"}

    def records() -> list[tuple[object, object]]:
        return sorted(
            (r["action"], r["alert_id"])
            for r in night.audit()
            if r["actor"] == "duty-north" and r["action"] in {"alert.acknowledged", "alert.noted"}
        )

    assert wait_until(lambda: len(records()) == 4, timeout=20)
    assert records() == [
        ("alert.acknowledged", "al-n-custody"),
        ("alert.acknowledged", "al-n-refused"),
        ("alert.noted", "al-n-custody"),
        ("alert.noted", "al-n-refused"),
    ]
    # The same form again: both were acknowledged meanwhile, nothing is published.
    again = north.post("/console/queue/acknowledge", data=form)  # type: ignore[arg-type]
    assert again.headers["Location"].endswith("acked=0&skipped=2")
    assert (
        "2 had already been acknowledged or resolved" in north.get(again.headers["Location"]).text
    )


# -- the handover and the pages' refusals ------------------------------------------------


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("from=yesterday", "`from` is not a date and time"),
        ("to=2026-13-01T00:00", "`to` is not a date and time"),
        ("from=2026-07-03T03:00&to=2026-07-03T02:00", "`from` must be before its `to`"),
        ("from=2026-06-01T00:00&to=2026-07-01T00:00", "at most 7 days"),
    ],
)
def test_a_bad_handover_window_is_a_422_naming_it(night: Night, query: str, says: str) -> None:
    answer = night.browser("duty-north").get(f"/console/handover?{query}")
    assert answer.status_code == 422
    assert says in answer.text


def test_the_handover_reads_local_times_and_defaults_to_the_last_12_hours(night: Night) -> None:
    north = night.browser("duty-north")
    page = north.get("/console/handover")
    assert page.status_code == 200
    assert 'value="2026-07-02T15:00"' in page.text  # 14:00 UTC, in BST
    assert 'value="2026-07-03T03:00"' in page.text
    narrow = north.get("/console/handover?from=2026-07-03T00:55&to=2026-07-03T01:05").text
    raised = re.search(r'id="raised".*?</section>', narrow, re.DOTALL)
    assert raised is not None
    assert re.findall(r'data-alert-id="([^"]+)"', raised.group(0)) == ["al-n-school"]
    with_offset = north.get("/console/handover?from=2026-07-03T00:55%2B01:00&to=2026-07-03T00:05Z")
    assert with_offset.status_code == 200


def test_the_pages_refuse_what_they_do_not_know(night: Night) -> None:
    north = night.browser("duty-north")
    assert north.get("/console/alerts/al-n-missing?act=delete").status_code == 422
    assert north.get("/console/queue?group=area").status_code == 422
    assert north.get("/console/queue?status=resolved").status_code == 422


# -- a message's link through sign-in ----------------------------------------------------


def test_a_message_s_link_survives_the_sign_in_and_never_leads_elsewhere(night: Night) -> None:
    client = night.browser()
    asked = client.get("/console/alerts/al-n-missing?act=acknowledge")
    assert asked.status_code == 303
    assert asked.headers["Location"] == "/console/sign-in"
    assert "safeguard_next" in asked.headers["Set-Cookie"]
    assert "HttpOnly" in asked.headers["Set-Cookie"]
    client.get("/console/sign-in")
    signed = client.post(
        "/console/sign-in",
        data={"csrf": client.cookies["safeguard_signin"], "token": TOKENS.secret("duty-north")},
    )
    assert signed.headers["Location"] == "/console/alerts/al-n-missing?act=acknowledge"
    page = client.get(signed.headers["Location"])
    assert 'id="ack-button" autofocus' in page.text
    # A kept page that is not the console's is ignored: the queue, as usual.
    for forged in ("https://evil.example/console/queue", "//evil.example", "/console/../admin"):
        other = night.browser()
        other.get("/console/sign-in")
        value = base64.urlsafe_b64encode(forged.encode()).decode().rstrip("=")
        other.cookies.set("safeguard_next", value, path="/console")
        answer = other.post(
            "/console/sign-in",
            data={"csrf": other.cookies["safeguard_signin"], "token": TOKENS.secret("reader")},
        )
        assert answer.headers["Location"] == "/console/queue", forged
    # Followed from another site (no session cookie is sent with that navigation), the
    # page reloads itself from the desk's own site, where the cookie is sent.
    bounced = night.browser().get(
        "/console/alerts/al-n-missing?act=acknowledge", headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert bounced.status_code == 200
    assert (
        '<meta http-equiv="refresh" content="0;url=/console/alerts/al-n-missing?act=acknowledge">'
        in bounced.text
    )


# -- the command line ------------------------------------------------------------------------


def test_alerts_ls_is_the_queue_in_urgency_order_with_the_countdown(night: Night) -> None:
    result = night.cli("alerts", "ls")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    header, *rows = result.stdout.splitlines()  # type: ignore[attr-defined]
    assert header.split()[:5] == ["SEVERITY", "RULE", "SUBJECT", "OVERDUE", "NEXT"]
    # Acknowledged above, al-n-custody and al-n-refused now follow the open critical one.
    assert [row.split()[-1] for row in rows] == [
        "al-n-welfare",
        "al-n-custody",
        "al-n-refused",
        *ORDER[3:],
    ]
    missing = next(r for r in rows if r.endswith("al-n-missing"))
    assert "no deadline, raised 5 min ago" in missing
    assert "L2 in 55 min: duty-desk, senior-managers" in missing
    forensic = next(r for r in rows if r.endswith("al-n-forensic"))
    assert "20 d" in forensic
    assert "L3 again in 40 min: duty-desk, strategic-lead" in forensic
    as_json = json.loads(night.cli("alerts", "ls", "-o", "json").stdout)  # type: ignore[attr-defined]
    assert as_json["as_of"] == NOW.isoformat()
    newest = night.cli("alerts", "ls", "--order", "raised", "--status", "resolved")
    assert newest.exit_code == 0  # type: ignore[attr-defined]
    assert "al-n-closed" in newest.stdout  # type: ignore[attr-defined]


def test_alerts_show_prints_a_readable_ladder_and_timeline(night: Night) -> None:
    result = night.cli("alerts", "show", "al-n-welfare")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    text = result.stdout  # type: ignore[attr-defined]
    assert "alert:    al-n-welfare" in text
    assert f"subject:  child:{CHILD_B}" in text
    assert "raised:   Fri 3 Jul 2026 00:00 BST" in text
    assert re.search(
        r"next:     Sent again to level 3 \(duty-desk, strategic-lead\) "
        r"(now|in [^,]+, at Fri 3 Jul 2026 03:20 BST), unless acknowledged\.",
        text,
    )
    assert "LADDER" in text
    assert re.search(
        r"2\s+duty-desk \(webhook\), senior-managers \(email\)\s+Fri 3 Jul 2026 00:15 BST", text
    )
    assert "TIMELINE" in text
    assert re.search(r"Fri 3 Jul 2026 00:00 BST\s+Raised", text)
    assert "{" not in text  # not JSON
    closed = night.cli("alerts", "show", "al-n-closed").stdout  # type: ignore[attr-defined]
    assert (
        "ended:    Closed by hand, not a fulfilment: recorded in another system. "
        "By duty-day, Fri 3 Jul 2026 02:00 BST. Note: Done by the local authority's service"
    ) in closed
    assert "late:     was overdue 5 h when resolved" in closed
    as_json = night.cli("alerts", "show", "al-n-welfare", "-o", "json").stdout  # type: ignore[attr-defined]
    assert json.loads(as_json)["alert"]["alert_id"] == "al-n-welfare"
    assert night.cli("alerts", "show", "al-n-welfare", "--timezone", "Mars/Olympus").exit_code == 1  # type: ignore[attr-defined]


def test_alerts_ack_group_and_resolve_with_a_reason(night: Night) -> None:
    bad = night.cli("alerts", "ack", "--group", "C-NB")
    assert bad.exit_code == 2  # type: ignore[attr-defined]
    assert "child:<child id>" in bad.output  # type: ignore[attr-defined]
    both = night.cli("alerts", "ack", "al-n-welfare", "--group", f"child:{CHILD_B}")
    assert both.exit_code == 2  # type: ignore[attr-defined]
    result = night.cli("alerts", "ack", "--group", f"incident:{INCIDENT}", "--note", "All in hand")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    out = result.stdout  # type: ignore[attr-defined]
    assert f"event {INCIDENT}: " in out
    assert "al-n-welfare: accepted" in out
    assert wait_until(
        lambda: "al-n-welfare" in ids(night.api("/v1/alerts", status="acknowledged")),
        timeout=20,
    )
    assert night.notify.views["al-n-welfare"].acknowledgement.note == "All in hand"  # type: ignore[union-attr]
    none_left = night.cli("alerts", "ack", "--group", f"child:{CHILD_B}")
    assert none_left.exit_code == 1  # type: ignore[attr-defined]
    assert f"no open alert of child {CHILD_B}" in none_left.output  # type: ignore[attr-defined]
    no_reason = night.cli("alerts", "resolve", "al-n-welfare")
    assert no_reason.exit_code == 2  # type: ignore[attr-defined]
    assert "--reason" in no_reason.output  # type: ignore[attr-defined]
    resolved = night.cli(
        "alerts", "resolve", "al-n-welfare", "--reason", "decided_not_to_act", "--note", "Seen"
    )
    assert resolved.exit_code == 0, resolved.output  # type: ignore[attr-defined]
    assert wait_until(
        lambda: night.notify.views["al-n-welfare"].status.value == "resolved", timeout=20
    )
    closure = night.notify.views["al-n-welfare"].closure
    assert closure is not None
    assert closure.reason is not None
    assert closure.reason.value == "decided_not_to_act"
