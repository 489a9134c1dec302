"""The desk's API on the real broker and a real PostgreSQL: an in-process desk, its
projector filling the database from records produced onto the topics as notify and risk
publish them, then every route: lists complete and scoped, acts published as commands
(409 from the projected state), the child chronology, the timeliness report (the
inspectors' known set, figures identical to the pure report's), the audit search, and a
replay from the start changing nothing.

The desk's clock is fixed at NOW (the known set's "now"); time moves for nothing here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.broker import create_topics
from devtools.stack import DEV_TOKEN, DEV_TOKENS_FILE
from services.common.auth import Role
from services.common.clock import FakeClock
from services.common.kafka import Topics
from services.desk.openapi import document
from services.desk.timeliness import Query, timeliness
from tests.fixtures import loopback
from tests.fixtures.broker import produce, read_all
from tests.fixtures.desk import DeskServer, desk_settings
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.stack import wait_until
from tests.fixtures.tokens import TokenSet
from tests.fixtures.views import (
    alert_view,
    alert_view_record,
    audit_record,
    child_view_record,
    closed_record,
    outcome_record,
    sent_record,
)
from tests.unit.test_timeliness_report import KNOWN, QUERY

pytestmark = pytest.mark.integration

NOW = datetime(2026, 2, 1, tzinfo=UTC)
H = timedelta(hours=1)
TOKENS = TokenSet.matrix().add("dpo", roles=[Role.AUDIT])
CHILD = "C-API-1"


@dataclass
class Env:
    desk: DeskServer
    topics: Topics
    audit_topic: str
    bootstrap: str
    database_url: str

    def get(self, path: str, token: str | None = DEV_TOKEN, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return loopback.get(
            f"{self.desk.url}{path}",
            headers={**headers, **kwargs.pop("headers", {})},
            timeout=30,
            **kwargs,
        )

    def post(
        self, path: str, body: Any = None, token: str | None = DEV_TOKEN, **kwargs: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return loopback.post(
            f"{self.desk.url}{path}", json=body, headers=headers, timeout=30, **kwargs
        )

    def audit(self) -> list[dict[str, Any]]:
        return [json.loads(r.value)["data"] for r in read_all(self.bootstrap, self.audit_topic)]


def token_file(folder: Path) -> Path:
    path = TOKENS.write(folder / "tokens.yaml")
    document_ = yaml.safe_load(path.read_text())
    document_["tokens"] += yaml.safe_load(DEV_TOKENS_FILE.read_text())["tokens"]
    path.write_text(yaml.safe_dump(document_))
    return path


# The alerts: two areas and none, every status; three about CHILD.
VIEWS = [
    alert_view(
        "al-api-n1", area="north", severity="critical", child_id=CHILD, raised_at=NOW - 5 * H
    ),
    alert_view(
        "al-api-n2",
        area="north",
        severity="medium",
        raised_at=NOW - 4 * H,
        status="acknowledged",
        acknowledged_by="duty-north",
    ),
    alert_view("al-api-s1", area="south", severity="high", child_id=CHILD, raised_at=NOW - 3 * H),
    alert_view("al-api-x1", area=None, severity="high", raised_at=NOW - 2 * H),
    alert_view(
        "al-api-r1",
        area="north",
        status="resolved",
        child_id=CHILD,
        raised_at=NOW - 6 * H,
        closed=(NOW - H, "duplicate"),
    ),
    *[
        alert_view(
            f"al-api-p{n:02d}", area="north", severity="medium", raised_at=NOW - (10 + n) * H
        )
        for n in range(12)
    ],
]


def known_records() -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """Outcome and closure records that make the known set's obligation states."""
    outcomes, closures = [], []
    for n, state in enumerate(KNOWN):
        oid = f"al-known-{n:02d}"
        due = datetime.fromtimestamp(state.due or 0, UTC)
        triggered = datetime.fromtimestamp(state.triggered or 0, UTC)
        common = {
            "due_at": due,
            "triggered_at": triggered,
            "rule": state.rule or "",
            "area": state.area,
        }
        outcomes.append(outcome_record(oid, "opened", at=triggered, **common))
        if state.fulfilled is None or state.fulfilled > (state.due or 0):
            outcomes.append(outcome_record(oid, "breached", at=due, **common))
        if state.fulfilled is not None:
            fulfilled = datetime.fromtimestamp(state.fulfilled, UTC)
            outcomes.append(
                outcome_record(oid, "met", fulfilled_at=fulfilled, at=fulfilled, **common)
            )
        if state.closed is not None:
            closures.append(
                closed_record(oid, datetime.fromtimestamp(state.closed, UTC), state.reason)
            )
    return outcomes, closures


@pytest.fixture(scope="module")
def env(
    kafka_bootstrap: str, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(**{k: f"d{suffix}.{v}" for k, v in Topics().model_dump().items()})
    audit_topic = f"d{suffix}.safeguarding.audit.v1"
    create_topics(kafka_bootstrap, [*topics.model_dump().values(), audit_topic])
    produce(kafka_bootstrap, topics.alert_views, [alert_view_record(v) for v in VIEWS])
    produce(
        kafka_bootstrap,
        topics.child_views,
        [child_view_record(CHILD, obligations=[{"area": "north", "due_at": NOW + 2 * H}])],
    )
    outcomes, closures = known_records()
    produce(kafka_bootstrap, topics.outcomes, outcomes)
    produce(kafka_bootstrap, topics.notifications, [*closures, sent_record("al-api-n1")])
    produce(
        kafka_bootstrap,
        audit_topic,
        [audit_record("child.viewed", child_id=CHILD, actor="reader", at=NOW - H)],
    )
    url = postgres.create()
    settings = desk_settings(
        database_url=url,
        bootstrap=kafka_bootstrap,
        topics=topics,
        audit_topic=audit_topic,
        group=f"desk-{suffix}",
        tokens_file=token_file(tmp_path_factory.mktemp("desk-api")),
    )
    desk = DeskServer(settings, clock=FakeClock(NOW)).start()
    environment = Env(desk, topics, audit_topic, kafka_bootstrap, url)
    try:
        # Everything produced is projected (the desk's own audit records come later).
        expected = len(VIEWS) + 1 + len(outcomes) + len(closures) + 1 + 1
        assert wait_until(
            lambda: (
                sum(
                    desk.metric("safeguard_desk_projector_records_total", topic=t)
                    for t in ("alert_views", "child_views", "outcomes", "notifications")
                )
                + min(1.0, desk.metric("safeguard_desk_projector_records_total", topic="audit"))
                >= expected
            ),
            timeout=60,
        ), "the projector did not catch up"
        yield environment
    finally:
        environment.desk.stop()
        postgres.drop(url)


def all_pages(env: Env, path: str, token: str = DEV_TOKEN) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        answer = env.get(path + (f"&cursor={cursor}" if cursor else ""), token)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["complete"] is True
        ids += [a["alert_id"] for a in body["alerts"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return ids


def test_the_list_is_complete_newest_first_and_pages(env: Env) -> None:
    ids = all_pages(env, "/v1/alerts?limit=4")
    newest = sorted(VIEWS, key=lambda v: (-v.alert.raised_at.timestamp(), v.alert.alert_id))
    assert ids == [v.alert.alert_id for v in newest]
    first = env.get("/v1/alerts?limit=1").json()["alerts"][0]
    assert set(first) == {
        "alert_id",
        "rule",
        "severity",
        "status",
        "level",
        "raised_at",
        "due_at",
        "summary",
        "subject_kind",
        "subject_id",
        "area",
        "next_step",
    }


def test_filters_and_areas_narrow_the_list(env: Env) -> None:
    assert all_pages(env, "/v1/alerts?status=acknowledged") == ["al-api-n2"]
    assert all_pages(env, "/v1/alerts?severity=critical") == ["al-api-n1"]
    south = all_pages(env, "/v1/alerts?limit=500", TOKENS.secret("duty-south"))
    assert south == ["al-api-s1"]  # its area only: one without an area is for all-area callers
    assert all_pages(env, "/v1/alerts?area=south&status=open") == ["al-api-s1"]


@pytest.mark.parametrize(
    "query",
    [
        "status=closed",
        "severity=low",
        "limit=0",
        "limit=501",
        "limit=x",
        "cursor=nonsense",
        "rule=Jane%20Doe",
        "area=%00",
    ],
)
def test_a_bad_query_is_a_422_that_echoes_nothing(env: Env, query: str) -> None:
    answer = env.get(f"/v1/alerts?{query}")
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "invalid_query"
    assert "Jane" not in answer.text


def test_who_may_read_what(env: Env) -> None:
    assert env.get("/v1/alerts", None).status_code == 401
    assert env.get("/v1/alerts", None).headers["WWW-Authenticate"] == 'Bearer realm="safeguard"'
    assert env.get("/v1/alerts", "not-a-token").status_code == 401
    assert env.get("/v1/alerts", TOKENS.secret("sender")).status_code == 403
    assert env.get("/v1/alerts/al-api-s1", TOKENS.secret("duty-north")).status_code == 404
    # No area: for callers of every area only (fail closed).
    assert env.get("/v1/alerts/al-api-x1", TOKENS.secret("duty-north")).status_code == 404
    assert env.get("/v1/alerts/al-api-x1").status_code == 200
    assert env.get("/v1/alerts/al-nope").status_code == 404
    assert env.get("/v1/alerts/not%20an%20id").status_code == 404
    detail = env.get("/v1/alerts/al-api-r1").json()
    assert detail["status"] == "resolved"
    assert detail["closure"]["reason"] == "duplicate"
    assert "resolution" not in detail
    assert [r["level"] for r in detail["ladder"]] == [1, 2]


def test_acknowledging_publishes_a_command_once_the_checks_pass(env: Env) -> None:
    north = TOKENS.secret("duty-north")
    answer = env.post("/v1/alerts/al-api-n1/ack", {"note": "on it"}, north)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["status"] == "accepted"
    commands = [(r.key, json.loads(r.value)) for r in read_all(env.bootstrap, env.topics.commands)]
    [(key, command)] = [(k, c) for k, c in commands if c["id"] == body["event_id"]]
    assert key == b"al-api-n1"
    assert command["type"] == "alert.acknowledged"
    assert command["data"]["principal"] == "duty-north"
    assert command["data"]["note"] == "on it"
    records = [a for a in env.audit() if a.get("alert_id") == "al-api-n1"]
    assert {a["action"] for a in records} >= {"alert.acknowledged", "alert.noted"}
    assert "on it" not in json.dumps(records)

    conflict = env.post("/v1/alerts/al-api-n2/ack", {}, north)
    assert conflict.status_code == 409
    assert conflict.json()["current"] == "acknowledged"
    assert env.post("/v1/alerts/al-api-r1/resolve", {}, north).status_code == 409
    assert env.post("/v1/alerts/al-api-n1/ack", {"reason": "duplicate"}, north).status_code == 422
    assert env.post("/v1/alerts/al-api-s1/ack", {}, north).status_code == 404
    assert env.post("/v1/alerts/al-api-n1/ack", {}, TOKENS.secret("reader")).status_code == 403
    assert env.post("/v1/alerts/al-nope/ack", {}, north).status_code == 404
    assert env.post("/v1/alerts/al-api-n1/ack", {"by": "x\u0000"}, north).status_code == 422
    raw = loopback.post(
        f"{env.desk.url}/v1/alerts/al-api-n1/ack",
        content=b"{",
        headers={"Authorization": f"Bearer {north}"},
    )
    assert raw.status_code == 400
    big = loopback.post(
        f"{env.desk.url}/v1/alerts/al-api-n1/ack",
        content=b" " * 20000,
        headers={"Authorization": f"Bearer {north}"},
    )
    assert big.status_code == 413
    resolved = env.post("/v1/alerts/al-api-n2/resolve", {"reason": "fulfilled_elsewhere"}, north)
    assert resolved.status_code == 202


def test_the_child_chronology_merges_the_view_and_the_alerts(env: Env) -> None:
    answer = env.get(f"/v1/children/{CHILD}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["level"] == "medium"
    assert {a["alert_id"] for a in body["alerts"]} == {"al-api-n1", "al-api-s1", "al-api-r1"}
    kinds = [item["kind"] for item in body["chronology"]]
    assert {"Event", "Due", "Breach", "Closed"} <= set(kinds)
    times = [item["iso"] for item in body["chronology"]]
    assert times == sorted(times, reverse=True)
    north = env.get(f"/v1/children/{CHILD}", TOKENS.secret("duty-north")).json()
    assert "al-api-s1" not in json.dumps(north)
    assert env.get("/v1/children/C-NOBODY").status_code == 404
    assert env.get(f"/v1/children/{CHILD}", TOKENS.secret("sender")).status_code == 403
    viewed = [
        a for a in env.audit() if a["action"] == "child.viewed" and a.get("child_id") == CHILD
    ]
    assert {a["actor"] for a in viewed} >= {"development", "duty-north"}


def _without_time(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "generated_at"}


def test_the_report_gives_the_known_sets_figures_exactly(env: Env) -> None:
    params = "from=2026-01-01&to=2026-03-01&rule=social-care-referral&area=north"
    answer = env.get(f"/v1/reports/timeliness?{params}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    [row] = body["rows"]
    assert row["sentence"] == "4 of 10 over 25 days"
    assert (row["due"], row["met_on_time"], row["met_late"], row["open_overdue"]) == (11, 4, 5, 1)
    assert row["closed_by_hand_by_reason"] == {"duplicate": 1}
    # Exactly what the pure report computes from the same states, figure for figure.
    today = timeliness(KNOWN, QUERY, NOW).to_json()
    assert _without_time(body) == _without_time(today)
    everything = Query(start=QUERY.start, end=QUERY.end, over=QUERY.over)
    whole = env.get("/v1/reports/timeliness?from=2026-01-01&to=2026-03-01").json()
    assert _without_time(whole) == _without_time(timeliness(KNOWN, everything, NOW).to_json())
    south_only = env.get(
        "/v1/reports/timeliness?from=2026-01-01&to=2026-03-01", TOKENS.secret("duty-south")
    ).json()
    assert {r["area"] for r in south_only["rows"]} == {"south"}
    assert (
        env.get(f"/v1/reports/timeliness?{params}", TOKENS.secret("duty-south")).status_code == 403
    )
    csv_answer = env.get(f"/v1/reports/timeliness?{params}", headers={"Accept": "text/csv"})
    assert csv_answer.headers["Content-Type"].startswith("text/csv")
    assert "4 of 10 over 25 days" in csv_answer.text
    html = env.get(f"/v1/reports/timeliness?{params}&format=html")
    assert html.text.count("<svg") >= 2
    assert env.get("/v1/reports/timeliness?over=soon").status_code == 422
    assert "report.viewed" in {a["action"] for a in env.audit()}


def _search(env: Env, query: str, token: str | None = None) -> httpx.Response:
    return env.get(f"/v1/audit?{query}&from=2026-01-01", token or TOKENS.secret("dpo"))


def _search_until(env: Env, query: str, actions: set[str]) -> list[dict[str, Any]]:
    """Return the records `query` finds once they include every one of `actions`."""

    def found() -> list[dict[str, Any]] | None:
        records: list[dict[str, Any]] = _search(env, query).json()["records"]
        return records if actions <= {r["action"] for r in records} else None

    records = wait_until(found, timeout=30)
    assert records, (query, _search(env, query).json())
    return records


def test_the_audit_search_finds_who_read_or_acted_and_is_audited(env: Env) -> None:
    # The desk's own records (earlier tests) come back through the projector.
    def acted() -> list[dict[str, Any]] | None:
        found = _search(env, f"child_id={CHILD}").json()["records"]
        actions = {(r["actor"], r["action"]) for r in found}
        wanted = {
            ("reader", "child.viewed"),
            ("duty-north", "alert.acknowledged"),
            ("development", "child.viewed"),
        }
        return found if wanted <= actions else None

    found = wait_until(acted, timeout=30)
    assert found, _search(env, f"child_id={CHILD}").json()
    assert [r["at"] for r in found] == sorted((r["at"] for r in found), reverse=True)
    assert {r["service"] for r in found} >= {"risk", "desk"}

    # Each record is projected on its own: wait for every one the assertions read.
    mine = _search_until(
        env, "principal=duty-north", {"alert.acknowledged", "alert.noted", "child.viewed"}
    )
    assert {r["actor"] for r in mine} == {"duty-north"}
    reports = _search_until(env, "report=timeliness", {"report.viewed"})
    assert {r["action"] for r in reports} == {"report.viewed"}
    page = _search(env, f"child_id={CHILD}&limit=1").json()
    assert len(page["records"]) == 1
    assert page["next_cursor"]
    csv_answer = _search(env, "principal=duty-north&format=csv")
    assert csv_answer.text.splitlines()[0].startswith("at,actor,action")
    assert _search(env, "principal=duty-north", TOKENS.secret("reader")).status_code == 403
    assert _search(env, "principal=duty-north&child_id=C-1").status_code == 422
    assert _search(env, "principal=Jane%20Doe").status_code == 422
    assert _search(env, "report=other").status_code == 422
    searched = [a for a in env.audit() if a["action"] == "audit.searched"]
    assert {"child_id": CHILD} in [
        {k: v for k, v in a.items() if k == "child_id"} for a in searched
    ]
    assert any(a.get("principal") == "duty-north" for a in searched)
    assert all(a["actor"] == "dpo" for a in searched)


def test_records_that_cannot_be_projected_are_skipped_and_counted(env: Env) -> None:
    before = env.desk.metric(
        "safeguard_desk_projector_skipped_total", topic="alert_views", reason="invalid_json"
    )
    produce(
        env.bootstrap,
        env.topics.alert_views,
        [(b"al-broken", b"not json"), alert_view_record(alert_view("al-api-late", raised_at=NOW))],
    )
    assert wait_until(lambda: env.get("/v1/alerts/al-api-late").status_code == 200, timeout=30)
    after = env.desk.metric(
        "safeguard_desk_projector_skipped_total", topic="alert_views", reason="invalid_json"
    )
    assert after == before + 1


def _snapshot(url: str) -> dict[str, list[Any]]:
    engine = sa.create_engine(url)
    tables = ("alerts", "children", "obligations", "notification_events", "audit_records")
    with engine.connect() as connection:
        snapshot = {
            t: sorted(map(tuple, connection.execute(sa.text(f"SELECT * FROM {t}")).all()), key=repr)  # noqa: S608
            for t in tables
        }
    engine.dispose()
    return snapshot


def test_replaying_every_topic_from_the_start_changes_nothing(env: Env) -> None:
    """Forget the stored offsets: the next projector reads everything again."""
    topics = (
        env.topics.alert_views,
        env.topics.child_views,
        env.topics.outcomes,
        env.topics.notifications,
        env.audit_topic,
    )
    kinds = ("alert_views", "child_views", "outcomes", "notifications", "audit")

    def projected(desk: DeskServer) -> float:
        return sum(desk.metric("safeguard_desk_projector_records_total", topic=t) for t in kinds)

    total = sum(len(read_all(env.bootstrap, t)) for t in topics)
    assert wait_until(lambda: projected(env.desk) >= total, timeout=30)
    env.desk.stop()
    before = _snapshot(env.database_url)
    engine = sa.create_engine(env.database_url)
    with engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM projector_offsets"))
    engine.dispose()
    replay = DeskServer(env.desk.settings, clock=FakeClock(NOW)).start()
    try:
        assert wait_until(lambda: projected(replay) >= total, timeout=60)
        assert _snapshot(env.database_url) == before
    finally:
        replay.stop()
        env.desk = DeskServer(env.desk.settings, clock=FakeClock(NOW)).start()


def test_the_served_openapi_is_the_committed_one_and_covers_every_route(env: Env) -> None:
    served = env.get("/openapi.json", None).json()
    assert served == document()
    routes = {
        r.resource.canonical
        for r in env.desk.app.router.routes()  # type: ignore[union-attr]
        if r.resource is not None and not r.resource.canonical.startswith("/console")
    }
    assert routes <= set(served["paths"])
    # Caught up: no lag, and the freshness mark is recent (the console shows no notice).
    assert wait_until(
        lambda: (
            env.desk.registry.get_sample_value(
                "safeguard_desk_projector_lag_records", {"topic": "alert_views"}
            )
            == 0.0
        ),
        timeout=20,
    )
    assert env.get("/readyz", None).json()["projector"] == "running"
    metrics = env.get("/metrics", None).text
    assert "safeguard_desk_projector_records_total" in metrics
    assert CHILD not in metrics
    assert "al-api" not in metrics


# The desk under test runs in this process: its libraries (the Kafka client's node
# choice, the database pool) draw from the global `random` while examples are generated.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(["/v1/alerts", "/v1/reports/timeliness", "/v1/audit"]),
    params=st.dictionaries(
        st.sampled_from(
            [
                "status",
                "severity",
                "rule",
                "area",
                "limit",
                "cursor",
                "from",
                "to",
                "over",
                "format",
                "child_id",
                "alert_id",
                "principal",
                "report",
                "order",
                "subject_kind",
                "subject_id",
                "trigger_id",
            ]
        ),
        st.text(max_size=40)
        | st.sampled_from(
            [
                "open",
                "urgency",
                "resolved",
                "child",
                "2026-01-01",
                "0001-01-01",
                "9999-12-31",
                "25d",
                "500",
                "timeliness",
                "C-API-1",
                "Jane Doe 2014-03-02",
            ]
        ),
    ),
)
def test_no_query_is_a_server_error_and_none_is_echoed(
    env: Env, path: str, params: dict[str, str]
) -> None:
    answer = loopback.get(
        f"{env.desk.url}{path}",
        params={**params, "marker": "Jane Doe"},
        headers={"Authorization": f"Bearer {DEV_TOKEN}"},
        timeout=30,
    )
    assert answer.status_code in {200, 403, 422}, (params, answer.text)
    # Free text (a name, a date of birth) is never repeated back.
    assert "Jane" not in answer.text, params


def test_a_record_that_can_never_be_projected_is_dead_lettered_and_the_rest_projected(
    env: Env,
) -> None:
    produce(
        env.bootstrap,
        env.topics.alert_views,
        [(b"al-api-bad", b"{not json"), alert_view_record(alert_view("al-api-after-bad"))],
    )

    def dead_letters() -> list[dict[str, Any]]:
        found = [json.loads(r.value) for r in read_all(env.bootstrap, env.topics.deadletter)]
        return [d for d in found if d["key"] == "al-api-bad"]

    [letter] = wait_until(dead_letters, timeout=30) or [None]
    assert letter is not None
    assert (letter["reason"], letter["topic"]) == ("invalid_json", env.topics.alert_views)
    assert letter["value"] == "{not json"  # its bytes, for `safeguard deadletter replay`
    # The partition moved past it: what came after is projected.
    assert wait_until(lambda: env.get("/v1/alerts/al-api-after-bad").status_code == 200)
    # Once: the desk dead-letters it when it first reads it, not again on each batch.
    assert len(dead_letters()) == 1
