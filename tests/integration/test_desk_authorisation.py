"""The desk's authorisation matrix, table-driven: every route x every caller x two areas.

`ROUTES` names every route the desk serves, with the role it needs and what it reads
(nothing, an alert, a child). The first test enumerates the aiohttp router and fails
when a route is added without an entry here. Then, on an in-process desk with the real
broker and PostgreSQL, every API route and console page is asked by every caller of the
cast (no token, an unknown one, each role, north, south, every area) about a thing in
`north` and one in `south`, and answers exactly as the table says:

- no or an unknown token: 401 (the API); no session: to the sign-in page (console GET),
  403 (console POST);
- a role the caller lacks: 403;
- a thing outside the caller's areas: 404, the same body as an id nobody knows (and on
  an act, never the 409 that would reveal its state);
- otherwise allowed (acts on a resolved alert: 409 with its state).

And every rule's alerts in both areas (schemas.alerts.Rule): lists, the queue's counts,
the report and the child's chronology reveal nothing outside the caller's areas; a child
with parts in both shows its caller's parts and only the fact that others hold more; no
answer carries a receiver's address.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from devtools.broker import create_topics
from schemas.alerts import Rule
from services.common.auth import Role
from services.common.clock import FakeClock
from services.common.kafka import Topics
from tests.fixtures import loopback
from tests.fixtures.broker import produce
from tests.fixtures.desk import DeskServer, desk_settings
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.stack import wait_until
from tests.fixtures.tokens import TokenSet
from tests.fixtures.views import (
    alert_view,
    alert_view_record,
    child_view_record,
    outcome_record,
)

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
H = timedelta(hours=1)
AREAS = ("north", "south")
TOKENS = (
    TokenSet.matrix()
    .add("dpo", roles=[Role.AUDIT])
    .add("admin-north", roles=[Role.READ, Role.ADMIN], areas=["north"])
)
#: Callers: no token, a token nobody configured, and each of the cast.
CALLERS: tuple[str | None, ...] = (None, "unknown", *TOKENS.tokens)


@dataclass(frozen=True)
class Spec:
    """What a route needs: a role (None: open to all) and what it reads."""

    role: Role | None
    reads: str = "nothing"  # nothing | alert | done-alert | child
    console: bool = False
    why: str = ""
    query: str = ""
    signed_out: int = 303  # a console GET without a session: to the sign-in page


# Every route of the desk. A route missing here fails the first test.
ROUTES: dict[tuple[str, str], Spec] = {
    ("GET", "/healthz"): Spec(None, why="probe"),
    ("GET", "/readyz"): Spec(None, why="probe"),
    ("GET", "/metrics"): Spec(None, why="Prometheus"),
    ("GET", "/openapi.json"): Spec(None, why="the API's description"),
    ("GET", "/v1/alerts"): Spec(Role.READ),
    ("GET", "/v1/alerts/{alert_id}"): Spec(Role.READ, "alert"),
    ("POST", "/v1/alerts/{alert_id}/ack"): Spec(Role.ACKNOWLEDGE, "done-alert"),
    ("POST", "/v1/alerts/{alert_id}/resolve"): Spec(Role.RESOLVE, "done-alert"),
    ("GET", "/v1/children/{child_id}"): Spec(Role.READ, "child"),
    ("GET", "/v1/reports/timeliness"): Spec(Role.READ),
    ("GET", "/v1/audit"): Spec(Role.AUDIT, query="principal=duty-north"),
    ("GET", "/console"): Spec(None, console=True, why="sends on to a page or the sign-in"),
    ("GET", "/console/static/{name}"): Spec(None, console=True, why="style sheet, script"),
    ("GET", "/console/reports/static/report.css"): Spec(None, console=True, why="style"),
    ("GET", "/console/sign-in"): Spec(
        None, console=True, why="tests/integration/test_desk_oidc.py"
    ),
    ("POST", "/console/sign-in"): Spec(None, console=True, why="test_desk_oidc.py (throttle)"),
    ("POST", "/console/sign-in/oidc"): Spec(None, console=True, why="test_desk_oidc.py"),
    ("GET", "/console/sign-in/callback"): Spec(None, console=True, why="test_desk_oidc.py"),
    ("POST", "/console/sign-out"): Spec(None, console=True, why="test_desk_oidc.py"),
    ("GET", "/console/queue"): Spec(Role.READ, console=True),
    # The queue's poll: its script reloads the page when told 401.
    ("GET", "/console/queue/live"): Spec(Role.READ, console=True, signed_out=401),
    ("GET", "/console/alerts/{alert_id}"): Spec(Role.READ, "alert", console=True),
    ("POST", "/console/alerts/{alert_id}/acknowledge"): Spec(
        Role.ACKNOWLEDGE, "done-alert", console=True
    ),
    ("POST", "/console/alerts/{alert_id}/resolve"): Spec(Role.RESOLVE, "done-alert", console=True),
    ("GET", "/console/children/{child_id}"): Spec(Role.READ, "child", console=True),
    ("GET", "/console/reports/timeliness"): Spec(Role.READ, console=True),
    ("GET", "/console/audit"): Spec(
        Role.AUDIT, console=True, query="kind=principal&value=duty-north"
    ),
    ("GET", "/console/handover"): Spec(Role.READ, console=True),
    # Its form names the alerts; its refusals: tests/integration/test_desk_night.py.
    ("POST", "/console/queue/acknowledge"): Spec(
        None, console=True, why="test_desk_night.py (a group's acknowledgement)"
    ),
    # The pack is the lead's or the auditor's (no lead in this cast: the auditor's).
    ("GET", "/v1/reports/pack"): Spec(Role.AUDIT, query="period=2026-02"),
    ("GET", "/console/reports/pack"): Spec(Role.AUDIT, console=True, query="period=2026-02"),
    ("GET", "/console/reports/pack/static/pack.css"): Spec(None, console=True, why="style"),
}

RULE_VIEWS = [
    alert_view(
        f"al-m-{rule.value}-{area}",
        rule=rule.value,
        area=area,
        child_id=f"C-M-{area.upper()}",
        raised_at=NOW - H,
        due_at=NOW - 2 * H,
    )
    for rule in Rule
    for area in AREAS
]
DONE_VIEWS = [
    alert_view(
        f"al-m-done-{area}",
        area=area,
        child_id="C-M-BOTH",
        status="resolved",
        closed=(NOW - H, "duplicate"),
        raised_at=NOW - 3 * H,
    )
    for area in AREAS
]
TARGETS = {
    ("alert", "north"): "al-m-welfare-check-north",
    ("alert", "south"): "al-m-welfare-check-south",
    ("done-alert", "north"): "al-m-done-north",
    ("done-alert", "south"): "al-m-done-south",
    ("child", "north"): "C-M-NORTH",
    ("child", "south"): "C-M-SOUTH",
}
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+\.[A-Za-z0-9.-]+")
ADDRESS = re.compile(r"(?:mailto:|https?://(?!127\.0\.0\.1))")


@dataclass
class Desk:
    server: DeskServer
    sessions: dict[str, httpx.Client]

    @property
    def url(self) -> str:
        return self.server.url


def _child_record(child: str, areas: tuple[str, ...]) -> tuple[bytes, bytes]:
    key, value = child_view_record(
        child, obligations=[{"area": area} for area in areas], events=[("x", NOW)]
    )
    # The recent events and obligations get the areas given, one each.
    import json  # noqa: PLC0415

    document = json.loads(value)
    data = document["data"]
    data["recent_events"] = [
        {"type": "incident.reported", "at": (NOW - 5 * H).isoformat(), "area": area}
        for area in areas
    ]
    data["factors"] = [
        {
            "signal": f"incident in {area}",
            "points": 10,
            "at": (NOW - 5 * H).isoformat(),
            "area": area,
        }
        for area in areas
    ]
    return key, json.dumps(document).encode()


@pytest.fixture(scope="module")
def desk(
    kafka_bootstrap: str, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Desk]:
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(**{k: f"m{suffix}.{v}" for k, v in Topics().model_dump().items()})
    audit_topic = f"m{suffix}.safeguarding.audit.v1"
    create_topics(kafka_bootstrap, [*topics.model_dump().values(), audit_topic])
    views = RULE_VIEWS + DONE_VIEWS
    produce(kafka_bootstrap, topics.alert_views, [alert_view_record(v) for v in views])
    produce(
        kafka_bootstrap,
        topics.child_views,
        [
            _child_record("C-M-NORTH", ("north",)),
            _child_record("C-M-SOUTH", ("south",)),
            _child_record("C-M-BOTH", AREAS),
        ],
    )
    produce(
        kafka_bootstrap,
        topics.outcomes,
        [
            outcome_record(f"ob-m-{area}", "breached", due_at=NOW - 26 * H, area=area)
            for area in AREAS
        ],
    )
    url = postgres.create()
    folder: Path = tmp_path_factory.mktemp("matrix")
    settings = desk_settings(
        database_url=url,
        bootstrap=kafka_bootstrap,
        topics=topics,
        audit_topic=audit_topic,
        group=f"matrix-{suffix}",
        tokens_file=TOKENS.write(folder / "tokens.yaml"),
        # Every caller signs in from this one address: no throttling in this module.
        sign_in={"attempts_per_client": 1000, "failures_per_client": 1000},
    )
    server = DeskServer(settings, clock=FakeClock(NOW)).start()
    try:
        assert wait_until(
            lambda: (
                server.metric("safeguard_desk_projector_records_total", topic="alert_views")
                >= len(views)
                and server.metric("safeguard_desk_projector_records_total", topic="child_views")
                >= 3
            ),
            timeout=60,
        )
        sessions: dict[str, httpx.Client] = {}
        for name in TOKENS.tokens:
            client = loopback.Client(base_url=server.url, timeout=30, follow_redirects=False)
            client.get("/console/sign-in")
            signed = client.post(
                "/console/sign-in",
                data={"csrf": client.cookies["safeguard_signin"], "token": TOKENS.secret(name)},
            )
            if signed.status_code == 303:
                sessions[name] = client
            else:
                assert signed.status_code == 403, (name, signed.status_code)
                client.close()
        yield Desk(server, sessions)
    finally:
        server.stop()
        postgres.drop(url)


def test_every_route_has_an_entry_in_the_matrix(desk: Desk) -> None:
    app = desk.server.app
    assert app is not None
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    missing = served - set(ROUTES)
    assert not missing, f"routes without an entry in ROUTES: {sorted(missing)}"
    assert not set(ROUTES) - served, "entries for routes the desk does not serve"


def expected(caller: str | None, spec: Spec, area: str | None) -> int:
    """The status a caller gets; 200 stands for allowed (202/409 on acts)."""
    token = TOKENS.tokens.get(caller or "")
    if spec.role is None:
        return 200
    if token is None:
        return 401
    if spec.role not in token.roles:
        return 403
    if area is not None and token.areas is not None and area not in token.areas:
        return 404
    return 200


def _path(template: str, spec: Spec, area: str | None) -> str:
    query = f"?{spec.query}" if spec.query else ""
    if spec.reads == "nothing":
        return template + query
    target = TARGETS[(spec.reads, area or "north")]
    return re.sub(r"\{[a-z_]+\}", target, template) + query


def _unknown_path(template: str) -> str:
    return re.sub(r"\{[a-z_]+\}", "nobody-knows-this-id", template)


def _call(client: httpx.Client, method: str, path: str, *, console: bool) -> httpx.Response:
    if method == "GET":
        return client.get(path)
    if console:
        page = client.get(path.rsplit("/", 1)[0])
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        data = {"csrf": found.group(1) if found else "", "reason": "duplicate"}
        return client.post(path, data=data)
    return client.post(path, json={"note": "matrix"})


API = [(k, s) for k, s in ROUTES.items() if not s.console and s.role is not None]
PAGES = [(k, s) for k, s in ROUTES.items() if s.console and s.role is not None]


@pytest.mark.parametrize(("route", "spec"), API, ids=[f"{m} {p}" for (m, p), _ in API])
def test_the_api_answers_every_caller_for_both_areas_as_the_matrix_says(
    desk: Desk, route: tuple[str, str], spec: Spec
) -> None:
    method, template = route
    areas: tuple[str | None, ...] = AREAS if spec.reads != "nothing" else (None,)
    for caller in CALLERS:
        client = loopback.Client(
            base_url=desk.url, timeout=30, headers=TOKENS.header(caller), follow_redirects=False
        )
        for area in areas:
            answer = _call(client, method, _path(template, spec, area), console=False)
            want = expected(caller, spec, area)
            where = (caller, area, answer.text[:300])
            if want == 200:
                allowed = {200} if method == "GET" else {202, 409}
                if spec.reads == "done-alert":
                    allowed = {409}  # in scope: its state may be said
                assert answer.status_code in allowed, where
            else:
                assert answer.status_code == want, where
            if want == 404:
                unknown = client.request(method, _unknown_path(template), json={"note": "matrix"})
                assert unknown.status_code == 404
                assert answer.json() == unknown.json(), where  # the same, word for word
            assert not EMAIL.search(answer.text), where
        client.close()


@pytest.mark.parametrize(("route", "spec"), PAGES, ids=[f"{m} {p}" for (m, p), _ in PAGES])
def test_every_console_page_answers_every_person_for_both_areas_as_the_matrix_says(
    desk: Desk, route: tuple[str, str], spec: Spec
) -> None:
    method, template = route
    areas: tuple[str | None, ...] = AREAS if spec.reads != "nothing" else (None,)
    for caller in CALLERS:
        client = desk.sessions.get(caller or "") or loopback.Client(
            base_url=desk.url, timeout=30, follow_redirects=False
        )
        signed_in = (caller or "") in desk.sessions
        for area in areas:
            answer = _call(client, method, _path(template, spec, area), console=True)
            want = expected(caller if signed_in else None, spec, area)
            where = (caller, area, answer.status_code)
            if want == 401:
                if method == "GET":
                    assert answer.status_code == spec.signed_out, where
                    if spec.signed_out == 303:
                        assert answer.headers["Location"] == "/console/sign-in"
                else:
                    assert answer.status_code == 403, where
            elif want == 200:
                allowed = {200} if method == "GET" else {303, 409}
                if spec.reads == "done-alert":
                    allowed = {409}
                assert answer.status_code in allowed, where
            else:
                assert answer.status_code == want, where
            if want == 404:
                unknown = _call(client, method, _unknown_path(template), console=True)
                assert unknown.status_code == 404, where
                assert _main(answer.text) == _main(unknown.text), where
            assert not EMAIL.search(answer.text), where
            assert not ADDRESS.search(answer.text), where


def _main(html: str) -> str:
    found = re.search(r"<main.*?</main>", html, re.DOTALL)
    return found.group(0) if found else html


@pytest.mark.parametrize("area", AREAS)
def test_lists_counts_and_reports_show_every_rule_of_the_callers_area_only(
    desk: Desk, area: str
) -> None:
    caller = f"duty-{area}"
    other = next(a for a in AREAS if a != area)
    api = loopback.Client(base_url=desk.url, timeout=30, headers=TOKENS.header(caller))
    listed = api.get("/v1/alerts", params={"limit": 500}).json()["alerts"]
    assert {a["alert_id"] for a in listed} == {f"al-m-{rule.value}-{area}" for rule in Rule} | {
        f"al-m-done-{area}"
    }
    assert {a["area"] for a in listed} == {area}
    for rule in Rule:
        assert api.get(f"/v1/alerts/al-m-{rule.value}-{area}").status_code == 200
        hidden = api.get(f"/v1/alerts/al-m-{rule.value}-{other}")
        assert hidden.status_code == 404
        assert hidden.json() == api.get("/v1/alerts/al-m-nobody").json()
        assert (
            api.get("/v1/alerts", params={"rule": rule.value, "area": other}).json()["alerts"] == []
        )
    report = api.get("/v1/reports/timeliness", params={"from": "2026-01-01", "to": "2026-04-01"})
    assert report.status_code == 200
    assert {row["area"] for row in report.json()["rows"]} <= {area}
    assert (
        api.get(
            "/v1/reports/timeliness",
            params={"from": "2026-01-01", "to": "2026-04-01", "area": other},
        ).status_code
        == 403
    )  # a report asked for an area outside the caller's: the caller named it
    page = desk.sessions[caller].get("/console/queue")
    assert f">{len(Rule)}</span> in all" in page.text
    assert f"-{other}" not in " ".join(re.findall(r'data-alert-id="([^"]+)"', page.text))
    live = desk.sessions[caller].get("/console/queue/live")
    assert f"al-m-welfare-check-{other}" not in live.text


def test_a_child_in_both_areas_shows_each_caller_their_part_and_that_others_hold_more(
    desk: Desk,
) -> None:
    north = loopback.Client(base_url=desk.url, timeout=30, headers=TOKENS.header("duty-north"))
    child = north.get("/v1/children/C-M-BOTH").json()
    assert child["others_hold_more"] is True
    assert {e["area"] for e in child["recent_events"]} == {"north"}
    assert {f["area"] for f in child["factors"]} == {"north"}
    assert {a["area"] for a in child["alerts"]} == {"north"}
    assert child["score"] is None  # it rests on the south's factors too
    whole = loopback.get(
        f"{desk.url}/v1/children/C-M-BOTH", headers=TOKENS.header("duty-all"), timeout=30
    ).json()
    assert whole["others_hold_more"] is False
    assert {e["area"] for e in whole["recent_events"]} == set(AREAS)
    assert whole["score"] is not None
    page = desk.sessions["duty-north"].get("/console/children/C-M-BOTH")
    assert "Other areas hold more about this child" in page.text
    assert "al-m-done-south" not in page.text
    assert north.get("/v1/children/C-M-SOUTH").json() == north.get("/v1/children/C-NOBODY").json()


def test_the_audit_search_is_for_the_audit_role_only(desk: Desk) -> None:
    for caller in CALLERS:
        answer = loopback.get(
            f"{desk.url}/v1/audit",
            params={"principal": "duty-north"},
            headers=TOKENS.header(caller),
            timeout=30,
        )
        assert answer.status_code == expected(caller, ROUTES[("GET", "/v1/audit")], None)


def test_open_routes_answer_anyone(desk: Desk) -> None:
    for (method, template), spec in ROUTES.items():
        if spec.role is not None or method != "GET" or "sign-in" in template:
            continue
        path = template.replace("{name}", "console.css")
        answer = loopback.get(f"{desk.url}{path}", timeout=30, follow_redirects=False)
        assert answer.status_code in {200, 303}, (path, answer.status_code)
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
