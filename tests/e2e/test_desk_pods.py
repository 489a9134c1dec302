"""Two desk pods as real processes, one PostgreSQL, the real broker: any pod answers any
request with the same complete data; a session opened on one works on the other and
survives a restart; a projector killed with SIGKILL mid-replay loses and repeats
nothing; PostgreSQL stopped for half a minute turns every read into a clear 503, and
the desk is complete again once it is back.

Records are produced onto the topics as notify and risk publish them (no stream
services needed: the desk reads their topics, nothing else).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from kafka import KafkaProducer

from devtools.broker import SESSION_SECONDS, create_topics, free_port
from devtools.postgres import DevPostgres
from devtools.stack import DEV_TOKEN
from services.common.kafka import Topics
from services.desk import migrate
from tests.fixtures import loopback
from tests.fixtures.broker import produce
from tests.fixtures.desk import DeskProcess, desk_settings
from tests.fixtures.stack import wait_until
from tests.fixtures.views import alert_view, alert_view_record, audit_record

pytestmark = pytest.mark.e2e

NOW = datetime.now(UTC)
H = timedelta(hours=1)
ALERTS = [
    alert_view(
        f"al-pod-{n:03d}",
        severity=("medium", "high", "critical")[n % 3],
        area=("north", "south")[n % 2],
        raised_at=NOW - n * H,
        due_at=NOW - (n + 1) * H,
        child_id=f"C-PODCHILD-{n % 4}",
    )
    for n in range(40)
]
OUTAGE_SECONDS = 30


@dataclass
class Pods:
    postgres: DevPostgres
    database_url: str
    topics: Topics
    audit_topic: str
    bootstrap: str
    pods: list[DeskProcess]
    folder: Path

    def settings(self, **overrides: object):
        return desk_settings(
            database_url=self.database_url,
            bootstrap=self.bootstrap,
            topics=self.topics,
            audit_topic=self.audit_topic,
            group=self.group,
            port=free_port(),
            **overrides,
        )

    group: str = ""


def topics_named(prefix: str) -> tuple[Topics, str]:
    return Topics(
        **{k: f"{prefix}.{v}" for k, v in Topics().model_dump().items()}
    ), f"{prefix}.safeguarding.audit.v1"


@pytest.fixture(scope="module")
def pods(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pods]:
    folder = tmp_path_factory.mktemp("desk-pods")
    suffix = uuid.uuid4().hex[:8]
    topics, audit_topic = topics_named(f"p{suffix}")
    create_topics(kafka_bootstrap, [*topics.model_dump().values(), audit_topic])
    produce(kafka_bootstrap, topics.alert_views, [alert_view_record(v) for v in ALERTS])
    # A server of this module's own: the outage test stops it.
    postgres = DevPostgres(folder / "pg", remove_on_stop=True).start()
    url = postgres.create_database("desk")
    migrate.upgrade(url)
    env = Pods(
        postgres, url, topics, audit_topic, kafka_bootstrap, [], folder, group=f"desk-{suffix}"
    )
    try:
        for n in range(2):
            pod = DeskProcess(env.settings(), folder / f"desk-{n}.log").start()
            env.pods.append(pod)
        yield env
    finally:
        for pod in env.pods:
            pod.stop()
        postgres.close()


def listed(url: str) -> list[str] | None:
    try:
        answer = loopback.get(
            f"{url}/v1/alerts?limit=500",
            headers={"Authorization": f"Bearer {DEV_TOKEN}"},
            timeout=10,
        )
    except httpx.HTTPError:
        return None
    return [a["alert_id"] for a in answer.json()["alerts"]] if answer.status_code == 200 else None


def test_every_pod_lists_the_same_complete_set(pods: Pods) -> None:
    everything = sorted(v.alert.alert_id for v in ALERTS)
    for pod in pods.pods:
        assert wait_until(
            lambda pod=pod: sorted(listed(pod.url) or []) == everything, timeout=60
        ), pod.log.read_text()[-2000:]
    # Both projectors share the partitions; neither has all of them, the database has all.
    assert listed(pods.pods[0].url) == listed(pods.pods[1].url)
    for pod in pods.pods:
        browser = sign_in(pod.url)
        queue = browser.get("/console/queue")
        assert queue.status_code == 200
        total = re.search(r'class="count total"><span class="n">(\d+)</span>', queue.text)
        assert total is not None
        assert int(total.group(1)) == len(ALERTS)
        browser.close()


def sign_in(url: str, token: str = DEV_TOKEN) -> httpx.Client:
    client = loopback.Client(base_url=url, follow_redirects=False, timeout=30)
    client.get("/console/sign-in")
    answer = client.post(
        "/console/sign-in", data={"csrf": client.cookies["safeguard_signin"], "token": token}
    )
    assert answer.status_code == 303, answer.text
    return client


def test_a_session_works_on_any_pod_and_survives_a_restart(pods: Pods) -> None:
    first, second = pods.pods
    browser = sign_in(first.url)
    cookie = browser.cookies["safeguard_session"]
    other = loopback.Client(
        base_url=second.url,
        cookies={"safeguard_session": cookie},
        follow_redirects=False,
        timeout=30,
    )
    page = other.get("/console/queue")
    assert page.status_code == 200
    assert "Signed in as <strong>development</strong>" in page.text
    first.stop()
    first.start()
    again = loopback.Client(
        base_url=first.url,
        cookies={"safeguard_session": cookie},
        follow_redirects=False,
        timeout=30,
    )
    assert again.get("/console/queue").status_code == 200
    # The CSRF value one pod rendered is the session's on every pod: sign out on the other.
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    assert again.post("/console/sign-out", data={"csrf": csrf.group(1)}).status_code == 303
    assert other.get("/console/queue").headers.get("Location") == "/console/sign-in"
    for client in (browser, other, again):
        client.close()


def _counts(url: str) -> tuple[int, int]:
    """The rows and the stored offsets, in one snapshot (one statement)."""
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        rows, offsets = connection.execute(
            sa.text(
                "SELECT (SELECT count(*) FROM audit_records), "
                "(SELECT coalesce(sum(next_offset), 0) FROM projector_offsets)"
            )
        ).one()
    engine.dispose()
    return int(rows), int(offsets)


def test_a_projector_killed_mid_replay_loses_and_repeats_nothing(pods: Pods) -> None:
    """Every audit record is a row of its own, so rows = offsets at every commit."""
    topics, audit_topic = topics_named(f"k{uuid.uuid4().hex[:8]}")
    create_topics(pods.bootstrap, [*topics.model_dump().values(), audit_topic])
    total = 20_000
    producer = KafkaProducer(bootstrap_servers=pods.bootstrap, acks="all", linger_ms=20)
    for n in range(total):
        key, value = audit_record("alert.viewed", alert_id=f"al-k{n % 97}", record_id=f"r{n:06d}")
        producer.send(audit_topic, key=key, value=value)
    producer.flush()
    producer.close()
    url = pods.postgres.create_database(f"k{uuid.uuid4().hex[:8]}")
    migrate.upgrade(url)
    settings = desk_settings(
        database_url=url,
        bootstrap=pods.bootstrap,
        topics=topics,
        audit_topic=audit_topic,
        group=f"kill-{uuid.uuid4().hex[:8]}",
        port=free_port(),
        projector={
            "group_id": f"kill-{uuid.uuid4().hex[:8]}",
            "max_records": 100,
            "session_timeout_seconds": SESSION_SECONDS,
        },
    )
    victim = DeskProcess(settings, pods.folder / "victim.log").start()
    try:
        assert wait_until(lambda: _counts(url)[0] >= total // 10, timeout=60, interval=0.05)
        victim.kill()
        # A COMMIT the victim sent just before dying may still land: read until stable.
        rows, offsets = _counts(url)
        while (again := _counts(url)) != (rows, offsets):
            rows, offsets = again
            time.sleep(0.2)
        assert 0 < rows < total, "not killed mid-replay: make the replay longer"
        assert rows == offsets  # the rows and their offsets were committed together
        victim.start()
        assert wait_until(lambda: _counts(url)[0] == total, timeout=120), _counts(url)
        # The restarted projector read exactly what the database had not: nothing twice.
        applied = wait_until(
            lambda: victim.metric("safeguard_desk_projector_records_total", topic="audit") or None,
            timeout=10,
        )
        assert applied == total - offsets
        assert _counts(url) == (total, total)
    finally:
        victim.stop()


def test_postgres_away_for_half_a_minute_is_a_clear_503_then_complete(pods: Pods) -> None:
    pod = pods.pods[0]
    more = [alert_view(f"al-out-{n:03d}", raised_at=NOW - n * H) for n in range(300)]
    produce(pods.bootstrap, pods.topics.alert_views, [alert_view_record(v) for v in more[:50]])
    pods.postgres.stop()
    try:
        producer = KafkaProducer(bootstrap_servers=pods.bootstrap, acks="all")
        for view in more[50:]:
            key, value = alert_view_record(view)
            producer.send(pods.topics.alert_views, key=key, value=value)
        producer.flush()
        producer.close()
        deadline = time.monotonic() + OUTAGE_SECONDS
        seen = 0
        while time.monotonic() < deadline:
            answer = loopback.get(
                f"{pod.url}/v1/alerts", headers={"Authorization": f"Bearer {DEV_TOKEN}"}, timeout=20
            )
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"] == "database_unavailable"
            assert "database" in answer.json()["message"]
            assert answer.headers["Retry-After"] == "5"
            ready = loopback.get(f"{pod.url}/readyz", timeout=20)
            assert ready.status_code == 503
            assert ready.json()["reason"] == "the database does not answer"
            assert loopback.get(f"{pod.url}/healthz", timeout=5).status_code == 200
            seen += 1
            time.sleep(2)
        assert seen >= 3
        assert pod.metric("safeguard_desk_unavailable_total", dependency="database") >= seen
    finally:
        pods.postgres.start()
    everything = sorted(v.alert.alert_id for v in [*ALERTS, *more])
    for each in pods.pods:
        assert wait_until(
            lambda each=each: sorted(listed(each.url) or []) == everything, timeout=90
        ), (
            [loopback.get(f"{p.url}/readyz", timeout=5).text for p in pods.pods],
            len(listed(each.url) or []),
            len(everything),
        )
    assert loopback.get(f"{pod.url}/readyz", timeout=5).status_code == 200


def test_no_child_id_reaches_a_log_or_a_metric(pods: Pods) -> None:
    for pod in pods.pods:
        answer = loopback.get(
            f"{pod.url}/v1/children/C-PODCHILD-1",
            headers={"Authorization": f"Bearer {DEV_TOKEN}"},
            timeout=10,
        )
        assert answer.status_code == 200
        assert "C-PODCHILD" not in loopback.get(f"{pod.url}/metrics", timeout=10).text
        assert "C-PODCHILD" not in pod.log.read_text()
